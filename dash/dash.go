// Package dash is baton's web dashboard: asynqmon for queues and tasks,
// mounted at /monitoring, beside baton's own workflow pages that draw each
// canvas as a live graph.
//
// Routes:
//
//	/                          redirect to /workflows
//	/workflows                 recent workflows, newest first (?page=N); .json for the data
//	/workflows/{id}            the canvas as an SVG graph, refreshing while it runs
//	/workflows/{id}.json       the workflow and its steps
//	POST /workflows/{id}/cancel  cancel it (not in read-only mode)
//	/limits                    flow-control limits, their usage and waiting tasks; .json for the data
//	/monitoring/               asynqmon
//	/metrics                   Prometheus metrics (package metrics, plus queue sizes and limit usage)
//	/healthz                   200 when Redis answers PING
//
// Pages are server-rendered HTML and SVG with one small script, all embedded:
// nothing is fetched from the internet.
//
// Every request that changes something (any method but GET, HEAD and
// OPTIONS, on every route, asynqmon's API included) must come from the
// dashboard's own origin: a cross-site request, or one with "Origin: null",
// is refused with 403 before it reaches a handler. Clients that are not
// browsers (curl, scripts) send no Origin and are not affected.
package dash

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/metrics"
)

// Defaults of Options.
const (
	PageSizeDefault        = 25
	RefreshIntervalDefault = 1500 * time.Millisecond
	// MonitoringPath is where asynqmon is mounted.
	MonitoringPath = "/monitoring"
)

// Options configure the dashboard. The zero value is valid: read-write, no
// authentication.
type Options struct {
	// ReadOnly hides cancel buttons, refuses POSTs, and puts asynqmon in its
	// read-only mode. Defaults to false.
	ReadOnly bool
	// BasicAuthUser and BasicAuthPass, when both set, protect every route but
	// /healthz with HTTP basic auth. They are never logged.
	BasicAuthUser, BasicAuthPass string
	// Logger receives request errors and cancellations. Defaults to
	// slog.Default().
	Logger *slog.Logger
	// PageSize is the number of workflows per list page. Defaults to 25.
	PageSize int
	// RefreshInterval is how often a running workflow's page polls for
	// changes. Defaults to 1.5s.
	RefreshInterval time.Duration
	// Metrics serves /metrics. Defaults to a registry of its own
	// (metrics.NewRegistry: Go runtime and process) with collectors of queue
	// sizes and limit usage (read at most every 5s). A program that runs
	// workers beside the dashboard passes the registry of their
	// metrics.Observer here (metrics.Handler), with WatchQueues and
	// WatchLimits on it.
	Metrics http.Handler
}

//go:embed ui
var uiFS embed.FS

type server struct {
	opts   Options
	rdb    redis.UniversalClient
	client *baton.Client
	store  *store
	log    *slog.Logger
	pages  *pages
}

// New returns the dashboard handler on rdb. client is used to read and
// cancel workflows; both stay owned by the caller. New panics on a nil rdb
// or client (a programming error).
func New(rdb redis.UniversalClient, client *baton.Client, opts Options) http.Handler {
	if rdb == nil || client == nil {
		panic("dash.New: rdb and client are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PageSize <= 0 {
		opts.PageSize = PageSizeDefault
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = RefreshIntervalDefault
	}
	if opts.Metrics == nil {
		reg := metrics.NewRegistry()
		reg.MustRegister(metrics.NewQueueCollector(rdb, 0), metrics.NewLimitCollector(rdb, 0))
		opts.Metrics = metrics.Handler(reg)
	}
	s := &server{opts: opts, rdb: rdb, client: client, store: &store{rdb: rdb, client: client},
		log: opts.Logger.With("component", "dash"), pages: mustPages()}

	f := newFormatter(rdb)
	mon := asynqmon.New(asynqmon.Options{
		RootPath:         MonitoringPath,
		RedisConnOpt:     sharedConn{rdb},
		ReadOnly:         opts.ReadOnly,
		PayloadFormatter: f,
		ResultFormatter:  f,
	})
	// asynqmon's Close would close rdb, which the caller owns: never call it.

	static, err := fs.Sub(uiFS, "ui/static")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle(MonitoringPath+"/", mon)
	mux.Handle(MonitoringPath, http.RedirectHandler(MonitoringPath+"/", http.StatusFound))
	mux.Handle("GET /_dash/", http.StripPrefix("/_dash/", http.FileServerFS(static)))
	mux.Handle("GET /metrics", opts.Metrics)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/workflows", http.StatusFound)
	})
	mux.HandleFunc("GET /workflows", s.list)
	mux.HandleFunc("GET /workflows.json", s.listJSON)
	mux.HandleFunc("GET /workflows/{id}", s.workflow)
	mux.HandleFunc("POST /workflows/{id}/cancel", s.cancel)
	mux.HandleFunc("GET /limits", s.limits)
	mux.HandleFunc("GET /limits.json", s.limitsJSON)

	var h http.Handler = mux
	h = securityHeaders(h)
	if opts.BasicAuthUser != "" || opts.BasicAuthPass != "" {
		h = basicAuth(h, opts.BasicAuthUser, opts.BasicAuthPass)
	}
	return s.crossOriginProtection(h)
}

// crossOriginProtection refuses every non-safe request (anything but GET,
// HEAD and OPTIONS) that a browser sends on behalf of another site, on
// every route: asynqmon's API under /monitoring as well as baton's Cancel.
// Without it a page elsewhere could make a visitor's browser, which
// replays cached basic-auth credentials, pause queues or delete tasks.
// net/http.CrossOriginProtection decides: Sec-Fetch-Site must be
// same-origin or none when sent; otherwise the Origin, when sent, must name
// this host ("null", from sandboxed frames and data: URLs, never does). A
// request with neither header is not from a browser (curl, scripts) and
// passes: it carries no credentials it did not mean to send.
func (s *server) crossOriginProtection(h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("cross-origin request refused", "method", r.Method, "path", r.URL.Path,
			"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "remote", r.RemoteAddr)
		http.Error(w, "cross-origin request refused: the dashboard accepts changes only from its own pages", http.StatusForbidden)
	}))
	return cop.Handler(h)
}

// sharedConn hands asynqmon the caller's Redis client (any topology)
// instead of letting it dial its own.
type sharedConn struct{ rdb redis.UniversalClient }

func (c sharedConn) MakeRedisClient() any { return c.rdb }

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "redis unreachable: %v\n", err)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (s *server) page(r *http.Request) (int, int) {
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	if page < 1 {
		page = 1
	}
	per := s.opts.PageSize
	if v, err := strconv.Atoi(r.URL.Query().Get("per")); err == nil && v > 0 {
		per = min(v, 500)
	}
	return page, per
}

type listData struct {
	Workflows  []summary `json:"workflows"`
	Total      int64     `json:"total"`
	Page       int       `json:"page"`
	PerPage    int       `json:"per_page"`
	Pages      int       `json:"pages"`
	AnyRunning bool      `json:"-"`
	ReadOnly   bool      `json:"-"`
}

func (s *server) loadList(r *http.Request) (*listData, error) {
	page, per := s.page(r)
	wfs, total, err := s.store.list(r.Context(), (page-1)*per, per)
	if err != nil {
		return nil, err
	}
	d := &listData{Workflows: wfs, Total: total, Page: page, PerPage: per,
		Pages: int((total + int64(per) - 1) / int64(per)), ReadOnly: s.opts.ReadOnly}
	for _, wf := range wfs {
		if !terminal(wf.State) && wf.State != stateExpired {
			d.AnyRunning = true
		}
	}
	return d, nil
}

func (s *server) list(w http.ResponseWriter, r *http.Request) {
	d, err := s.loadList(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, "list", d)
}

func (s *server) listJSON(w http.ResponseWriter, r *http.Request) {
	d, err := s.loadList(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, d)
}

type workflowData struct {
	*detail
	Graph    *graph
	ReadOnly bool
	Refresh  int64 // ms
	Notice   string
}

func (s *server) workflow(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	asJSON := strings.HasSuffix(id, ".json") // no workflow id ends in ".json"
	id = strings.TrimSuffix(id, ".json")
	d, err := s.store.get(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if asJSON {
		writeJSON(w, d)
		return
	}
	s.render(w, r, "workflow", &workflowData{detail: d, Graph: layout(d.Plan, d.Steps, d.Callbacks), ReadOnly: s.opts.ReadOnly,
		Refresh: s.opts.RefreshInterval.Milliseconds(), Notice: r.URL.Query().Get("notice")})
}

func (s *server) cancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if s.opts.ReadOnly {
		http.Error(w, "the dashboard is read-only: cancelling is disabled (started with --read-only)", http.StatusForbidden)
		return
	}
	if err := s.client.Cancel(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("workflow cancelled from the dashboard", "workflow", id, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/workflows/"+url.PathEscape(id)+"?notice=cancelled", http.StatusSeeOther)
}

func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, baton.ErrNotFound) {
		code = http.StatusNotFound
	} else {
		s.log.Error("dashboard request failed", "path", r.URL.Path, "err", err)
	}
	if strings.HasSuffix(r.URL.Path, ".json") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	w.WriteHeader(code)
	s.render(w, r, "error", map[string]any{"Code": code, "Status": http.StatusText(code), "Error": err.Error()})
}

func (s *server) render(w http.ResponseWriter, r *http.Request, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := s.pages.execute(w, name, data); err != nil {
		s.log.Error("render page", "page", name, "path", r.URL.Path, "err", err)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, MonitoringPath) {
			w.Header().Set("X-Frame-Options", "DENY")
			w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")
		}
		h.ServeHTTP(w, r)
	})
}

// basicAuth guards everything but /healthz. Credentials are compared in
// constant time over their hashes and never logged.
func basicAuth(h http.Handler, user, pass string) http.Handler {
	wantU, wantP := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			h.ServeHTTP(w, r)
			return
		}
		u, p, ok := r.BasicAuth()
		gotU, gotP := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		if !ok || subtle.ConstantTimeCompare(gotU[:], wantU[:])&subtle.ConstantTimeCompare(gotP[:], wantP[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="baton", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
