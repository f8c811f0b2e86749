//go:build topology

package topology_test

import (
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/backend"
)

// TestBackendDeleteAcrossSlots: Delete removes records of tasks whose keys
// hash to different slots (on a cluster, a multi-key DEL is refused).
func TestBackendDeleteAcrossSlots(t *testing.T) {
	eachTopology(t, func(t *testing.T, e *env) {
		ctx := ctxTimeout(t, waitLimit)
		be := e.client.Backend()
		a, b := uuid.NewString(), uuid.NewString()
		for e.topology == "cluster" {
			sa, err := cluster.Slot(ctx, backend.TaskKey(a))
			require.NoError(t, err)
			sb, err := cluster.Slot(ctx, backend.TaskKey(b))
			require.NoError(t, err)
			if sa != sb {
				break
			}
			b = uuid.NewString()
		}
		require.NoError(t, be.MarkPending(ctx, backend.Meta{ID: a, Kind: "k", Queue: e.queue}, backend.Meta{ID: b, Kind: "k", Queue: e.queue}))
		for _, id := range []string{a, b} {
			_, err := be.Get(ctx, id)
			require.NoError(t, err)
		}
		require.NoError(t, be.Delete(ctx, a, b))
		for _, id := range []string{a, b} {
			_, err := be.Get(ctx, id)
			require.True(t, errors.Is(err, backend.ErrNotFound), "record %s deleted: %v", id, err)
		}
	})
}
