package baton_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

type order struct {
	ID string `json:"id"`
}

// Example_compensate shows a saga: reserve → charge → ship. Shipping fails
// for good, so the completed steps are compensated in reverse order: the
// charge is refunded, then the reservation released.
func Example_compensate() {
	srv, err := redistest.Start(redistest.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()

	var mu sync.Mutex
	var log []string
	note := func(s string) { mu.Lock(); log = append(log, s); mu.Unlock() }
	step := func(kind string, fail bool) *baton.Task[order, order] {
		return baton.NewTask(kind, func(ctx context.Context, o order) (order, error) {
			if fail {
				return o, baton.Permanent(errors.New("carrier unavailable"))
			}
			note(kind + " " + o.ID)
			return o, nil
		}, nil)
	}
	reserve, charge, ship := step("reserve", false), step("charge", false), step("ship", true)
	refund, release := step("refund", false), step("release", false)

	w, _ := baton.NewWorker(rdb, &baton.WorkerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), PollInterval: 10 * time.Millisecond})
	_ = w.Register(reserve, charge, ship, refund, release)
	_ = w.Start()
	defer w.Shutdown()
	c, _ := baton.NewClient(rdb, nil)
	defer c.Close()

	r := reserve.S(order{ID: "order-42"}, nil)
	r.Compensate = release.Sig(nil) // receives reserve's result
	ch := charge.Sig(nil)
	ch.Compensate = refund.Sig(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wf, _ := c.Submit(ctx, baton.Chain(r, ch, ship.Sig(nil)), &baton.SubmitOpts{ID: "saga-1"})

	_, err = wf.Wait(ctx)
	fmt.Println("workflow:", err)
	compID, _ := wf.Compensation(ctx)
	comp, _ := c.Workflow(ctx, compID)
	_, err = comp.Wait(ctx)
	fmt.Println("compensation:", err)
	for _, l := range log {
		fmt.Println(l)
	}
	// Output:
	// workflow: task saga-1 (chain) FAILURE: step 3 of 3 of a chain saga-1.3 (ship) failed: carrier unavailable
	// compensation: <nil>
	// reserve order-42
	// charge order-42
	// refund order-42
	// release order-42
}
