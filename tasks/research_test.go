package tasks_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
	"github.com/batonhq/baton/tasks"
)

type researchEnv struct {
	client *baton.Client
	llm    *atomic.Int32
}

// startResearch runs a worker with the research tasks against a throwaway
// Redis and an OpenAI-compatible test server that counts its requests.
func startResearch(t *testing.T) *researchEnv {
	t.Helper()
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	var llmCalls atomic.Int32
	llm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		llmCalls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","model":"test-model","choices":[{"index":0,"message":{"role":"assistant","content":"analysis done"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12}}`)
	}))
	t.Cleanup(llm.Close)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := tasks.NewFetcher(tasks.FetchConfig{Timeout: 2 * time.Second, AllowPrivate: true}) // the sources listen on 127.0.0.1
	a := tasks.NewAnalyzer(tasks.LLMConfig{BaseURL: llm.URL + "/v1", APIKey: "sk-test", Logger: log}, rdb)
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{Concurrency: 8, Logger: log, PollInterval: 20 * time.Millisecond,
		Queues: map[string]int{tasks.FetchQueue: 2, tasks.AnalyzeQueue: 1}})
	require.NoError(t, err)
	require.NoError(t, w.Register(tasks.FetchTask(f, 50*time.Millisecond), tasks.AnalyzeTask(a)))
	require.NoError(t, w.Start())
	t.Cleanup(w.Shutdown)
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	c.Declare(tasks.FetchDecl, tasks.AnalyzeDecl)
	return &researchEnv{client: c, llm: &llmCalls}
}

func sources(t *testing.T) (ok, flaky, notFound, broken string, flakyHits *atomic.Int32) {
	var hits atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/ok.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"title":"Solar power","summary":"Solar capacity grew"}`)
	})
	mux.HandleFunc("/flaky.json", func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"title":"Wind power"}`)
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 500) })
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s.URL + "/ok.json", s.URL + "/flaky.json", s.URL + "/missing", s.URL + "/broken", &hits
}

func TestResearchPipeline(t *testing.T) {
	env := startResearch(t)
	ok, flaky, notFound, broken, flakyHits := sources(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("all sources succeed, flaky one after two retries", func(t *testing.T) {
		cv, err := tasks.Research([]string{ok, flaky}, tasks.ResearchOptions{})
		require.NoError(t, err)
		wf, err := env.client.Submit(ctx, cv, nil)
		require.NoError(t, err)
		var res tasks.AnalyzeResult
		require.NoError(t, wf.Get(ctx, &res))
		require.Equal(t, "analysis done", res.Text)
		require.Equal(t, "test-model", res.Model)
		require.Equal(t, 12, res.TotalTokens)
		steps, err := wf.Steps(ctx)
		require.NoError(t, err)
		require.Equal(t, baton.Success, steps[1].Record.State)
		require.Equal(t, 2, steps[1].Record.Retries, "503 twice then 200")
		require.Equal(t, 3, steps[1].Record.Executions)
		require.EqualValues(t, 3, flakyHits.Load())
	})

	t.Run("a 404 fails at once and the run fails naming it", func(t *testing.T) {
		before := env.llm.Load()
		cv, err := tasks.Research([]string{ok, notFound}, tasks.ResearchOptions{})
		require.NoError(t, err)
		wf, err := env.client.Submit(ctx, cv, nil)
		require.NoError(t, err)
		_, err = wf.Wait(ctx)
		var te *baton.TaskError
		require.ErrorAs(t, err, &te)
		require.Contains(t, te.Message, "404")
		require.Contains(t, te.Message, wf.ID+".2")
		steps, err := wf.Steps(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, steps[1].Record.Executions, "404 is not retried")
		require.Equal(t, baton.Failure, steps[2].Record.State, "analyze never runs: it fails with its parent")
		require.Equal(t, before, env.llm.Load())
	})

	t.Run("always 500: four attempts, then failure, analyze never called", func(t *testing.T) {
		before := env.llm.Load()
		cv, err := tasks.Research([]string{broken}, tasks.ResearchOptions{})
		require.NoError(t, err)
		wf, err := env.client.Submit(ctx, cv, nil)
		require.NoError(t, err)
		_, err = wf.Wait(ctx)
		require.Error(t, err)
		steps, err := wf.Steps(ctx)
		require.NoError(t, err)
		require.Equal(t, baton.Failure, steps[0].Record.State)
		require.Equal(t, 4, steps[0].Record.Executions)
		require.Equal(t, baton.Failure, steps[1].Record.State)
		require.Equal(t, before, env.llm.Load())
	})

	t.Run("allow partial analyses what succeeded and lists the failure", func(t *testing.T) {
		cv, err := tasks.Research([]string{ok, notFound}, tasks.ResearchOptions{AllowPartial: true, Prompt: "Summarise."})
		require.NoError(t, err)
		wf, err := env.client.Submit(ctx, cv, nil)
		require.NoError(t, err)
		var res tasks.AnalyzeResult
		require.NoError(t, wf.Get(ctx, &res))
		steps, err := wf.Steps(ctx)
		require.NoError(t, err)
		require.Equal(t, baton.Failure, steps[1].Record.State)
		require.Equal(t, baton.Success, steps[2].Record.State)
		raw, _ := json.Marshal(res)
		require.Contains(t, string(raw), "analysis done")
	})
}
