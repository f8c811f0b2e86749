// Package batontest helps test baton tasks and workflows: what rivertest is
// to River, eager mode to Celery and the test environment to Temporal.
//
// # Running one handler
//
// Run calls a task's handler in the test's goroutine, with no Redis and no
// worker, the way a worker would (arguments and result through JSON,
// baton.InfoFrom, the task's Timeout, a panic as an error):
//
//	func TestSendWelcomeHandler(t *testing.T) {
//		sent, err := batontest.Run(t, NewSendWelcome(busyMailer), WelcomeArgs{To: "bob@example.com"})
//		require.EqualError(t, err, "421 try again later")
//		require.Empty(t, sent)
//	}
//
// # An Env: Redis, client and worker
//
// New gives a test an Env: a Redis, a *baton.Client on it and a worker for
// the tasks registered with Register, all closed when the test ends. The
// worker runs only inside Drain, DrainUntilIdle and RunCanvas, until nothing
// is left to run; between drains enqueued tasks stay on their queues for
// RequireEnqueued and RequireNotEnqueued:
//
//	func TestSignupSendsWelcome(t *testing.T) {
//		env := batontest.New(t, &batontest.Options{FastForward: true})
//		env.Register(NewSendWelcome(flakyMailer()))
//
//		require.NoError(t, Signup(t.Context(), env.Client(), "ada@example.com"))
//		queued := batontest.RequireEnqueued(t, env, "send_welcome", WelcomeArgs{To: "ada@example.com"}, nil)
//
//		// The first attempt fails; its retry, due in a minute, runs at once.
//		env.DrainUntilIdle(t)
//		rec := batontest.RequireRecord(t, env, queued[0].ID, baton.Success)
//		require.Equal(t, 1, rec.Retries)
//		batontest.RequireNotEnqueued(t, env, "send_welcome", nil, nil)
//	}
//
// RunCanvas submits a workflow, drains and returns its final record:
//
//	wf, rec, err := env.RunCanvas(ctx, baton.Chain(Fetch.S(url, nil), Parse.Sig(nil)))
//
// Options.FastForward runs scheduled tasks (Countdown, ETA) and retries at
// once instead of at their time, so a task that retries after a minute is
// tested in milliseconds; Env.FastForward does the same once, on demand.
// Flow-control limits still hold in real time.
//
// # Embedded Redis
//
// By default an Env runs an embedded in-memory Redis (miniredis): nothing to
// install or start, and tests with an Env each may run in parallel. Its key
// expiry follows the wall clock. It runs asynq's and baton's Lua scripts,
// but it is not Redis: for the real thing, set a URL.
//
// # Real Redis
//
// With Options.RedisURL or $BATONTEST_REDIS_URL (redis://host:port/db), an
// Env uses a real Redis and owns a database of it for its lifetime: it takes
// the URL's database, or the next one no other Env holds (a lease key,
// batontest:lease, renewed while the Env lives, expiring 30s after a
// crash), empties it when it takes it and again when it closes, and touches
// no other database. Parallel tests and test binaries can share one server,
// as many at once as it has databases (16 by default; more wait). Point it
// at a Redis that holds nothing you keep. A Redis Cluster has one database
// and cannot be used.
package batontest
