package baton_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

// SumArgs are the arguments of the example's "sum2" task.
type SumArgs struct {
	A int `json:"a"`
	B int `json:"b"`
}

// Example is the quick start: define a task, run a worker for it, enqueue
// it, wait for the result and read its record.
func Example() {
	// A throwaway redis-server for the example; use your own Redis.
	srv, err := redistest.Start(redistest.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A task: a stable kind, typed args and result, and its defaults.
	sum := baton.NewTask("sum2", func(ctx context.Context, a SumArgs) (int, error) {
		return a.A + a.B, nil
	}, &baton.TaskOptions{MaxRetries: 3, Timeout: time.Minute})

	// A worker runs it (start as many as you like, anywhere).
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := w.Register(sum); err != nil {
		fmt.Println(err)
		return
	}
	if err := w.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer w.Shutdown()

	// A client enqueues it and waits for the typed result.
	client, err := baton.NewClient(rdb, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	h, err := sum.Enqueue(ctx, client, SumArgs{A: 2, B: 3}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	got, err := h.Get(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("2 + 3 =", got)

	// The result backend keeps the record.
	rec, err := client.Get(ctx, h.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rec.Kind, rec.State, string(rec.Result), "after", rec.Executions, "execution")
	// Output:
	// 2 + 3 = 5
	// sum2 SUCCESS 5 after 1 execution
}
