package baton_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
	"github.com/batonhq/baton/tasks"
)

// The research agent of the README's "Durable tasks" section, as a user
// writes it: fetch every source as a child task (one after another, or N at
// a time), optionally wait for a human's approval, then analyze.

// ResearchArgs are the research agent's arguments.
type ResearchArgs struct {
	URLs     []string `json:"urls"`
	Approve  bool     `json:"approve"`  // wait for an "approve" event before analyzing
	Parallel int      `json:"parallel"` // fetch this many at a time (0 or 1: one after another)
}

// Verdict is the payload of the "approve" event.
type Verdict struct {
	Approved bool `json:"approved"`
}

// NewResearchAgent defines the agent on top of the fetch and analyze tasks
// (declarations on producers, the real tasks on workers).
func NewResearchAgent(fetch *baton.Task[tasks.FetchArgs, tasks.FetchResult],
	analyze *baton.Task[tasks.AnalyzeArgs, tasks.AnalyzeResult]) *baton.Task[ResearchArgs, tasks.AnalyzeResult] {
	return baton.NewDurable("my_research", func(dc *baton.Durable, a ResearchArgs) (tasks.AnalyzeResult, error) {
		var in tasks.AnalyzeArgs
		keep := func(url string, r tasks.FetchResult, err error) {
			if err != nil { // the code decides: here, analyze without it
				in.Failed = append(in.Failed, tasks.SourceError{URL: url, Error: err.Error()})
				return
			}
			raw, _ := json.Marshal(r)
			in.Sources = append(in.Sources, raw)
		}
		step := max(a.Parallel, 1)
		for i := 0; i < len(a.URLs); i += step {
			batch := a.URLs[i:min(i+step, len(a.URLs))]
			if len(batch) == 1 { // a crash after 8 of 10 fetches resumes at the 9th
				r, err := baton.Call(dc, fetch, tasks.FetchArgs{URL: batch[0]}, nil)
				keep(batch[0], r, err)
				continue
			}
			args := make([]tasks.FetchArgs, len(batch))
			for j, u := range batch {
				args[j] = tasks.FetchArgs{URL: u}
			}
			rs, err := baton.Map(dc, fetch, args, nil) // in parallel; results in order
			if err != nil {
				return tasks.AnalyzeResult{}, err
			}
			for j, r := range rs {
				keep(batch[j], r.Value, r.Err)
			}
		}
		if a.Approve { // parked until Client.Signal(ctx, runID, "approve", Verdict{Approved: true})
			v, err := baton.WaitEvent[Verdict](dc, "approve", 72*time.Hour)
			if err != nil {
				return tasks.AnalyzeResult{}, err // ErrEventTimeout: nobody answered in 72 h
			}
			if !v.Approved {
				return tasks.AnalyzeResult{}, baton.Permanent(errors.New("the reviewer rejected the sources"))
			}
		}
		return baton.Call(dc, analyze, in, nil) // the LLM response cache still applies
	}, &baton.TaskOptions{Events: []string{"approve"}})
}

// Example_durableResearch runs the research agent on three local sources,
// two at a time, with an approval.
func Example_durableResearch() {
	srv, err := redistest.Start(redistest.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"title": "source %s", "summary": "findings of %s"}`, r.URL.Path, r.URL.Path)
	}))
	defer web.Close()

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fetcher := tasks.NewFetcher(tasks.FetchConfig{AllowPrivate: true}) // the sources listen on 127.0.0.1
	defer fetcher.CloseIdleConnections()
	fetch := tasks.FetchTask(fetcher, time.Second)
	analyze := tasks.AnalyzeTask(tasks.NewAnalyzer(tasks.LLMConfig{Logger: log}, rdb)) // offline: no LLM configured
	agent := NewResearchAgent(fetch, analyze)
	w, _ := baton.NewWorker(rdb, &baton.WorkerOptions{Logger: log, PollInterval: 10 * time.Millisecond,
		Queues: map[string]int{tasks.FetchQueue: 2, tasks.AnalyzeQueue: 1}})
	_ = w.Register(fetch, analyze, agent)
	_ = w.Start()
	defer w.Shutdown()
	c, _ := baton.NewClient(rdb, nil)
	defer c.Close()
	c.Declare(agent)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	h, _ := agent.Enqueue(ctx, c, ResearchArgs{URLs: []string{web.URL + "/a", web.URL + "/b", web.URL + "/c"},
		Approve: true, Parallel: 2}, nil)
	_ = c.Signal(ctx, h.ID, "approve", Verdict{Approved: true}) // early is fine: the event is kept
	res, err := h.Get(ctx)
	fmt.Println(res.Model, err)
	ops, _ := c.Operations(ctx, h.ID)
	for _, op := range ops {
		fmt.Println(op.Seq, op.Type, op.Name, len(op.Children), op.State)
	}
	// Output:
	// offline-extractive <nil>
	// 0 map fetch 2 done
	// 1 call fetch 1 done
	// 2 event approve 0 done
	// 3 call analyze 1 done
}
