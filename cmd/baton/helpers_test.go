package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
	"github.com/batonhq/baton/tasks"
)

// bundle is one test's world: a throwaway redis-server, a go-redis client
// and a baton client on it (with the built-in tasks declared).
type bundle struct {
	srv    *redistest.Server
	url    string
	rdb    *redis.Client
	client *baton.Client
}

// setup starts a redis-server for the test. Each test gets its own server,
// so tests run in parallel without sharing state.
func setup(t *testing.T) *bundle {
	t.Helper()
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	c.Declare(tasks.Builtins()...)
	return &bundle{srv: srv, url: srv.URL(0), rdb: rdb, client: c}
}

// setupWithWorker is setup plus an in-process worker running the built-in
// tasks, stopped when the test ends.
func setupWithWorker(t *testing.T) *bundle {
	t.Helper()
	b := setup(t)
	w, err := baton.NewWorker(b.rdb, &baton.WorkerOptions{
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		PollInterval:    20 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second,
	})
	require.NoError(t, err)
	require.NoError(t, w.Register(tasks.Builtins()...))
	require.NoError(t, w.Start())
	t.Cleanup(w.Shutdown)
	return b
}

// out is what one in-process run of the CLI produced.
type out struct {
	stdout, stderr string
	code           int
}

// run runs the CLI in-process against b's Redis (--redis-url is appended).
func (b *bundle) run(t *testing.T, args ...string) out {
	t.Helper()
	return b.runIn(t, "", args...)
}

// runIn is run with stdin.
func (b *bundle) runIn(t *testing.T, stdin string, args ...string) out {
	t.Helper()
	return runCLI(t, stdin, append(args, "--redis-url="+b.url)...)
}

// runCLI runs the CLI in-process with exactly args, bounded by 60s.
func runCLI(t *testing.T, stdin string, args ...string) out {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := runWithInput(ctx, args, strings.NewReader(stdin), &stdout, &stderr)
	return out{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// requireCode fails with the command's output when the exit code differs.
func (o out) requireCode(t *testing.T, code int) out {
	t.Helper()
	require.Equal(t, code, o.code, "exit code\nstdout:\n%s\nstderr:\n%s", o.stdout, o.stderr)
	return o
}

// id returns stdout as a single id line.
func (o out) id(t *testing.T) string {
	t.Helper()
	require.Regexp(t, `^[A-Za-z0-9_.:-]+\n$`, o.stdout, "stdout is one id line")
	return strings.TrimSpace(o.stdout)
}

// record decodes stdout as one --json record.
func (o out) record(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(o.stdout), &m), "stdout is one JSON object:\n%s", o.stdout)
	return m
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return strconv.Itoa(port)
}

// dataKeys lists the Redis keys that hold tasks, records and workflows:
// everything but the heartbeats a running worker writes.
func (b *bundle) dataKeys(t *testing.T) []string {
	t.Helper()
	keys, err := b.rdb.Keys(context.Background(), "*").Result()
	require.NoError(t, err)
	var out []string
	for _, k := range keys {
		if strings.HasPrefix(k, "asynq:servers") || strings.HasPrefix(k, "asynq:workers") ||
			k == "baton:reaper" || strings.HasPrefix(k, "baton:orphans") { // a worker's recovery bookkeeping
			continue
		}
		out = append(out, k)
	}
	return out
}
