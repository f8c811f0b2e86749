package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestRunQuick runs W1 and W2 at a small N and checks the table and the
// JSON have every row with positive throughputs. No timing asserts: the
// figures are whatever this machine does.
func TestRunQuick(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	jsonPath := filepath.Join(t.TempDir(), "bench.json")
	var out bytes.Buffer
	err := Run(ctx, &out, Options{Workloads: []string{"w1", "W2"}, Quick: true, N: 500, JSONPath: jsonPath, NoCelery: true})
	require.NoError(t, err, out.String())
	t.Log("\n" + out.String())

	table := out.String()
	require.Contains(t, table, "W1 enqueue, sequential")
	require.Contains(t, table, "W1 enqueue, 8 goroutines")
	require.Contains(t, table, "W2 process, results stored")
	require.Contains(t, table, "Celery figures skipped")

	raw, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	var rep Report
	require.NoError(t, json.Unmarshal(raw, &rep))
	require.Len(t, rep.Rows, 3)
	for _, r := range rep.Rows {
		require.Equal(t, "tasks/s", r.Unit, r.Name)
		require.Positive(t, r.Baton, r.Name)
		require.Positive(t, r.Baseline, r.Name)
		require.Positive(t, r.Ratio, r.Name)
		require.NotNil(t, r.Met, r.Name)
		require.Len(t, r.Samples, 1, r.Name)
	}
}

func TestOptionsValidate(t *testing.T) {
	_, err := Options{Workloads: []string{"W99"}}.withDefaults()
	require.ErrorContains(t, err, `unknown workload "W99"`)
	_, err = Options{N: 10}.withDefaults()
	require.ErrorContains(t, err, "too small")

	o, err := Options{Workloads: []string{"w3", "W1", "W3"}, Quick: true}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, []string{"W1", "W3"}, o.Workloads)
	require.Equal(t, NDefault/10, o.N)
	require.Equal(t, 1, o.Repeats)
	require.True(t, strings.HasSuffix(o.CeleryScript, filepath.Join("shared", "bench", "celery", "run.sh")))
}

func TestParseCelery(t *testing.T) {
	figs := parseCelery([]string{
		"celery W1 enqueue n=20000 ignore: 8.00s  2500 tasks/s",
		"celery W2 process n=20000 pool=solo c=1 prefetch=64 workers=2 (pre-enqueue 7.00s): incl. worker boot 9.00s = 2222 tasks/s; from first consume 6.90s = 2900 tasks/s",
		"celery W3 chain n=2000 pool=solo c=1 prefetch=64 workers=2: sent in 3.00s, all .get() done 4.40s = 455 chains/s (last result stored at 4.30s); latency p50 1900 ms p99 3900 ms max 4000 ms",
		"noise",
	})
	require.Equal(t, map[string]float64{"W1 rate": 2500, "W2 rate": 2900, "W3 rate": 455, "W3 p50": 1900, "W3 p99": 3900}, figs)
}

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	require.Equal(t, 3.0, median(xs))
	require.Equal(t, 2.5, median([]float64{4, 1, 2, 3}))
	require.Equal(t, 5.0, percentile(xs, 99))
	require.Equal(t, 1.0, percentile(xs, 1))
	require.Equal(t, "20,000", fmtNum(20000))
	require.Equal(t, "4.50", fmtNum(4.5))
}

// TestRunW9Quick runs the flow-control workload at a small N: its three
// rows are there with positive figures (no timing asserts).
func TestRunW9Quick(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, Run(ctx, &out, Options{Workloads: []string{"W9"}, Quick: true, N: 500, NoCelery: true}), out.String())
	t.Log("\n" + out.String())
	require.Contains(t, out.String(), "W9 W2 under a never-binding rate limit")
	require.Contains(t, out.String(), "W9 script calls per task")
	require.Contains(t, out.String(), "W9 achieved rate, 200 tasks under 200/s burst 1")
}
