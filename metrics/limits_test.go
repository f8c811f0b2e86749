package metrics_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/redistest"
	"github.com/batonhq/baton/metrics"
)

// TestWatchLimitsOnce: a second worker of the process watching limits does
// not panic on the duplicate registration.
func TestWatchLimitsOnce(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	reg := metrics.NewRegistry()
	un1 := metrics.WatchLimits(reg, rdb)
	un2 := metrics.WatchLimits(reg, rdb)
	un2()
	un1()
	require.NotPanics(t, func() { metrics.WatchLimits(reg, rdb)() }, "registers again after unregistering")
}
