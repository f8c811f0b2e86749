package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
)

func TestExitCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{errors.New("boom"), exitFailure},
		{usageErrorf("bad"), exitUsage},
		{fmt.Errorf("wrapped: %w", usageErrorf("bad")), exitUsage},
		{&redisError{addr: "a:1", err: errors.New("x")}, exitRedis},
		{fmt.Errorf("baton: get x: redis at a:1: %w", &net.OpError{Op: "dial", Err: errors.New("refused")}), exitRedis},
		{fmt.Errorf("%w: x", baton.ErrNotFound), exitNotFound},
		{&baton.TaskError{ID: "x", State: baton.Failure}, exitFailure},
		{stateExit(baton.Success), exitOK},
		{stateExit(baton.Failure), exitFailure},
		{stateExit(baton.Revoked), exitFailure},
		{stateExit(baton.Pending), exitNotFinished},
		{stateExit(baton.Started), exitNotFinished},
		{stateExit(baton.Retry), exitNotFinished},
		{fmt.Errorf("wait: %w", context.Canceled), exitInterrupted},
		{fmt.Errorf("baton: enqueue: redis at a:1: no reply within 1s (BATON_REDIS_TIMEOUT): %w", os.ErrDeadlineExceeded), exitRedis},
		{&interruptedError{errors.New("dial tcp: operation was canceled")}, exitInterrupted},
		{&interruptedError{&resumeError{id: "w", cmd: "baton submit --id w f", err: errors.New("x"), redis: true}}, exitInterrupted},
		{&resumeError{id: "w", cmd: "baton submit --id w f", err: errors.New("UNKNOWN: redis eval error: i/o timeout"), redis: true}, exitRedis},
		{&resumeError{id: "w", cmd: "baton submit --id w f", err: fmt.Errorf("x: %w", baton.ErrNotFound)}, exitNotFound},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, exitCode(tt.err), "%v", tt.err)
	}
}

// TestReportResume: a cut-short submission is one line with the resume
// command, for a failure and for an interrupt.
func TestReportResume(t *testing.T) {
	t.Parallel()
	re := &resumeError{id: "w1", cmd: "baton submit --id w1 doc.json", err: errors.New("baton: enqueue: boom\nsecond line"), redis: true}
	var b strings.Builder
	require.Equal(t, exitRedis, report(&b, re, "baton submit"))
	require.Equal(t, "baton: enqueue: boom; workflow w1 may be partly submitted: resume it with: baton submit --id w1 doc.json\n", b.String())
	b.Reset()
	require.Equal(t, exitInterrupted, report(&b, &interruptedError{re}, "baton submit"))
	require.Equal(t, "baton: interrupted; workflow w1 may be partly submitted: resume it with: baton submit --id w1 doc.json\n", b.String())
	require.Equal(t, "'a b.json'", shellQuote("a b.json"))
	require.Equal(t, "dir/a.json", shellQuote("dir/a.json"))
	require.Equal(t, `'it'\''s'`, shellQuote("it's"))
}

// TestRedisUnreachable: every command that needs Redis fails fast with one
// line naming the address, exit 3, no stack trace, no password.
func TestRedisUnreachable(t *testing.T) {
	port := closedPort(t)
	t.Setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:"+port+"/0")
	doc := filepath.Join(t.TempDir(), "c.json")
	require.NoError(t, os.WriteFile(doc, []byte(`{"task": "echo"}`), 0o600))
	for _, args := range [][]string{
		{"enqueue", "echo"},
		{"result", "some-id"},
		{"inspect"},
		{"submit", doc},
		{"cancel", "some-id"},
		{"worker"},
	} {
		t.Run(args[0], func(t *testing.T) {
			o := runCLI(t, "", args...).requireCode(t, exitRedis)
			require.Empty(t, o.stdout)
			require.Equal(t, 1, strings.Count(o.stderr, "\n"), "one line: %q", o.stderr)
			require.True(t, strings.HasPrefix(o.stderr, "baton: cannot reach Redis at 127.0.0.1:"+port+": "), o.stderr)
			require.Contains(t, o.stderr, "connection refused")
			require.Contains(t, o.stderr, "REDIS_URL")
			require.NotContains(t, o.stderr, "hunter2")
			require.NotContains(t, o.stderr, "goroutine")
		})
	}
	t.Run("a flag overrides the environment", func(t *testing.T) {
		other := closedPort(t)
		o := runCLI(t, "", "inspect", "--redis-url", "redis://127.0.0.1:"+other).requireCode(t, exitRedis)
		require.Contains(t, o.stderr, "127.0.0.1:"+other)
	})
}

// TestRedisTimeoutUnderPause: with Redis holding every write (CLIENT PAUSE
// ... WRITE), enqueue and submit give up after about --redis-timeout, one
// line naming the address and BATON_REDIS_TIMEOUT, exit 3.
func TestRedisTimeoutUnderPause(t *testing.T) {
	b := setup(t)
	const timeout = time.Second
	doc := filepath.Join(t.TempDir(), "c.json")
	require.NoError(t, os.WriteFile(doc, []byte(`{"chain": [{"task": "echo"}, {"task": "echo"}]}`), 0o600))
	require.NoError(t, b.rdb.Do(context.Background(), "CLIENT", "PAUSE", 60000, "WRITE").Err())
	t.Cleanup(func() { _ = b.rdb.Do(context.Background(), "CLIENT", "UNPAUSE").Err() })
	for _, args := range [][]string{{"enqueue", "echo"}, {"enqueue", "echo", "--id", "chosen"}, {"submit", doc}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t0 := time.Now()
			o := b.run(t, append(args, "--redis-timeout", timeout.String())...)
			took := time.Since(t0)
			t.Logf("%v: %s", took.Round(time.Millisecond), o.stderr)
			o.requireCode(t, exitRedis)
			require.Less(t, took, 2*timeout, "gave up within about --redis-timeout (before: once per go-redis retry)")
			require.Contains(t, o.stderr, b.srv.Addr)
			require.Contains(t, o.stderr, "BATON_REDIS_TIMEOUT")
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"nope"}, `unknown command "nope" for "baton"`},
		{"unknown flag", []string{"inspect", "--nope"}, "unknown flag: --nope"},
		{"missing argument", []string{"result"}, "baton result needs a task or workflow ID"},
		{"too many arguments", []string{"cancel", "a", "b"}, "takes one argument"},
		{"bad flag value", []string{"inspect", "--redis-timeout", "soon"}, `invalid argument "soon" for "--redis-timeout"`},
		{"invalid config", []string{"inspect", "--result-ttl", "0s"}, "BATON_RESULT_TTL=0 (--result-ttl): must be > 0"},
		{"invalid REDIS_URL", []string{"inspect", "--redis-url", "redis-sentinel://:pw@a:1,b:2"}, "add ?master=NAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := runCLI(t, "", tt.args...).requireCode(t, exitUsage)
			require.Contains(t, o.stderr, tt.want)
			require.True(t, strings.HasPrefix(o.stderr, "baton: "), o.stderr)
			require.Contains(t, o.stderr, "--help' for usage.")
			require.NotContains(t, o.stderr, ":pw@")
		})
	}
}

func TestBadEnvironment(t *testing.T) {
	t.Setenv("BATON_CONCURRENCY", "many")
	o := runCLI(t, "", "inspect").requireCode(t, exitUsage)
	require.Contains(t, o.stderr, `BATON_CONCURRENCY="many": not an integer`)
}

// TestFetchDenyPrivateRefused: a worker started with the replaced
// FETCH_DENY_PRIVATE does not start; the message names the replacement.
func TestFetchDenyPrivateRefused(t *testing.T) {
	t.Setenv("FETCH_DENY_PRIVATE", "true")
	o := runCLI(t, "", "worker").requireCode(t, exitUsage)
	require.Contains(t, o.stderr, "FETCH_DENY_PRIVATE=true: replaced by BATON_FETCH_ALLOW_PRIVATE")
}

func TestHelp(t *testing.T) {
	t.Parallel()
	o := runCLI(t, "", "--help").requireCode(t, exitOK)
	for _, c := range commands() {
		name := c(newApp(nil, nil, nil)).Name()
		require.Contains(t, o.stdout, "  "+name+" ", "help lists %s", name)
	}
	require.Contains(t, o.stdout, "--redis-url")
	o = runCLI(t, "", "worker", "--help").requireCode(t, exitOK)
	require.Contains(t, o.stdout, "--concurrency")
	require.Contains(t, o.stdout, "--queues")
	o = runCLI(t, "", "enqueue", "--help").requireCode(t, exitOK)
	require.NotContains(t, o.stdout, "--concurrency", "worker settings stay on worker")
	for _, c := range []string{"enqueue", "submit", "research"} {
		o = runCLI(t, "", c, "--help").requireCode(t, exitOK)
		require.Contains(t, o.stdout, "letters, digits, '-', '_' and ':'", "%s --help states the id rule", c)
	}
}
