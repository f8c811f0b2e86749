//go:build topology

package redistest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/redistest"
)

// TestSentinel: the harness starts a master, a replica and three sentinels
// that agree on the master; the failover client writes through them; when
// the master is killed the sentinels promote the replica, which has the
// data, and the failover client follows; the killed master, restarted, is
// turned into a replica of the new one; a restarted sentinel rejoins.
func TestSentinel(t *testing.T) {
	t.Parallel()
	s := redistest.MustStartSentinel(t, redistest.SentinelOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.Len(t, s.Servers, 2)
	require.Len(t, s.Sentinels, 3)
	for _, n := range append(s.Servers, s.Sentinels...) {
		require.NotZero(t, n.PID(), n.Addr)
	}
	master, err := s.MasterAddr(ctx)
	require.NoError(t, err)
	require.Equal(t, s.Servers[0].Addr, master)

	rdb := s.Client(t, 0)
	require.NoError(t, rdb.Set(ctx, "k", "v", 0).Err())
	n, err := redistest.NodeClient(t, master).Exists(ctx, "k").Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the failover client writes to the master")
	require.NoError(t, rdb.Wait(ctx, 1, time.Second).Err()) // the replica has it

	old, err := s.KillMaster(ctx)
	require.NoError(t, err)
	require.Equal(t, master, old)
	require.Zero(t, s.Servers[0].PID())
	killed := time.Now()
	promoted, err := s.WaitFailover(ctx, old)
	require.NoError(t, err)
	t.Logf("failover took %v", time.Since(killed).Round(100*time.Millisecond))
	require.Equal(t, s.Servers[1].Addr, promoted, "the replica is promoted")

	var val string
	redistest.WaitFor(t, 30*time.Second, "the failover client follows the failover", func() bool {
		val, err = rdb.Get(ctx, "k").Result()
		return err == nil
	})
	t.Logf("the failover client read k again %v after the kill", time.Since(killed).Round(100*time.Millisecond))
	require.Equal(t, "v", val, "the promoted replica has the data")
	require.NoError(t, rdb.Set(ctx, "k2", "v2", 0).Err(), "writes go to the new master")
	n, err = redistest.NodeClient(t, promoted).Exists(ctx, "k2").Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n)

	_, err = s.WaitFailover(context.Background(), "")
	require.NoError(t, err, "WaitFailover with no old address returns the current master")

	require.NoError(t, s.Servers[0].Restart())
	require.NoError(t, s.WaitHealthy(ctx), "the old master rejoins as a replica")
	role, err := redistest.NodeClient(t, old).Do(ctx, "role").Slice()
	require.NoError(t, err)
	require.Equal(t, "slave", role[0])

	// A restarted sentinel reads its rewritten config and gets its short
	// periods back.
	sn := s.Sentinels[0]
	require.NoError(t, sn.Restart())
	require.NoError(t, s.WaitHealthy(ctx))
	m, err := s.MasterAddr(ctx)
	require.NoError(t, err)
	require.Equal(t, promoted, m)
	periods, err := redistest.NodeClient(t, sn.Addr).Do(ctx, "sentinel", "debug").Result()
	require.NoError(t, err)
	require.IsType(t, map[any]any{}, periods)
	require.Equal(t, "1000", fmt.Sprint(periods.(map[any]any)["INFO-PERIOD"]))
}
