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

// TestCluster: the harness forms a 3-master, 3-replica cluster whose slots
// are all served, routes keys to the master that MasterOf names, and a
// killed master's replica takes over its slots with the data it had; the
// killed node, restarted, rejoins as a replica and the cluster is whole.
func TestCluster(t *testing.T) {
	t.Parallel()
	c := redistest.MustStartCluster(t, redistest.ClusterOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.Len(t, c.Masters, 3)
	require.Len(t, c.Replicas, 3)
	for _, n := range c.Nodes() {
		require.NotZero(t, n.PID(), n.Addr)
		require.NotEmpty(t, n.ID, n.Addr)
	}

	rdb := c.Client(t)
	// Keys spread over every master, each written where MasterOf says.
	owners := map[string]string{}
	for i := 0; len(owners) < len(c.Masters) && i < 1000; i++ {
		key := fmt.Sprintf("k%d", i)
		require.NoError(t, rdb.Set(ctx, key, i, 0).Err())
		m, err := c.MasterOf(ctx, key)
		require.NoError(t, err)
		if _, seen := owners[m]; !seen {
			owners[m] = key
		}
	}
	require.Len(t, owners, 3, "keys land on every master")
	for m, key := range owners {
		n, err := redistest.NodeClient(t, m).Exists(ctx, key).Result()
		require.NoError(t, err)
		require.EqualValues(t, 1, n, "%s is on %s, as MasterOf says", key, m)
	}

	// Kill the master of one key; its replica takes over with the key.
	key := owners[c.Masters[1].Addr]
	require.NotEmpty(t, key)
	victim := c.Masters[1].Addr
	replica := c.Replicas[1]
	require.NoError(t, rdb.Wait(ctx, 1, time.Second).Err()) // the replica has it
	require.NoError(t, c.KillMaster(ctx, victim))
	require.Zero(t, c.Masters[1].PID())
	killed := time.Now()
	promoted, err := c.WaitFailover(ctx, victim)
	require.NoError(t, err)
	t.Logf("failover took %v", time.Since(killed).Round(100*time.Millisecond))
	require.Equal(t, replica.Addr, promoted, "the killed master's replica is promoted")
	m, err := c.MasterOf(ctx, key)
	require.NoError(t, err)
	require.Equal(t, promoted, m)
	// go-redis keeps routing the slot to the dead address until it reloads
	// its slot map (every 10 s, or on a MOVED): the client catches up.
	var val string
	redistest.WaitFor(t, 30*time.Second, "the cluster client follows the failover", func() bool {
		val, err = rdb.Get(ctx, key).Result()
		return err == nil
	})
	t.Logf("the cluster client read %s=%s again %v after the kill", key, val, time.Since(killed).Round(100*time.Millisecond))
	require.Equal(t, key[1:], val, "the promoted replica has the key")

	require.Error(t, c.KillMaster(ctx, victim), "a dead node cannot be killed again")
	require.Error(t, c.KillMaster(ctx, c.Replicas[0].Addr), "a replica is not a master")

	// The old master comes back as a replica of the promoted one.
	require.NoError(t, c.Masters[1].Restart())
	require.NoError(t, c.WaitHealthy(ctx))
	require.Equal(t, "slave", redistest.NodeClient(t, victim).Do(ctx, "role").Val().([]any)[0])
}
