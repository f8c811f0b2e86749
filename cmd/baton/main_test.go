package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no command leaves goroutines behind: run closes its
// clients, and a stopped worker command stops everything it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
