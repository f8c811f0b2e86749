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

// The pipeliner batches script calls from concurrent goroutines into Redis
// pipelines: under load many workers' STARTED/SUCCESS writes (or many
// producers' PENDING writes) share one round trip, so the backend adds far
// less than one round trip per write. An idle caller pays no added delay: a
// flusher sends whatever is queued the moment it is free.

type call struct {
	script *redis.Script // nil: args is a plain command
	noWait bool          // nobody waits for the reply
	keys   []string
	args   []any
	res    any
	err    error
	done   chan struct{}
}

const (
	flushers    = 4   // pipelines in flight at once
	maxBatch    = 512 // calls per pipeline
	callTimeout = 10 * time.Second
)

type pipeliner struct {
	rdb  redis.UniversalClient
	in   chan *call
	quit chan struct{}
	wg   sync.WaitGroup
}

func newPipeliner(rdb redis.UniversalClient) *pipeliner {
	p := &pipeliner{rdb: rdb, in: make(chan *call, 4096), quit: make(chan struct{})}
	for range flushers {
		p.wg.Add(1)
		go p.loop()
	}
	return p
}

func (p *pipeliner) close() {
	close(p.quit)
	p.wg.Wait()
}

// do runs calls, each getting its own result or error. It returns the first
// error, or ctx's.
func (p *pipeliner) do(ctx context.Context, calls ...*call) error {
	if err := p.submit(ctx, calls...); err != nil {
		return err
	}
	return p.wait(ctx, calls...)
}

// fireAndForget queues a plain command whose reply nobody reads.
func (p *pipeliner) fireAndForget(args ...any) {
	select {
	case p.in <- &call{args: args, noWait: true}:
	case <-p.quit:
	default: // the queue is full: the system is busy, a wake-up is moot
	}
}

// errClosed is returned for calls on a closed backend.
var errClosed = errors.New("backend is closed")

// submit queues calls without waiting for them.
func (p *pipeliner) submit(ctx context.Context, calls ...*call) error {
	select {
	case <-p.quit:
		return errClosed
	default:
	}
	for _, c := range calls {
		c.done = make(chan struct{})
		select {
		case p.in <- c:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.quit:
			return errClosed
		}
	}
	return nil
}

// wait blocks until submitted calls are done.
func (p *pipeliner) wait(ctx context.Context, calls ...*call) error {
	var first error
	for _, c := range calls {
		select {
		case <-c.done:
			if c.err != nil && first == nil {
				first = c.err
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-p.quit:
			select {
			case <-c.done:
			default:
				return errClosed
			}
		}
	}
	return first
}

func (p *pipeliner) loop() {
	defer p.wg.Done()
	buf := make([]*call, 0, maxBatch)
	for {
		select {
		case <-p.quit:
			return
		case c := <-p.in:
			buf = append(buf[:0], c)
		drain:
			for len(buf) < maxBatch {
				select {
				case c := <-p.in:
					buf = append(buf, c)
				default:
					break drain
				}
			}
			p.flush(buf)
		}
	}
}

func (p *pipeliner) flush(calls []*call) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	p.exec(ctx, calls)
	// Scripts are lost when Redis restarts without persistence of its script
	// cache: load them again and retry the calls that hit NOSCRIPT.
	var retry []*call
	for _, c := range calls {
		if c.err != nil && strings.HasPrefix(c.err.Error(), "NOSCRIPT") {
			retry = append(retry, c)
		}
	}
	if len(retry) > 0 {
		for _, c := range retry {
			if err := c.script.Load(ctx, p.rdb).Err(); err != nil {
				c.err = err
			}
		}
		p.exec(ctx, retry)
	}
	for _, c := range calls {
		if c.done != nil {
			close(c.done)
		}
	}
}

func (p *pipeliner) exec(ctx context.Context, calls []*call) {
	if len(calls) == 1 && calls[0].script != nil {
		c := calls[0]
		c.res, c.err = c.script.Run(ctx, p.rdb, c.keys, c.args...).Result()
		return
	}
	pipe := p.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	seen := map[string]bool{}
	for i, c := range calls {
		if c.script == nil {
			// Plain fire-and-forget commands (wake-ups): one per batch.
			k := fmt.Sprint(c.args...)
			if seen[k] {
				cmds[i] = redis.NewCmd(ctx)
				continue
			}
			seen[k] = true
			cmds[i] = pipe.Do(ctx, c.args...)
			continue
		}
		cmds[i] = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range calls {
		c.res, c.err = cmds[i].Result()
	}
}
