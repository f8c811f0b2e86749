package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/metrics"
)

// BenchmarkTaskFinished is the metrics observer's cost for a finished
// attempt, beside the direct histogram update the worker made before
// observers (a label lookup and an observation):
//
//	go test -run '^$' -bench TaskFinished -benchmem ./metrics
func BenchmarkTaskFinished(b *testing.B) {
	ctx := context.Background()
	t := baton.TaskInfo{ID: "t1", Kind: "noop", Queue: "default"}
	end := baton.TaskEnd{Outcome: baton.OutcomeSuccess, Ran: true, Duration: 3 * time.Millisecond}
	b.Run("observer", func(b *testing.B) {
		obs, err := metrics.NewObserver(prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			obs.TaskFinished(ctx, t, end)
		}
	})
	b.Run("direct", func(b *testing.B) {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "d", Buckets: metrics.DurationBuckets}, []string{"kind", "outcome"})
		b.ReportAllocs()
		for b.Loop() {
			h.WithLabelValues(t.Kind, "success").Observe(end.Duration.Seconds())
		}
	})
}
