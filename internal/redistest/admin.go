package redistest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// adminClient runs f on a short-lived single-node client of addr that fails
// fast on a dead node (no retries, short timeouts).
func adminClient[T any](addr string, f func(*redis.Client) (T, error)) (T, error) {
	c := redis.NewClient(&redis.Options{
		Addr:         addr,
		DialTimeout:  time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
		MaxRetries:   -1,
		// Above the one dial it makes: go-redis starts a background redial
		// loop once a pool has had PoolSize failed dials.
		PoolSize: 2,
	})
	defer c.Close()
	return f(c)
}

// adminDo runs one command on the node at addr.
func adminDo(ctx context.Context, addr string, args ...any) *redis.Cmd {
	cmd, _ := adminClient(addr, func(c *redis.Client) (*redis.Cmd, error) {
		cmd := c.Do(ctx, args...)
		return cmd, cmd.Err()
	})
	return cmd
}

// waitCond polls cond until it returns nil, or until ctx ends; the error
// then names what was awaited and why cond last said no.
func waitCond(ctx context.Context, what string, cond func(context.Context) error) error {
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("redistest: waiting for %s: %w; last check: %v", what, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// withDefaultTimeout bounds ctx by ClusterStartTimeout unless it has a
// deadline already.
func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, ClusterStartTimeout)
}

// NodeClient returns a client of the one node at addr (a cluster node, a
// sentinel or a data node of a SentinelSet), closed when tb ends.
func NodeClient(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}
