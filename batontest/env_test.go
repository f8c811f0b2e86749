package batontest_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/batontest"
	"github.com/batonhq/baton/internal/redistest"
)

// An Env, real or embedded, leaves no goroutine behind once closed: its
// worker, clients, lease renewal and embedded server all stop.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	for _, mode := range []struct{ name, url string }{{"Real", redisURL}, {"Embedded", ""}} {
		t.Run(mode.name, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			ctx := ctxTimeout(t, 20*time.Second)
			env, err := batontest.Open(ctx, &batontest.Options{RedisURL: mode.url, FastForward: true})
			require.NoError(t, err)
			env.Register(double, square)
			_, rec, err := env.RunCanvas(ctx, baton.Chain(double.S(2, nil), square.Sig(nil)))
			require.NoError(t, err)
			require.JSONEq(t, "16", string(rec.Result))
			h, err := double.Enqueue(ctx, env.Client(), 1, nil)
			require.NoError(t, err)
			_, err = h.Record(ctx) // a read with a task still queued
			require.NoError(t, err)

			require.NoError(t, env.Close())
			require.NoError(t, env.Close(), "Close is idempotent")
			goleak.VerifyNone(t, before)
			require.ErrorContains(t, env.Drain(ctx), "the Env is closed")
		})
	}
}

// Envs on one real Redis each lease a database of their own, empty it when
// they take it and when they close, and touch no other.
func TestRealRedisIsolation(t *testing.T) {
	ctx := ctxTimeout(t, 20*time.Second)
	srv := redistest.MustStart(t, redistest.Options{})
	raw := srv.Client(t, 0)
	require.NoError(t, raw.Set(ctx, "left-over", "x", 0).Err())

	one := batontest.New(t, &batontest.Options{RedisURL: srv.URL(0)})
	two := batontest.New(t, &batontest.Options{RedisURL: srv.URL(0)})
	dbOne, dbTwo := dbOf(one), dbOf(two)
	require.Equal(t, 0, dbOne, "the first Env takes the URL's database")
	require.Equal(t, 1, dbTwo, "the second takes the next free one")
	n, err := raw.Exists(ctx, "left-over").Result()
	require.NoError(t, err)
	require.Zero(t, n, "a leased database is emptied first")

	_, err = double.Enqueue(ctx, one.Client(), 1, nil)
	require.NoError(t, err)
	batontest.RequireEnqueued(t, one, "bt.double", 1, nil)
	batontest.RequireNotEnqueued(t, two, "bt.double", nil, nil)

	require.NoError(t, one.Close())
	size, err := raw.DBSize(ctx).Result()
	require.NoError(t, err)
	require.Zero(t, size, "a closed Env empties its database, lease included")
	three := batontest.New(t, &batontest.Options{RedisURL: srv.URL(0)})
	require.Equal(t, 0, dbOf(three), "a released database is free again")
	size, err = srv.Client(t, 1).DBSize(ctx).Result()
	require.NoError(t, err)
	require.NotZero(t, size, "the other Env's database is untouched")
}

// With every database leased, Open waits for one and then says why it
// could not have one.
func TestRealRedisAllDatabasesLeased(t *testing.T) {
	ctx := ctxTimeout(t, 20*time.Second)
	srv := redistest.MustStart(t, redistest.Options{})
	for db := range 16 {
		require.NoError(t, srv.Client(t, db).Set(ctx, "batontest:lease", "someone else", time.Minute).Err())
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond) // every database is taken: Open waits for one until this deadline
	defer cancel()
	_, err := batontest.Open(short, &batontest.Options{RedisURL: srv.URL(3)})
	require.ErrorContains(t, err, "every database from 3 to 15 of the Redis at "+srv.Addr+" is leased by another batontest Env (key batontest:lease): run fewer at once or give the server more databases")
}

func dbOf(env *batontest.Env) int { return env.Redis().(*redis.Client).Options().DB }

func TestOpenRefusesBadOptions(t *testing.T) {
	ctx := ctxTimeout(t, 20*time.Second)
	for _, c := range []struct {
		opts batontest.Options
		want string
	}{
		{batontest.Options{RedisURL: "http://nope"}, `Redis URL "http://nope" (Options.RedisURL or $BATONTEST_REDIS_URL): redis: invalid URL scheme: http; want redis://host:port/db`},
		{batontest.Options{RedisURL: "redis://127.0.0.1:1/0"}, "Redis at 127.0.0.1:1 (Options.RedisURL or $BATONTEST_REDIS_URL): dial tcp 127.0.0.1:1"},
		{batontest.Options{RedisURL: redisURL[:len(redisURL)-1] + "99"}, "has 16 databases, the URL names database 99"},
		{batontest.Options{DrainTimeout: -time.Second}, "Options.DrainTimeout -1s is negative: use 0 for the default (10s)"},
		{batontest.Options{Worker: &baton.WorkerOptions{Concurrency: -1}}, "Options.Worker: baton: Concurrency -1 is negative"},
		{batontest.Options{Client: &baton.ClientOptions{ResultTTL: -time.Hour}}, "Options.Client: backend: ResultTTL -1h0m0s is negative"},
	} {
		_, err := batontest.Open(ctx, &c.opts)
		require.ErrorContains(t, err, c.want)
	}
}

// Register refuses what a worker would, at once: it stops the test, or
// panics for an Env from Open.
func TestRegisterRefusesWhatAWorkerWould(t *testing.T) {
	var env *batontest.Env
	msg, _ := failures(t, func(tb testing.TB) {
		env = batontest.New(tb, &batontest.Options{RedisURL: redisURL})
		env.Register(double)
		env.Register(square, double)
	})
	require.Equal(t, `batontest: baton: register "bt.double": kind registered twice`, msg)
	msg, _ = failures(t, func(tb testing.TB) {
		batontest.New(tb, &batontest.Options{RedisURL: redisURL}).Register(baton.NewTask[int, int]("bt.remote", nil, nil))
	})
	require.Equal(t, `batontest: baton: register "bt.remote": the task was defined without a handler`, msg)

	// The refused definitions did not stick: square has no handler here.
	ctx := ctxTimeout(t, 20*time.Second)
	h, err := square.Enqueue(ctx, env.Client(), 3, nil)
	require.NoError(t, err)
	env.DrainUntilIdle(t)
	require.Contains(t, batontest.RequireRecord(t, env, h.ID, baton.Failure).Error, `unknown task kind "bt.square"`)

	opened, err := batontest.Open(ctx, &batontest.Options{RedisURL: redisURL})
	require.NoError(t, err)
	t.Cleanup(func() { _ = opened.Close() })
	opened.Register(double)
	require.PanicsWithValue(t, `batontest: baton: register "bt.double": kind registered twice`, func() { opened.Register(double) })
}

// The embedded Redis expires keys as time passes (miniredis alone does not).
func TestEmbeddedKeysExpire(t *testing.T) {
	t.Setenv("BATONTEST_REDIS_URL", "")
	env := batontest.New(t, nil)
	ctx := ctxTimeout(t, 20*time.Second)
	for i := range 3 {
		require.NoError(t, env.Redis().Set(ctx, "k"+strconv.Itoa(i), "v", 100*time.Millisecond).Err())
	}
	redistest.WaitFor(t, 5*time.Second, "keys with a 100ms TTL expire", func() bool {
		n, err := env.Redis().DBSize(ctx).Result()
		return err == nil && n == 0
	})
}
