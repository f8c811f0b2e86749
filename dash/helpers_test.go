package dash_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/dash"
	"github.com/batonhq/baton/internal/redistest"
)

// fixture is a real Redis, a client and a worker running the test tasks:
// "fetch" returns n*10, except that the ns passed to block wait until
// release; "analyze" sums its input; "boom" fails for good.
type fixture struct {
	srv    *redistest.Server
	rdb    *redis.Client
	client *baton.Client

	mu    sync.Mutex
	gates map[int]chan struct{}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func setup(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{gates: map[int]chan struct{}{}}
	f.srv = redistest.MustStart(t, redistest.Options{})
	f.rdb = f.srv.Client(t, 0)
	c, err := baton.NewClient(f.rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	f.client = c

	fetch := baton.NewTask("fetch", func(ctx context.Context, n int) (int, error) {
		f.mu.Lock()
		g := f.gates[n]
		f.mu.Unlock()
		if n == 99 {
			return 0, fmt.Errorf("source %d: HTTP 503 Service Unavailable", n) // retried in an hour
		}
		if g != nil {
			select {
			case <-g:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		return n * 10, nil
	}, &baton.TaskOptions{MaxRetries: 2, RetryDelay: baton.FixedDelay(time.Hour)})
	analyze := baton.NewTask("analyze", func(ctx context.Context, ns []int) (string, error) {
		t := 0
		for _, n := range ns {
			t += n
		}
		return fmt.Sprintf("total %d", t), nil
	}, nil)
	boom := baton.NewTask("boom", func(ctx context.Context, n int) (int, error) {
		return 0, baton.Permanent(fmt.Errorf("upstream said 404 for source %d", n))
	}, nil)

	w, err := baton.NewWorker(f.rdb, &baton.WorkerOptions{Concurrency: 8, Logger: quiet(),
		PollInterval: 20 * time.Millisecond, ShutdownTimeout: 5 * time.Second})
	require.NoError(t, err)
	require.NoError(t, w.Register(fetch, analyze, boom))
	require.NoError(t, w.Start())
	t.Cleanup(w.Shutdown)
	t.Cleanup(f.releaseAll) // runs before Shutdown
	c.Declare(fetch, analyze, boom)
	return f
}

// block makes fetch(n) wait until release(n).
func (f *fixture) block(ns ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range ns {
		f.gates[n] = make(chan struct{})
	}
}

func (f *fixture) release(ns ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range ns {
		if g := f.gates[n]; g != nil {
			close(g)
			delete(f.gates, n)
		}
	}
}

func (f *fixture) releaseAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for n, g := range f.gates {
		close(g)
		delete(f.gates, n)
	}
}

// researchChord submits chord(fetch(1..n), analyze) as workflow id.
func (f *fixture) researchChord(t *testing.T, id string, ns ...int) *baton.Workflow {
	t.Helper()
	var hdr []baton.Canvas
	for _, n := range ns {
		hdr = append(hdr, &baton.Signature{Kind: "fetch", Args: []byte(fmt.Sprint(n))})
	}
	wf, err := f.client.Submit(context.Background(), baton.Chord(baton.Group(hdr...), &baton.Signature{Kind: "analyze"}),
		&baton.SubmitOpts{ID: id})
	require.NoError(t, err)
	return wf
}

// waitStates waits until task id is in state.
func (f *fixture) waitState(t *testing.T, id string, state baton.State) {
	t.Helper()
	redistest.WaitFor(t, 15*time.Second, fmt.Sprintf("task %s in state %s", id, state), func() bool {
		r, err := f.client.Get(context.Background(), id)
		return err == nil && r.State == state
	})
}

// serve starts the dashboard on a test server.
func (f *fixture) serve(t *testing.T, opts dash.Options) *httptest.Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	s := httptest.NewServer(dash.New(f.rdb, f.client, opts))
	t.Cleanup(s.Close)
	return s
}

// get fetches url without following redirects.
func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	return do(t, http.MethodGet, url, nil)
}

func do(t *testing.T, method, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	return doBody(t, method, url, "", hdr)
}

// doBody is do with a request body.
func doBody(t *testing.T, method, url, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}
