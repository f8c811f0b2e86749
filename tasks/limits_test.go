package tasks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/internal/redistest"
	"github.com/batonhq/baton/tasks"
)

// llmStub is an OpenAI-compatible chat-completions server that notes when
// each request arrived and answers from a script, then with successes.
type llmStub struct {
	srv *httptest.Server

	mu      sync.Mutex
	arrived []time.Time
	script  []func(w http.ResponseWriter)
	tokens  int // total_tokens reported by a default success
}

func newLLMStub(t *testing.T, script ...func(w http.ResponseWriter)) *llmStub {
	s := &llmStub{script: script, tokens: 150}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		s.arrived = append(s.arrived, time.Now())
		var step func(http.ResponseWriter)
		if len(s.script) > 0 {
			step, s.script = s.script[0], s.script[1:]
		}
		tokens := s.tokens
		s.mu.Unlock()
		if step != nil {
			step(w)
			return
		}
		reply(w, tokens)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func reply(w http.ResponseWriter, totalTokens int) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":%d,"completion_tokens":0,"total_tokens":%d}}`,
		totalTokens, totalTokens)
}

func (s *llmStub) times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.arrived...)
}

type limitEnv struct {
	rdb    *redis.Client
	client *baton.Client
}

// startAnalyzeWorker runs a worker with the analyze task (extra limits
// added as a worker's configuration would) against a throwaway Redis.
func startAnalyzeWorker(t *testing.T, cfg tasks.LLMConfig, rates ...baton.RateLimit) *limitEnv {
	t.Helper()
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Logger, cfg.APIKey, cfg.CacheTTL = log, "sk-test", -1
	def, err := baton.WithLimits(tasks.AnalyzeTask(tasks.NewAnalyzer(cfg, rdb)), rates, nil)
	require.NoError(t, err)
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{Concurrency: 8, Logger: log, PollInterval: 20 * time.Millisecond,
		Queues: map[string]int{tasks.AnalyzeQueue: 1}})
	require.NoError(t, err)
	require.NoError(t, w.Register(def))
	require.NoError(t, w.Start())
	t.Cleanup(w.Shutdown)
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &limitEnv{rdb: rdb, client: c}
}

func analyzeArgs(text string) tasks.AnalyzeArgs {
	src, _ := json.Marshal(map[string]any{"url": "https://example.com/" + text, "content_type": "text/plain", "text": text})
	return tasks.AnalyzeArgs{Sources: []json.RawMessage{src}}
}

// TestAnalyze429PausesEveryAnalyze: the provider answers one analyze with
// 429 and Retry-After: 2. Every analyze, not only that one, waits the 2 s
// out (the limit is paused for everyone through Redis), then all succeed,
// none of them with a retry counted.
func TestAnalyze429PausesEveryAnalyze(t *testing.T) {
	llm := newLLMStub(t, func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":{"message":"Rate limit reached for requests","type":"requests","code":"rate_limit_exceeded"}}`)
	})
	// analyze=600/m:10, as BATON_RATE_LIMITS would set it: never binding
	// on its own here.
	env := startAnalyzeWorker(t, tasks.LLMConfig{BaseURL: llm.srv.URL + "/v1"},
		baton.RateLimit{Rate: 600, Per: time.Minute, Burst: 10})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	first, err := tasks.AnalyzeDecl.Enqueue(ctx, env.client, analyzeArgs("first"), nil)
	require.NoError(t, err)
	redistest.WaitFor(t, 10*time.Second, "the provider refuses the first call", func() bool { return len(llm.times()) == 1 })
	refused := llm.times()[0]
	var others []*baton.TypedHandle[tasks.AnalyzeResult]
	for i := range 3 {
		h, err := tasks.AnalyzeDecl.Enqueue(ctx, env.client, analyzeArgs(fmt.Sprint("other-", i)), nil)
		require.NoError(t, err)
		others = append(others, h)
	}
	for _, h := range append(others, first) {
		_, err := h.Get(ctx)
		require.NoError(t, err)
		rec, err := env.client.Get(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, 0, rec.Retries, "a 429 under a rate limit is a wait, not a retry")
	}
	times := llm.times()
	require.Len(t, times, 5, "one refused call, then one call per task")
	for i, at := range times[1:] {
		require.GreaterOrEqual(t, at.Sub(refused), 1900*time.Millisecond,
			"call %d came %v after the 429: every analyze waits out Retry-After", i+2, at.Sub(refused))
	}
	rec, err := env.client.Get(ctx, first.ID)
	require.NoError(t, err)
	require.GreaterOrEqual(t, rec.Throttles, 1, "the refused task was sent back to wait")
	require.Equal(t, 2, rec.Executions, "it ran twice: the refused call and the good one")
}

// tokenUse is how many tokens of the analyze budget are in use now.
func tokenUse(t *testing.T, env *limitEnv) float64 {
	t.Helper()
	ls, err := backend.ReadLimits(context.Background(), env.rdb)
	require.NoError(t, err)
	for _, l := range ls {
		if l.Name == tasks.TokenLimit {
			return l.InUse
		}
	}
	t.Fatalf("no %s limit in %+v", tasks.TokenLimit, ls)
	return 0
}

// TestTokenBudgetCorrectedByUsage: each analyze is charged its estimate
// before the call, then corrected to the usage the provider reports (a
// refund when it used less, an extra charge when it used more).
func TestTokenBudgetCorrectedByUsage(t *testing.T) {
	llm := newLLMStub(t, nil, func(w http.ResponseWriter) { reply(w, 3000) })
	cfg := tasks.LLMConfig{BaseURL: llm.srv.URL + "/v1", TokensPerMinute: 60_000} // 1,000 tokens a second
	env := startAnalyzeWorker(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := analyzeArgs("a short source")
	est := tasks.NewAnalyzer(cfg, nil).EstimateTokens(args)
	require.Greater(t, est, tasks.CompletionTokensEstimate, "estimate: input chars/4 plus the completion allowance")

	run := func() time.Time {
		h, err := tasks.AnalyzeDecl.Enqueue(ctx, env.client, args, nil)
		require.NoError(t, err)
		_, err = h.Get(ctx)
		require.NoError(t, err)
		return time.Now()
	}
	// Call 1 used 150 tokens (the stub's default), against an estimate
	// above 1,000: refunded. The allowance refills 1 token per ms, so
	// allow for the time the check itself takes.
	done := run()
	use := tokenUse(t, env)
	elapsed := float64(time.Since(done).Milliseconds())
	require.InDelta(t, 150-elapsed, use, 60, "after a 150-token call the budget shows 150 used, not the estimate %d", est)
	// Call 2 used 3,000: charged beyond its estimate.
	done = run()
	use = tokenUse(t, env)
	elapsed = float64(time.Since(done).Milliseconds())
	require.Greater(t, 3000.0, float64(est), "the second call costs more than estimated")
	require.InDelta(t, 3000-elapsed, use, 250, "after a 3,000-token call the budget shows about 3,000 in use")
	times := llm.times()
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	require.Len(t, times, 2)
}
