package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/chain"
	"github.com/batonhq/baton/internal/defaults"
)

// Kinds, queues and defaults of the research tasks.
const (
	FetchKind   = "fetch"
	AnalyzeKind = "analyze"
	// FetchQueue and AnalyzeQueue keep LLM calls on their own queue, so a
	// worker can cap LLM concurrency separately (--queues default=6,llm=1).
	FetchQueue   = defaults.Queue
	AnalyzeQueue = defaults.LLMQueue
	// FetchMaxRetries and AnalyzeMaxRetries are the registered defaults.
	FetchMaxRetries   = 3
	AnalyzeMaxRetries = 3
	// FetchRetryDelayDefault is the first backoff delay of fetch retries
	// (BATON_FETCH_RETRY_DELAY).
	FetchRetryDelayDefault = defaults.FetchRetryDelay
)

func fetchOptions(retryDelay time.Duration, timeout time.Duration) *baton.TaskOptions {
	if retryDelay <= 0 {
		retryDelay = FetchRetryDelayDefault
	}
	if timeout <= 0 {
		timeout = FetchTimeoutDefault
	}
	return &baton.TaskOptions{
		Queue:      FetchQueue,
		MaxRetries: FetchMaxRetries,
		RetryDelay: baton.Backoff(retryDelay, max(retryDelay*16, time.Minute)),
		// One attempt is bounded by the HTTP timeout; this is the backstop.
		Timeout: timeout + 10*time.Second,
	}
}

func analyzeOptions(llmTimeout time.Duration) *baton.TaskOptions {
	if llmTimeout <= 0 {
		llmTimeout = DefaultLLMTimeout
	}
	return &baton.TaskOptions{
		Queue:      AnalyzeQueue,
		MaxRetries: AnalyzeMaxRetries,
		RetryDelay: baton.Backoff(2*time.Second, 5*time.Minute),
		Timeout:    llmTimeout + 30*time.Second,
	}
}

// FetchTask is the fetch task backed by f. retryDelay is the first backoff
// delay (BATON_FETCH_RETRY_DELAY).
func FetchTask(f *Fetcher, retryDelay time.Duration) *baton.Task[FetchArgs, FetchResult] {
	opts := fetchOptions(retryDelay, f.cfg.Timeout)
	if f.cfg.PerHost.Rate > 0 {
		opts.RateLimits = append(opts.RateLimits, perHost(f.cfg.PerHost))
	}
	return baton.NewTask(FetchKind, f.Fetch, opts)
}

// AnalyzeTask is the analyze task backed by a. Sources that reach it as
// failures (from fetches marked continue_on_failure) are listed as failed
// instead of analysed.
func AnalyzeTask(a *Analyzer) *baton.Task[AnalyzeArgs, AnalyzeResult] {
	opts := analyzeOptions(a.cfg.Timeout)
	if a.cfg.TokensPerMinute > 0 && a.Online() {
		opts.RateLimits = append(opts.RateLimits, a.tokenBudget())
	}
	return baton.NewTask(AnalyzeKind, func(ctx context.Context, args AnalyzeArgs) (AnalyzeResult, error) {
		return a.Analyze(ctx, SplitFailed(args))
	}, opts)
}

// Declarations for producers that enqueue research work without running it.
var (
	FetchDecl   = baton.NewTask[FetchArgs, FetchResult](FetchKind, nil, fetchOptions(0, 0))
	AnalyzeDecl = baton.NewTask[AnalyzeArgs, AnalyzeResult](AnalyzeKind, nil, analyzeOptions(0))
)

// SplitFailed moves sources that are chain.Failed values into Failed.
func SplitFailed(args AnalyzeArgs) AnalyzeArgs {
	var ok []json.RawMessage
	for _, s := range args.Sources {
		var f chain.Failed
		if json.Unmarshal(s, &f) == nil && f.Failed {
			var fa FetchArgs
			_ = json.Unmarshal(f.Args, &fa)
			url := fa.URL
			if url == "" {
				url = f.ID
			}
			args.Failed = append(args.Failed, SourceError{URL: url, Error: f.Error})
			continue
		}
		ok = append(ok, s)
	}
	args.Sources = ok
	return args
}

// ResearchOptions shape the research workflow.
type ResearchOptions struct {
	// Prompt overrides the analyze system prompt.
	Prompt string
	// AllowPartial analyses the sources that were fetched and lists the ones
	// that failed, instead of failing the whole run on the first failed
	// source.
	AllowPartial bool
	// Fetch and Analyze override per-call options.
	Fetch, Analyze *baton.EnqueueOpts
}

// Research is the reference pipeline: chord(fetch(url) for each url,
// analyze). The analyze step receives the ordered fetch results in its
// "sources" field.
func Research(urls []string, o ResearchOptions) (baton.Canvas, error) {
	if len(urls) == 0 {
		return nil, fmt.Errorf("research: no URLs given")
	}
	hdr := make([]baton.Canvas, len(urls))
	for i, u := range urls {
		if _, err := parseFetchURL(u); err != nil {
			return nil, fmt.Errorf("research: source %d: %w", i+1, err)
		}
		s := FetchDecl.S(FetchArgs{URL: u}, o.Fetch)
		s.ContinueOnFailure = o.AllowPartial
		hdr[i] = s
	}
	body := AnalyzeDecl.S(AnalyzeArgs{Prompt: o.Prompt}, o.Analyze)
	body.ResultField = "sources"
	return baton.Chord(baton.Group(hdr...), body), nil
}
