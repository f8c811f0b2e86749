package redistest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// node's reaper goroutine ends when the node is stopped.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
