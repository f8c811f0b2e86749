package baton_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
	"github.com/batonhq/baton/tasks"
)

// Flow control across real worker processes (internal/testworker).

// startTestworkers builds internal/testworker and starts n processes of it
// on b's Redis with args; they are killed when the test ends.
func startTestworkers(t *testing.T, b *bundle, n int, args ...string) []*exec.Cmd {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "testworker")
	out, err := exec.Command("go", "build", "-o", bin, "./internal/testworker").CombinedOutput()
	require.NoError(t, err, string(out))
	var procs []*exec.Cmd
	for range n {
		p := exec.Command(bin, append([]string{"-redis", b.srv.Addr}, args...)...)
		p.Stderr = os.Stderr
		require.NoError(t, p.Start())
		t.Cleanup(func() { _ = p.Process.Kill(); _ = p.Wait() })
		procs = append(procs, p)
	}
	return procs
}

// source is the test's HTTP server: it notes when each request arrived and
// which process sent it, counts requests in flight, and holds requests for
// /hold (hold duration) or /hang (until released).
type source struct {
	srv  *httptest.Server
	hold time.Duration
	hang chan struct{}

	mu       sync.Mutex
	arrived  []time.Time
	byPath   map[string][]string // path -> the pids that fetched it
	inFlight int
	peak     int
}

func newSource(t *testing.T, hold time.Duration) *source {
	s := &source{hold: hold, hang: make(chan struct{}), byPath: map[string][]string{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() { s.release(); s.srv.Close() })
	return s
}

func (s *source) serve(w http.ResponseWriter, r *http.Request) {
	pid := strings.TrimPrefix(r.UserAgent(), "testworker/")
	s.mu.Lock()
	s.arrived = append(s.arrived, time.Now())
	s.byPath[r.URL.Path] = append(s.byPath[r.URL.Path], pid)
	s.inFlight++
	s.peak = max(s.peak, s.inFlight)
	s.mu.Unlock()
	defer func() { s.mu.Lock(); s.inFlight--; s.mu.Unlock() }()
	switch {
	case strings.HasPrefix(r.URL.Path, "/hang"):
		select {
		case <-s.hang:
		case <-r.Context().Done():
		}
	case strings.HasPrefix(r.URL.Path, "/hold"):
		time.Sleep(s.hold)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
}

func (s *source) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.hang:
	default:
		close(s.hang)
	}
}

func (s *source) pids(path string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.byPath[path]...)
}

func fetchAll(t *testing.T, ctx context.Context, b *bundle, urls []string) []*baton.TypedHandle[tasks.FetchResult] {
	t.Helper()
	var hs []*baton.TypedHandle[tasks.FetchResult]
	for _, u := range urls {
		h, err := tasks.FetchDecl.Enqueue(ctx, b.client, tasks.FetchArgs{URL: u}, nil)
		require.NoError(t, err)
		hs = append(hs, h)
	}
	return hs
}

// TestRateLimitAcrossProcesses: 100 fetches limited to 10/s across two
// worker processes of concurrency 10. The source server's own timestamps
// show no 1-second window above rate + burst (11), the fetches span the
// 9.9 s the limit asks for, and all succeed with 0 retries recorded.
func TestRateLimitAcrossProcesses(t *testing.T) {
	b := setup(t)
	src := newSource(t, 0)
	startTestworkers(t, b, 2, "-rate-limits", "fetch=10/s")
	ctx := ctxTimeout(t, 60*time.Second)
	var urls []string
	for i := range 100 {
		urls = append(urls, fmt.Sprintf("%s/item-%03d", src.srv.URL, i))
	}
	for _, h := range fetchAll(t, ctx, b, urls) {
		_, err := h.Get(ctx)
		require.NoError(t, err)
		rec, err := b.client.Get(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, 0, rec.Retries, "%s: waiting for the limit is not a retry", h.ID)
	}
	src.mu.Lock()
	ts := append([]time.Time(nil), src.arrived...)
	pids := map[string]bool{}
	for _, ps := range src.byPath {
		require.Len(t, ps, 1, "each source fetched once")
		pids[ps[0]] = true
	}
	src.mu.Unlock()
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	require.Len(t, ts, 100)
	require.Len(t, pids, 2, "both processes fetched")
	worst := maxInWindow(ts, time.Second-startSlack) // see startSlack
	require.LessOrEqual(t, worst, 11, "no 1 s window above 10/s + burst 1 (less the start slack)")
	span := ts[len(ts)-1].Sub(ts[0])
	require.GreaterOrEqual(t, span, 9800*time.Millisecond, "100 fetches at 10/s span 9.9 s")
	t.Logf("100 fetches over %v, at most %d in any 1 s window", span.Round(10*time.Millisecond), worst)
}

// TestConcurrencyLimitAcrossProcesses: a limit of 2 across three worker
// processes of concurrency 10: the source never sees more than 2 requests
// in flight. Then the process holding a slot is SIGKILLed: the slot is back
// within the documented bound (the lease, 2 s here, plus the waiter's
// wake-up), while the other slot stays taken.
func TestConcurrencyLimitAcrossProcesses(t *testing.T) {
	b := setup(t)
	src := newSource(t, 150*time.Millisecond)
	const lease = 2 * time.Second
	procs := startTestworkers(t, b, 3, "-concurrency-limits", "fetch=2", "-lease", lease.String())
	ctx := ctxTimeout(t, 60*time.Second)

	var urls []string
	for i := range 20 {
		urls = append(urls, fmt.Sprintf("%s/hold-%02d", src.srv.URL, i))
	}
	start := time.Now()
	for _, h := range fetchAll(t, ctx, b, urls) {
		_, err := h.Get(ctx)
		require.NoError(t, err)
		rec, err := b.client.Get(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, 0, rec.Retries)
	}
	src.mu.Lock()
	peak := src.peak
	src.mu.Unlock()
	require.Equal(t, 2, peak, "at most 2 in flight across 3 processes of concurrency 10, and the limit was reached")
	t.Logf("20 fetches of 150 ms, 2 at a time, in %v", time.Since(start).Round(10*time.Millisecond))

	// Two hanging fetches take both slots.
	fetchAll(t, ctx, b, []string{src.srv.URL + "/hang-a", src.srv.URL + "/hang-b"})
	redistest.WaitFor(t, 10*time.Second, "both slots taken", func() bool {
		return len(src.pids("/hang-a")) == 1 && len(src.pids("/hang-b")) == 1
	})
	victim, err := strconv.Atoi(src.pids("/hang-a")[0])
	require.NoError(t, err)
	var killed *exec.Cmd
	for _, p := range procs {
		if p.Process.Pid == victim {
			killed = p
		}
	}
	require.NotNil(t, killed, "pid %d is one of the workers", victim)
	require.NoError(t, killed.Process.Signal(syscall.SIGKILL))
	_ = killed.Wait()
	killedAt := time.Now()

	// A new fetch needs a slot: the dead worker's comes back at its lease.
	fetchAll(t, ctx, b, []string{src.srv.URL + "/after-kill"})
	redistest.WaitFor(t, 10*time.Second, "the dead worker's slot comes back", func() bool {
		return len(src.pids("/after-kill")) == 1
	})
	src.mu.Lock()
	got := src.arrived[len(src.arrived)-1].Sub(killedAt)
	src.mu.Unlock()
	t.Logf("slot back %v after the SIGKILL (lease %v)", got.Round(10*time.Millisecond), lease)
	require.Less(t, got, lease+1500*time.Millisecond, "within the lease plus the waiter's wake-up")
	require.GreaterOrEqual(t, got, lease/2, "not before the lease ran out: the other slot was still taken")
	src.release()
}
