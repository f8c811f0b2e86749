package baton

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// TaskFunc is a task's handler: typed arguments in, typed result out.
// Return Permanent(err) to fail without retries, RetryAfter(d, err) to retry
// after d, any other error to retry per the task's policy.
type TaskFunc[A, R any] func(ctx context.Context, args A) (R, error)

// Task is a typed task definition: a stable kind, its handler and its
// defaults. A producer that only enqueues may define it with a nil handler.
//
// The kind is a fixed string, never derived from a Go type name, so renaming
// a type never strands queued work.
type Task[A, R any] struct {
	kind    string
	fn      TaskFunc[A, R]
	opts    TaskOptions
	durable bool // defined with NewDurable
}

// NewTask defines a task. It panics on an empty kind or invalid options:
// definitions are program constants, and a bad one is a programming error.
func NewTask[A, R any](kind string, fn TaskFunc[A, R], opts *TaskOptions) *Task[A, R] {
	if kind == "" {
		panic("baton: NewTask with an empty kind")
	}
	var o TaskOptions
	if opts != nil {
		o = *opts
	}
	if err := errors.Join(o.validate(kind), o.checkLimitArgs(kind, reflect.TypeFor[A]())); err != nil {
		panic("baton: " + err.Error())
	}
	return &Task[A, R]{kind: kind, fn: fn, opts: o.withDefaults()}
}

// Kind is the task's stable name.
func (t *Task[A, R]) Kind() string { return t.kind }

// Options are the task's registered defaults.
func (t *Task[A, R]) Options() TaskOptions { return t.opts }

// Handler is the task's handler, nil for a definition without one. It is
// for tests that call the handler directly (batontest.Run does): a worker
// runs it through the steps around it (decoding the arguments, the
// timeout, the record).
func (t *Task[A, R]) Handler() TaskFunc[A, R] { return t.fn }

// Enqueue submits one run of the task.
func (t *Task[A, R]) Enqueue(ctx context.Context, c *Client, args A, opts *EnqueueOpts) (*TypedHandle[R], error) {
	if err := checkEnqueueID(t.kind, opts); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("baton: encode %s args %T: %w", t.kind, args, err)
	}
	h, err := c.enqueue(ctx, t.kind, raw, t.opts, opts)
	if err != nil {
		return nil, err
	}
	return &TypedHandle[R]{Handle: h}, nil
}

// Definition is a task with its types erased, as a Worker or Client holds it.
// *Task implements it.
type Definition interface {
	Kind() string
	Options() TaskOptions
	// invoke decodes raw args, runs the handler and encodes the result.
	invoke(ctx context.Context, raw json.RawMessage) (json.RawMessage, error)
	hasHandler() bool
	argsType() string
	argsRType() reflect.Type
	isDurable() bool
}

func (t *Task[A, R]) hasHandler() bool { return t.fn != nil }

func (t *Task[A, R]) argsRType() reflect.Type { return reflect.TypeFor[A]() }
func (t *Task[A, R]) isDurable() bool         { return t.durable }

func (t *Task[A, R]) argsType() string {
	var a A
	return fmt.Sprintf("%T", a)
}

// argsError is a payload that does not decode into the task's argument type:
// it can never succeed, so it fails at once.
type argsError struct {
	kind, typ string
	err       error
}

func (e *argsError) Error() string {
	return fmt.Sprintf("task %q: arguments do not decode into %s: %v (fix the payload; not retried)", e.kind, e.typ, e.err)
}
func (e *argsError) Unwrap() error { return e.err }

func (t *Task[A, R]) invoke(ctx context.Context, raw json.RawMessage) (json.RawMessage, error) {
	var args A
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &args); err != nil {
			return nil, Permanent(&argsError{kind: t.kind, typ: t.argsType(), err: err})
		}
	}
	res, err := t.fn(ctx, args)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(res)
	if err != nil {
		return nil, Permanent(fmt.Errorf("task %q: encode result %T: %w", t.kind, res, err))
	}
	return out, nil
}
