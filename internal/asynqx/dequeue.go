package asynqx

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// giveBackTimeout bounds the give-back of buffered tasks that expired.
const giveBackTimeout = 5 * time.Second

// buffered is a task moved to active by a batch and not yet handed to
// asynq.
type buffered struct {
	id, msg      string
	pendingSince string // as the hash had it, "" for none
	at           time.Time
}

// dequeue answers asynq's dequeue of one queue: from the buffer when it
// holds a task of that queue (no round trip), else with a batch of up to
// the free slots, of which the first goes to asynq and the rest to the
// buffer. The reply is asynq's: the task's message, or redis.Nil.
func (h *Hook) dequeue(ctx context.Context, next redis.ProcessHook, cmd *redis.Cmd, call scriptCall) error {
	if len(call.keys) != 4 || len(call.argv) != 2 {
		return next(ctx, cmd) // not the layout pinned: leave it to asynq
	}
	q := queueOf(call.keys[0])
	now := time.Now()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return next(ctx, cmd)
	}
	h.stats.dequeues.Add(1)
	if b := h.buffers[q]; len(b) > 0 {
		e := b[0]
		h.buffers[q] = b[1:]
		h.nbuf--
		h.running[e.id] = runningTask{queue: q, msg: e.msg, at: now}
		h.mu.Unlock()
		cmd.SetVal(e.msg)
		return nil
	}
	// asynq holds a slot for this call: every slot not running a task nor
	// promised to a buffered one can start a task right now.
	k := max(1, min(h.opts.Concurrency-len(h.running)-h.nbuf, h.opts.BatchMax))
	h.mu.Unlock()

	res, err := batchDequeueScript.runVia(ctx, next, call.keys, call.argv[0], call.argv[1], k).Slice()
	if err != nil {
		return err // redis.Nil when nothing was moved
	}
	got, err := parseBatch(res, now)
	if err != nil {
		return err
	}
	if len(got) == 0 {
		return redis.Nil
	}
	h.stats.batches.Add(1)
	h.stats.moved.Add(int64(len(got)))
	first, rest := got[0], got[1:]
	h.mu.Lock()
	closed := h.closed
	if first.msg != "" {
		h.running[first.id] = runningTask{queue: q, msg: first.msg, at: now}
	}
	if !closed && len(rest) > 0 {
		h.buffers[q] = append(h.buffers[q], rest...)
		h.nbuf += len(rest)
		if h.expiry == nil {
			h.expiry = time.AfterFunc(h.opts.BufferAge, h.expire)
		}
	}
	h.mu.Unlock()
	if closed && len(rest) > 0 {
		if err := h.giveBack(ctx, map[string][]buffered{q: rest}); err != nil {
			h.log.Warn("asynqx: could not give dequeued tasks back after close; asynq's lease recovery will", "queue", q, "err", err)
		}
	}
	if first.msg == "" {
		return redis.Nil // a task without a message: asynq's dequeue says "none" too
	}
	cmd.SetVal(first.msg)
	return nil
}

// parseBatch reads batchDequeueScript's reply.
func parseBatch(res []any, at time.Time) ([]buffered, error) {
	if len(res)%3 != 0 {
		return nil, fmt.Errorf("asynqx: batch dequeue: reply of %d items, want triples", len(res))
	}
	out := make([]buffered, 0, len(res)/3)
	for i := 0; i < len(res); i += 3 {
		id, ok := res[i].(string)
		if !ok {
			return nil, fmt.Errorf("asynqx: batch dequeue: task id %v is not a string", res[i])
		}
		msg, _ := res[i+1].(string) // nil: no message
		since, _ := res[i+2].(string)
		out = append(out, buffered{id: id, msg: msg, pendingSince: since, at: at})
	}
	return out, nil
}

// expire gives back every buffered task older than BufferAge, and re-arms
// itself for the oldest one left.
func (h *Hook) expire() {
	h.mu.Lock()
	h.expiry = nil
	if h.closed {
		h.mu.Unlock()
		return
	}
	now := time.Now()
	cutoff := now.Add(-h.opts.BufferAge)
	old := map[string][]buffered{}
	var oldest time.Time
	for q, b := range h.buffers {
		i := 0
		for i < len(b) && !b[i].at.After(cutoff) {
			i++
		}
		if i > 0 {
			old[q] = b[:i]
			h.buffers[q] = b[i:]
			h.nbuf -= i
		}
		if i < len(b) && (oldest.IsZero() || b[i].at.Before(oldest)) {
			oldest = b[i].at
		}
	}
	if !oldest.IsZero() {
		h.expiry = time.AfterFunc(oldest.Add(h.opts.BufferAge).Sub(now), h.expire)
	}
	if len(old) == 0 {
		h.mu.Unlock()
		return
	}
	h.bg.Add(1)
	h.mu.Unlock()
	defer h.bg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), giveBackTimeout)
	defer cancel()
	if err := h.giveBack(ctx, old); err != nil {
		h.log.Warn("asynqx: could not give expired buffered tasks back to pending; recovery will re-run them", "err", err)
	}
}

// giveBack returns buffered tasks to the head of their queue's pending
// list, in the order they would have been served.
func (h *Hook) giveBack(ctx context.Context, tasks map[string][]buffered) error {
	var first error
	for q, b := range tasks {
		if len(b) == 0 {
			continue
		}
		args := make([]any, 0, 1+2*len(b))
		args = append(args, taskKeyPrefix(q))
		for i := len(b) - 1; i >= 0; i-- { // RPUSH: the last pushed runs first
			args = append(args, b[i].id, b[i].pendingSince)
		}
		n, err := giveBackScript.run(ctx, h.rdb, []string{activeKey(q), leaseKey(q), pendingKey(q)}, args...).Int64()
		if err != nil {
			if first == nil {
				first = fmt.Errorf("asynqx: give %d buffered tasks of queue %q back to pending: %w", len(b), q, err)
			}
			continue
		}
		h.stats.givenBack.Add(n)
	}
	return first
}
