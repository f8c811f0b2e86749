package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	openai "github.com/sashabaranov/go-openai"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/defaults"
)

// Defaults for LLMConfig, the same as `baton worker`'s; a zero field takes
// these values.
const (
	// DefaultSystemPrompt is the system prompt when neither LLMConfig.SystemPrompt
	// nor AnalyzeArgs.Prompt sets one.
	DefaultSystemPrompt = defaults.SystemPrompt
	// DefaultLLMModel is the model asked for when LLMConfig.Model is empty.
	DefaultLLMModel = defaults.LLMModel
	// DefaultLLMTimeout bounds one chat-completion call (5m).
	DefaultLLMTimeout = defaults.LLMTimeout
	// DefaultMaxInputChars caps the user message (60,000 characters, about
	// 15k tokens).
	DefaultMaxInputChars = defaults.MaxInputChars
	// DefaultLLMCacheTTL is how long a response stays in the Redis cache.
	DefaultLLMCacheTTL = defaults.LLMCacheTTL
	// OpenAIBaseURL is the endpoint used when only an API key is configured.
	OpenAIBaseURL = "https://api.openai.com/v1"
	// OfflineModel is AnalyzeResult.Model for results of the offline analyzer.
	OfflineModel = "offline-extractive"

	// maxRetryAfter caps a provider's Retry-After so one header cannot park a
	// task for days; the retry still counts against MaxRetries.
	maxRetryAfter = time.Hour
)

// AnalyzeArgs is what the research chord's body receives: the ordered list of
// fetch results plus an optional prompt override.
//
// Each source is kept as raw JSON so any upstream shape works. A fetch result
// ({"url", "status", "content_type", "bytes", "json", "text"}) is rendered
// field by field; any other JSON value is treated as the body of an unnamed
// source.
type AnalyzeArgs struct {
	Sources []json.RawMessage `json:"sources"`
	// Prompt overrides the system prompt for this call.
	Prompt string `json:"prompt,omitempty"`
	// Failed lists sources that failed upstream (allow-partial mode).
	Failed []SourceError `json:"failed,omitempty"`
}

// Kind returns the analyze task's stable kind string, "analyze".
func (AnalyzeArgs) Kind() string { return "analyze" }

// SourceError names a source that could not be fetched, and why.
type SourceError struct {
	URL   string `json:"url"`
	Error string `json:"error"`
}

// AnalyzeResult is the analyze task's result.
type AnalyzeResult struct {
	Text string `json:"text"`
	// Model is the model as reported by the server (OfflineModel offline).
	Model string `json:"model"`
	// Offline is true when no LLM endpoint was configured and the
	// deterministic extractive analyzer produced Text.
	Offline bool `json:"offline"`
	// Cached is true when Text came from the Redis response cache and no
	// request was made. Token counts are those of the original call.
	Cached           bool `json:"cached"`
	PromptTokens     int  `json:"prompt_tokens"`
	CompletionTokens int  `json:"completion_tokens"`
	TotalTokens      int  `json:"total_tokens"`
	// Truncated is true when the data was cut to LLMConfig.MaxInputChars.
	Truncated bool `json:"truncated"`
	// InputChars is the length, in characters, of the data message as sent
	// (after truncation, including the truncation note).
	InputChars int `json:"input_chars"`
}

// LLMConfig configures the analyzer. With neither APIKey nor BaseURL set the
// analyzer runs offline.
type LLMConfig struct {
	// APIKey is the provider's key. Never logged, never put in an error.
	APIKey string
	// BaseURL is an OpenAI-compatible endpoint such as
	// http://localhost:11434/v1 (Ollama) or http://vllm:8000/v1. A URL
	// containing ".openai.azure.com" selects Azure OpenAI (Model is then the
	// deployment). Defaults to OpenAIBaseURL when APIKey is set.
	BaseURL string
	// Model defaults to DefaultLLMModel.
	Model string
	// Timeout bounds one call. Defaults to DefaultLLMTimeout.
	Timeout time.Duration
	// SystemPrompt defaults to DefaultSystemPrompt.
	SystemPrompt string
	// MaxInputChars caps the data message. Defaults to DefaultMaxInputChars;
	// negative means no cap.
	MaxInputChars int
	// CacheTTL is the lifetime of cached responses. Defaults to
	// DefaultLLMCacheTTL; negative disables the cache.
	CacheTTL time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// TokensPerMinute, when positive, is a fleet-wide token budget per
	// model: AnalyzeTask adds it as the rate limit TokenLimit (see
	// EstimateTokens). Defaults to 0 (none).
	TokensPerMinute int
}

// WithDefaults returns a copy of c with every zero field set to its default.
func (c LLMConfig) WithDefaults() LLMConfig {
	if c.APIKey != "" && c.BaseURL == "" {
		c.BaseURL = OpenAIBaseURL
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.Model == "" {
		c.Model = DefaultLLMModel
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultLLMTimeout
	}
	if c.SystemPrompt == "" {
		c.SystemPrompt = DefaultSystemPrompt
	}
	if c.MaxInputChars == 0 {
		c.MaxInputChars = DefaultMaxInputChars
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultLLMCacheTTL
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// String prints the configuration with the API key redacted.
func (c LLMConfig) String() string {
	return fmt.Sprintf("LLMConfig{BaseURL:%s Model:%s APIKey:%s Timeout:%s MaxInputChars:%d CacheTTL:%s}",
		redactURL(c.BaseURL), c.Model, maskKey(c.APIKey), c.Timeout, c.MaxInputChars, c.CacheTTL)
}

// LogValue keeps the API key out of structured logs.
func (c LLMConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("base_url", redactURL(c.BaseURL)),
		slog.String("model", c.Model),
		slog.String("api_key", maskKey(c.APIKey)),
		slog.Duration("timeout", c.Timeout),
	)
}

func maskKey(k string) string {
	if k == "" {
		return ""
	}
	return "[REDACTED]"
}

// LLMError is an error status returned by the chat-completion endpoint. The
// analyzer returns it wrapped: with baton.Permanent for 4xx other than
// 408/409/425/429, with baton.RetryAfter when the provider sent Retry-After,
// bare (retry per the task's policy) otherwise.
type LLMError struct {
	StatusCode int    // HTTP status
	Message    string // the provider's message, API key redacted
	Endpoint   string // base URL, credentials redacted
}

func (e *LLMError) Error() string {
	return fmt.Sprintf("llm: %s answered HTTP %d: %s", e.Endpoint, e.StatusCode, e.Message)
}

// Analyzer runs the analyze task: one chat-completion call per AnalyzeArgs,
// cached in Redis, or the offline analyzer when no endpoint is configured.
// It is safe for concurrent use.
type Analyzer struct {
	cfg    LLMConfig
	client *openai.Client // nil when offline
	rdb    redis.UniversalClient
	log    *slog.Logger
}

// NewAnalyzer returns an analyzer for cfg. rdb holds the response cache; nil
// disables caching.
func NewAnalyzer(cfg LLMConfig, rdb redis.UniversalClient) *Analyzer {
	cfg = cfg.WithDefaults()
	a := &Analyzer{cfg: cfg, rdb: rdb, log: cfg.Logger}
	if cfg.CacheTTL < 0 {
		a.rdb = nil
	}
	if a.Online() {
		var oc openai.ClientConfig
		if strings.Contains(cfg.BaseURL, ".openai.azure.com") {
			oc = openai.DefaultAzureConfig(cfg.APIKey, cfg.BaseURL)
		} else {
			oc = openai.DefaultConfig(cfg.APIKey)
			oc.BaseURL = cfg.BaseURL
		}
		// No client timeout: each call is bounded by its context (cfg.Timeout).
		oc.HTTPClient = &http.Client{}
		a.client = openai.NewClientWithConfig(oc)
	}
	return a
}

// Online reports whether an LLM endpoint is configured (API key or base URL).
// When false, Analyze uses the deterministic offline analyzer.
func (a *Analyzer) Online() bool { return a.cfg.APIKey != "" || a.cfg.BaseURL != "" }

// Analyze sends the sources to the model and returns its answer. A cached
// response for the same (endpoint, model, messages, parameters) is returned
// without a call. Errors: baton.Permanent for requests that can never succeed
// (bad request, auth, unknown model), baton.RetryAfter when the provider sent
// Retry-After, a plain error (retry per policy) for other 429/5xx, timeouts
// and network errors.
func (a *Analyzer) Analyze(ctx context.Context, args AnalyzeArgs) (AnalyzeResult, error) {
	if len(args.Sources) == 0 {
		return AnalyzeResult{}, baton.Permanent(noSourcesError(args.Failed))
	}
	if !a.Online() {
		return analyzeOffline(args), nil
	}

	req, truncated, inputChars := a.request(args)
	key := CacheKey(a.cfg.BaseURL, a.cfg.Model, req)
	if res, ok := a.cacheGet(ctx, key); ok {
		baton.ObserveLLM(ctx, baton.LLMUsage{Model: res.Model, Cache: baton.LLMCacheHit})
		a.log.DebugContext(ctx, "llm cache hit", "key", key, "model", res.Model)
		a.setCost(ctx, 0) // no call, no tokens: refund the estimate
		return res, nil
	}
	usage := baton.LLMUsage{Model: a.cfg.Model, Cache: baton.LLMCacheMiss}
	defer func() { baton.ObserveLLM(ctx, usage) }() // one report per request, however it ends

	callCtx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	start := time.Now()
	resp, err := a.client.CreateChatCompletion(callCtx, req)
	usage.Duration = time.Since(start)
	if err != nil {
		err = a.classify(ctx, callCtx, resp.Header(), err)
		usage.Err = err
		a.log.WarnContext(ctx, "llm call failed", "endpoint", redactURL(a.cfg.BaseURL),
			"model", a.cfg.Model, "permanent", baton.IsPermanent(err), "err", err.Error())
		return AnalyzeResult{}, err
	}
	if len(resp.Choices) == 0 {
		usage.Err = fmt.Errorf("llm: %s returned a response with no choices (id %q)", redactURL(a.cfg.BaseURL), resp.ID)
		return AnalyzeResult{}, usage.Err
	}
	msg := resp.Choices[0].Message
	text := msg.Content
	if text == "" && msg.Refusal != "" {
		text = msg.Refusal
	}
	res := AnalyzeResult{
		Text:             text,
		Model:            resp.Model,
		PromptTokens:     resp.Usage.PromptTokens,
		CompletionTokens: resp.Usage.CompletionTokens,
		TotalTokens:      resp.Usage.TotalTokens,
		Truncated:        truncated,
		InputChars:       inputChars,
	}
	if res.Model == "" {
		res.Model = a.cfg.Model
	}
	a.log.InfoContext(ctx, "llm call", "endpoint", redactURL(a.cfg.BaseURL), "model", res.Model,
		"prompt_tokens", res.PromptTokens, "completion_tokens", res.CompletionTokens,
		"truncated", truncated, "duration", time.Since(start))
	usage.Model, usage.PromptTokens, usage.CompletionTokens = res.Model, res.PromptTokens, res.CompletionTokens
	a.setCost(ctx, res.TotalTokens)
	a.cacheSet(ctx, key, res)
	return res, nil
}

// request builds the chat-completion request for args.
func (a *Analyzer) request(args AnalyzeArgs) (req openai.ChatCompletionRequest, truncated bool, inputChars int) {
	system := a.cfg.SystemPrompt
	if args.Prompt != "" {
		system = args.Prompt
	}
	data, truncated := truncateChars(renderSources(args), a.cfg.MaxInputChars)
	req = openai.ChatCompletionRequest{
		Model: a.cfg.Model,
		Messages: []openai.ChatCompletionMessage{
			{Role: openai.ChatMessageRoleSystem, Content: system},
			{Role: openai.ChatMessageRoleUser, Content: data},
		},
		// Temperature 0 for determinism. go-openai drops a zero float
		// (omitempty), so send the smallest positive float32 (1e-45): in
		// effect greedy decoding, and accepted where a range is checked.
		Temperature: math.SmallestNonzeroFloat32,
	}
	if openai.NewReasoningValidator().Validate(req) != nil {
		// Reasoning models (o1, o3, gpt-5, ...) reject any temperature but
		// their fixed default: leave it out.
		req.Temperature = 0
	}
	return req, truncated, utf8.RuneCountInString(data)
}

// truncateChars cuts s to limit characters and appends a visible note;
// a negative limit means none.
func truncateChars(s string, limit int) (string, bool) {
	if limit < 0 {
		return s, false
	}
	total := utf8.RuneCountInString(s)
	if total <= limit {
		return s, false
	}
	kept := 0
	for i := range s {
		if kept == limit {
			s = s[:i]
			break
		}
		kept++
	}
	return s + truncationNote(total-limit, total), true
}

func truncationNote(omitted, total int) string {
	return fmt.Sprintf("\n\n[... truncated: %d of %d characters omitted]", omitted, total)
}

// classify turns a go-openai error into a baton error. parent is the task's
// context, callCtx the per-call one; header is the response's (nil when no
// response arrived).
func (a *Analyzer) classify(parent, callCtx context.Context, header http.Header, err error) error {
	endpoint := redactURL(a.cfg.BaseURL)
	var (
		apiErr *openai.APIError
		reqErr *openai.RequestError
		e      *LLMError
	)
	switch {
	case errors.As(err, &apiErr):
		msg := apiErr.Message
		if msg == "" {
			msg = apiErr.Type
		}
		e = &LLMError{StatusCode: apiErr.HTTPStatusCode, Message: a.redact(msg), Endpoint: endpoint}
		if apiErr.HTTPStatusCode == http.StatusTooManyRequests && (apiErr.Type == "insufficient_quota" || apiErr.Code == "insufficient_quota") {
			// Out of credit: retrying cannot help.
			return baton.Permanent(e)
		}
	case errors.As(err, &reqErr):
		msg := strings.Join(strings.Fields(string(reqErr.Body)), " ")
		if msg == "" {
			msg = reqErr.HTTPStatus
		}
		e = &LLMError{StatusCode: reqErr.HTTPStatusCode, Message: clipRunes(a.redact(msg), 500), Endpoint: endpoint}
	}
	if e != nil {
		if !retryableStatus(e.StatusCode) {
			return baton.Permanent(e)
		}
		if d, ok := retryAfter(header, time.Now()); ok {
			if e.StatusCode == http.StatusTooManyRequests {
				return baton.RateLimited(d, e) // pauses the task's rate limits for every analyze
			}
			return baton.RetryAfter(d, e)
		}
		return e
	}

	// No HTTP error status: the request never got an answer.
	switch {
	case parent.Err() != nil:
		return fmt.Errorf("llm: call to %s abandoned: %w", endpoint, parent.Err())
	case errors.Is(callCtx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("llm: %s did not answer within %s (raise the LLM timeout for slow local models): %w",
			endpoint, a.cfg.Timeout, context.DeadlineExceeded)
	case errors.Is(err, openai.ErrChatCompletionInvalidModel), errors.Is(err, openai.ErrChatCompletionStreamNotSupported):
		return baton.Permanent(fmt.Errorf("llm: model %q: %s", a.cfg.Model, a.redact(err.Error())))
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return fmt.Errorf("llm: POST %s/chat/completions: %s", endpoint, a.redact(uerr.Err.Error()))
	}
	return fmt.Errorf("llm: %s: %s", endpoint, a.redact(err.Error()))
}

// retryableStatus: timeouts, conflicts, rate limits and server errors.
func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return code >= 500 || code == 0
}

// retryAfter is how long the provider asked to wait (retryAfterHeader;
// go-openai keeps the response headers on the returned response value even
// when the call fails), capped at maxRetryAfter.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	d, ok := retryAfterHeader(h, now)
	return min(d, maxRetryAfter), ok
}

// redact removes the API key from s.
func (a *Analyzer) redact(s string) string {
	if a.cfg.APIKey == "" {
		return s
	}
	return strings.ReplaceAll(s, a.cfg.APIKey, "[REDACTED]")
}

// redactURL hides user:password in a URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

func noSourcesError(failed []SourceError) error {
	if len(failed) == 0 {
		return errors.New("analyze: no sources to analyze")
	}
	var b strings.Builder
	for i, f := range failed {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(failed)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s", f.URL, f.Error)
	}
	return fmt.Errorf("analyze: no sources to analyze: all %d failed (%s)", len(failed), b.String())
}

// sourceDoc is one parsed entry of AnalyzeArgs.Sources.
type sourceDoc struct {
	URL         string
	ContentType string
	Status      int
	Size        int64           // bytes, as reported upstream or measured
	JSON        json.RawMessage // body when JSON (nil otherwise)
	Text        string          // body when not JSON
}

// parseSource reads a fetch result, or treats any other value as a body.
func parseSource(raw json.RawMessage) sourceDoc {
	trimmed := bytes.TrimSpace(raw)
	if !json.Valid(trimmed) {
		return sourceDoc{Text: strings.ToValidUTF8(string(raw), "\uFFFD"), Size: int64(len(raw))}
	}
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var f struct {
			URL         string          `json:"url"`
			Status      int             `json:"status"`
			StatusCode  int             `json:"status_code"`
			ContentType string          `json:"content_type"`
			Bytes       *int64          `json:"bytes"`
			JSON        json.RawMessage `json:"json"`
			Text        *string         `json:"text"`
		}
		if json.Unmarshal(trimmed, &f) == nil && (f.URL != "" || f.JSON != nil || f.Text != nil) {
			s := sourceDoc{URL: f.URL, ContentType: f.ContentType, Status: f.Status}
			if s.Status == 0 {
				s.Status = f.StatusCode
			}
			if j := bytes.TrimSpace(f.JSON); len(j) > 0 && !bytes.Equal(j, []byte("null")) {
				s.JSON = j
			} else if f.Text != nil {
				s.Text = *f.Text
			}
			switch {
			case f.Bytes != nil:
				s.Size = *f.Bytes
			case s.JSON != nil:
				s.Size = int64(len(s.JSON))
			default:
				s.Size = int64(len(s.Text))
			}
			return s
		}
	}
	return sourceDoc{JSON: trimmed, Size: int64(len(trimmed))}
}

// renderSources is the user message: each source's URL, content type and
// body, then the failed sources.
func renderSources(args AnalyzeArgs) string {
	var b strings.Builder
	n := len(args.Sources)
	for i, raw := range args.Sources {
		s := parseSource(raw)
		if i > 0 {
			b.WriteString("\n\n")
		}
		fmt.Fprintf(&b, "## Source %d of %d", i+1, n)
		if s.URL != "" {
			b.WriteString(": " + singleLine(s.URL))
		}
		b.WriteByte('\n')
		if s.ContentType != "" {
			b.WriteString("Content-Type: " + singleLine(s.ContentType) + "\n")
		}
		if s.Status != 0 {
			fmt.Fprintf(&b, "HTTP status: %d\n", s.Status)
		}
		fmt.Fprintf(&b, "Size: %d bytes\n\n", s.Size)
		if s.JSON != nil {
			var c bytes.Buffer
			if json.Compact(&c, s.JSON) == nil {
				b.Write(c.Bytes())
			} else {
				b.Write(s.JSON)
			}
		} else {
			b.WriteString(strings.ToValidUTF8(s.Text, "\uFFFD"))
		}
	}
	if len(args.Failed) > 0 {
		fmt.Fprintf(&b, "\n\n## Failed sources (%d, not included)\n", len(args.Failed))
		for _, f := range args.Failed {
			fmt.Fprintf(&b, "- %s: %s\n", singleLine(f.URL), singleLine(f.Error))
		}
	}
	return b.String()
}

// singleLine collapses whitespace so a value cannot break the layout.
func singleLine(s string) string {
	return strings.Join(strings.Fields(strings.ToValidUTF8(s, "\uFFFD")), " ")
}

// clipRunes shortens s to at most n characters, marking the cut.
func clipRunes(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j] + "…"
		}
		i++
	}
	return s
}

// shortLine is s on one line, at most n characters, without first
// collapsing a multi-megabyte body.
func shortLine(s string, n int) string {
	return clipRunes(singleLine(clipRunes(s, 4*n)), n)
}
