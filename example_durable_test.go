package baton_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

// Approval is the payload of the "approve" event a reviewer sends.
type Approval struct {
	Approved bool   `json:"approved"`
	By       string `json:"by"`
}

// Example_durableApproval: a durable task drafts a report, waits (parked:
// no worker slot, no goroutine) for a human to approve it, then publishes
// it. The reviewer's answer comes through Client.Signal.
func Example_durableApproval() {
	srv, err := redistest.Start(redistest.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()

	draft := baton.NewTask("draft", func(ctx context.Context, topic string) (string, error) {
		return "Report on " + topic, nil
	}, nil)
	publish := baton.NewDurable("publish_report", func(dc *baton.Durable, topic string) (string, error) {
		text, err := baton.Call(dc, draft, topic, nil) // a child task; its result is recorded
		if err != nil {
			return "", err
		}
		ok, err := baton.WaitEvent[Approval](dc, "approve", 72*time.Hour)
		if errors.Is(err, baton.ErrEventTimeout) {
			return "", baton.Permanent(fmt.Errorf("nobody approved %q in time", text))
		}
		if err != nil {
			return "", err
		}
		if !ok.Approved {
			return "", baton.Permanent(fmt.Errorf("%q was rejected by %s", text, ok.By))
		}
		return baton.RunStep(dc, "publish", func(ctx context.Context) (string, error) {
			return fmt.Sprintf("published %q, approved by %s", text, ok.By), nil
		}, nil)
	}, &baton.TaskOptions{Events: []string{"approve"}})

	w, _ := baton.NewWorker(rdb, &baton.WorkerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), PollInterval: 10 * time.Millisecond})
	_ = w.Register(draft, publish)
	_ = w.Start()
	defer w.Shutdown()
	c, _ := baton.NewClient(rdb, nil)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	h, _ := publish.Enqueue(ctx, c, "Q3 revenue", nil)
	for { // a dashboard would show this; here we look until the run waits for the approval
		rec, err := c.Get(ctx, h.ID)
		if err == nil && rec.State == baton.Waiting && strings.HasPrefix(rec.Waiting, "event") {
			fmt.Println(rec.State, strings.SplitN(rec.Waiting, " (", 2)[0])
			break
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Days later, the reviewer answers.
	if err := c.Signal(ctx, h.ID, "approve", Approval{Approved: true, By: "ana"}); err != nil {
		fmt.Println(err)
		return
	}
	out, err := h.Get(ctx)
	fmt.Println(out, err)

	ops, _ := c.Operations(ctx, h.ID)
	for _, op := range ops {
		fmt.Println(op.Seq, op.Type, op.Name, op.State)
	}
	// Output:
	// WAITING event approve
	// published "Report on Q3 revenue", approved by ana <nil>
	// 0 call draft done
	// 1 event approve done
	// 2 step publish done
}
