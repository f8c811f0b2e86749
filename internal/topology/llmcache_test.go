//go:build topology

package topology_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/tasks"
)

// openAIServer is an OpenAI-compatible chat-completion endpoint on loopback
// that counts the calls it answers.
type openAIServer struct {
	srv   *httptest.Server
	calls atomic.Int32
}

func newOpenAIServer(t *testing.T) *openAIServer {
	s := &openAIServer{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		n := s.calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": fmt.Sprintf("chatcmpl-%d", n), "object": "chat.completion", "model": "test-model",
			"choices": []map[string]any{{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": fmt.Sprintf("answer %d", n)}}},
			"usage": map[string]any{"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
		})
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// TestLLMCache: the analyze task, run twice on the same input by a worker,
// calls the model once; the second run is served from the response cache
// in Redis, which another worker's analyzer reads too.
func TestLLMCache(t *testing.T) {
	eachTopology(t, func(t *testing.T, e *env) {
		ctx := ctxTimeout(t, waitLimit)
		llm := newOpenAIServer(t)
		cfg := tasks.LLMConfig{BaseURL: llm.srv.URL + "/v1", APIKey: "sk-test", Model: "test-model", Logger: e.log}
		e.worker(t, nil, tasks.AnalyzeTask(tasks.NewAnalyzer(cfg, e.newRedis(t))))

		args := tasks.AnalyzeArgs{Sources: []json.RawMessage{json.RawMessage(`"cache test data on ` + e.topology + `"`)}}
		run := func() tasks.AnalyzeResult {
			h, err := tasks.AnalyzeDecl.Enqueue(ctx, e.client, args, &baton.EnqueueOpts{Queue: e.queue})
			require.NoError(t, err)
			res, err := h.Get(ctx)
			require.NoError(t, err)
			return res
		}
		first := run()
		require.False(t, first.Cached)
		require.Equal(t, "answer 1", first.Text)
		second := run()
		require.True(t, second.Cached, "the second run is served from the cache")
		require.Equal(t, first.Text, second.Text)
		require.EqualValues(t, 1, llm.calls.Load())

		other, err := tasks.NewAnalyzer(cfg, e.newRedis(t)).Analyze(ctx, args)
		require.NoError(t, err)
		require.True(t, other.Cached, "another process's analyzer reads the same entry")
		require.EqualValues(t, 1, llm.calls.Load())
	})
}
