package baton

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton/backend"
)

// Idle workers without busy polling.
//
// asynq polls empty queues every TaskCheckInterval: 1 s by default (≈1 s
// round trips, ~0.1% CPU), 10 ms for ≈5 ms round trips at ~5% CPU. baton
// turns the poll into a long poll, within asynq's public API: the worker's
// asynq server gets its own go-redis client with a hook that sees asynq's
// dequeue script. After a full round over the queues comes back empty, the
// next dequeue waits until a producer publishes a wake-up for one of the
// worker's queues (baton publishes one after every enqueue), a delayed task
// is forwarded, or PollInterval passes. asynq itself then polls every
// millisecond only while woken.

// WakeChannel is the pub/sub channel producers announce new work on; the
// message is the queue name.
const WakeChannel = backend.WakeChannel

// wakePollInterval is asynq's TaskCheckInterval when the long poll is on.
const wakePollInterval = time.Millisecond

type waker struct {
	rdb     redis.UniversalClient // the hooked client given to asynq
	queues  map[string]bool
	idleMax time.Duration

	wake chan struct{}
	quit chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	mu    sync.Mutex
	empty int // consecutive empty dequeues
}

// newWaker returns a waker with its own client cloned from rdb, or nil when
// rdb's type cannot be cloned (the worker then polls every PollInterval).
func newWaker(rdb redis.UniversalClient, queues map[string]int, idleMax time.Duration) *waker {
	var c redis.UniversalClient
	switch r := rdb.(type) {
	case *redis.Client:
		c = redis.NewClient(r.Options())
	case *redis.ClusterClient:
		c = redis.NewClusterClient(r.Options())
	default:
		return nil
	}
	w := &waker{rdb: c, queues: map[string]bool{}, idleMax: idleMax, wake: make(chan struct{}, 1), quit: make(chan struct{})}
	for q := range queues {
		w.queues[q] = true
	}
	c.AddHook(w)
	return w
}

func (w *waker) start() {
	ctx, cancel := context.WithCancel(context.Background())
	ps := w.rdb.Subscribe(ctx, WakeChannel)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer cancel()
		go func() { <-w.quit; cancel(); _ = ps.Close() }()
		for {
			msg, err := ps.Receive(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				// Reconnecting; poll meanwhile so nothing waits for a wake-up
				// that was published while we were away.
				w.signal()
				select {
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			switch m := msg.(type) {
			case *redis.Message:
				if w.queues[m.Payload] {
					w.signal()
				}
			case *redis.Subscription:
				w.signal() // (re)subscribed: look once, in case we missed one
			}
		}
	}()
}

func (w *waker) stop() {
	w.once.Do(func() { close(w.quit) })
	w.wg.Wait()
	_ = w.rdb.Close()
}

func (w *waker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *waker) DialHook(next redis.DialHook) redis.DialHook { return next }

func (w *waker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook watches asynq's dequeue and forward scripts.
func (w *waker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		switch scriptKind(cmd) {
		case scriptDequeue:
			w.mu.Lock()
			idle := w.empty >= len(w.queues)
			if idle {
				w.empty = 0
			}
			w.mu.Unlock()
			if idle {
				t := time.NewTimer(w.idleMax)
				select {
				case <-w.wake:
				case <-t.C:
				case <-w.quit:
				case <-ctx.Done():
				}
				t.Stop()
			}
			err := next(ctx, cmd)
			w.mu.Lock()
			if err == redis.Nil {
				w.empty++
			} else {
				w.empty = 0
			}
			w.mu.Unlock()
			return err
		case scriptForward:
			err := next(ctx, cmd)
			if c, ok := cmd.(*redis.Cmd); ok && err == nil {
				if n, _ := c.Int64(); n > 0 {
					w.signal()
				}
			}
			return err
		}
		return next(ctx, cmd)
	}
}

const (
	scriptOther = iota
	scriptDequeue
	scriptForward
)

// scriptKind recognises asynq's dequeue script (KEYS pending, paused, active,
// lease) and forward script (KEYS scheduled|retry, pending) by their keys.
func scriptKind(cmd redis.Cmder) int {
	name := cmd.Name()
	if name != "evalsha" && name != "eval" {
		return scriptOther
	}
	args := cmd.Args()
	if len(args) < 5 {
		return scriptOther
	}
	k1, _ := args[3].(string)
	k2, _ := args[4].(string)
	if !strings.HasPrefix(k1, "asynq:{") {
		return scriptOther
	}
	switch {
	case strings.HasSuffix(k1, "}:pending") && strings.HasSuffix(k2, "}:paused"):
		return scriptDequeue
	case (strings.HasSuffix(k1, "}:scheduled") || strings.HasSuffix(k1, "}:retry")) && strings.HasSuffix(k2, "}:pending"):
		return scriptForward
	}
	return scriptOther
}
