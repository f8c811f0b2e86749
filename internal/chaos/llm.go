package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sashabaranov/go-openai"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/tasks"
)

// llmServer is an OpenAI-compatible chat-completions server on loopback.
// For every request it checks whether the analyze cache already held the
// response for this exact input: a call then would be paid twice.
type llmServer struct {
	srv *httptest.Server
	rdb *redis.Client

	mu          sync.Mutex
	calls       int
	perInput    map[string]int
	afterCached int
}

func newLLMServer(rdb *redis.Client) *llmServer {
	l := &llmServer{rdb: rdb, perInput: map[string]int{}}
	l.srv = httptest.NewServer(http.HandlerFunc(l.serve))
	return l
}

// BaseURL is what analyzers are configured with.
func (l *llmServer) BaseURL() string { return l.srv.URL + "/v1" }

func (l *llmServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req openai.ChatCompletionRequest
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	key := tasks.CacheKey(l.BaseURL(), req.Model, req)
	cached, _ := l.rdb.Exists(r.Context(), key).Result()
	l.mu.Lock()
	l.calls++
	l.perInput[key]++
	if cached == 1 {
		l.afterCached++
	}
	l.mu.Unlock()
	time.Sleep(20 * time.Millisecond) // a kill can land while the call is out
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"id":"chaos","object":"chat.completion","model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"analysis of %d bytes"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13}}`, req.Model, len(body))
}

func (l *llmServer) stats() (calls, inputs, repeated, afterCached int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.perInput {
		if n > 1 {
			repeated++
		}
	}
	return l.calls, len(l.perInput), repeated, l.afterCached
}

// analyzeDef routes the research-style chord bodies to the default queue,
// which the chaos workers serve.
var analyzeDef = tasks.AnalyzeDecl

func analyzeBody() *baton.Signature {
	s := analyzeDef.S(tasks.AnalyzeArgs{}, &baton.EnqueueOpts{Queue: baton.QueueDefault})
	s.ResultField = "sources"
	return s
}
