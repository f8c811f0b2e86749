// Package baton is a Celery-style distributed task queue for Go, on Redis,
// built on asynq: typed tasks with per-task retries and delays, workflows
// (chain, group, chord) that hand each result to the next step, a Redis
// result backend callers block on without polling, and exactly-once
// recorded results under redelivery.
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
// worker's task in about 12 s). A task whose SUCCESS is recorded is never run
// again; the next step of a chain and a chord body are enqueued at most once.
package baton
