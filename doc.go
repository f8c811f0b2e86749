// Package baton is a Celery-style distributed task queue for Go, on Redis,
// built on asynq: typed tasks with per-task retries and delays, workflows
// (chain, group, chord) that hand each result to the next step, durable tasks
// (agent code whose steps, child tasks, timers and event waits are recorded
// and resumed), a Redis result backend callers block on without polling, and
// exactly-once recorded results under redelivery.
//
// # Quick start
//
// Define a task once; producers and workers share the definition:
//
//	var Add = baton.NewTask("add", func(ctx context.Context, a AddArgs) (int, error) {
//		return a.A + a.B, nil
//	}, &baton.TaskOptions{MaxRetries: 3, RetryDelay: baton.Backoff(time.Second, time.Minute)})
//
// Run it on workers, as many processes as you like:
//
//	w, _ := baton.NewWorker(rdb, nil)
//	_ = w.Register(Add)
//	_ = w.Run(ctx) // until ctx is done; then a graceful shutdown
//
// Enqueue it and wait for the result:
//
//	c, _ := baton.NewClient(rdb, nil)
//	h, _ := Add.Enqueue(ctx, c, AddArgs{A: 2, B: 3}, nil)
//	sum, err := h.Get(ctx)
//
// # Errors and retries
//
// A handler's plain error is retried per the task's RetryPolicy up to
// MaxRetries; Permanent(err) fails at once; RetryAfter(d, err) retries after
// d. A panic is a failure carrying the panic text. Waiting returns a
// *TaskError for FAILURE and REVOKED, ErrNotFound for an unknown id.
//
// # Workflows
//
//	wf, _ := c.Submit(ctx, baton.Chord(baton.Group(Fetch.S(a, nil), Fetch.S(b, nil)), Analyze.Sig(nil)), nil)
//	err := wf.Get(ctx, &result)
//
// Every task id of a workflow is assigned at submit; a step that fails for
// good fails the steps after it. Link and on_error callbacks go on any task,
// chain, group or chord (WithLink, WithOnError); a handler can replace its
// task with a canvas (return nil, baton.Replace(cv)); SubmitOpts.Input feeds
// the first steps. Compensations (sagas) and cancel are on Signature and
// Client. See package chain for the semantics and the JSON form.
//
// # Flow control
//
// Rate and concurrency limits per kind, and per key from the arguments, hold
// for the whole fleet (their state is in Redis):
//
//	&baton.TaskOptions{
//		RateLimits:        []baton.RateLimit{{Rate: 60, Per: time.Minute, Burst: 10}},
//		ConcurrencyLimits: []baton.ConcurrencyLimit{{Max: 4, Key: baton.KeyBy(tenantOf)}},
//	}
//
// A task over a limit waits without counting a retry or holding a worker
// slot, and runs at the time the limit frees; RateLimited(d, err) pauses a
// task's rate limits for everyone after an upstream 429; SetCost corrects
// an estimated cost. See limit.go and the README's "Flow control".
//
// # Testing
//
// Package batontest runs a handler in process (batontest.Run) or tasks and
// workflows against an embedded Redis with a worker that drains until idle,
// with assertions on what was enqueued and recorded:
//
//	env := batontest.New(t, &batontest.Options{FastForward: true})
//	env.Register(Add)
//	h, _ := Add.Enqueue(ctx, env.Client(), AddArgs{A: 2, B: 3}, nil)
//	env.DrainUntilIdle(t)
//	batontest.RequireRecord(t, env, h.ID, baton.Success)
//
// # Durable tasks
//
// For work whose shape is decided at run time (agents), NewDurable defines a
// task whose handler receives a *Durable and may be re-run from the top:
//
//	var Agent = baton.NewDurable("agent", func(dc *baton.Durable, urls []string) (Report, error) {
//		var pages []Page
//		for _, u := range urls {
//			p, err := baton.Call(dc, Fetch, u, nil) // a child task, started once, result recorded
//			if err != nil {
//				continue // the code decides
//			}
//			pages = append(pages, p)
//		}
//		ok, err := baton.WaitEvent[bool](dc, "approve", 72*time.Hour) // parked: no slot, no goroutine
//		if err != nil || !ok {
//			return Report{}, baton.Permanent(errors.New("not approved"))
//		}
//		return baton.RunStep(dc, "write", func(ctx context.Context) (Report, error) { return write(pages), nil }, nil)
//	}, &baton.TaskOptions{Events: []string{"approve"}})
//
// Its operations (RunStep, Call, Map, CallCanvas, Sleep, SleepUntil,
// WaitEvent; Checkpoint and Restore) are recorded in a log in Redis and
// return their recorded outcome when the handler runs again, so a run killed
// midway resumes at the operation it was on. While it waits for children, a
// timer or an event the run is WAITING and holds no worker slot and no
// goroutine; Client.Signal delivers events, Client.Operations lists the log,
// Client.Cancel cancels the run with its children. The handler must call the
// same operations in the same order on every run (a mismatch fails the run,
// naming both). The protocol is described at the top of durable.go.
//
// Any task can declare TaskOptions.HeartbeatTimeout and call Heartbeat: when
// its heartbeats stop it runs again within about that timeout, and the next
// attempt reads the last details with HeartbeatDetails.
//
// # Observers
//
// WorkerOptions.Observers and ClientOptions.Observers take Observers, told
// of every enqueue and submit, every delivery of a task from its start to
// its outcome, retries, waits for a limit, workflows that end and the LLM
// usage handlers report with ObserveLLM. Package metrics implements one
// with Prometheus, package tracing one with OpenTelemetry (a span per
// attempt, a workflow one trace across processes); this package imports
// neither. Embed BaseObserver in your own. Without observers the hooks cost
// nothing.
//
// # Guarantees
//
// Execution is at least once (asynq leases; baton re-enqueues a killed
// worker's task in about 12 s, a heartbeating one within its
// HeartbeatTimeout). A task whose SUCCESS is recorded is never run again; the
// next step of a chain and a chord body are enqueued at most once; a re-run of
// a durable run repeats only the operation that was in flight.
package baton
