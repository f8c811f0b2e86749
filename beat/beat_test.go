package beat_test

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/beat"
	"github.com/batonhq/baton/internal/redistest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// counter is a worker running kind "tick", counting executions per task id.
type counter struct {
	mu   sync.Mutex
	runs map[string]int
}

func startCounter(t *testing.T, rdb *redis.Client) *counter {
	t.Helper()
	c := &counter{runs: map[string]int{}}
	tick := baton.NewTask("tick", func(ctx context.Context, args any) (string, error) {
		info, _ := baton.InfoFrom(ctx)
		c.mu.Lock()
		c.runs[info.ID]++
		c.mu.Unlock()
		return "ok", nil
	}, nil)
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{Logger: quiet(), PollInterval: 20 * time.Millisecond, ShutdownTimeout: 5 * time.Second})
	require.NoError(t, err)
	require.NoError(t, w.Register(tick))
	require.NoError(t, w.Start())
	t.Cleanup(w.Shutdown)
	return c
}

func (c *counter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.runs))
	for k, v := range c.runs {
		out[k] = v
	}
	return out
}

func newClient(t *testing.T, rdb *redis.Client) *baton.Client {
	t.Helper()
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ticks returns the unix seconds of the run ids of entry name, sorted.
func ticks(t *testing.T, runs map[string]int, name string) []int64 {
	t.Helper()
	var out []int64
	for id := range runs {
		s, ok := strings.CutPrefix(id, "beat-"+name+"-")
		require.True(t, ok, id)
		n, err := strconv.ParseInt(s, 10, 64)
		require.NoError(t, err)
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func TestTwoBeatsEnqueueOnce(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	cnt := startCounter(t, rdb)
	s, err := beat.Parse([]byte(`entries: [{name: hb, every: 1s, task: tick, args: {n: 1}}]`))
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 2 {
		b := beat.New(newClient(t, rdb), s, &beat.Options{Logger: quiet(), Instance: "b" + strconv.Itoa(i)})
		wg.Add(1)
		go func() { defer wg.Done(); require.NoError(t, b.Run(ctx)) }()
	}
	time.Sleep(3500 * time.Millisecond)
	cancel()
	wg.Wait()
	end := time.Now()

	// Every whole second in [start, end] is one run, run once.
	want := end.Unix() - start.Unix()
	if start.Truncate(time.Second).Equal(start) {
		want++
	}
	var runs map[string]int
	redistest.WaitFor(t, 10*time.Second, "every enqueued run executed", func() bool {
		runs = cnt.snapshot()
		return int64(len(runs)) >= want
	})
	// A duplicate would be one more task: wait until every queued task ran.
	insp := asynq.NewInspectorFromRedisClient(rdb)
	redistest.WaitFor(t, 10*time.Second, "queue drained", func() bool {
		qi, err := insp.GetQueueInfo(baton.QueueDefault)
		return err == nil && qi.Pending+qi.Active+qi.Scheduled+qi.Retry == 0
	})
	runs = cnt.snapshot()
	got := ticks(t, runs, "hb")
	require.Len(t, got, int(want), "runs %v between %v and %v", got, start, end)
	for i := 1; i < len(got); i++ {
		require.Equal(t, got[i-1]+1, got[i], "consecutive ticks: %v", got)
	}
	for id, n := range runs {
		require.Equal(t, 1, n, "run %s executed %d times", id, n)
	}
}

func TestLeaseHolderDiedRunStillEnqueued(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	cnt := startCounter(t, rdb)
	s, err := beat.Parse([]byte(`entries: [{name: solo, every: 1s, task: tick}]`))
	require.NoError(t, err)
	e := s.Entries[0]
	// A beat that died after taking the leases of the next two ticks.
	now := time.Now()
	t1 := e.Next(now)
	t2 := e.Next(t1)
	for _, tk := range []time.Time{t1, t2} {
		require.NoError(t, rdb.Set(context.Background(), beat.LeaseKey(e.RunID(tk)), "ghost", time.Minute).Err())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = beat.New(newClient(t, rdb), s, &beat.Options{Logger: quiet()}).Run(ctx)
	}()
	redistest.WaitFor(t, 10*time.Second, "runs of the dead beat's ticks", func() bool {
		r := cnt.snapshot()
		return r[e.RunID(t1)] == 1 && r[e.RunID(t2)] == 1
	})
	cancel()
	<-done
}

func TestCanvasEntry(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	cnt := startCounter(t, rdb)
	s, err := beat.Parse([]byte(`entries: [{name: flow, every: 1s, canvas: {chain: [{task: tick, args: {a: 1}}, {task: tick}]}}]`))
	require.NoError(t, err)
	c := newClient(t, rdb)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = beat.New(c, s, &beat.Options{Logger: quiet()}).Run(ctx) }()
	var wfID string
	redistest.WaitFor(t, 10*time.Second, "a workflow run", func() bool {
		for id := range cnt.snapshot() {
			if strings.HasSuffix(id, ".2") {
				wfID = strings.TrimSuffix(id, ".2")
				return true
			}
		}
		return false
	})
	cancel()
	<-done
	require.True(t, strings.HasPrefix(wfID, "beat-flow-"), wfID)
	wf, err := c.Workflow(context.Background(), wfID)
	require.NoError(t, err)
	_, err = wf.Wait(context.Background())
	require.NoError(t, err)
	last, err := rdb.HGet(context.Background(), beat.LastKey, "flow").Result()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(last, "beat-flow-"))
}
