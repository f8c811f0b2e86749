package tasks

import (
	"context"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/batonhq/baton"
)

// Flow control of the research tasks: a per-host politeness limit for fetch
// (BATON_FETCH_PER_HOST) and a token budget per model for analyze
// (BATON_LLM_TOKENS_PER_MINUTE). Both are fleet-wide rate limits enforced
// by baton's workers through Redis.

const (
	// FetchHostLimit names the per-host rate limit of fetch.
	FetchHostLimit = "fetch.host"
	// TokenLimit names the token budget of analyze.
	TokenLimit = "analyze.tokens"
	// CompletionTokensEstimate is the completion part of a call's token
	// estimate: the request sets no max_tokens, so the estimate assumes
	// this many; the usage the provider reports corrects it after the call.
	CompletionTokensEstimate = 1000
	// messageTokens is the framing overhead per chat message (role,
	// separators), in tokens.
	messageTokens = 4
)

// perHost is the per-host limit from FetchConfig.PerHost: keyed by the URL's
// host name (lower case, without port), so two hosts proceed independently.
func perHost(l baton.RateLimit) baton.RateLimit {
	l.Name = FetchHostLimit
	l.Key = baton.KeyBy(fetchHost)
	return l
}

func fetchHost(a FetchArgs) string {
	u, err := url.Parse(strings.TrimSpace(a.URL))
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Hostname())
}

// tokenBudget is the analyze task's token budget per model: TokensPerMinute
// per minute, of which a minute's worth may be used at once (the burst), as
// providers count it. Each call is charged EstimateTokens before it starts
// and corrected to the reported usage after it.
func (a *Analyzer) tokenBudget() baton.RateLimit {
	return baton.RateLimit{
		Name:  TokenLimit,
		Rate:  a.cfg.TokensPerMinute,
		Per:   time.Minute,
		Burst: a.cfg.TokensPerMinute,
		Key:   baton.KeyBy(func(AnalyzeArgs) string { return a.cfg.Model }),
		Cost:  baton.CostBy(func(args AnalyzeArgs) int { return a.EstimateTokens(SplitFailed(args)) }),
	}
}

// EstimateTokens is what a call for args is charged against the token
// budget before it is made: the characters of the messages sent divided by
// 4 (about one token per 4 characters of English text), rounded up, plus
// 4 tokens of framing per message, plus CompletionTokensEstimate for the
// answer.
func (a *Analyzer) EstimateTokens(args AnalyzeArgs) int {
	req, _, _ := a.request(args)
	n := 0
	for _, m := range req.Messages {
		n += (utf8.RuneCountInString(m.Content)+3)/4 + messageTokens
	}
	return n + CompletionTokensEstimate
}

// setCost corrects the call's charge under the token budget (a no-op
// without one).
func (a *Analyzer) setCost(ctx context.Context, tokens int) {
	if a.cfg.TokensPerMinute <= 0 {
		return
	}
	if err := baton.SetCost(ctx, TokenLimit, tokens); err != nil {
		a.log.WarnContext(ctx, "could not correct the token budget with the reported usage", "err", err)
	}
}
