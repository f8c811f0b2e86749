package baton_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

type bundle struct {
	srv    *redistest.Server
	rdb    *redis.Client
	client *baton.Client
}

// setup starts a throwaway redis-server for the test and a client on it.
func setup(t *testing.T) *bundle {
	t.Helper()
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &bundle{srv: srv, rdb: rdb, client: c}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startWorker starts a worker with defs on b's Redis, stopped at cleanup.
func (b *bundle) startWorker(t *testing.T, opts *baton.WorkerOptions, defs ...baton.Definition) *baton.Worker {
	t.Helper()
	var o baton.WorkerOptions
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	if o.PollInterval == 0 {
		o.PollInterval = 20 * time.Millisecond
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 5 * time.Second
	}
	w, err := baton.NewWorker(b.rdb, &o)
	require.NoError(t, err)
	require.NoError(t, w.Register(defs...))
	require.NoError(t, w.Start())
	t.Cleanup(w.Shutdown)
	b.client.Declare(defs...)
	return w
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
