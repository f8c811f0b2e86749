//go:build topology

package topology_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/dash"
)

// TestDashboard: /healthz answers ok, asynqmon lists the test's queue with
// its pending task, /metrics reports it, and asynqmon's Redis page shows the
// cluster with the node that holds the queue (its cluster mode) or the
// Sentinel master.
func TestDashboard(t *testing.T) {
	eachTopology(t, func(t *testing.T, e *env) {
		ctx := ctxTimeout(t, waitLimit)
		srv := httptest.NewServer(dash.New(e.rdb, e.client, dash.Options{Logger: e.log}))
		t.Cleanup(srv.Close)
		get := func(path string) (int, string) {
			t.Helper()
			resp, err := http.Get(srv.URL + path)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			return resp.StatusCode, string(body)
		}

		code, body := get("/healthz")
		require.Equal(t, http.StatusOK, code, body)
		require.Equal(t, "ok\n", body)

		// A task with no worker stays pending in the test's queue.
		pend := baton.NewTask[int, int]("pending", nil, &baton.TaskOptions{Queue: e.queue})
		_, err := pend.Enqueue(ctx, e.client, 1, nil)
		require.NoError(t, err)

		code, body = get("/monitoring/api/queues")
		require.Equal(t, http.StatusOK, code, body)
		var queues struct {
			Queues []struct {
				Queue   string `json:"queue"`
				Size    int    `json:"size"`
				Pending int    `json:"pending"`
			} `json:"queues"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &queues))
		found := false
		for _, q := range queues.Queues {
			if q.Queue == e.queue {
				found = true
				require.Equal(t, 1, q.Pending, body)
				require.Equal(t, 1, q.Size, body)
			}
		}
		require.True(t, found, "asynqmon lists %s: %s", e.queue, body)

		code, body = get("/metrics")
		require.Equal(t, http.StatusOK, code, body)
		require.Contains(t, body, `baton_queue_size{queue="`+e.queue+`"} 1`)

		code, body = get("/monitoring/api/redis_info")
		require.Equal(t, http.StatusOK, code, body)
		var info struct {
			Addr      string `json:"address"`
			Cluster   bool   `json:"cluster"`
			Locations []struct {
				Queue   string   `json:"queue"`
				KeySlot int      `json:"keyslot"`
				Nodes   []string `json:"nodes"`
			} `json:"queue_locations"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &info))
		switch e.topology {
		case "cluster":
			require.True(t, info.Cluster, "asynqmon runs in its cluster mode")
			slot, err := cluster.Slot(ctx, "asynq:{"+e.queue+"}:pending")
			require.NoError(t, err)
			master, err := cluster.MasterOfSlot(ctx, slot)
			require.NoError(t, err)
			found = false
			for _, l := range info.Locations {
				if l.Queue == e.queue {
					found = true
					require.Equal(t, slot, l.KeySlot)
					require.NotEmpty(t, l.Nodes)
					require.Equal(t, master, l.Nodes[0], "the queue's master")
				}
			}
			require.True(t, found, "asynqmon locates %s: %s", e.queue, body)
		case "sentinel":
			require.False(t, info.Cluster)
			require.True(t, strings.Contains(body, `"role":"master"`) || strings.Contains(body, "role:master"), body)
		}
	})
}
