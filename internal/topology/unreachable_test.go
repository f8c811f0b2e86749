//go:build topology

package topology_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/config"
)

// TestUnreachableTopologyNamed: with every node of a cluster or every
// sentinel unreachable, an enqueue fails within the configured timeout and
// the error says which Redis it tried: the cluster's addresses, or the
// master named by Sentinel (go-redis gives a failover client no address).
func TestUnreachableTopologyNamed(t *testing.T) {
	dead := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		require.NoError(t, l.Close())
		return addr
	}
	a, b := dead(), dead()
	for _, tc := range []struct{ name, url, want string }{
		{"cluster", "redis-cluster://" + a + "," + b, "redis at cluster [" + a + " " + b + "]"},
		{"sentinel", "redis-sentinel://" + a + "," + b + "/0?master=baton", "redis at the master named by Sentinel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb, err := config.NewRedisClient(tc.url, 200*time.Millisecond)
			require.NoError(t, err)
			t.Cleanup(func() { _ = rdb.Close() })
			c, err := baton.NewClient(rdb, nil)
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })
			ctx := ctxTimeout(t, time.Minute)
			_, err = c.EnqueueKind(ctx, "echo", 1, nil)
			t.Logf("%v", err)
			require.Error(t, err)
			require.True(t, strings.Contains(err.Error(), tc.want), "%q names %q", err, tc.want)
		})
	}
}
