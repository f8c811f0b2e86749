package baton

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// countingObserver does the least an observer can: count.
type countingObserver struct {
	BaseObserver
	n int
}

func (c *countingObserver) TaskFinished(context.Context, TaskInfo, TaskEnd) { c.n++ }

// BenchmarkAttemptHooks is what the observer hooks add to one successful
// delivery (begin, handler start, outcome, finish), with no observer and
// with one; the Redis work of a delivery (~100 µs) is not in it.
//
//	go test -run '^$' -bench AttemptHooks -benchmem .
func BenchmarkAttemptHooks(b *testing.B) {
	m := &message{V: messageVersion, ID: "t1", Kind: "noop", Queue: QueueDefault}
	for _, tc := range []struct {
		name string
		obs  []Observer
	}{{"none", nil}, {"one", []Observer{&countingObserver{}}}} {
		b.Run(tc.name, func(b *testing.B) {
			w := &Worker{obs: newObservers(tc.obs, slog.New(slog.NewTextHandler(io.Discard, nil)))}
			ctx, start := context.Background(), time.Now()
			b.ReportAllocs()
			for b.Loop() {
				_ = func() (err error) {
					ctx, at := w.beginAttempt(ctx, m, 0)
					defer func() { at.finish(ctx, &err) }()
					at.ran(start, 3)
					w.observeEnd(ctx, m, OutcomeSuccess, nil)
					return nil
				}()
			}
		})
	}
}
