package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

const analyzeTestKey = "sk-test-SECRET123"

// fakeLLMReply is one scripted answer of the fake endpoint.
type fakeLLMReply struct {
	status int
	header http.Header
	body   string
	block  bool // wait until the client gives up
}

// fakeLLMRequest is what the fake endpoint received.
type fakeLLMRequest struct {
	Path          string
	Authorization string
	Raw           map[string]any
	Req           openai.ChatCompletionRequest
}

// fakeLLM is a real OpenAI-compatible HTTP server: POST /v1/chat/completions
// answers with scripted replies, then with successes that echo the request.
type fakeLLM struct {
	srv     *httptest.Server
	release chan struct{}

	mu      sync.Mutex
	replies []fakeLLMReply
	reqs    []fakeLLMRequest
}

func newFakeLLM(t *testing.T, replies ...fakeLLMReply) *fakeLLM {
	t.Helper()
	f := &fakeLLM{replies: replies, release: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		close(f.release)
		f.srv.Close()
	})
	return f
}

// URL is the base URL to configure (…/v1).
func (f *fakeLLM) URL() string { return f.srv.URL + "/v1" }

func (f *fakeLLM) requests() []fakeLLMRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeLLMRequest(nil), f.reqs...)
}

func (f *fakeLLM) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		http.Error(w, `{"error":{"message":"not found","type":"invalid_request_error"}}`, http.StatusNotFound)
		return
	}
	body, _ := io.ReadAll(r.Body)
	rec := fakeLLMRequest{Path: r.URL.Path, Authorization: r.Header.Get("Authorization")}
	_ = json.Unmarshal(body, &rec.Raw)
	_ = json.Unmarshal(body, &rec.Req)

	f.mu.Lock()
	f.reqs = append(f.reqs, rec)
	n := len(f.reqs)
	var reply *fakeLLMReply
	if len(f.replies) > 0 {
		reply = &f.replies[0]
		f.replies = f.replies[1:]
	}
	f.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	if reply != nil {
		if reply.block {
			select {
			case <-r.Context().Done():
			case <-f.release:
			}
			return
		}
		for k, vs := range reply.header {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		w.WriteHeader(reply.status)
		_, _ = io.WriteString(w, reply.body)
		return
	}
	user := ""
	if len(rec.Req.Messages) > 1 {
		user = rec.Req.Messages[1].Content
	}
	resp := map[string]any{
		"id":      fmt.Sprintf("chatcmpl-%d", n),
		"object":  "chat.completion",
		"created": 1700000000,
		"model":   rec.Req.Model + "-2024-07-18",
		"choices": []any{map[string]any{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": fmt.Sprintf("analysis #%d of %d chars", n, utf8.RuneCountInString(user))},
			"finish_reason": "stop",
		}},
		"usage": map[string]any{"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
	}
	_ = json.NewEncoder(w).Encode(resp)
}

func llmErrorBody(msg, typ string) string {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": typ, "code": typ}})
	return string(b)
}

// syncBuffer collects log output from concurrent writers.
type analyzeLogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *analyzeLogBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *analyzeLogBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func analyzeLogger() (*slog.Logger, *analyzeLogBuf) {
	buf := &analyzeLogBuf{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func analyzeSrc(t testing.TB, url, contentType string, body any) json.RawMessage {
	t.Helper()
	m := map[string]any{"url": url, "status": 200, "content_type": contentType}
	switch v := body.(type) {
	case string:
		m["text"] = v
		m["bytes"] = len(v)
	default:
		j, err := json.Marshal(v)
		require.NoError(t, err)
		m["json"] = json.RawMessage(j)
		m["bytes"] = len(j)
	}
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	return raw
}

func analyzeSampleArgs(t testing.TB) AnalyzeArgs {
	return AnalyzeArgs{Sources: []json.RawMessage{
		analyzeSrc(t, "https://api.example.com/repos/baton", "application/json",
			map[string]any{"name": "baton", "description": "distributed task queue", "stars": 42}),
		analyzeSrc(t, "https://example.com/readme.md", "text/markdown", "# Baton\nA task queue for Go on Redis."),
	}}
}

type analyzeBundle struct {
	llm  *fakeLLM
	logs *analyzeLogBuf
}

func setupAnalyzer(t *testing.T, cfg LLMConfig, replies ...fakeLLMReply) (*Analyzer, *analyzeBundle) {
	t.Helper()
	llm := newFakeLLM(t, replies...)
	log, buf := analyzeLogger()
	if cfg.BaseURL == "" {
		cfg.BaseURL = llm.URL()
	}
	if cfg.APIKey == "" {
		cfg.APIKey = analyzeTestKey
	}
	if cfg.Model == "" {
		cfg.Model = "gpt-4o-mini"
	}
	cfg.Logger = log
	return NewAnalyzer(cfg, nil), &analyzeBundle{llm: llm, logs: buf}
}

func TestAnalyzeSuccess(t *testing.T) {
	t.Parallel()
	a, b := setupAnalyzer(t, LLMConfig{})
	require.True(t, a.Online())

	args := analyzeSampleArgs(t)
	args.Failed = []SourceError{{URL: "https://down.example.com", Error: "connection refused"}}
	res, err := a.Analyze(context.Background(), args)
	require.NoError(t, err)

	reqs := b.llm.requests()
	require.Len(t, reqs, 1)
	got := reqs[0]
	require.Equal(t, "Bearer "+analyzeTestKey, got.Authorization)
	require.Equal(t, "gpt-4o-mini", got.Req.Model)
	require.Len(t, got.Req.Messages, 2)
	require.Equal(t, openai.ChatMessageRoleSystem, got.Req.Messages[0].Role)
	require.Equal(t, DefaultSystemPrompt, got.Req.Messages[0].Content)
	user := got.Req.Messages[1].Content
	require.Equal(t, openai.ChatMessageRoleUser, got.Req.Messages[1].Role)
	for _, want := range []string{
		"## Source 1 of 2: https://api.example.com/repos/baton",
		"Content-Type: application/json",
		`"description":"distributed task queue"`,
		"## Source 2 of 2: https://example.com/readme.md",
		"Content-Type: text/markdown",
		"A task queue for Go on Redis.",
		"https://down.example.com: connection refused",
	} {
		require.Contains(t, user, want)
	}
	// Temperature 0: present on the wire and effectively zero.
	temp, ok := got.Raw["temperature"].(float64)
	require.True(t, ok, "temperature must be sent, got %v", got.Raw["temperature"])
	require.Less(t, temp, 1e-30)

	require.Equal(t, fmt.Sprintf("analysis #1 of %d chars", utf8.RuneCountInString(user)), res.Text)
	require.Equal(t, "gpt-4o-mini-2024-07-18", res.Model, "model as reported by the server")
	require.Equal(t, 120, res.PromptTokens)
	require.Equal(t, 30, res.CompletionTokens)
	require.Equal(t, 150, res.TotalTokens)
	require.False(t, res.Offline)
	require.False(t, res.Cached)
	require.False(t, res.Truncated)
	require.Equal(t, utf8.RuneCountInString(user), res.InputChars)
	require.NotContains(t, b.logs.String(), analyzeTestKey)
}

func TestAnalyzePromptOverride(t *testing.T) {
	t.Parallel()
	a, b := setupAnalyzer(t, LLMConfig{SystemPrompt: "Configured prompt."})
	_, err := a.Analyze(context.Background(), analyzeSampleArgs(t))
	require.NoError(t, err)
	args := analyzeSampleArgs(t)
	args.Prompt = "Compare the sources."
	_, err = a.Analyze(context.Background(), args)
	require.NoError(t, err)

	reqs := b.llm.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, "Configured prompt.", reqs[0].Req.Messages[0].Content)
	require.Equal(t, "Compare the sources.", reqs[1].Req.Messages[0].Content)
}

func TestAnalyzeReasoningModelOmitsTemperature(t *testing.T) {
	t.Parallel()
	a, b := setupAnalyzer(t, LLMConfig{Model: "o3-mini"})
	_, err := a.Analyze(context.Background(), analyzeSampleArgs(t))
	require.NoError(t, err)
	reqs := b.llm.requests()
	require.Len(t, reqs, 1)
	_, has := reqs[0].Raw["temperature"]
	require.False(t, has, "reasoning models reject a temperature")
}

func TestAnalyzeRateLimitedThenSuccess(t *testing.T) {
	t.Parallel()
	a, b := setupAnalyzer(t, LLMConfig{}, fakeLLMReply{
		status: http.StatusTooManyRequests,
		header: http.Header{"Retry-After": {"7"}},
		body:   llmErrorBody("Rate limit reached for gpt-4o-mini", "rate_limit_exceeded"),
	})
	ctx := context.Background()

	_, err := a.Analyze(ctx, analyzeSampleArgs(t))
	require.Error(t, err)
	require.False(t, baton.IsPermanent(err))
	d, ok := baton.RetryAfterDelay(err)
	require.True(t, ok, "Retry-After must be honoured: %v", err)
	require.Equal(t, 7*time.Second, d)
	var le *LLMError
	require.ErrorAs(t, err, &le)
	require.Equal(t, http.StatusTooManyRequests, le.StatusCode)
	require.Contains(t, err.Error(), "Rate limit reached")

	res, err := a.Analyze(ctx, analyzeSampleArgs(t))
	require.NoError(t, err)
	require.Equal(t, 150, res.TotalTokens)
	require.Len(t, b.llm.requests(), 2)
}

func TestAnalyzeRetryableStatuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		reply  fakeLLMReply
		status int
		delay  time.Duration // 0: no RetryAfter, retry per policy
	}{
		{"500", fakeLLMReply{status: 500, body: llmErrorBody("The server had an error", "server_error")}, 500, 0},
		{"502 html", fakeLLMReply{status: 502, body: "<html><body>Bad Gateway</body></html>"}, 502, 0},
		{"503 retry-after", fakeLLMReply{status: 503, header: http.Header{"Retry-After": {"2"}}, body: "{}"}, 503, 2 * time.Second},
		{"429 no header", fakeLLMReply{status: 429, body: llmErrorBody("slow down", "rate_limit_exceeded")}, 429, 0},
		{"429 retry-after-ms", fakeLLMReply{status: 429, header: http.Header{"Retry-After-Ms": {"1500"}}, body: llmErrorBody("slow down", "rate_limit_exceeded")}, 429, 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, _ := setupAnalyzer(t, LLMConfig{}, tc.reply)
			_, err := a.Analyze(context.Background(), analyzeSampleArgs(t))
			require.Error(t, err)
			require.False(t, baton.IsPermanent(err), "%v", err)
			var le *LLMError
			require.ErrorAs(t, err, &le)
			require.Equal(t, tc.status, le.StatusCode)
			d, ok := baton.RetryAfterDelay(err)
			require.Equal(t, tc.delay != 0, ok)
			require.Equal(t, tc.delay, d)
		})
	}
}

func TestAnalyzePermanentStatuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		typ    string
		msg    string
	}{
		{400, "invalid_request_error", "This model's maximum context length is 128000 tokens"},
		{403, "permission_denied", "Project does not have access to model"},
		{404, "invalid_request_error", "The model `gpt-9` does not exist"},
		{429, "insufficient_quota", "You exceeded your current quota"},
	} {
		t.Run(fmt.Sprint(tc.status, tc.typ), func(t *testing.T) {
			t.Parallel()
			a, _ := setupAnalyzer(t, LLMConfig{}, fakeLLMReply{status: tc.status, body: llmErrorBody(tc.msg, tc.typ)})
			_, err := a.Analyze(context.Background(), analyzeSampleArgs(t))
			require.Error(t, err)
			require.True(t, baton.IsPermanent(err), "%v", err)
			require.Contains(t, err.Error(), tc.msg)
			require.Contains(t, err.Error(), fmt.Sprint(tc.status))
		})
	}
}

func TestAnalyzeUnauthorizedNeverLeaksKey(t *testing.T) {
	t.Parallel()
	// A careless provider echoes the whole key back.
	a, b := setupAnalyzer(t, LLMConfig{}, fakeLLMReply{
		status: http.StatusUnauthorized,
		body:   llmErrorBody("Incorrect API key provided: "+analyzeTestKey+". You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error"),
	})
	_, err := a.Analyze(context.Background(), analyzeSampleArgs(t))
	require.Error(t, err)
	require.True(t, baton.IsPermanent(err))
	var le *LLMError
	require.ErrorAs(t, err, &le)
	require.Equal(t, http.StatusUnauthorized, le.StatusCode)
	require.Contains(t, err.Error(), "Incorrect API key provided")
	require.NotContains(t, err.Error(), analyzeTestKey)
	require.NotContains(t, fmt.Sprintf("%+v", err), analyzeTestKey)

	logs := b.logs.String()
	require.Contains(t, logs, "llm call failed", "the failure is logged")
	require.NotContains(t, logs, analyzeTestKey)

	// Printing or logging the configuration does not show the key either.
	cfg := LLMConfig{APIKey: analyzeTestKey, BaseURL: "https://user:pw@llm.example.com/v1"}
	require.NotContains(t, cfg.String(), analyzeTestKey)
	require.NotContains(t, fmt.Sprintf("%v %+v", cfg, cfg), analyzeTestKey)
	require.NotContains(t, cfg.String(), ":pw@")
	log, buf := analyzeLogger()
	log.Info("config", "llm", cfg)
	require.NotContains(t, buf.String(), analyzeTestKey)
}

func TestAnalyzeTimeoutIsRetryable(t *testing.T) {
	t.Parallel()
	a, b := setupAnalyzer(t, LLMConfig{Timeout: 50 * time.Millisecond}, fakeLLMReply{block: true})
	_, err := a.Analyze(context.Background(), analyzeSampleArgs(t))
	require.Error(t, err)
	require.False(t, baton.IsPermanent(err))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "did not answer within 50ms")
	require.NotContains(t, err.Error(), analyzeTestKey)
	require.NotContains(t, b.logs.String(), analyzeTestKey)
}

func TestAnalyzeUnreachableIsRetryable(t *testing.T) {
	t.Parallel()
	dead := httptest.NewServer(http.NotFoundHandler())
	base := dead.URL + "/v1"
	dead.Close()
	log, buf := analyzeLogger()
	a := NewAnalyzer(LLMConfig{APIKey: analyzeTestKey, BaseURL: base, Logger: log}, nil)
	_, err := a.Analyze(context.Background(), analyzeSampleArgs(t))
	require.Error(t, err)
	require.False(t, baton.IsPermanent(err))
	_, hasDelay := baton.RetryAfterDelay(err)
	require.False(t, hasDelay)
	require.Contains(t, err.Error(), base)
	require.NotContains(t, err.Error(), analyzeTestKey)
	require.NotContains(t, buf.String(), analyzeTestKey)
}

func TestAnalyzeNoSourcesIsPermanent(t *testing.T) {
	t.Parallel()
	for _, a := range []*Analyzer{
		NewAnalyzer(LLMConfig{}, nil),
		NewAnalyzer(LLMConfig{BaseURL: "http://127.0.0.1:1/v1"}, nil),
	} {
		_, err := a.Analyze(context.Background(), AnalyzeArgs{Failed: []SourceError{{URL: "https://x.example", Error: "HTTP 404"}}})
		require.Error(t, err)
		require.True(t, baton.IsPermanent(err))
		require.Contains(t, err.Error(), "https://x.example: HTTP 404")
	}
}

func TestAnalyzeTruncatesOversizedData(t *testing.T) {
	t.Parallel()
	const budget = 1000
	a, b := setupAnalyzer(t, LLMConfig{MaxInputChars: budget})
	big := strings.Repeat("ünïcode data ", 1000) // 13,000 characters, multi-byte
	args := AnalyzeArgs{Sources: []json.RawMessage{analyzeSrc(t, "https://example.com/big.txt", "text/plain", big)}}

	res, err := a.Analyze(context.Background(), args)
	require.NoError(t, err)
	require.True(t, res.Truncated)

	reqs := b.llm.requests()
	require.Len(t, reqs, 1)
	user := reqs[0].Req.Messages[1].Content
	require.True(t, utf8.ValidString(user))
	full := utf8.RuneCountInString(renderSources(args))
	note := truncationNote(full-budget, full)
	require.True(t, strings.HasSuffix(user, note), "note at the end: %q", user[max(0, len(user)-80):])
	require.Contains(t, note, fmt.Sprintf("[... truncated: %d of %d characters omitted]", full-budget, full))
	require.LessOrEqual(t, utf8.RuneCountInString(user), budget+utf8.RuneCountInString(note))
	require.Equal(t, utf8.RuneCountInString(user), res.InputChars)
	require.Contains(t, user, "https://example.com/big.txt", "the head of the data is kept")

	// Under the budget nothing is cut.
	small, cut := truncateChars("héllo", 5)
	require.False(t, cut)
	require.Equal(t, "héllo", small)
}

func TestRetryAfterHeader(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		h    http.Header
		want time.Duration
		ok   bool
	}{
		{nil, 0, false},
		{http.Header{}, 0, false},
		{http.Header{"Retry-After": {"30"}}, 30 * time.Second, true},
		{http.Header{"Retry-After": {"0.5"}}, 0, false}, // delay-seconds are digits (RFC 9110), as fetch reads them
		{http.Header{"Retry-After": {now.Add(time.Hour).Format(http.TimeFormat)}, "Date": {now.Add(59 * time.Minute).Format(http.TimeFormat)}},
			time.Minute, true}, // measured against the server's clock
		{http.Header{"Retry-After-Ms": {"1e30"}}, maxRetryAfter, true},
		{http.Header{"Retry-After-Ms": {"soon"}, "Retry-After": {"1"}}, 0, false},
		{http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second, true},
		{http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0, true},
		{http.Header{"Retry-After": {"999999"}}, maxRetryAfter, true},
		{http.Header{"Retry-After": {"soon"}}, 0, false},
		{http.Header{"Retry-After": {"-3"}}, 0, false},
		{http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"1"}}, 250 * time.Millisecond, true},
	} {
		got, ok := retryAfter(tc.h, now)
		require.Equal(t, tc.ok, ok, "%v", tc.h)
		require.Equal(t, tc.want, got, "%v", tc.h)
	}
}

func TestCacheKey(t *testing.T) {
	t.Parallel()
	a := NewAnalyzer(LLMConfig{APIKey: analyzeTestKey}, nil)
	req, _, _ := a.request(analyzeSampleArgs(t))
	k := CacheKey(OpenAIBaseURL, "gpt-4o-mini", req)
	require.Regexp(t, `^baton:llm:\{[0-9a-f]{64}\}$`, k)
	require.Equal(t, k, CacheKey(OpenAIBaseURL+"/", "gpt-4o-mini", req), "trailing slash ignored")
	require.NotContains(t, k, analyzeTestKey)

	other := req
	other.Messages = append([]openai.ChatCompletionMessage(nil), req.Messages...)
	other.Messages[0].Content = "Another prompt."
	require.NotEqual(t, k, CacheKey(OpenAIBaseURL, "gpt-4o-mini", other), "messages are hashed")
	require.NotEqual(t, k, CacheKey("http://localhost:11434/v1", "gpt-4o-mini", req), "endpoint is hashed")
	require.NotEqual(t, k, CacheKey(OpenAIBaseURL, "gpt-4o", req), "model is hashed")
	hot := req
	hot.Temperature = 0.7
	require.NotEqual(t, k, CacheKey(OpenAIBaseURL, "gpt-4o-mini", hot), "parameters are hashed")
}

// TestAnalyzeCache runs every case that needs Redis against one server,
// started once for this test (and stopped with it).
func TestAnalyzeCache(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	ctx := context.Background()

	// Each subtest analyzes distinct data, so their cache keys never collide.
	argsFor := func(t *testing.T) AnalyzeArgs {
		return AnalyzeArgs{Sources: []json.RawMessage{
			analyzeSrc(t, "https://example.com/"+t.Name(), "text/plain", "cache test data for "+t.Name()),
		}}
	}
	newCached := func(t *testing.T, cfg LLMConfig, replies ...fakeLLMReply) (*Analyzer, *fakeLLM) {
		llm := newFakeLLM(t, replies...)
		cfg.APIKey, cfg.BaseURL, cfg.Model = analyzeTestKey, llm.URL(), "gpt-4o-mini"
		cfg.Logger, _ = analyzeLogger()
		return NewAnalyzer(cfg, rdb), llm
	}

	t.Run("replay makes no second call", func(t *testing.T) {
		t.Parallel()
		a, llm := newCached(t, LLMConfig{})
		args := argsFor(t)
		first, err := a.Analyze(ctx, args)
		require.NoError(t, err)
		require.False(t, first.Cached)

		second, err := a.Analyze(ctx, args)
		require.NoError(t, err)
		require.Len(t, llm.requests(), 1, "the second run is served from Redis")
		require.True(t, second.Cached)
		second.Cached = false
		require.Equal(t, first, second)

		// A fresh analyzer (another worker) sees the same entry.
		again, err := NewAnalyzer(a.cfg, rdb).Analyze(ctx, args)
		require.NoError(t, err)
		require.True(t, again.Cached)
		require.Len(t, llm.requests(), 1)

		req, _, _ := a.request(args)
		key := CacheKey(llm.URL(), "gpt-4o-mini", req)
		ttl, err := rdb.TTL(ctx, key).Result()
		require.NoError(t, err)
		require.Greater(t, ttl, DefaultLLMCacheTTL-time.Minute)
		require.LessOrEqual(t, ttl, DefaultLLMCacheTTL)
		stored, err := rdb.Get(ctx, key).Bytes()
		require.NoError(t, err)
		require.NotContains(t, string(stored), analyzeTestKey)
		var got AnalyzeResult
		require.NoError(t, json.Unmarshal(stored, &got))
		require.Equal(t, first, got)
	})

	t.Run("custom TTL", func(t *testing.T) {
		t.Parallel()
		a, llm := newCached(t, LLMConfig{CacheTTL: 90 * time.Second})
		args := argsFor(t)
		_, err := a.Analyze(ctx, args)
		require.NoError(t, err)
		req, _, _ := a.request(args)
		ttl, err := rdb.TTL(ctx, CacheKey(llm.URL(), "gpt-4o-mini", req)).Result()
		require.NoError(t, err)
		require.Greater(t, ttl, 60*time.Second)
		require.LessOrEqual(t, ttl, 90*time.Second)
	})

	t.Run("different prompt misses", func(t *testing.T) {
		t.Parallel()
		a, llm := newCached(t, LLMConfig{})
		args := argsFor(t)
		_, err := a.Analyze(ctx, args)
		require.NoError(t, err)
		args.Prompt = "Summarise in one line."
		res, err := a.Analyze(ctx, args)
		require.NoError(t, err)
		require.False(t, res.Cached)
		require.Len(t, llm.requests(), 2)
	})

	t.Run("errors are not cached", func(t *testing.T) {
		t.Parallel()
		a, llm := newCached(t, LLMConfig{}, fakeLLMReply{status: 500, body: llmErrorBody("boom", "server_error")})
		args := argsFor(t)
		_, err := a.Analyze(ctx, args)
		require.Error(t, err)
		res, err := a.Analyze(ctx, args)
		require.NoError(t, err)
		require.False(t, res.Cached)
		res, err = a.Analyze(ctx, args)
		require.NoError(t, err)
		require.True(t, res.Cached)
		require.Len(t, llm.requests(), 2)
	})

	t.Run("unreadable entry is a miss and is replaced", func(t *testing.T) {
		t.Parallel()
		a, llm := newCached(t, LLMConfig{})
		args := argsFor(t)
		req, _, _ := a.request(args)
		key := CacheKey(llm.URL(), "gpt-4o-mini", req)
		require.NoError(t, rdb.Set(ctx, key, "not json", time.Hour).Err())
		res, err := a.Analyze(ctx, args)
		require.NoError(t, err)
		require.False(t, res.Cached)
		require.Len(t, llm.requests(), 1)
		res, err = a.Analyze(ctx, args)
		require.NoError(t, err)
		require.True(t, res.Cached)
	})

	t.Run("negative TTL disables the cache", func(t *testing.T) {
		t.Parallel()
		a, llm := newCached(t, LLMConfig{CacheTTL: -1})
		args := argsFor(t)
		for range 2 {
			res, err := a.Analyze(ctx, args)
			require.NoError(t, err)
			require.False(t, res.Cached)
		}
		require.Len(t, llm.requests(), 2)
	})

	t.Run("redis down still analyzes", func(t *testing.T) {
		t.Parallel()
		llm := newFakeLLM(t)
		log, buf := analyzeLogger()
		// A port nothing listens on.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		require.NoError(t, l.Close())
		deadClient := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		t.Cleanup(func() { _ = deadClient.Close() })
		a := NewAnalyzer(LLMConfig{APIKey: analyzeTestKey, BaseURL: llm.URL(), Logger: log}, deadClient)
		res, err := a.Analyze(ctx, argsFor(t))
		require.NoError(t, err)
		require.False(t, res.Cached)
		require.Contains(t, buf.String(), "llm cache read failed")
		require.NotContains(t, buf.String(), analyzeTestKey)
	})
}

func TestAnalyzeOfflineWithoutEndpoint(t *testing.T) {
	t.Parallel()
	a := NewAnalyzer(LLMConfig{}, nil)
	require.False(t, a.Online())
	res, err := a.Analyze(context.Background(), analyzeSampleArgs(t))
	require.NoError(t, err)
	require.True(t, res.Offline)
	require.Equal(t, OfflineModel, res.Model)
	require.Equal(t, analyzeOffline(analyzeSampleArgs(t)), res)

	require.True(t, NewAnalyzer(LLMConfig{BaseURL: "http://localhost:11434/v1"}, nil).Online(), "a key-less local endpoint is online")
	require.True(t, NewAnalyzer(LLMConfig{APIKey: "k"}, nil).Online())
	require.Equal(t, OpenAIBaseURL, LLMConfig{APIKey: "k"}.WithDefaults().BaseURL)
}
