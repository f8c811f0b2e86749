package baton

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrNotFound is returned when the result backend has no record of a task id:
	// it was never enqueued, or its record expired.
	ErrNotFound = errors.New("baton: task not found")
	// ErrRevoked is wrapped by the error of a task that was revoked: expired,
	// cancelled, or skipped because a step before it was. (A step skipped
	// because one before it failed ends FAILURE with that step's error.)
	ErrRevoked = errors.New("baton: task revoked")
	// ErrCancelled is wrapped by the error of a task or workflow cancelled by a caller.
	ErrCancelled = errors.New("baton: cancelled")
	// ErrPayloadTooLarge is returned by Enqueue when a task's encoded message is
	// over the size limit (MaxPayloadBytes).
	ErrPayloadTooLarge = errors.New("baton: payload too large")
	// ErrInvalidCanvas is wrapped by Submit's error for a canvas that is
	// rejected before anything is enqueued; the message has the JSON path.
	ErrInvalidCanvas = errors.New("baton: invalid canvas")
	// ErrInvalidOptions is wrapped by the error for invalid EnqueueOpts.
	ErrInvalidOptions = errors.New("baton: invalid options")
)

// TaskError is the error of a task that ended in FAILURE or REVOKED. Get and
// Wait return it; callers read the state, id and message from it.
type TaskError struct {
	ID      string // the task (or workflow) whose wait returned
	Kind    string
	State   State
	Message string // the error text recorded by the worker
	cause   error
}

func (e *TaskError) Error() string {
	if e.Kind != "" {
		return fmt.Sprintf("task %s (%s) %s: %s", e.ID, e.Kind, e.State, e.Message)
	}
	return fmt.Sprintf("task %s %s: %s", e.ID, e.State, e.Message)
}

// Unwrap lets errors.Is(err, ErrRevoked) / ErrCancelled work.
func (e *TaskError) Unwrap() error { return e.cause }

// permanentError marks a handler error as final: no retry.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that the task fails at once, without retries
// (bad input, a 404, an authentication error). A nil err stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// retryAfterError asks for the next attempt after a given delay.
type retryAfterError struct {
	err   error
	delay time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter wraps err so that the next attempt runs after d instead of the
// task's retry policy delay (for example an upstream Retry-After header). It
// still counts against MaxRetries. A nil err stays nil.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		return nil
	}
	if d < 0 {
		d = 0
	}
	return &retryAfterError{err: err, delay: d}
}

// RetryAfterDelay returns the delay requested with RetryAfter, if any.
func RetryAfterDelay(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.delay, true
	}
	return 0, false
}
