package dash_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/dash"
	"github.com/batonhq/baton/internal/redistest"
)

// The seeded asynq state the cross-origin tests act on: one task in every
// state of queue csrfQueue, a paused queue and an empty one.
const (
	csrfQueue  = "q"
	csrfGroup  = "g"
	pausedQ    = "paused"
	emptyQ     = "empty"
	pendingID  = "p1"
	schedID    = "s1"
	retryID    = "r1"
	archivedID = "a1"
	doneID     = "c1"
	groupID    = "g1"
	activeID   = "x1" // cancelling only publishes: no task needs to be active
)

// mutation is one non-GET route of asynqmon (or baton) with a request that
// succeeds on the seeded state.
type mutation struct {
	method, route string // route as asynqmon's router writes it
	path          string // the concrete path under the dashboard
	body          string
	changesData   bool // false for cancels, which only publish a message
}

func ids(id string) string { return fmt.Sprintf(`{"task_ids": [%q]}`, id) }

// asynqmonMutations lists every POST and DELETE route of asynqmon v0.7.2
// (handler.go), each with a request against the seeded state.
func asynqmonMutations() []mutation {
	api := dash.MonitoringPath + "/api/queues/"
	q := api + csrfQueue
	g := q + "/groups/" + csrfGroup
	m := []mutation{
		{"DELETE", "/queues/{qname}", api + emptyQ, "", true},
		{"POST", "/queues/{qname}:pause", q + ":pause", "", true},
		{"POST", "/queues/{qname}:resume", api + pausedQ + ":resume", "", true},

		{"POST", "/queues/{qname}/active_tasks/{task_id}:cancel", q + "/active_tasks/" + activeID + ":cancel", "", false},
		{"POST", "/queues/{qname}/active_tasks:cancel_all", q + "/active_tasks:cancel_all", "", false},
		{"POST", "/queues/{qname}/active_tasks:batch_cancel", q + "/active_tasks:batch_cancel", ids(activeID), false},
	}
	type state struct {
		name, base, id            string
		del, delAll, run, archive bool
	}
	for _, s := range []state{
		{name: "pending_tasks", base: q, id: pendingID, del: true, delAll: true, archive: true},
		{name: "scheduled_tasks", base: q, id: schedID, del: true, delAll: true, run: true, archive: true},
		{name: "retry_tasks", base: q, id: retryID, del: true, delAll: true, run: true, archive: true},
		{name: "archived_tasks", base: q, id: archivedID, del: true, delAll: true, run: true},
		{name: "completed_tasks", base: q, id: doneID, del: true, delAll: true},
		{name: "aggregating_tasks", base: g, id: groupID, del: true, delAll: true, run: true, archive: true},
	} {
		prefix := "/queues/{qname}/"
		if s.base == g {
			prefix = "/queues/{qname}/groups/{gname}/"
		}
		r, p := prefix+s.name, s.base+"/"+s.name
		if s.del {
			m = append(m,
				mutation{"DELETE", r + "/{task_id}", p + "/" + s.id, "", true},
				mutation{"POST", r + ":batch_delete", p + ":batch_delete", ids(s.id), true})
		}
		if s.delAll {
			m = append(m, mutation{"DELETE", r + ":delete_all", p + ":delete_all", "", true})
		}
		if s.run {
			m = append(m,
				mutation{"POST", r + "/{task_id}:run", p + "/" + s.id + ":run", "", true},
				mutation{"POST", r + ":run_all", p + ":run_all", "", true},
				mutation{"POST", r + ":batch_run", p + ":batch_run", ids(s.id), true})
		}
		if s.archive {
			m = append(m,
				mutation{"POST", r + "/{task_id}:archive", p + "/" + s.id + ":archive", "", true},
				mutation{"POST", r + ":archive_all", p + ":archive_all", "", true},
				mutation{"POST", r + ":batch_archive", p + ":batch_archive", ids(s.id), true})
		}
	}
	return m
}

// asynqmonSourceRoutes reads the non-GET routes from asynqmon's router in
// the module cache, so that a new mutating endpoint in an upgrade cannot
// slip past the table.
func asynqmonSourceRoutes(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/hibiken/asynqmon").Output()
	require.NoError(t, err, "locate asynqmon in the module cache")
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "handler.go"))
	require.NoError(t, err)
	re := regexp.MustCompile(`api\.HandleFunc\("([^"]+)",[^\n]*\.Methods\("([A-Z]+)"\)`)
	var routes []string
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		if m[2] != http.MethodGet {
			routes = append(routes, m[2]+" "+m[1])
		}
	}
	require.NotEmpty(t, routes)
	sort.Strings(routes)
	return routes
}

// csrfFixture is a real Redis holding the seeded asynq state (and no
// worker, so nothing else writes), the dashboard on it, and a dump of the
// seeded data to restore before every request.
type csrfFixture struct {
	rdb    *redis.Client
	srv    *httptest.Server
	seeded map[string]keyDump
}

type keyDump struct {
	value string
	ttl   time.Duration
}

func setupCrossOrigin(t *testing.T, opts dash.Options) *csrfFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs := redistest.MustStart(t, redistest.Options{})
	rdb := rs.Client(t, 0)
	seedAsynq(t, ctx, rdb)
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	srv := httptest.NewServer(dash.New(rdb, c, opts))
	t.Cleanup(srv.Close)
	return &csrfFixture{rdb: rdb, srv: srv, seeded: dumpAll(t, rdb)}
}

// seedAsynq puts a task in every asynq state: a real asynq server fails
// one task into the retry set and completes one (kept for an hour), then
// stops; the rest are placed through the client and the inspector.
func seedAsynq(t *testing.T, ctx context.Context, rdb *redis.Client) {
	t.Helper()
	aq := asynq.NewClientFromRedisClient(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	_, err := aq.EnqueueContext(ctx, asynq.NewTask("fail", nil), asynq.TaskID(retryID), asynq.Queue(csrfQueue), asynq.MaxRetry(5))
	require.NoError(t, err)
	_, err = aq.EnqueueContext(ctx, asynq.NewTask("ok", nil), asynq.TaskID(doneID), asynq.Queue(csrfQueue), asynq.Retention(time.Hour))
	require.NoError(t, err)
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Queues:         map[string]int{csrfQueue: 1},
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour },
		LogLevel:       asynq.FatalLevel,
	})
	require.NoError(t, srv.Start(asynq.HandlerFunc(func(_ context.Context, tk *asynq.Task) error {
		if tk.Type() == "fail" {
			return errors.New("seeded failure")
		}
		return nil
	})))
	redistest.WaitFor(t, 15*time.Second, "seed tasks in the retry and completed sets", func() bool {
		r, err1 := insp.GetTaskInfo(csrfQueue, retryID)
		c, err2 := insp.GetTaskInfo(csrfQueue, doneID)
		return err1 == nil && err2 == nil && r.State == asynq.TaskStateRetry && c.State == asynq.TaskStateCompleted
	})
	srv.Shutdown()

	for _, tc := range []struct {
		id    string
		queue string
		opts  []asynq.Option
	}{
		{pendingID, csrfQueue, nil},
		{schedID, csrfQueue, []asynq.Option{asynq.ProcessIn(time.Hour)}},
		{archivedID, csrfQueue, nil},
		{groupID, csrfQueue, []asynq.Option{asynq.Group(csrfGroup)}},
		{"pp", pausedQ, nil},
		{"e1", emptyQ, nil},
	} {
		_, err := aq.EnqueueContext(ctx, asynq.NewTask("seed", []byte(`{}`)), append(tc.opts, asynq.TaskID(tc.id), asynq.Queue(tc.queue))...)
		require.NoError(t, err)
	}
	require.NoError(t, insp.ArchiveTask(csrfQueue, archivedID))
	require.NoError(t, insp.PauseQueue(pausedQ))
	require.NoError(t, insp.DeleteTask(emptyQ, "e1")) // the queue stays registered, empty
}

// dumpAll serialises every key (DUMP) with its TTL.
func dumpAll(t *testing.T, rdb *redis.Client) map[string]keyDump {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	out := make(map[string]keyDump, len(keys))
	for _, k := range keys {
		v, err := rdb.Dump(ctx, k).Result()
		require.NoError(t, err)
		ttl, err := rdb.PTTL(ctx, k).Result()
		require.NoError(t, err)
		out[k] = keyDump{value: v, ttl: ttl}
	}
	return out
}

// values is dumpAll without the TTLs (which tick).
func values(d map[string]keyDump) map[string]string {
	out := make(map[string]string, len(d))
	for k, v := range d {
		out[k] = v.value
	}
	return out
}

// restore puts the seeded state back.
func (f *csrfFixture) restore(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, f.rdb.FlushDB(ctx).Err())
	for k, d := range f.seeded {
		ttl := d.ttl
		if ttl < 0 {
			ttl = 0 // no expiry
		}
		require.NoError(t, f.rdb.Restore(ctx, k, ttl, d.value).Err())
	}
}

func (f *csrfFixture) send(t *testing.T, method, path, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	return doBody(t, method, f.srv.URL+path, body, hdr)
}

// crossSite are requests a page on another site can make a browser send
// (with its cached basic-auth credentials): a form or fetch from
// evil.example, a sandboxed iframe or data: URL (Origin: null), a text/plain
// POST that needs no CORS preflight, and a sibling subdomain.
func crossSite() map[string]map[string]string {
	return map[string]map[string]string{
		"Origin: http://evil.example":           {"Origin": "http://evil.example"},
		"Origin: null":                          {"Origin": "null"},
		"text/plain from evil.example":          {"Origin": "http://evil.example", "Content-Type": "text/plain"},
		"Sec-Fetch-Site: cross-site":            {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
		"Sec-Fetch-Site: same-site":             {"Sec-Fetch-Site": "same-site", "Origin": "http://other.localhost"},
		"Sec-Fetch-Site: cross-site, no Origin": {"Sec-Fetch-Site": "cross-site"},
	}
}

// TestCrossOriginAsynqmon: every mutating asynqmon endpoint refuses a
// cross-site request with 403 and changes nothing in Redis; the same request
// from the dashboard's own origin (or from a non-browser client, which
// sends no Origin) goes through and does change the data.
func TestCrossOriginAsynqmon(t *testing.T) {
	f := setupCrossOrigin(t, dash.Options{})
	table := asynqmonMutations()

	var covered []string
	for _, m := range table {
		covered = append(covered, m.method+" "+m.route)
	}
	sort.Strings(covered)
	require.Equal(t, asynqmonSourceRoutes(t), covered, "the table covers every non-GET route of asynqmon")

	same := map[string]map[string]string{
		"Origin is the dashboard":     {"Origin": f.srv.URL, "Content-Type": "application/json"},
		"Sec-Fetch-Site: same-origin": {"Sec-Fetch-Site": "same-origin", "Origin": f.srv.URL},
		"no Origin (curl)":            {"Content-Type": "application/json"},
	}
	for _, m := range table {
		t.Run(m.method+" "+m.route, func(t *testing.T) {
			for name, hdr := range crossSite() {
				f.restore(t)
				before := values(dumpAll(t, f.rdb))
				resp, body := f.send(t, m.method, m.path, m.body, hdr)
				require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s: %s", name, body)
				require.Equal(t, before, values(dumpAll(t, f.rdb)), "%s: nothing changed in Redis", name)
			}
			for name, hdr := range same {
				f.restore(t)
				before := values(dumpAll(t, f.rdb))
				resp, body := f.send(t, m.method, m.path, m.body, hdr)
				require.Less(t, resp.StatusCode, 300, "%s: %d %s", name, resp.StatusCode, body)
				require.GreaterOrEqual(t, resp.StatusCode, 200, "%s: %s", name, body)
				if m.changesData {
					require.NotEqual(t, before, values(dumpAll(t, f.rdb)), "%s: the request took effect", name)
				}
			}
		})
	}
}

// TestCrossOriginCancel: baton's own Cancel refuses cross-site requests,
// Origin: null included, with or without basic auth.
func TestCrossOriginCancel(t *testing.T) {
	fx := setup(t)
	fx.block(7)
	fx.researchChord(t, "xo", 7, 8)
	fx.waitState(t, "xo.1", baton.Started)
	for _, opts := range []dash.Options{{}, {BasicAuthUser: "ops", BasicAuthPass: "pw"}} {
		srv := fx.serve(t, opts)
		for name, hdr := range crossSite() {
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/workflows/xo/cancel", strings.NewReader("x=1"))
			require.NoError(t, err)
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			if opts.BasicAuthUser != "" {
				req.SetBasicAuth("ops", "pw") // the browser sends cached credentials along
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusForbidden, resp.StatusCode, name)
		}
	}
	r, err := fx.client.Get(context.Background(), "xo")
	require.NoError(t, err)
	require.False(t, r.State.Terminal(), "the workflow was not cancelled")
}
