package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Waiting without polling. All waiters of one Backend share a single pub/sub
// connection: the first waiter of an id subscribes to its channel, and the
// subscription's confirmation (sent again by go-redis after every reconnect)
// triggers a re-read of the record, so a result stored between the waiter's
// first read and the subscription taking effect is never missed.

type hub struct {
	b *Backend

	mu      sync.Mutex
	ps      *redis.PubSub
	waiters map[string]map[chan struct{}]struct{}
	started bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func newHub(b *Backend) *hub {
	return &hub{b: b, waiters: map[string]map[chan struct{}]struct{}{}}
}

func (h *hub) ensureStarted() {
	if h.started {
		return
	}
	h.started = true
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.ps = h.b.rdb.Subscribe(ctx)
	h.wg.Add(1)
	go h.loop(ctx, h.ps)
}

func (h *hub) close() {
	h.mu.Lock()
	if !h.started {
		h.mu.Unlock()
		return
	}
	h.cancel()
	ps := h.ps
	h.mu.Unlock()
	_ = ps.Close()
	h.wg.Wait()
}

// add registers a waiter for id and subscribes on first interest.
func (h *hub) add(ctx context.Context, id string) (chan struct{}, bool, error) {
	ch := make(chan struct{}, 1)
	fresh, err := h.addChanFresh(ctx, id, ch)
	return ch, fresh, err
}

// addChan registers ch as a waiter for id.
func (h *hub) addChan(ctx context.Context, id string, ch chan struct{}) error {
	_, err := h.addChanFresh(ctx, id, ch)
	return err
}

// addChanFresh registers ch as a waiter for id and reports whether it
// subscribed anew (a confirmation, and so a notification, will follow).
func (h *hub) addChanFresh(ctx context.Context, id string, ch chan struct{}) (bool, error) {
	h.mu.Lock()
	h.ensureStarted()
	set, ok := h.waiters[id]
	if !ok {
		set = map[chan struct{}]struct{}{}
		h.waiters[id] = set
	}
	set[ch] = struct{}{}
	ps := h.ps
	h.mu.Unlock()
	if !ok {
		if err := ps.Subscribe(ctx, DoneChannel(id)); err != nil {
			h.remove(id, ch)
			return false, err
		}
	}
	return !ok, nil
}

func (h *hub) remove(id string, ch chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.waiters[id]
	delete(set, ch)
	if len(set) == 0 {
		delete(h.waiters, id)
		if h.ps != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = h.ps.Unsubscribe(ctx, DoneChannel(id))
			cancel()
		}
	}
}

func (h *hub) notify(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.waiters[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (h *hub) notifyAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.waiters {
		for ch := range set {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

func (h *hub) loop(ctx context.Context, ps *redis.PubSub) {
	defer h.wg.Done()
	prefix := DoneChannel("")
	backoff := 10 * time.Millisecond
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, redis.ErrClosed) {
				return
			}
			// The connection broke; go-redis reconnects and resubscribes on
			// the next Receive. Re-check everyone meanwhile.
			h.notifyAll()
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Message:
			h.notify(strings.TrimPrefix(m.Channel, prefix))
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				h.notify(strings.TrimPrefix(m.Channel, prefix))
			}
		}
	}
}

// Wait blocks until task id reaches a terminal state and returns its record,
// or returns ctx's error. It returns ErrNotFound for an id with no record.
func (b *Backend) Wait(ctx context.Context, id string) (*Record, error) {
	r, err := b.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.State.Terminal() {
		return r, nil
	}
	return b.waitSubscribed(ctx, id)
}

// WaitKnown is Wait for an id the caller knows was enqueued: a missing
// record counts as PENDING rather than ErrNotFound.
func (b *Backend) WaitKnown(ctx context.Context, id string) (*Record, error) {
	return b.waitSubscribed(ctx, id)
}

func (b *Backend) waitSubscribed(ctx context.Context, id string) (*Record, error) {
	ch, fresh, err := b.hub.add(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("backend: wait %s: subscribe: %w", id, err)
	}
	defer b.hub.remove(id, ch)
	if fresh {
		// The first read happens on the subscription's confirmation, so it
		// cannot miss a result published before the subscription took hold.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
	for {
		r, err := b.Get(ctx, id)
		switch {
		case err == nil && r.State.Terminal():
			return r, nil
		case err != nil && !errors.Is(err, ErrNotFound) && ctx.Err() != nil:
			return nil, ctx.Err()
		}
		// A transient read error (Redis restarting) is retried on the next
		// notification; the hub notifies everyone after a reconnect.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

// Watch notifies on the returned channel whenever any of ids changes state
// (STARTED, RETRY, SUCCESS, ...), sharing the backend's single pub/sub
// connection. A notification is also sent once the subscriptions are live,
// so the caller's first read cannot miss a change. Call stop when done.
func (b *Backend) Watch(ctx context.Context, ids []string) (<-chan struct{}, func(), error) {
	ch := make(chan struct{}, 1)
	var added []string
	stop := func() {
		for _, id := range added {
			b.hub.remove(id, ch)
		}
	}
	for _, id := range ids {
		if err := b.hub.addChan(ctx, id, ch); err != nil {
			stop()
			return nil, nil, fmt.Errorf("backend: watch: %w", err)
		}
		added = append(added, id)
	}
	return ch, stop, nil
}
