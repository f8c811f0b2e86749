package redistest

import (
	"time"

	"go.uber.org/goleak"
)

// NoLeaks is goleak.Find with time for go-redis to wind down: a client whose
// dials failed (a killed node, a failover) redials from a goroutine that
// sleeps a second between tries and sees that its pool was closed only when
// it wakes. It returns goleak's error if goroutines remain after grace. A
// TestMain that starts topologies calls it after m.Run instead of
// goleak.VerifyTestMain.
func NoLeaks(grace time.Duration) error {
	deadline := time.Now().Add(grace)
	for {
		err := goleak.Find()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
