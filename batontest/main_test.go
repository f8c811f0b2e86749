package batontest_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/redistest"
)

// redisURL is the real redis-server the package's tests run on; each Env
// leases a database of it. The example runs on the embedded Redis a user
// gets by default.
var redisURL string

// TestMain starts the redis-server and fails the run if any goroutine
// outlives the tests: every Env's worker, clients, lease renewal and
// embedded Redis stop at its cleanup.
func TestMain(m *testing.M) {
	if err := os.Unsetenv("BATONTEST_REDIS_URL"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv, err := redistest.Start(redistest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	redisURL = srv.URL(0)
	code := m.Run()
	srv.Stop()
	if code == 0 {
		if err := redistest.NoLeaks(3 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
