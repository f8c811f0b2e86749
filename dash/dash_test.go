package dash_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/dash"
	"github.com/batonhq/baton/internal/redistest"
)

var stepRE = regexp.MustCompile(`<g class="step" data-task-id="([^"]+)" data-state="([^"]+)" data-kind="([^"]+)"`)

// steps parses the drawn steps of a workflow page: task id → state.
var callbackRE = regexp.MustCompile(`<g class="step callback" data-task-id="([^"]+)" data-state="([^"]+)"`)

func steps(t *testing.T, html string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range stepRE.FindAllStringSubmatch(html, -1) {
		out[m[1]] = m[2]
	}
	return out
}

func TestWorkflowPages(t *testing.T) {
	f := setup(t)
	f.block(3, 4)
	f.researchChord(t, "research1", 1, 2, 3, 4)
	f.waitState(t, "research1.1", baton.Success)
	f.waitState(t, "research1.2", baton.Success)
	f.waitState(t, "research1.3", baton.Started)
	f.waitState(t, "research1.4", baton.Started)
	srv := f.serve(t, dash.Options{})

	t.Run("root redirects", func(t *testing.T) {
		resp, _ := get(t, srv.URL+"/")
		require.Equal(t, http.StatusFound, resp.StatusCode)
		require.Equal(t, "/workflows", resp.Header.Get("Location"))
	})
	t.Run("list", func(t *testing.T) {
		resp, body := get(t, srv.URL+"/workflows")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Contains(t, body, `data-workflow-id="research1" data-state="STARTED"`)
		require.Contains(t, body, "chord")
		require.Contains(t, body, "2/5")
		_, js := get(t, srv.URL+"/workflows.json")
		var l struct {
			Workflows []struct {
				ID, Kind, State string
				Done, Total     int
			}
			Total int
		}
		require.NoError(t, json.Unmarshal([]byte(js), &l))
		require.Equal(t, 1, l.Total)
		require.Equal(t, "research1", l.Workflows[0].ID)
		require.Equal(t, 5, l.Workflows[0].Total)
		require.Equal(t, 2, l.Workflows[0].Done)
	})
	t.Run("graph", func(t *testing.T) {
		resp, body := get(t, srv.URL+"/workflows/research1")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, map[string]string{
			"research1.1": "SUCCESS", "research1.2": "SUCCESS",
			"research1.3": "STARTED", "research1.4": "STARTED",
			"research1.5": "PENDING",
		}, steps(t, body))
		require.Equal(t, 4, strings.Count(body, `class="edge"`), "fan-in: one edge per header task")
		require.Contains(t, body, `id="cancel"`)
		require.Contains(t, body, "header task 3 of 4 of a chord")
		require.NotContains(t, body, "https://", "no external assets")
	})
	t.Run("json", func(t *testing.T) {
		_, js := get(t, srv.URL+"/workflows/research1.json")
		var d struct {
			State string
			Steps []struct{ ID, Kind, State string }
		}
		require.NoError(t, json.Unmarshal([]byte(js), &d))
		require.Equal(t, "STARTED", d.State)
		require.Len(t, d.Steps, 5)
		require.Equal(t, "analyze", d.Steps[4].Kind)
	})
	t.Run("unknown", func(t *testing.T) {
		resp, body := get(t, srv.URL+"/workflows/nope")
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
		require.Contains(t, body, "nope")
		resp, _ = get(t, srv.URL+"/workflows/nope.json")
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
	})
	t.Run("finished", func(t *testing.T) {
		f.release(3, 4)
		f.waitState(t, "research1", baton.Success)
		_, body := get(t, srv.URL+"/workflows/research1")
		for id, st := range steps(t, body) {
			require.Equal(t, "SUCCESS", st, id)
		}
		require.NotContains(t, body, `id="cancel"`)
		require.Contains(t, body, "total 100")
	})
}

func TestFailedWorkflowShowsError(t *testing.T) {
	f := setup(t)
	_, err := f.client.Submit(context.Background(), baton.Chain(
		&baton.Signature{Kind: "fetch", Args: []byte("1")},
		&baton.Signature{Kind: "boom"},
		&baton.Signature{Kind: "analyze"}), &baton.SubmitOpts{ID: "broken"})
	require.NoError(t, err)
	f.waitState(t, "broken", baton.Failure)
	srv := f.serve(t, dash.Options{})
	_, body := get(t, srv.URL+"/workflows/broken")
	require.Equal(t, map[string]string{"broken.1": "SUCCESS", "broken.2": "FAILURE", "broken.3": "FAILURE"}, steps(t, body))
	require.Contains(t, body, "upstream said 404 for source 10")
	require.Equal(t, 2, strings.Count(body, `class="edge"`))
}

func TestCancel(t *testing.T) {
	f := setup(t)
	f.block(7)
	f.researchChord(t, "tocancel", 7, 8)
	f.waitState(t, "tocancel.1", baton.Started)

	t.Run("read-only", func(t *testing.T) {
		ro := f.serve(t, dash.Options{ReadOnly: true})
		_, body := get(t, ro.URL+"/workflows/tocancel")
		require.NotContains(t, body, `id="cancel"`)
		resp, _ := do(t, http.MethodPost, ro.URL+"/workflows/tocancel/cancel", nil)
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		// asynqmon refuses writes too.
		resp, _ = do(t, http.MethodPost, ro.URL+"/monitoring/api/queues/default:pause", nil)
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	})
	srv := f.serve(t, dash.Options{})
	t.Run("cross-site refused", func(t *testing.T) {
		resp, _ := do(t, http.MethodPost, srv.URL+"/workflows/tocancel/cancel", map[string]string{"Origin": "https://evil.example"})
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		r, err := f.client.Get(context.Background(), "tocancel")
		require.NoError(t, err)
		require.False(t, r.State.Terminal())
	})
	t.Run("cancel", func(t *testing.T) {
		resp, _ := do(t, http.MethodPost, srv.URL+"/workflows/tocancel/cancel", map[string]string{"Origin": srv.URL})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, "/workflows/tocancel?notice=cancelled", resp.Header.Get("Location"))
		f.waitState(t, "tocancel", baton.Revoked)
		_, body := get(t, srv.URL+"/workflows/tocancel?notice=cancelled")
		require.Contains(t, body, "Workflow cancelled.")
		require.Equal(t, "REVOKED", steps(t, body)["tocancel.3"])
	})
}

func TestBasicAuth(t *testing.T) {
	f := setup(t)
	srv := f.serve(t, dash.Options{BasicAuthUser: "ops", BasicAuthPass: "s3cret"})
	for _, p := range []string{"/workflows", "/monitoring/", "/metrics", "/workflows.json"} {
		resp, _ := get(t, srv.URL+p)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, p)
		require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Basic")
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/workflows", nil)
	req.SetBasicAuth("ops", "wrong")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	req.SetBasicAuth("ops", "s3cret")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = get(t, srv.URL+"/healthz")
	require.Equal(t, http.StatusOK, resp.StatusCode, "liveness needs no credentials")
}

func TestMonitoringAndMetrics(t *testing.T) {
	f := setup(t)
	f.block(5, 6)
	f.researchChord(t, "mon", 5, 6)
	f.waitState(t, "mon.1", baton.Started)
	f.waitState(t, "mon.2", baton.Started)
	_, err := f.client.EnqueueKind(context.Background(), "fetch", 1, &baton.EnqueueOpts{Queue: "llm", Countdown: time.Hour})
	require.NoError(t, err)
	srv := f.serve(t, dash.Options{})

	resp, _ := get(t, srv.URL+"/monitoring")
	require.Equal(t, http.StatusFound, resp.StatusCode)
	resp, body := get(t, srv.URL+"/monitoring/")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "<html")

	_, body = get(t, srv.URL+"/monitoring/api/queues")
	require.Contains(t, body, `"queue":"default"`)
	require.Contains(t, body, `"queue":"llm"`)

	_, body = get(t, srv.URL+"/monitoring/api/queues/default/active_tasks")
	var active struct {
		Tasks []struct{ ID, Payload string } `json:"tasks"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &active))
	require.Len(t, active.Tasks, 2)
	for _, tk := range active.Tasks {
		require.Contains(t, tk.Payload, `"kind": "fetch"`)
		require.Contains(t, tk.Payload, `"workflow": "mon"`)
		require.Contains(t, tk.Payload, "of 2 of a chord")
	}

	resp, body = get(t, srv.URL+"/metrics")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `baton_queue_tasks{queue="default",state="active"} 2`)
	require.Contains(t, body, `baton_queue_tasks{queue="llm",state="scheduled"} 1`)
	require.Contains(t, body, "go_goroutines", "baton's own registry is served too")
}

func TestHealthz(t *testing.T) {
	f := setup(t)
	srv := f.serve(t, dash.Options{})
	resp, body := get(t, srv.URL+"/healthz")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "ok\n", body)

	// A Redis that is gone: the probe fails with 503.
	dead := redistest.MustStart(t, redistest.Options{})
	rdb := redis.NewClient(&redis.Options{Addr: dead.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	dead.Kill()
	h := dash.New(rdb, c, dash.Options{Logger: quiet()})
	rec := newRecorder()
	h.ServeHTTP(rec, mustReq(t, "/healthz"))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Contains(t, rec.Body.String(), "redis unreachable")
}

func TestPagination(t *testing.T) {
	f := setup(t)
	for i := range 7 {
		_, err := f.client.Submit(context.Background(), baton.Chain(&baton.Signature{Kind: "fetch", Args: []byte("1")}),
			&baton.SubmitOpts{ID: fmt.Sprintf("wf%d", i)})
		require.NoError(t, err)
		time.Sleep(2 * time.Millisecond) // distinct creation times order the index
	}
	srv := f.serve(t, dash.Options{PageSize: 3})
	_, p1 := get(t, srv.URL+"/workflows")
	_, p3 := get(t, srv.URL+"/workflows?page=3")
	require.Contains(t, p1, `data-workflow-id="wf6"`)
	require.Contains(t, p1, `data-workflow-id="wf4"`)
	require.NotContains(t, p1, `data-workflow-id="wf3"`)
	require.Contains(t, p1, "page 1 of 3")
	require.Contains(t, p3, `data-workflow-id="wf0"`)
	require.Less(t, strings.Index(p1, "wf6"), strings.Index(p1, "wf5"), "newest first")
}

// TestCallbacksShown: a canvas's link and on_error callbacks are drawn
// below it, tied to their nodes, and listed with their states.
func TestCallbacksShown(t *testing.T) {
	f := setup(t)
	link := &baton.Signature{Kind: "analyze"}
	cv := baton.Chain(
		baton.Chord(baton.Group(&baton.Signature{Kind: "fetch", Args: []byte("1")}, &baton.Signature{Kind: "fetch", Args: []byte("2")}), link),
		(&baton.Signature{Kind: "fetch", Args: []byte("3"), Immutable: true}).WithLink(&baton.Signature{Kind: "fetch"}),
	).WithOnError(&baton.Signature{Kind: "fetch", Args: []byte("4"), Immutable: true})
	_, err := f.client.Submit(context.Background(), cv, &baton.SubmitOpts{ID: "withcb"})
	require.NoError(t, err)
	f.waitState(t, "withcb", baton.Success)
	f.waitState(t, "withcb.4.link", baton.Success)
	srv := f.serve(t, dash.Options{})
	_, body := get(t, srv.URL+"/workflows/withcb")
	got := map[string]string{}
	for _, m := range callbackRE.FindAllStringSubmatch(body, -1) {
		got[m[1]] = m[2]
	}
	require.Len(t, got, 2)
	require.Equal(t, "SUCCESS", got["withcb.4.link"], "the step's link ran")
	require.Equal(t, "PENDING", got["withcb.n0.err"], "the chain's on_error never runs")
	require.Contains(t, body, `data-event="link"`)
	require.Contains(t, body, `data-event="on_error"`)
	require.Equal(t, 2, strings.Count(body, `class="edge cbedge"`), "each callback is tied to its node")
	require.Contains(t, body, "on_error of the whole chain")
	require.Contains(t, body, "link of step 2 of 2 of a chain")

	_, js := get(t, srv.URL+"/workflows/withcb.json")
	require.Contains(t, js, `"callbacks"`)
}
