package baton_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

// AddToAllArgs are the args of add_to_all.
type AddToAllArgs struct {
	Nums []int `json:"nums"`
	Val  int   `json:"val"`
}

// Example_replace: add_to_all decides at run time how many tasks its work
// takes and replaces itself with a group of them; the group's result becomes
// its own and goes on down the chain. A link on the chain gets the final
// result; the first step gets the workflow's call-time input.
func Example_replace() {
	srv, err := redistest.Start(redistest.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()

	add := baton.NewTask("add", func(ctx context.Context, ns []int) (int, error) {
		total := 0
		for _, n := range ns {
			total += n
		}
		return total, nil
	}, nil)
	addToAll := baton.NewTask("add_to_all", func(ctx context.Context, a AddToAllArgs) ([]int, error) {
		var g []baton.Canvas
		for _, n := range a.Nums {
			g = append(g, add.SI([]int{n, a.Val}, nil))
		}
		return nil, baton.Replace(baton.Group(g...))
	}, nil)
	report := baton.NewTask("report", func(ctx context.Context, total int) (string, error) {
		return fmt.Sprintf("the total is %d", total), nil
	}, nil)

	w, _ := baton.NewWorker(rdb, &baton.WorkerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), PollInterval: 10 * time.Millisecond})
	_ = w.Register(add, addToAll, report)
	_ = w.Start()
	defer w.Shutdown()
	c, _ := baton.NewClient(rdb, nil)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The input goes beside the static args, in "nums": add_to_all gets
	// {"nums": [1, 2, 3], "val": 10}; then add gets [11, 12, 13].
	cv := baton.Chain(
		&baton.Signature{Kind: "add_to_all", Args: json.RawMessage(`{"val": 10}`), ResultField: "nums"},
		add.Sig(nil),
	).WithLink(report.Sig(nil))
	wf, _ := c.Submit(ctx, cv, &baton.SubmitOpts{ID: "replace-1", Input: json.RawMessage(`[1, 2, 3]`)})

	var total int
	if err := wf.Get(ctx, &total); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("total:", total)
	first, _ := c.Get(ctx, "replace-1.1")
	fmt.Printf("replace-1.1 was replaced by %s and ended %s with %s\n", first.Replaced, first.State, first.Result)
	var said string
	_ = c.HandleFor(wf.Plan.CallbackID(0, "link")).Get(ctx, &said)
	fmt.Println("link:", said)
	// Output:
	// total: 36
	// replace-1.1 was replaced by replace-1.1.r and ended SUCCESS with [11,12,13]
	// link: the total is 36
}
