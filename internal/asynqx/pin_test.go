package asynqx

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/redistest"
)

// These tests pin the package to asynq v0.26.0: they fail, saying what to
// re-check, when an asynq upgrade changes what the hook intercepts or what
// the scripts reproduce.

const reCheck = "asynq is no longer %s as pinned: re-check internal/asynqx against the new asynq's internal/rdb/rdb.go and internal/base/base.go " +
	"(layout.go: the pinned SHA1s and key builders; scripts.go: the batch dequeue and give-back; fused.go: the done and enqueue it reproduces; codec.go), " +
	"then update the pins"

// TestAsynqVersionPinned: the asynq compiled in is v0.26.0. Test binaries
// carry no module versions in their build info, so the version is read from
// where asynq's code was compiled from (the module cache path holds it), or
// from go.mod when the path has none (a vendored build).
func TestAsynqVersionPinned(t *testing.T) {
	file, _ := runtime.FuncForPC(reflect.ValueOf(asynq.NewClient).Pointer()).FileLine(0)
	if _, after, ok := strings.Cut(file, "github.com/hibiken/asynq@"); ok {
		version, _, _ := strings.Cut(after, "/")
		require.Equal(t, AsynqVersion, version, reCheck, AsynqVersion)
		return
	}
	mod, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^\s*github.com/hibiken/asynq `+regexp.QuoteMeta(AsynqVersion)+`$`, string(mod), reCheck, AsynqVersion)
}

// shape is a pinned script's layout: what each of its KEYS contains, how
// to check them exactly, and how to check its ARGV.
type shape struct {
	keyParts []string
	check    func(t *testing.T, call scriptCall, at time.Time)
}

var maxInt64 = int64(math.MaxInt64)

func shapes() map[scriptKind]shape {
	statsExp := func(t *testing.T, v any, at time.Time) {
		require.InDelta(t, at.Add(statsTTL).Unix(), v, 5, "stats expiration")
	}
	ackKeys := func(t *testing.T, call scriptCall, at time.Time, unique bool, extra ...func(q, id string) string) {
		q, id := queueOf(call.keys[0]), call.arg(1)
		require.IsType(t, "", call.argv[0], "ARGV[1], the task id")
		want := []string{}
		for _, f := range extra {
			want = append(want, f(q, id))
		}
		if unique {
			require.Contains(t, call.keys[len(call.keys)-1], queuePrefix(q)+"unique:")
			want = append(want, call.keys[len(call.keys)-1])
		}
		require.Equal(t, want, call.keys)
		_ = at
	}
	k := func(f func(string) string) func(q, id string) string { return func(q, _ string) string { return f(q) } }
	day := func(at time.Time, f func(string, time.Time) string) func(q, id string) string {
		return func(q, _ string) string { return f(q, at) }
	}
	done := func(unique bool) func(t *testing.T, call scriptCall, at time.Time) {
		return func(t *testing.T, call scriptCall, at time.Time) {
			ackKeys(t, call, at, unique, k(activeKey), k(leaseKey), taskKey, day(at, processedKey), k(processedTotalKey))
			require.Len(t, call.argv, 3)
			statsExp(t, call.argv[1], at)
			require.Equal(t, maxInt64, call.argv[2])
		}
	}
	complete := func(unique bool) func(t *testing.T, call scriptCall, at time.Time) {
		return func(t *testing.T, call scriptCall, at time.Time) {
			ackKeys(t, call, at, unique, k(activeKey), k(leaseKey), k(completedKey), taskKey, day(at, processedKey), k(processedTotalKey))
			require.Len(t, call.argv, 5)
			statsExp(t, call.argv[1], at)
			requireMsg(t, call.argv[3], call.arg(1))
			require.Equal(t, maxInt64, call.argv[4])
		}
	}
	return map[scriptKind]shape{
		kindDequeue: {[]string{":pending", ":paused", ":active", ":lease"}, func(t *testing.T, call scriptCall, at time.Time) {
			q := queueOf(call.keys[0])
			require.Equal(t, []string{pendingKey(q), pausedKey(q), activeKey(q), leaseKey(q)}, call.keys)
			require.Len(t, call.argv, 2)
			require.InDelta(t, at.Add(LeaseDuration).Unix(), call.argv[0], 2, "ARGV[1], the lease expiry")
			require.Equal(t, taskKeyPrefix(q), call.argv[1])
		}},
		kindDone:               {[]string{":active", ":lease", ":t:", ":processed:", ":processed"}, done(false)},
		kindDoneUnique:         {[]string{":active", ":lease", ":t:", ":processed:", ":processed", ":unique:"}, done(true)},
		kindMarkComplete:       {[]string{":active", ":lease", ":completed", ":t:", ":processed:", ":processed"}, complete(false)},
		kindMarkCompleteUnique: {[]string{":active", ":lease", ":completed", ":t:", ":processed:", ":processed", ":unique:"}, complete(true)},
		kindRetry: {[]string{":t:", ":active", ":lease", ":retry", ":processed:", ":failed:", ":processed", ":failed"}, func(t *testing.T, call scriptCall, at time.Time) {
			ackKeys(t, call, at, false, func(q, id string) string { return taskKey(q, id) }, k(activeKey), k(leaseKey), k(retryKey),
				day(at, processedKey), day(at, failedKey), k(processedTotalKey), k(failedTotalKey))
			require.Len(t, call.argv, 6)
			requireMsg(t, call.argv[1], call.arg(1))
			statsExp(t, call.argv[3], at)
			require.IsType(t, true, call.argv[4], "ARGV[5], is failure")
			require.Equal(t, maxInt64, call.argv[5])
		}},
		kindArchive: {[]string{":t:", ":active", ":lease", ":archived", ":processed:", ":failed:", ":processed", ":failed", ":t:"}, func(t *testing.T, call scriptCall, at time.Time) {
			ackKeys(t, call, at, false, taskKey, k(activeKey), k(leaseKey), k(archivedKey),
				day(at, processedKey), day(at, failedKey), k(processedTotalKey), k(failedTotalKey), k(taskKeyPrefix))
			require.Len(t, call.argv, 7)
			requireMsg(t, call.argv[1], call.arg(1))
			statsExp(t, call.argv[5], at)
			require.Equal(t, maxInt64, call.argv[6])
		}},
		kindRequeue: {[]string{":active", ":lease", ":pending", ":t:"}, func(t *testing.T, call scriptCall, at time.Time) {
			ackKeys(t, call, at, false, k(activeKey), k(leaseKey), k(pendingKey), taskKey)
			require.Len(t, call.argv, 1)
		}},
		kindServerState: {[]string{"asynq:servers:{", "asynq:workers:{"}, func(t *testing.T, call scriptCall, _ time.Time) {
			require.True(t, strings.HasPrefix(call.keys[0], "asynq:servers:{"), call.keys[0])
			require.True(t, strings.HasPrefix(call.keys[1], "asynq:workers:{"), call.keys[1])
			require.Equal(t, 0, len(call.argv)%2, "ARGV: ttl, server info, then (task id, worker info) pairs")
			for i := 3; i <= len(call.argv); i += 2 {
				require.IsType(t, "", call.argv[i-1], "ARGV[%d], a running task's id", i)
			}
		}},
		kindEnqueue: {[]string{":t:", ":pending"}, func(t *testing.T, call scriptCall, at time.Time) {
			q, id := queueOf(call.keys[0]), call.arg(2)
			require.Equal(t, []string{taskKey(q, id), pendingKey(q)}, call.keys)
			require.Len(t, call.argv, 3)
			requireMsg(t, call.argv[0], id)
			require.InDelta(t, at.UnixNano(), call.argv[2], float64(5*time.Second), "ARGV[3], pending_since")
		}},
		kindSchedule: {[]string{":t:", ":scheduled"}, func(t *testing.T, call scriptCall, _ time.Time) {
			q, id := queueOf(call.keys[0]), call.arg(3)
			require.Equal(t, []string{taskKey(q, id), scheduledKey(q)}, call.keys)
			require.Len(t, call.argv, 3)
			requireMsg(t, call.argv[0], id)
		}},
	}
}

// requireMsg: v is an encoded task message of task id.
func requireMsg(t *testing.T, v any, id string) {
	t.Helper()
	b, ok := v.([]byte)
	require.True(t, ok, "the message is %T, not encoded bytes", v)
	m, err := Decode(b)
	require.NoError(t, err)
	require.Equal(t, id, m.ID)
}

// matches: the call's KEYS contain the shape's parts, one each.
func (s shape) matches(keys []string) bool {
	if len(keys) != len(s.keyParts) {
		return false
	}
	for i, part := range s.keyParts {
		if !strings.Contains(keys[i], part) {
			return false
		}
	}
	return true
}

// shapesSeen reports which kinds' shapes a recorded call has, whatever
// its SHA1.
func (r *wire) shapesSeen() map[scriptKind]bool {
	out := map[scriptKind]bool{}
	for _, c := range r.snapshot() {
		call, ok := splitEval(c.args)
		if !ok {
			continue
		}
		for k, sh := range shapes() {
			if sh.matches(call.keys) {
				out[k] = true
			}
		}
	}
	return out
}

// TestAsynqScriptsPinned runs asynq's client and server through a recorder
// and checks that every script the package intercepts or reproduces is
// still asynq's (same SHA1, that is same text) and is called with the
// KEYS and ARGV layout the package relies on.
func TestAsynqScriptsPinned(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	rec := &wire{}
	rdb.AddHook(rec)
	c := asynq.NewClientFromRedisClient(rdb)
	enq := func(typ string, opts ...asynq.Option) {
		_, err := c.Enqueue(asynq.NewTask(typ, []byte(typ)), opts...)
		require.NoError(t, err)
	}
	enq("ok")
	enq("unique", asynq.Unique(time.Hour))
	enq("kept", asynq.Retention(time.Hour))
	enq("kept-unique", asynq.Retention(time.Hour), asynq.Unique(time.Hour))
	enq("fail", asynq.MaxRetry(1))
	enq("dead", asynq.MaxRetry(0))
	enq("later", asynq.ProcessIn(time.Hour))
	blocking := make(chan struct{})
	server := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 4, ShutdownTimeout: 100 * time.Millisecond, TaskCheckInterval: 10 * time.Millisecond,
		LogLevel: asynq.FatalLevel, RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour },
	})
	require.NoError(t, server.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		switch task.Type() {
		case "fail", "dead":
			return errors.New("failed")
		case "block":
			close(blocking)
			<-ctx.Done() // cancelled after asynq requeued it on shutdown
			return ctx.Err()
		}
		return nil
	})))
	t.Cleanup(server.Shutdown)
	all := []scriptKind{kindDequeue, kindDone, kindDoneUnique, kindMarkComplete, kindMarkCompleteUnique, kindRetry, kindArchive, kindServerState, kindEnqueue, kindSchedule}
	waitFor(t, "asynq's scripts recorded (a script shaped like each pinned one)", func() bool {
		seen := rec.shapesSeen()
		for _, k := range all {
			if !seen[k] {
				return false
			}
		}
		return true
	})
	enq("block")
	<-blocking
	server.Shutdown() // gives up on "block" after 100ms: asynq's requeue
	all = append(all, kindRequeue)

	seen := map[scriptKind]bool{}
	for _, r := range rec.snapshot() {
		call, ok := recognise(r.args)
		if !ok {
			continue
		}
		seen[call.kind] = true
		sh := shapes()[call.kind]
		require.True(t, sh.matches(call.keys), reCheck+": its %s script now has KEYS %v", AsynqVersion, call.kind, call.keys)
		t.Run(call.kind.String(), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf(reCheck+": its %s script is called with KEYS %v ARGV %v", AsynqVersion, call.kind, call.keys, call.argv)
				}
			}()
			sh.check(t, call, r.at)
		})
	}
	for _, k := range all {
		if seen[k] {
			continue
		}
		// Not recognised: changed text (a new SHA1), or no longer called.
		for _, r := range rec.snapshot() {
			if call, ok := splitEval(r.args); ok && shapes()[k].matches(call.keys) {
				t.Fatalf(reCheck+": its %s script changed (SHA1 %s)", AsynqVersion, k, r.args[1])
			}
		}
		t.Fatalf(reCheck+": it no longer runs a %s script shaped like %v", AsynqVersion, k, shapes()[k].keyParts)
	}
}

// splitEval splits any EVALSHA into KEYS and ARGV, recognised or not.
func splitEval(args []any) (scriptCall, bool) {
	if len(args) < 3 {
		return scriptCall{}, false
	}
	n, ok := args[2].(int)
	if !ok || 3+n > len(args) {
		return scriptCall{}, false
	}
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprint(args[3+i])
	}
	return scriptCall{keys: keys, argv: args[3+n:]}, true
}
