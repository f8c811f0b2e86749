//go:build topology

package topology_test

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/config"
	"github.com/batonhq/baton/internal/redistest"
)

// waitLimit bounds every wait of a feature test.
const waitLimit = 30 * time.Second

// env is one test's view of one topology: a Redis client built from the
// topology's REDIS_URL as baton's config parses it, a baton client on it,
// and a queue of the test's own.
type env struct {
	topology string // "cluster" or "sentinel"
	url      string
	rdb      redis.UniversalClient
	client   *baton.Client
	queue    string
	log      *slog.Logger
}

// eachTopology runs f on the cluster and on the sentinel set, in parallel.
func eachTopology(t *testing.T, f func(t *testing.T, e *env)) {
	t.Helper()
	for _, tp := range []struct{ name, url string }{
		{"cluster", cluster.URL()},
		{"sentinel", sentinel.URL(0)},
	} {
		t.Run(tp.name, func(t *testing.T) {
			t.Parallel()
			f(t, newEnv(t, tp.name, tp.url))
		})
	}
}

func newEnv(t *testing.T, topology, url string) *env {
	t.Helper()
	e := &env{topology: topology, url: url, queue: queueName(t), log: testLogger(t)}
	e.rdb = e.newRedis(t)
	c, err := baton.NewClient(e.rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	e.client = c
	return e
}

// newRedis returns another client of the topology, closed when t ends.
func (e *env) newRedis(t *testing.T) redis.UniversalClient {
	t.Helper()
	rdb, err := config.NewRedisClient(e.url, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = rdb.Close() })
	switch e.topology {
	case "cluster":
		require.IsType(t, &redis.ClusterClient{}, rdb, "%s is a cluster URL", e.url)
	case "sentinel":
		require.IsType(t, &redis.Client{}, rdb, "%s is a sentinel URL", e.url)
	}
	return rdb
}

var unsafeQueueChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// queueName is a queue of t's own: its name, made safe.
func queueName(t *testing.T) string {
	return "t-" + strings.ToLower(unsafeQueueChars.ReplaceAllString(t.Name(), "-"))
}

// worker starts a worker consuming e's queue with defs, shut down when t
// ends. Its client knows defs, and so does e.client.
func (e *env) worker(t *testing.T, opts *baton.WorkerOptions, defs ...baton.Definition) *baton.Worker {
	t.Helper()
	var o baton.WorkerOptions
	if opts != nil {
		o = *opts
	}
	o.Queues = map[string]int{e.queue: 1}
	if o.Logger == nil {
		o.Logger = e.log
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 5 * time.Second
	}
	w, err := baton.NewWorker(e.newRedis(t), &o)
	require.NoError(t, err)
	require.NoError(t, w.Register(defs...))
	require.NoError(t, w.Start())
	t.Cleanup(w.Shutdown)
	e.client.Declare(defs...)
	return w
}

// subscribers counts the clients subscribed to channel on the topology's
// data nodes (on a cluster, each node counts only its own clients).
func (e *env) subscribers(t *testing.T, ctx context.Context, channel string) int64 {
	t.Helper()
	var addrs []string
	switch e.topology {
	case "cluster":
		for _, n := range cluster.Nodes() {
			addrs = append(addrs, n.Addr)
		}
	case "sentinel":
		m, err := sentinel.MasterAddr(ctx)
		require.NoError(t, err)
		addrs = []string{m}
	}
	var total int64
	for _, a := range addrs {
		n, err := redistest.NodeClient(t, a).PubSubNumSub(ctx, channel).Result()
		require.NoError(t, err)
		total += n[channel]
	}
	return total
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// testLogger keeps the log of t's workers and prints it if t fails.
func testLogger(t *testing.T) *slog.Logger {
	var mu sync.Mutex
	var buf bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("worker log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &buf}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
