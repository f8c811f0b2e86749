package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/batonhq/baton/internal/otlptest"
	"github.com/batonhq/baton/internal/redistest"
)

// TestResearchTraceAcrossProcesses is the proof that a workflow is one
// trace: three real processes send spans to an OTLP/HTTP receiver (the
// official protobuf, decoded): `baton research --wait` submits
// chord(fetch × 4, analyze), a `baton worker` on the default queue runs the
// fetches (from a local HTTP server, one of them failing once) and another
// on the llm queue the analysis (through go-openai against an
// OpenAI-compatible test server). Tracing is on only because
// OTEL_EXPORTER_OTLP_ENDPOINT is set. Every span is in the submit span's
// trace: the fetch attempts are its children, the analysis is the child of
// the fetch that completed the chord, each with its task's attributes.
func TestResearchTraceAcrossProcesses(t *testing.T) {
	b := setup(t)
	bin := buildBaton(t)
	recv := otlptest.Start(t)

	var flakyHits atomic.Int32
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/flaky.json" && flakyHits.Add(1) == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"title":%q}`, r.URL.Path)
	}))
	t.Cleanup(src.Close)
	var llmCalls atomic.Int32
	llm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		llmCalls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","model":"trace-model","choices":[{"index":0,"message":{"role":"assistant","content":"traced analysis"},"finish_reason":"stop"}],"usage":{"prompt_tokens":40,"completion_tokens":5,"total_tokens":45}}`)
	}))
	t.Cleanup(llm.Close)

	env := append(os.Environ(), "REDIS_URL="+b.url, "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.URL, "OTEL_BSP_SCHEDULE_DELAY=100",
		"OPENAI_BASE_URL="+llm.URL+"/v1", "OPENAI_API_KEY=sk-test", "BATON_FETCH_ALLOW_PRIVATE=true",
		"BATON_FETCH_RETRY_DELAY=50ms", "OTEL_SERVICE_NAME=", "OTEL_TRACES_EXPORTER=", "OTEL_SDK_DISABLED=")
	start := func(args ...string) (*exec.Cmd, *syncBuffer) {
		var log syncBuffer
		cmd := exec.Command(bin, args...)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, &log, &log
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		})
		return cmd, &log
	}
	fetcher, fetcherLog := start("worker", "--queues", "default", "--poll-interval", "50ms")
	analyzer, analyzerLog := start("worker", "--queues", "llm", "--poll-interval", "50ms")

	const wfID = "traced-research"
	urls := []string{src.URL + "/a.json", src.URL + "/b.json", src.URL + "/flaky.json", src.URL + "/c.json"}
	research := exec.Command(bin, append([]string{"research", "--wait", "--id", wfID}, urls...)...)
	research.Env = env
	out, err := research.CombinedOutput()
	require.NoError(t, err, "baton research:\n%s\nfetch worker:\n%s\nllm worker:\n%s", out, fetcherLog, analyzerLog)
	require.Contains(t, string(out), "traced analysis")
	require.EqualValues(t, 1, llmCalls.Load())
	require.EqualValues(t, 2, flakyHits.Load(), "the flaky source failed once, then served")

	// The workers flush their spans when they stop.
	for _, c := range []*exec.Cmd{fetcher, analyzer} {
		require.NoError(t, c.Process.Signal(syscall.SIGTERM))
	}
	require.NoError(t, fetcher.Wait(), "fetch worker:\n%s", fetcherLog)
	require.NoError(t, analyzer.Wait(), "llm worker:\n%s", analyzerLog)
	require.Empty(t, recv.Errors())

	// 1 submit, 5 fetch attempts (the flaky one twice), 1 analyze.
	redistest.WaitFor(t, 5*time.Second, "seven spans at the receiver", func() bool { return len(recv.Spans()) >= 7 })
	spans := recv.Spans()
	require.Len(t, spans, 7, "%+v", spans)
	byName := map[string][]otlptest.Span{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
	}
	require.Len(t, byName["submit chord"], 1)
	require.Len(t, byName["run fetch"], 5)
	require.Len(t, byName["run analyze"], 1)

	sub := byName["submit chord"][0]
	require.Empty(t, sub.ParentID, "the submit span is the trace's root")
	require.Equal(t, tracepb.Span_SPAN_KIND_PRODUCER, sub.Kind)
	require.Equal(t, "baton-research", sub.Resource["service.name"])
	require.Equal(t, wfID, sub.Attrs["baton.workflow.id"])
	require.Equal(t, "5", sub.Attrs["baton.workflow.tasks"])
	for _, s := range spans {
		require.Equal(t, sub.TraceID, s.TraceID, "%s (%s) is in the workflow's trace", s.Name, s.Attrs["baton.task.id"])
	}

	// The fetches: children of the submit span, one process, their
	// attempts numbered, the flaky source's first attempt an error.
	fetchPID := ""
	attempts := map[string][]string{} // task id -> outcomes by attempt
	successes := map[string]string{}  // span id -> task id
	for _, s := range byName["run fetch"] {
		require.Equal(t, sub.SpanID, s.ParentID, "a fetch attempt is the submit span's child")
		require.Equal(t, tracepb.Span_SPAN_KIND_CONSUMER, s.Kind)
		require.Equal(t, "baton-worker", s.Resource["service.name"])
		require.Equal(t, "fetch", s.Attrs["baton.task.kind"])
		require.Equal(t, "default", s.Attrs["baton.task.queue"])
		require.Equal(t, wfID, s.Attrs["baton.workflow.id"])
		if fetchPID == "" {
			fetchPID = s.Resource["process.pid"]
		}
		require.Equal(t, fetchPID, s.Resource["process.pid"], "one fetch worker")
		id := s.Attrs["baton.task.id"]
		n, err := strconv.Atoi(s.Attrs["baton.task.attempt"])
		require.NoError(t, err)
		for len(attempts[id]) < n {
			attempts[id] = append(attempts[id], "")
		}
		attempts[id][n-1] = s.Attrs["baton.task.outcome"]
		switch s.Attrs["baton.task.outcome"] {
		case "success":
			successes[s.SpanID] = id
			require.Equal(t, tracepb.Status_STATUS_CODE_UNSET, s.StatusCode)
		case "retry":
			require.Equal(t, tracepb.Status_STATUS_CODE_ERROR, s.StatusCode)
			require.Contains(t, s.StatusMessage, "503")
			var evs []string
			for _, e := range s.Events {
				evs = append(evs, e.Name)
			}
			require.Contains(t, evs, "retry scheduled")
			require.Contains(t, evs, "exception", "the attempt's error is recorded")
		}
	}
	require.Equal(t, map[string][]string{
		wfID + ".1": {"success"}, wfID + ".2": {"success"}, wfID + ".3": {"retry", "success"}, wfID + ".4": {"success"},
	}, attempts)

	// The analysis: another process, the child of the fetch attempt that
	// completed the chord, with the LLM usage and the workflow's end.
	an := byName["run analyze"][0]
	require.Equal(t, "baton-worker", an.Resource["service.name"])
	require.NotEqual(t, fetchPID, an.Resource["process.pid"], "the analysis ran in the other worker process")
	require.Contains(t, successes, an.ParentID, "the analysis is the child of a successful fetch attempt")
	require.Equal(t, wfID+".5", an.Attrs["baton.task.id"])
	require.Equal(t, "analyze", an.Attrs["baton.task.kind"])
	require.Equal(t, "llm", an.Attrs["baton.task.queue"])
	require.Equal(t, wfID, an.Attrs["baton.workflow.id"])
	require.Equal(t, "1", an.Attrs["baton.task.attempt"])
	require.Equal(t, "success", an.Attrs["baton.task.outcome"])
	events := map[string]map[string]string{}
	for _, e := range an.Events {
		events[e.Name] = e.Attrs
	}
	require.Equal(t, "trace-model", events["llm usage"]["gen_ai.request.model"])
	require.Equal(t, "40", events["llm usage"]["gen_ai.usage.input_tokens"])
	require.Equal(t, "5", events["llm usage"]["gen_ai.usage.output_tokens"])
	require.Equal(t, "miss", events["llm usage"]["baton.llm.cache"])
	require.Equal(t, "success", events["workflow finished"]["baton.workflow.outcome"])
	require.Equal(t, "chord", events["workflow finished"]["baton.workflow.kind"])
}

// TestTracingBadEnvironment: an OTEL setting the exporter would silently
// misread is a usage error naming the variable, before anything is sent.
func TestTracingBadEnvironment(t *testing.T) {
	b := setup(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
	o := b.run(t, "enqueue", "echo", "--args", `{"x":1}`)
	require.Equal(t, exitUsage, o.code, o.stderr)
	require.Contains(t, o.stderr, `OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318": not an http:// or https:// URL`)
	n, err := b.rdb.DBSize(context.Background()).Result()
	require.NoError(t, err)
	require.Zero(t, n, "nothing enqueued")
}
