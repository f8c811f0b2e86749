package tasks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	openai "github.com/sashabaranov/go-openai"
)

// LLMCacheKeyPrefix starts every key of the LLM response cache. A key is
// LLMCacheKeyPrefix + "{" + hex sha256 + "}"; the braces are a Cluster hash tag.
const LLMCacheKeyPrefix = "baton:llm:"

// cacheWriteTimeout bounds storing a response that has already been paid for,
// even when the task's context ends right after the call.
const cacheWriteTimeout = 5 * time.Second

// CacheKey is the Redis key of the cached response to req sent to baseURL
// for model. The hash covers the endpoint (trailing slash ignored), the model
// and the whole request body (messages and every parameter), never the API
// key. Equal inputs give equal keys across processes: encoding/json writes
// struct fields in declaration order and map keys sorted.
func CacheKey(baseURL, model string, req openai.ChatCompletionRequest) string {
	body, err := json.Marshal(struct {
		Version int                          `json:"v"`
		BaseURL string                       `json:"base_url"`
		Model   string                       `json:"model"`
		Request openai.ChatCompletionRequest `json:"request"`
	}{1, strings.TrimRight(baseURL, "/"), model, req})
	if err != nil {
		// Only unmarshalable custom fields (json.Marshaler schemas, tools)
		// get here; the analyzer never sets them. Hash what we can.
		body = []byte(baseURL + "\x00" + model + "\x00" + err.Error())
	}
	sum := sha256.Sum256(body)
	return LLMCacheKeyPrefix + "{" + hex.EncodeToString(sum[:]) + "}"
}

// cacheGet returns the cached result for key. A Redis failure or an
// unreadable entry is logged and treated as a miss: the cache saves money,
// it is not needed for correctness.
func (a *Analyzer) cacheGet(ctx context.Context, key string) (AnalyzeResult, bool) {
	if a.rdb == nil {
		return AnalyzeResult{}, false
	}
	raw, err := a.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return AnalyzeResult{}, false
	}
	if err != nil {
		a.log.WarnContext(ctx, "llm cache read failed; calling the model", "key", key, "err", err.Error())
		return AnalyzeResult{}, false
	}
	var res AnalyzeResult
	if err := json.Unmarshal(raw, &res); err != nil {
		a.log.WarnContext(ctx, "llm cache entry unreadable; calling the model", "key", key, "err", err.Error())
		return AnalyzeResult{}, false
	}
	res.Cached = true
	return res, true
}

// cacheSet stores res under key with the configured TTL (SET ... EX). It runs
// even if ctx was just cancelled, so a paid-for answer is not lost; a failure
// is logged, not returned, because retrying the task would pay again.
func (a *Analyzer) cacheSet(ctx context.Context, key string, res AnalyzeResult) {
	if a.rdb == nil {
		return
	}
	res.Cached = false
	body, err := json.Marshal(res)
	if err != nil {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheWriteTimeout)
	defer cancel()
	ttl := a.cfg.CacheTTL.Truncate(time.Second)
	if ttl < time.Second {
		ttl = time.Second
	}
	if err := a.rdb.Set(wctx, key, body, ttl).Err(); err != nil {
		a.log.WarnContext(ctx, "llm cache write failed", "key", key, "err", err.Error())
	}
}
