package config_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/config"
	"github.com/batonhq/baton/internal/redistest"
)

func TestParseRedisURL(t *testing.T) {
	const timeout = 2 * time.Second
	tests := []struct {
		name string
		url  string
		want redis.UniversalOptions // timeouts are checked separately
		tls  string                 // expected TLS server name, "" for no TLS
	}{
		{name: "single", url: "redis://127.0.0.1:6379/0",
			want: redis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}}},
		{name: "single with user, password and db", url: "redis://app:p%40ss@redis.internal:6380/3",
			want: redis.UniversalOptions{Addrs: []string{"redis.internal:6380"}, Username: "app", Password: "p@ss", DB: 3}},
		{name: "single, password only, default port", url: "redis://:pw@redis",
			want: redis.UniversalOptions{Addrs: []string{"redis:6379"}, Password: "pw"}},
		{name: "unescaped slash in password", url: "redis://:ab/cd@redis:6379/1",
			want: redis.UniversalOptions{Addrs: []string{"redis:6379"}, Password: "ab/cd", DB: 1}},
		{name: "single IPv6", url: "redis://[::1]:6379/2",
			want: redis.UniversalOptions{Addrs: []string{"[::1]:6379"}, DB: 2}},
		{name: "go-redis query options", url: "redis://h:6379/0?pool_size=20&client_name=baton",
			want: redis.UniversalOptions{Addrs: []string{"h:6379"}, PoolSize: 20, ClientName: "baton"}},
		{name: "TLS", url: "rediss://cache.example.com:6380/1",
			want: redis.UniversalOptions{Addrs: []string{"cache.example.com:6380"}, DB: 1}, tls: "cache.example.com"},
		{name: "bare host:port is one node", url: "10.0.0.1:6379",
			want: redis.UniversalOptions{Addrs: []string{"10.0.0.1:6379"}}},
		{name: "sentinel", url: "redis-sentinel://:pw@s1:26379,s2:26380/2?master=mymaster",
			want: redis.UniversalOptions{Addrs: []string{"s1:26379", "s2:26380"}, MasterName: "mymaster", Password: "pw", DB: 2}},
		{name: "sentinel default port and sentinel password", url: "redis-sentinel://s1,s2?master=m&sentinel_password=spw",
			want: redis.UniversalOptions{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "m", SentinelPassword: "spw"}},
		{name: "sentinel master_name alias", url: "redis-sentinel://s1:26379?master_name=m",
			want: redis.UniversalOptions{Addrs: []string{"s1:26379"}, MasterName: "m"}},
		{name: "sentinel TLS", url: "rediss-sentinel://s1:26379/0?master=m",
			want: redis.UniversalOptions{Addrs: []string{"s1:26379"}, MasterName: "m"}, tls: "s1"},
		{name: "cluster scheme", url: "redis-cluster://:pw@h1:7000,h2:7001",
			want: redis.UniversalOptions{Addrs: []string{"h1:7000", "h2:7001"}, Password: "pw", IsClusterMode: true}},
		{name: "cluster with one seed", url: "redis-cluster://h1:7000/0",
			want: redis.UniversalOptions{Addrs: []string{"h1:7000"}, IsClusterMode: true}},
		{name: "cluster list", url: "h1:7000, h2:7001,h3:7002",
			want: redis.UniversalOptions{Addrs: []string{"h1:7000", "h2:7001", "h3:7002"}, IsClusterMode: true}},
		{name: "cluster IPv6", url: "redis-cluster://[::1]:7000,[::2]:7001",
			want: redis.UniversalOptions{Addrs: []string{"[::1]:7000", "[::2]:7001"}, IsClusterMode: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.ParseRedisURL(tt.url, timeout)
			require.NoError(t, err)
			require.Equal(t, timeout, got.DialTimeout)
			require.Equal(t, timeout, got.ReadTimeout)
			require.Equal(t, timeout, got.WriteTimeout)
			if tt.tls == "" {
				require.Nil(t, got.TLSConfig)
			} else {
				require.NotNil(t, got.TLSConfig)
				require.Equal(t, tt.tls, got.TLSConfig.ServerName)
			}
			got.DialTimeout, got.ReadTimeout, got.WriteTimeout, got.TLSConfig = 0, 0, 0, nil
			require.Equal(t, tt.want, *got)
		})
	}

	t.Run("URL timeouts win", func(t *testing.T) {
		got, err := config.ParseRedisURL("redis://h/0?dial_timeout=1s&read_timeout=0", timeout)
		require.NoError(t, err)
		require.Equal(t, time.Second, got.DialTimeout)
		require.Equal(t, time.Duration(-1), got.ReadTimeout, "0 in the URL disables the timeout")
		require.Equal(t, timeout, got.WriteTimeout)
	})

	t.Run("no timeout keeps go-redis defaults", func(t *testing.T) {
		got, err := config.ParseRedisURL("redis://h/0", 0)
		require.NoError(t, err)
		require.Zero(t, got.DialTimeout)
	})
}

// TestParseRedisURLQueryOptions: every option go-redis reads from a URL's
// query reaches the UniversalOptions, in each of the three forms.
func TestParseRedisURLQueryOptions(t *testing.T) {
	const common = "client_name=baton&protocol=2&max_retries=5&min_retry_backoff=1ms&max_retry_backoff=2s" +
		"&dial_timeout=3s&read_timeout=4s&write_timeout=5s&pool_fifo=true&pool_size=7&pool_timeout=6s" +
		"&min_idle_conns=1&max_idle_conns=2&max_active_conns=9&conn_max_idle_time=7s&conn_max_lifetime=8s"
	want := func(o redis.UniversalOptions) redis.UniversalOptions {
		o.ClientName, o.Protocol, o.MaxRetries = "baton", 2, 5
		o.MinRetryBackoff, o.MaxRetryBackoff = time.Millisecond, 2*time.Second
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 3*time.Second, 4*time.Second, 5*time.Second
		o.PoolFIFO, o.PoolSize, o.PoolTimeout = true, 7, 6*time.Second
		o.MinIdleConns, o.MaxIdleConns, o.MaxActiveConns = 1, 2, 9
		o.ConnMaxIdleTime, o.ConnMaxLifetime = 7*time.Second, 8*time.Second
		return o
	}
	for _, tt := range []struct {
		name, url string
		want      redis.UniversalOptions
	}{
		{"single", "redis://u:pw@h:6380/2?" + common,
			want(redis.UniversalOptions{Addrs: []string{"h:6380"}, Username: "u", Password: "pw", DB: 2})},
		{"sentinel", "redis-sentinel://u:pw@s1,s2:26380/1?master=m&sentinel_username=su&sentinel_password=spw" +
			"&route_by_latency=true&route_randomly=true&context_timeout_enabled=true&disableIdentity=true" +
			"&identitySuffix=-x&unstable_resp3=true&" + common,
			want(redis.UniversalOptions{Addrs: []string{"s1:26379", "s2:26380"}, MasterName: "m", DB: 1,
				Username: "u", Password: "pw", SentinelUsername: "su", SentinelPassword: "spw",
				RouteByLatency: true, RouteRandomly: true, ContextTimeoutEnabled: true, DisableIdentity: true,
				IdentitySuffix: "-x", UnstableResp3: true})},
		{"cluster", "redis-cluster://u:pw@h1:7000,h2:7001?max_redirects=4&read_only=true&route_by_latency=true" +
			"&route_randomly=true&failing_timeout_seconds=11&" + common,
			want(redis.UniversalOptions{Addrs: []string{"h1:7000", "h2:7001"}, IsClusterMode: true, Username: "u", Password: "pw",
				MaxRedirects: 4, ReadOnly: true, RouteByLatency: true, RouteRandomly: true, FailingTimeoutSeconds: 11})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.ParseRedisURL(tt.url, time.Minute)
			require.NoError(t, err)
			require.Equal(t, tt.want, *got)
		})
	}
}

func TestParseRedisURLErrors(t *testing.T) {
	tests := []struct {
		name, url string
		want      []string
	}{
		{"empty", " ", []string{"invalid Redis URL: it is empty", "redis://", "redis-sentinel://", "redis-cluster://"}},
		{"unknown scheme", "http://localhost:6379", []string{`unknown scheme "http"`}},
		{"unix socket", "unix:///tmp/redis.sock", []string{"unix sockets are not supported"}},
		{"sentinel without master", "redis-sentinel://s1:26379,s2:26379/0",
			[]string{"add ?master=NAME", "redis-sentinel://:password@host1:26379,host2:26379/0?master=mymaster"}},
		{"sentinel password in query", "redis-sentinel://s1?master=m&password=x", []string{"not in ?password="}},
		{"two hosts in redis://", "redis://h1:6379,h2:6379/0", []string{"takes one host but 2 are given", "redis-cluster://h1:6379,h2:6379"}},
		{"bad port", "redis://h:abc/0", []string{`address "h:abc" has an invalid port "abc"`, "redis://:password@127.0.0.1:6379/0"}},
		{"port out of range", "redis://h:70000", []string{`invalid port "70000"`}},
		{"bad db", "redis://h:6379/x", []string{`invalid database number: "x"`}},
		{"unknown option", "redis://h:6379/0?bogus=1", []string{"unexpected option: bogus"}},
		{"cluster db", "redis-cluster://h1:1,h2:2/3", []string{"only database 0; remove /3", "redis-cluster://host1:6379,host2:6379"}},
		{"empty list entry", "h1:1,,h2:2", []string{"an address in the host list is empty"}},
		{"no host", "redis-cluster://", []string{"no host given"}},
		{"no host name", "redis-cluster://:6379", []string{`address ":6379" has no host name`}},
		{"bad escape in password", "redis://:pa%zzss@h/0", []string{"percent-encode special characters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.ParseRedisURL(tt.url, time.Second)
			require.Error(t, err)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestParseRedisURLNeverShowsPassword(t *testing.T) {
	for _, u := range []string{
		"redis://:hunter2@h:bad/0",
		"redis://user:hunter2@h/0?bogus=1",
		"redis://user:hunter2@h/x",
		"redis://:hunt/er2@h:x",
		"redis://:hunter2%zz@h/0",
		"redis://:hunter2@h/%zz",
		"redis-sentinel://:hunter2@s1",
		"redis-sentinel://s1?master=m&sentinel_password=hunter2&bogus=1",
		"redis-cluster://:hunter2@h1:1,h2:2/5",
		"http://:hunter2@x",
		"hunter2@http://x",
	} {
		_, err := config.ParseRedisURL(u, time.Second)
		require.Error(t, err, u)
		require.NotContains(t, err.Error(), "hunter2", u)
		require.NotContains(t, err.Error(), "er2", u)
		require.NotContains(t, config.RedactRedisURL(u), "hunter2", u)
	}
}

func TestRedactRedisURL(t *testing.T) {
	tests := map[string]string{
		"redis://127.0.0.1:6379/0":                          "redis://127.0.0.1:6379/0",
		"redis://user:secret@h:6379/0":                      "redis://user:xxxxx@h:6379/0",
		"redis://secret@h:6379/0":                           "redis://xxxxx@h:6379/0",
		"redis://:se/cr@et@h:6379/0":                        "redis://:xxxxx@h:6379/0",
		"redis-sentinel://s1?master=m&sentinel_password=pw": "redis-sentinel://s1?master=m&sentinel_password=xxxxx",
		"h1:1,h2:2": "h1:1,h2:2",
	}
	for in, want := range tests {
		require.Equal(t, want, config.RedactRedisURL(in), in)
	}
}

func TestNewRedisClient(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	ctx := context.Background()

	c, err := config.NewRedisClient(srv.URL(3), 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.IsType(t, &redis.Client{}, c, "a single node gets a plain client")
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())

	direct := srv.Client(t, 3)
	require.Equal(t, "v", direct.Get(ctx, "k").Val(), "the /3 in the URL selects database 3")
	require.Zero(t, srv.Client(t, 0).Exists(ctx, "k").Val())

	cl, err := config.NewRedisClient("redis-cluster://"+srv.Addr, time.Second)
	require.NoError(t, err)
	require.IsType(t, &redis.ClusterClient{}, cl)
	_ = cl.Close()

	_, err = config.NewRedisClient("redis-sentinel://"+srv.Addr, time.Second)
	require.ErrorContains(t, err, "?master=")
}

func TestNewRedisClientUnreachable(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	addr := srv.Addr
	srv.Stop() // nothing listens here any more

	c, err := config.NewRedisClient("redis://"+addr+"/0", time.Second)
	require.NoError(t, err, "creating a client does not dial")
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.Ping(ctx).Err()
	require.Error(t, err)
	require.NoError(t, ctx.Err(), "the error comes from the client, not the context deadline")
}

func FuzzParseRedisURL(f *testing.F) {
	for _, s := range []string{
		"redis://127.0.0.1:6379/0",
		"rediss://u:p@h:6380/1?pool_size=3",
		"redis-sentinel://:pw@s1:26379,s2:26379/0?master=m",
		"redis-cluster://h1:7000,h2:7001",
		"h1:7000,h2:7001",
		"redis://[::1]:6379",
		"redis://:a%zz@h",
		"redis://h:99999/0",
		"",
		"://",
		"redis://@/?",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		opts, err := config.ParseRedisURL(s, time.Second)
		_ = config.RedactRedisURL(s)
		if err != nil {
			require.True(t, strings.HasPrefix(err.Error(), "invalid Redis URL: "), err.Error())
			return
		}
		require.NotEmpty(t, opts.Addrs)
		for _, a := range opts.Addrs {
			require.NotEmpty(t, a)
		}
		require.NotZero(t, opts.DialTimeout)
	})
}

// pauseWrites makes srv hold every write command for d (CLIENT PAUSE ...
// WRITE): connections stay open, reads answer, writes get no reply. It
// unpauses when the test ends.
func pauseWrites(t *testing.T, srv *redistest.Server, d time.Duration) {
	t.Helper()
	admin := srv.Client(t, 0)
	require.NoError(t, admin.Do(context.Background(), "CLIENT", "PAUSE", d.Milliseconds(), "WRITE").Err())
	t.Cleanup(func() { _ = admin.Do(context.Background(), "CLIENT", "UNPAUSE").Err() })
}

// TestRedisTimeoutBoundsACall: with writes paused, a call gives up after
// about the timeout (BATON_REDIS_TIMEOUT), not once per go-redis retry
// (MaxRetries 3: four times the timeout) nor after a further wait for a
// pooled connection; the error names the setting and is a timeout. A
// caller's own earlier deadline still wins, and reads still answer.
func TestRedisTimeoutBoundsACall(t *testing.T) {
	const timeout = time.Second
	const bound = 2 * timeout // before the fix: 4 attempts of 1s each, and more behind a busy pool
	srv := redistest.MustStart(t, redistest.Options{})
	ctx := context.Background()
	c, err := config.NewRedisClient(srv.URL(0)+"?pool_size=2", timeout)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	pauseWrites(t, srv, 30*time.Second)

	requireTimeout := func(t *testing.T, what string, err error, took time.Duration) {
		t.Helper()
		t.Logf("%s: %v after %v", what, err, took.Round(time.Millisecond))
		require.Error(t, err, what)
		require.Less(t, took, bound, "%s gave up within about BATON_REDIS_TIMEOUT", what)
		require.ErrorContains(t, err, "BATON_REDIS_TIMEOUT", what)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded, "%s: a timeout, not the caller's context", what)
	}
	t.Run("command", func(t *testing.T) {
		t0 := time.Now()
		err := c.Set(ctx, "k", "w", 0).Err()
		requireTimeout(t, "SET", err, time.Since(t0))
	})
	t.Run("script", func(t *testing.T) {
		t0 := time.Now()
		err := redis.NewScript(`return redis.call("SET", KEYS[1], ARGV[1])`).Run(ctx, c, []string{"k"}, "w").Err()
		requireTimeout(t, "EVALSHA", err, time.Since(t0))
	})
	t.Run("pipeline", func(t *testing.T) {
		t0 := time.Now()
		pipe := c.Pipeline()
		set := pipe.Set(ctx, "k", "w", 0)
		pipe.Incr(ctx, "n")
		_, err := pipe.Exec(ctx)
		requireTimeout(t, "pipeline", err, time.Since(t0))
		require.ErrorIs(t, set.Err(), os.ErrDeadlineExceeded)
	})
	t.Run("callers waiting for a pooled connection", func(t *testing.T) {
		errs := make(chan error, 6)
		t0 := time.Now()
		for range 6 { // three times the pool
			go func() { errs <- c.Set(ctx, "k", "w", 0).Err() }()
		}
		for range 6 {
			requireTimeout(t, "concurrent SET", <-errs, time.Since(t0))
		}
	})
	t.Run("reads still answer", func(t *testing.T) {
		// Dials cut short by the budget count as failed dials in go-redis's
		// pool, which then fails fast until its background redial (at once)
		// succeeds: allow for that instant.
		redistest.WaitFor(t, 2*time.Second, "GET answers while writes are paused", func() bool {
			v, err := c.Get(ctx, "k").Result()
			return err == nil && v == "v"
		})
	})
	t.Run("an earlier caller deadline wins", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		err := c.Set(cctx, "k", "w", 0).Err()
		require.Error(t, err)
		require.NotContains(t, err.Error(), "BATON_REDIS_TIMEOUT", "the caller's deadline, not the budget, ended it")
	})
}

// recordHandler is a slog.Handler that hands every record to a channel.
type recordHandler struct{ ch chan slog.Record }

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h recordHandler) WithGroup(string) slog.Handler            { return h }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.ch <- r.Clone():
	default: // the test has what it needs
	}
	return nil
}

// TestRedisLogsThroughSlog: go-redis's own log lines (here: the pub/sub
// connection Redis closed) reach the slog logger at warn level with
// component=redis, instead of raw lines on stderr.
func TestRedisLogsThroughSlog(t *testing.T) {
	recs := make(chan slog.Record, 100)
	config.RouteRedisLogs(slog.New(recordHandler{ch: recs}))
	t.Cleanup(func() { config.RouteRedisLogs(slog.New(slog.DiscardHandler)) })

	srv := redistest.MustStart(t, redistest.Options{})
	ctx := ctxTimeout(t, 20*time.Second)
	c, err := config.NewRedisClient(srv.URL(0), 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ps := c.Subscribe(ctx, "news")
	t.Cleanup(func() { _ = ps.Close() })
	_, err = ps.Receive(ctx) // the subscription's confirmation
	require.NoError(t, err)

	admin := srv.Client(t, 0)
	require.NoError(t, admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err())
	_, err = ps.Receive(ctx)
	require.Error(t, err, "the connection was closed under the subscriber")

	for {
		select {
		case r := <-recs:
			if !strings.Contains(r.Message, "discarding bad PubSub connection") {
				continue
			}
			require.Equal(t, slog.LevelWarn, r.Level)
			require.False(t, strings.HasPrefix(r.Message, "redis: "), "the redundant prefix is dropped: %q", r.Message)
			var component string
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "component" {
					component = a.Value.String()
				}
				return true
			})
			require.Equal(t, "redis", component)
			return
		case <-ctx.Done():
			t.Fatal("go-redis's line never reached the slog logger")
		}
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
