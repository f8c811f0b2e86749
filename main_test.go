package baton_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every Worker
// shut down, every Client closed, every abandoned handler released.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
