package baton_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

// attemptLog is a custom observer: it embeds BaseObserver (which ignores
// every event) and overrides the two it wants. Observers are called from
// many goroutines at once, hence the mutex.
type attemptLog struct {
	baton.BaseObserver
	mu    sync.Mutex
	lines []string
}

func (l *attemptLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *attemptLog) RetryScheduled(_ context.Context, t baton.TaskInfo, r baton.RetryInfo) {
	l.add("%s: attempt %d failed (%v), retry in %v", t.Kind, t.Retries+1, r.Err, r.Delay)
}

func (l *attemptLog) TaskFinished(_ context.Context, t baton.TaskInfo, e baton.TaskEnd) {
	l.add("%s: attempt %d ended %s", t.Kind, t.Retries+1, e.Outcome)
}

// Example_observer plugs a custom observer into a worker: it sees every
// attempt of a task that fails once and then succeeds.
func Example_observer() {
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

	var calls atomic.Int32
	flaky := baton.NewTask("flaky", func(ctx context.Context, n int) (int, error) {
		if calls.Add(1) == 1 {
			return 0, errors.New("upstream busy")
		}
		return n * 2, nil
	}, &baton.TaskOptions{MaxRetries: 3, RetryDelay: baton.FixedDelay(50 * time.Millisecond)})

	log := &attemptLog{}
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{Logger: slog.New(slog.DiscardHandler),
		Observers: []baton.Observer{log}})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := w.Register(flaky); err != nil {
		fmt.Println(err)
		return
	}
	if err := w.Start(); err != nil {
		fmt.Println(err)
		return
	}
	client, err := baton.NewClient(rdb, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	h, err := flaky.Enqueue(ctx, client, 21, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	got, err := h.Get(ctx)
	fmt.Println("result:", got, err)

	// An attempt is reported finished once its delivery is done, just
	// after its result is recorded: Shutdown waits for that.
	w.Shutdown()
	for _, l := range log.lines {
		fmt.Println(l)
	}
	// Output:
	// result: 42 <nil>
	// flaky: attempt 1 failed (upstream busy), retry in 50ms
	// flaky: attempt 1 ended retry
	// flaky: attempt 2 ended success
}
