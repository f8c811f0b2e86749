package redistest_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/redistest"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// node's reaper goroutine ends when the node is stopped, and go-redis's
// redial goroutines (the tests kill nodes) within a second of their client's
// Close.
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
