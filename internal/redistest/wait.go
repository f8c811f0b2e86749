package redistest

import (
	"testing"
	"time"
)

// WaitFor polls cond until it returns true or the timeout passes, then fails
// the test with msg. It is the suite's only way to wait for a condition: no
// bare sleeps as synchronisation.
func WaitFor(tb testing.TB, timeout time.Duration, msg string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %v: %s", timeout, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
