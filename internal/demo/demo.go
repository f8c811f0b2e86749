// Package demo is `baton demo`: the research pipeline end to end on this
// machine, with no setup. It starts an embedded Redis unless given one, a
// local HTTP server with sample sources (one of them flaky), an in-process
// worker, and runs chord(fetch(url) for each url, analyze) with live
// progress.
package demo

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path"
	"sort"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/internal/research"
	"github.com/batonhq/baton/tasks"
)

//go:embed sources/*.json
var sourceFiles embed.FS

// FlakySource fails its first request with 503, so a retry shows.
const FlakySource = "storage-safety-incidents.json"

// Queues the demo runs on, so it never takes real work from a shared Redis.
const (
	FetchQueue   = "baton-demo"
	AnalyzeQueue = "baton-demo-llm"
)

// Options configure a demo run.
type Options struct {
	// Redis to use; nil starts an embedded in-memory Redis (miniredis).
	Redis redis.UniversalClient
	// LLM settings; with no APIKey and no BaseURL the offline analyzer runs.
	LLM tasks.LLMConfig
	// Out receives the progress and the report; TTY selects live progress.
	Out io.Writer
	TTY bool
	// Logger for the worker; defaults to discarding.
	Logger *slog.Logger
}

// Run runs the demo and returns nil when the research workflow succeeded.
func Run(ctx context.Context, o Options) error {
	out := o.Out
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	rdb := o.Redis
	if rdb == nil {
		mr := miniredis.NewMiniRedis()
		if err := mr.Start(); err != nil {
			return fmt.Errorf("demo: start embedded Redis: %w", err)
		}
		defer mr.Close()
		client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		defer client.Close()
		rdb = client
		fmt.Fprintf(out, "REDIS_URL is not set: using an embedded in-memory Redis (miniredis) at %s; nothing is kept after the demo.\n", mr.Addr())
	} else {
		fmt.Fprintf(out, "Using the Redis from REDIS_URL (queues %s and %s).\n", FetchQueue, AnalyzeQueue)
	}

	srv, urls, err := serveSources()
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintf(out, "Serving %d sample sources at http://%s/ (%s fails its first request with 503).\n", len(urls), srv.Addr, FlakySource)

	// The sample sources listen on 127.0.0.1: the demo opts in to private addresses.
	fetcher := tasks.NewFetcher(tasks.FetchConfig{Timeout: 5 * time.Second, AllowPrivate: true})
	analyzer := tasks.NewAnalyzer(o.LLM, rdb)
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{
		Concurrency:  8,
		Queues:       map[string]int{FetchQueue: 2, AnalyzeQueue: 1},
		Logger:       o.Logger,
		PollInterval: 20 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	if err := w.Register(tasks.FetchTask(fetcher, 300*time.Millisecond), tasks.AnalyzeTask(analyzer)); err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Shutdown()

	client, err := baton.NewClient(rdb, nil)
	if err != nil {
		return err
	}
	defer client.Close()
	client.Declare(tasks.FetchDecl, tasks.AnalyzeDecl)
	cv, err := tasks.Research(urls, tasks.ResearchOptions{
		Fetch:   &baton.EnqueueOpts{Queue: FetchQueue},
		Analyze: &baton.EnqueueOpts{Queue: AnalyzeQueue},
	})
	if err != nil {
		return err
	}
	start := time.Now()
	wf, err := client.Submit(ctx, cv, nil)
	if err != nil {
		return err
	}
	if o.Redis != nil {
		defer cleanup(context.WithoutCancel(ctx), rdb, wf)
	}
	fmt.Fprintf(out, "Workflow %s: chord(fetch × %d, analyze)\n\n", wf.ID, len(urls))
	rec, werr := research.Watch(ctx, client, wf, out, o.TTY)
	steps, err := wf.Steps(context.WithoutCancel(ctx))
	if err == nil {
		fmt.Fprintln(out)
		research.PrintSteps(out, steps, wf.Plan)
	}
	if werr != nil {
		return fmt.Errorf("demo: research workflow %s: %w", wf.ID, werr)
	}
	if err := research.PrintAnalysis(out, rec); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nDone in %s. Try it on your own Redis: see the README quick start.\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// serveSources starts the sample-source server on a loopback port.
func serveSources() (*http.Server, []string, error) {
	names, err := fs.Glob(sourceFiles, "sources/*.json")
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(names)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("demo: listen for the sample sources: %w", err)
	}
	var flakyHits atomic.Int32
	mux := http.NewServeMux()
	var urls []string
	for _, n := range names {
		base := path.Base(n)
		body, err := sourceFiles.ReadFile(n)
		if err != nil {
			return nil, nil, err
		}
		mux.HandleFunc("/"+base, func(w http.ResponseWriter, r *http.Request) {
			if base == FlakySource && flakyHits.Add(1) == 1 {
				w.Header().Set("Retry-After", "0")
				http.Error(w, "temporarily overloaded", http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		})
		urls = append(urls, "http://"+ln.Addr().String()+"/"+base)
	}
	srv := &http.Server{Addr: ln.Addr().String(), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, urls, nil
}

// cleanup removes the demo's own keys from a shared Redis. The LLM response
// cache (baton:llm:*) is kept on purpose: it is what makes a re-run free.
func cleanup(ctx context.Context, rdb redis.UniversalClient, wf *baton.Workflow) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	keys := []string{backend.TaskKey(wf.ID), backend.WorkflowKey(wf.ID)}
	for i, n := range wf.Plan.Nodes {
		if n.TaskID != "" {
			keys = append(keys, backend.TaskKey(n.TaskID))
		}
		if n.Type == "group" {
			keys = append(keys, backend.ChordKey(wf.ID, wf.Plan.GroupID(i)))
		}
	}
	pipe := rdb.Pipeline()
	for _, k := range keys {
		pipe.Del(ctx, k)
	}
	pipe.ZRem(ctx, backend.WorkflowIndexKey, wf.ID)
	_, _ = pipe.Exec(ctx)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	for _, q := range []string{FetchQueue, AnalyzeQueue} {
		if err := insp.DeleteQueue(q, true); err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
			continue
		}
	}
}
