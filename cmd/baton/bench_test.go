package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// runBench runs the bench command on its own (without the root, so it does
// not depend on REDIS_URL or on the command list).
func runBench(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	a := newApp(strings.NewReader(""), &out, &errb)
	defer a.Close()
	cmd := newBenchCmd(a)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

func TestBenchQuick(t *testing.T) {
	jsonPath := filepath.Join(t.TempDir(), "bench.json")
	out, err := runBench(t, "--quick", "--only", "w1", "--n", "200", "--no-celery", "--json", jsonPath)
	require.NoError(t, err, out)
	require.Contains(t, out, "W1 enqueue, sequential")
	require.Contains(t, out, "Celery figures skipped")

	raw, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	var rep struct {
		Rows []struct {
			Name     string  `json:"name"`
			Baton    float64 `json:"baton"`
			Baseline float64 `json:"baseline"`
		} `json:"rows"`
	}
	require.NoError(t, json.Unmarshal(raw, &rep))
	require.Len(t, rep.Rows, 2)
	for _, r := range rep.Rows {
		require.Positive(t, r.Baton, r.Name)
		require.Positive(t, r.Baseline, r.Name)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--only", "W99"},
		{"--n", "10"},
		{"extra"},
	} {
		_, err := runBench(t, args...)
		var ue *usageError
		require.True(t, errors.As(err, &ue), "%v: want a usage error, got %v", args, err)
	}
}
