//go:build topology

package topology_test

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/beat"
	"github.com/batonhq/baton/internal/redistest"
)

// TestBeatLease: two beats run the same every-second schedule; each tick's
// run is enqueued once, by the beat that took its lease (SET NX), and runs
// once.
func TestBeatLease(t *testing.T) {
	eachTopology(t, func(t *testing.T, e *env) {
		ctx := ctxTimeout(t, waitLimit)
		var mu sync.Mutex
		runs := map[string]int{}
		tick := baton.NewTask("tick", func(ctx context.Context, args any) (string, error) {
			info, _ := baton.InfoFrom(ctx)
			mu.Lock()
			runs[info.ID]++
			mu.Unlock()
			return "ok", nil
		}, &baton.TaskOptions{Queue: e.queue})
		e.worker(t, nil, tick)
		snapshot := func() map[string]int {
			mu.Lock()
			defer mu.Unlock()
			out := map[string]int{}
			for k, v := range runs {
				out[k] = v
			}
			return out
		}

		name := "hb-" + e.topology
		s, err := beat.Parse(fmt.Appendf(nil, `entries: [{name: %s, every: 1s, task: tick, options: {queue: %s}}]`, name, e.queue))
		require.NoError(t, err)
		bctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		instances := []string{"beat-a-" + e.topology, "beat-b-" + e.topology}
		for _, inst := range instances {
			c, err := baton.NewClient(e.newRedis(t), nil)
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })
			b := beat.New(c, s, &beat.Options{Logger: e.log, Instance: inst})
			wg.Add(1)
			go func() { defer wg.Done(); _ = b.Run(bctx) }()
		}
		redistest.WaitFor(t, waitLimit, "three runs", func() bool { return len(snapshot()) >= 3 })
		stop()
		wg.Wait()

		insp := asynq.NewInspectorFromRedisClient(e.rdb)
		redistest.WaitFor(t, waitLimit, "the queue drained", func() bool {
			qi, err := insp.GetQueueInfo(e.queue)
			return err == nil && qi.Pending+qi.Active+qi.Scheduled+qi.Retry == 0
		})
		got := snapshot()
		var ticks []int64
		for id, n := range got {
			require.Equal(t, 1, n, "run %s executed %d times", id, n)
			sec, ok := strings.CutPrefix(id, "beat-"+name+"-")
			require.True(t, ok, id)
			v, err := strconv.ParseInt(sec, 10, 64)
			require.NoError(t, err)
			ticks = append(ticks, v)
			holder, err := e.rdb.Get(ctx, beat.LeaseKey(id)).Result()
			require.NoError(t, err, "the lease of %s", id)
			require.Contains(t, instances, holder)
		}
		sort.Slice(ticks, func(i, j int) bool { return ticks[i] < ticks[j] })
		for i := 1; i < len(ticks); i++ {
			require.Equal(t, ticks[i-1]+1, ticks[i], "one run per tick, none skipped: %v", ticks)
		}
	})
}
