package batontest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"testing"

	"github.com/google/uuid"

	"github.com/batonhq/baton"
)

// RunOpts configure RunWith.
type RunOpts struct {
	// Info is what baton.InfoFrom returns inside the handler. ID defaults
	// to a new id, Kind to the task's, Queue to the task's queue and
	// MaxRetries to its MaxRetries; set Retries to run a later attempt.
	Info baton.TaskInfo
}

// Run calls task's handler with args in this process, without Redis or a
// worker, as a worker would: the arguments go through JSON (a field that
// does not survive encoding is missing in the handler, as in production),
// the context carries the task's info (baton.InfoFrom) and its Timeout, a
// panic is returned as an error ("panic: ..."; the stack goes to the test
// log), and the result comes back through JSON as a TypedHandle would
// decode it. The error is the handler's, to check with baton.IsPermanent,
// baton.RetryAfterDelay and errors.Is; arguments or a result that JSON
// cannot carry are a permanent error, as a worker fails them.
//
// The handler runs in the calling goroutine, bounded by its Timeout; one
// that ignores its context blocks Run until it returns (a worker would
// abandon it). SetCost does nothing here, and a handler that returns
// baton.Replace returns that error: run replacements with Env.RunCanvas.
func Run[A, R any](tb testing.TB, task *baton.Task[A, R], args A) (R, error) {
	tb.Helper()
	return RunWith(tb, task, args, nil)
}

// RunWith is Run with options.
func RunWith[A, R any](tb testing.TB, task *baton.Task[A, R], args A, opts *RunOpts) (R, error) {
	tb.Helper()
	var zero R
	fn := task.Handler()
	if fn == nil {
		tb.Fatalf("batontest: Run: task %q was defined without a handler (a producer's definition): run the worker's", task.Kind())
	}
	var o RunOpts
	if opts != nil {
		o = *opts
	}
	info := o.Info
	topts := task.Options()
	if info.ID == "" {
		info.ID = "batontest-" + uuid.NewString()
	}
	if info.Kind == "" {
		info.Kind = task.Kind()
	}
	if info.Queue == "" {
		info.Queue = topts.Queue
	}
	if info.MaxRetries == 0 {
		info.MaxRetries = topts.MaxRetries
	}

	raw, err := json.Marshal(args)
	if err != nil {
		return zero, fmt.Errorf("batontest: encode %s args %T: %w", task.Kind(), args, err) // Enqueue would refuse them
	}
	var a A
	if string(raw) != "null" {
		if err := json.Unmarshal(raw, &a); err != nil {
			return zero, baton.Permanent(fmt.Errorf("task %q: arguments do not decode into %T: %w", task.Kind(), a, err))
		}
	}
	ctx, cancel := context.WithTimeout(baton.WithInfo(tb.Context(), info), topts.Timeout)
	defer cancel()
	res, err := call(ctx, tb, task.Kind(), fn, a)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && tb.Context().Err() == nil {
			err = fmt.Errorf("timed out after %v: %w", topts.Timeout, err)
		}
		return zero, err
	}
	out, err := json.Marshal(res)
	if err != nil {
		return zero, baton.Permanent(fmt.Errorf("task %q: encode result %T: %w", task.Kind(), res, err))
	}
	var back R
	if err := json.Unmarshal(out, &back); err != nil {
		return zero, fmt.Errorf("batontest: the result of %q, %s, does not decode back into %T: a caller's Get would fail: %w", task.Kind(), clip(string(out), 200), back, err)
	}
	return back, nil
}

// call runs the handler, turning a panic into an error as a worker does.
func call[A, R any](ctx context.Context, tb testing.TB, kind string, fn baton.TaskFunc[A, R], a A) (res R, err error) {
	defer func() {
		if p := recover(); p != nil {
			tb.Logf("batontest: task %s panicked: %v\n%s", kind, p, debug.Stack())
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return fn(ctx, a)
}
