package asynqx

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// commitTimeout bounds one group-commit pipeline.
const commitTimeout = 10 * time.Second

// committer sends the script calls of concurrent callers in shared
// pipelines (group commit): one goroutine takes the first queued call,
// waits up to linger for more (or takes what is queued, with no linger),
// and sends them all in one round trip; what arrives meanwhile goes in the
// next one. Each caller gets its own command's reply.
type committer struct {
	rdb    redis.UniversalClient
	linger time.Duration
	max    int
	stats  *counters

	mu      sync.RWMutex // held for reading while a call is queued
	closed  bool
	in      chan *commitCall
	wg      sync.WaitGroup
	waiting atomic.Int64 // calls queued and not yet answered
}

type commitCall struct {
	args []any
	src  *script // this package's script, retried with EVAL after NOSCRIPT; nil for asynq's
	val  any
	err  error
	done chan struct{}
}

func newCommitter(rdb redis.UniversalClient, linger time.Duration, maxCalls int, stats *counters) *committer {
	c := &committer{rdb: rdb, linger: linger, max: maxCalls, stats: stats, in: make(chan *commitCall, 4*maxCalls)}
	c.wg.Add(1)
	go c.loop()
	return c
}

// close sends what is queued and stops the goroutine.
func (c *committer) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.in)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// do runs the command args (an EVALSHA) in a group commit and returns its
// reply; ok is false when the committer is closed (run it another way).
func (c *committer) do(ctx context.Context, args []any, src *script) (val any, ok bool, err error) {
	call := &commitCall{args: args, src: src, done: make(chan struct{})}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return nil, false, nil
	}
	select {
	case c.in <- call:
	case <-ctx.Done():
		c.mu.RUnlock()
		return nil, true, ctx.Err()
	}
	c.waiting.Add(1)
	defer c.waiting.Add(-1)
	c.mu.RUnlock()
	select {
	case <-call.done:
		return call.val, true, call.err
	case <-ctx.Done():
		return nil, true, ctx.Err()
	}
}

func (c *committer) loop() {
	defer c.wg.Done()
	batch := make([]*commitCall, 0, c.max)
	for call := range c.in {
		batch = c.gather(append(batch[:0], call))
		c.exec(batch)
	}
}

// gather adds to batch what arrives within the linger, or what is queued
// already when there is none, up to max calls.
func (c *committer) gather(batch []*commitCall) []*commitCall {
	var timeout <-chan time.Time
	if c.linger > 0 {
		t := time.NewTimer(c.linger)
		defer t.Stop()
		timeout = t.C
	}
	for len(batch) < c.max {
		if timeout == nil {
			select {
			case call, ok := <-c.in:
				if !ok {
					return batch
				}
				batch = append(batch, call)
			default:
				return batch
			}
			continue
		}
		select {
		case call, ok := <-c.in:
			if !ok {
				return batch
			}
			batch = append(batch, call)
		case <-timeout:
			return batch
		}
	}
	return batch
}

func (c *committer) exec(batch []*commitCall) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	c.pipeline(ctx, batch, false)
	// This package's scripts are loaded again after a Redis restart or a
	// SCRIPT FLUSH; asynq's get the NOSCRIPT reply, and go-redis's
	// Script.Run sends their EVAL, which the hook passes through.
	var retry []*commitCall
	for _, call := range batch {
		if call.src != nil && isNoScript(call.err) {
			retry = append(retry, call)
		}
	}
	if len(retry) > 0 {
		c.pipeline(ctx, retry, true)
	}
	for _, call := range batch {
		close(call.done)
	}
}

// pipeline sends calls in one pipeline; withSource sends EVAL with each
// script's text instead of EVALSHA.
func (c *committer) pipeline(ctx context.Context, calls []*commitCall, withSource bool) {
	c.stats.groups.Add(1)
	c.stats.grouped.Add(int64(len(calls)))
	pipe := c.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for i, call := range calls {
		args := call.args
		if withSource {
			args = append([]any{"eval", call.src.src}, args[2:]...)
		}
		cmds[i] = pipe.Do(ctx, args...)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for i, call := range calls {
		call.val, call.err = cmds[i].Val(), cmds[i].Err()
	}
}
