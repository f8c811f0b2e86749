package asynqx

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/redistest"
)

// TestMain fails the package if a goroutine outlives the tests (the hook's
// committer and expiry timers, asynq's servers, go-redis's pools).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := redistest.NoLeaks(3 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
