package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/config"
)

// TestDemo runs `baton demo` as a new user would: no REDIS_URL, no keys.
func TestDemo(t *testing.T) {
	for _, v := range []string{"REDIS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"} {
		t.Setenv(v, "")
		require.NoError(t, os.Unsetenv(v))
	}
	start := time.Now()
	o := runCLI(t, "", "demo")
	require.Equal(t, 0, o.code, "stderr: %s", o.stderr)
	require.Contains(t, o.stdout, "using an embedded in-memory Redis")
	require.Contains(t, o.stdout, "5/5 fetched")
	require.Contains(t, o.stdout, "analyze success")
	require.Contains(t, o.stdout, "Offline analysis")
	require.Contains(t, o.stdout, "grid-storage-2025.json")
	// the flaky source's row shows its retry
	var flaky string
	for _, l := range strings.Split(o.stdout, "\n") {
		if strings.Contains(l, "storage-safety-incidents.json (") {
			flaky = l
		}
	}
	require.Regexp(t, `SUCCESS\s+1\s`, flaky)
	require.Less(t, time.Since(start), 15*time.Second, "the demo must finish in under 15 s")
}

// TestResearchCommand runs `baton research --wait` against a real Redis with
// an in-process worker configured from the same settings.
func TestResearchCommand(t *testing.T) {
	b := setup(t)
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"title":"Heat pumps","summary":"Heat pump sales rose"}`)
	}))
	t.Cleanup(src.Close)
	cfg := config.Default()
	cfg.FetchAllowPrivate = true // the sources listen on 127.0.0.1
	w, err := baton.NewWorker(b.rdb, &baton.WorkerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Queues: map[string]int{"default": 1, "llm": 1}})
	require.NoError(t, err)
	require.NoError(t, w.Register(researchDefinitions(cfg, b.rdb)...))
	require.NoError(t, w.Start())
	t.Cleanup(w.Shutdown)

	o := b.run(t, "research", src.URL+"/a.json", src.URL+"/b.json")
	require.Equal(t, 0, o.code, o.stderr)
	id := strings.TrimSpace(o.stdout)
	require.NotContains(t, id, " ", "the workflow id alone on stdout")

	o = b.run(t, "research", "--wait", "--prompt", "Summarise.", src.URL+"/c.json")
	require.Equal(t, 0, o.code, o.stderr)
	require.Contains(t, o.stdout, "Analysis (offline analyzer")
	require.Contains(t, o.stdout, "Heat pumps")
	require.Contains(t, o.stderr, "1/1 fetched")

	o = b.run(t, "research", "--wait", "--json", src.URL+"/d.json")
	require.Equal(t, 0, o.code, o.stderr)
	require.Contains(t, o.stdout, `"state": "SUCCESS"`)

	o = b.run(t, "research", "ftp://example.org/x")
	require.Equal(t, 2, o.code)
	require.Contains(t, o.stderr, "source 1")
}

// TestIsTerminal: only a terminal gets progress redrawn in place; a file,
// a pipe, a buffer and /dev/null (a character device, which the mode bits
// took for a terminal) do not.
func TestIsTerminal(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = devNull.Close() })
	r, w, err := os.Pipe()
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close(); _ = w.Close() })
	file, err := os.Create(t.TempDir() + "/out")
	require.NoError(t, err)
	t.Cleanup(func() { _ = file.Close() })

	for name, out := range map[string]io.Writer{"/dev/null": devNull, "pipe": w, "file": file, "buffer": &strings.Builder{}} {
		require.False(t, isTerminal(out), name)
	}
}
