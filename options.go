package baton

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/internal/defaults"
)

// Defaults for task registration.
const (
	// QueueDefault is the queue a task runs on unless told otherwise.
	QueueDefault = defaults.Queue
	// TimeoutDefault bounds one attempt of a task when neither its
	// registration nor the call sets a Timeout.
	TimeoutDefault = 30 * time.Minute
	// MaxPayloadBytesDefault is the largest encoded task message Enqueue
	// accepts (ClientOptions.MaxPayloadBytes).
	MaxPayloadBytesDefault = defaults.MaxPayloadBytes
	// MaxCanvasTasksDefault is the most tasks one canvas may hold
	// (ClientOptions.MaxCanvasTasks).
	MaxCanvasTasksDefault = defaults.MaxCanvasTasks
	// MaxCanvasBytesDefault is the largest encoded plan of one canvas
	// (ClientOptions.MaxCanvasBytes).
	MaxCanvasBytesDefault = defaults.MaxCanvasBytes
)

// RetryPolicy says how long to wait before retry n (0 for the first retry).
// The zero value is exponential backoff from 1s, capped at 10m, with jitter.
type RetryPolicy struct {
	// Delay is the fixed delay, or the first delay of the backoff. Defaults to 1s.
	Delay time.Duration `json:"delay,omitempty"`
	// Fixed disables backoff: every retry waits Delay.
	Fixed bool `json:"fixed,omitempty"`
	// Max caps the backoff delay. Defaults to 10m.
	Max time.Duration `json:"max,omitempty"`
	// NoJitter turns off the ±20% randomisation of backoff delays that keeps
	// retries of many failed tasks from arriving in lock-step.
	NoJitter bool `json:"no_jitter,omitempty"`
}

// FixedDelay is a policy that waits d before every retry.
func FixedDelay(d time.Duration) *RetryPolicy { return &RetryPolicy{Delay: d, Fixed: true} }

// Backoff is exponential backoff from base, doubling per retry, capped at
// max, with ±20% jitter.
func Backoff(base, max time.Duration) *RetryPolicy { return &RetryPolicy{Delay: base, Max: max} }

// DelayFor returns the wait before retry n (n = retries already done).
func (p RetryPolicy) DelayFor(n int) time.Duration {
	base := p.Delay
	if base <= 0 {
		base = time.Second
	}
	if p.Fixed {
		return base
	}
	maxD := p.Max
	if maxD <= 0 {
		maxD = 10 * time.Minute
	}
	d := min(base, maxD)
	for i := 0; i < n && d < maxD; i++ {
		if d > maxD/2 {
			d = maxD
			break
		}
		d *= 2
	}
	if !p.NoJitter {
		// uniform in [0.8d, 1.2d], still capped (computed in float64 so a
		// huge Max cannot overflow).
		f := float64(d) * (0.8 + 0.4*rand.Float64())
		if f >= float64(maxD) {
			return maxD
		}
		d = time.Duration(f)
	}
	return max(d, 0)
}

func (p RetryPolicy) validate() error {
	var errs []error
	if p.Delay < 0 {
		errs = append(errs, fmt.Errorf("RetryPolicy.Delay %v is negative: use 0 for the default (1s) or a positive duration", p.Delay))
	}
	if p.Max < 0 {
		errs = append(errs, fmt.Errorf("RetryPolicy.Max %v is negative: use 0 for the default (10m) or a positive duration", p.Max))
	}
	errs = append(errs, subMillisecond("RetryPolicy.Delay", p.Delay, "the default (1s)"),
		subMillisecond("RetryPolicy.Max", p.Max, "the default (10m)"))
	if p.Max > 0 && p.Delay > p.Max {
		errs = append(errs, fmt.Errorf("RetryPolicy.Delay %v is above Max %v: raise Max or lower Delay", p.Delay, p.Max))
	}
	return errors.Join(errs...)
}

// TaskOptions are a task's defaults, given at registration. Every field can be
// overridden per call with EnqueueOpts.
type TaskOptions struct {
	// Queue the task runs on. Defaults to QueueDefault ("default").
	Queue string
	// MaxRetries is how many times a failed attempt is retried; the task runs
	// at most MaxRetries+1 times. Defaults to 0: a failure is final.
	MaxRetries int
	// RetryDelay is the wait before each retry. Defaults to Backoff(1s, 10m).
	RetryDelay *RetryPolicy
	// Timeout bounds one attempt; its context is cancelled when it passes and
	// the attempt counts as failed. Defaults to TimeoutDefault (30m). For a
	// durable task an attempt lasts until the run parks or ends.
	Timeout time.Duration
	// RateLimits cap how often tasks of this kind start, fleet-wide (see
	// RateLimit). Defaults to none.
	RateLimits []RateLimit
	// ConcurrencyLimits cap how many run at once, fleet-wide (see
	// ConcurrencyLimit). Defaults to none.
	ConcurrencyLimits []ConcurrencyLimit
	// HeartbeatTimeout, when set (≥ 1s), makes the task call Heartbeat at
	// least this often: an attempt whose heartbeats stop (its worker was
	// killed, its handler hangs) is re-enqueued within about this timeout
	// plus a second, instead of the 10–18 s orphan recovery.
	HeartbeatTimeout time.Duration

	// Durable tasks (NewDurable) only:

	// Events are the event names the task may wait for with WaitEvent:
	// Client.Signal rejects other names unless the run is waiting for
	// them, and keeps an event of a declared name sent before the wait.
	Events []string
	// MaxOperations caps the operations one run records. Defaults to
	// WorkerOptions.MaxOperations, then MaxOperationsDefault (10,000).
	MaxOperations int
	// MaxRecordedBytes caps the bytes of results, events and checkpoints one
	// run records. Defaults to WorkerOptions.MaxRecordedBytes, then
	// MaxRecordedBytesDefault (64 MiB).
	MaxRecordedBytes int

	durable bool // set by NewDurable, so a client that Declares it knows
}

func (o TaskOptions) withDefaults() TaskOptions {
	if o.Queue == "" {
		o.Queue = QueueDefault
	}
	if o.Timeout == 0 {
		o.Timeout = TimeoutDefault
	}
	if o.RetryDelay == nil {
		o.RetryDelay = &RetryPolicy{}
	}
	return o
}

func (o TaskOptions) validate(kind string) error {
	var errs []error
	if o.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("task %q: MaxRetries %d is negative: use 0 for no retries", kind, o.MaxRetries))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("task %q: Timeout %v is negative", kind, o.Timeout))
	}
	if err := subMillisecond("Timeout", o.Timeout, "the default (30m)"); err != nil {
		errs = append(errs, fmt.Errorf("task %q: %w", kind, err))
	}
	if err := validQueue(o.Queue); err != nil {
		errs = append(errs, fmt.Errorf("task %q: %w", kind, err))
	}
	if o.RetryDelay != nil {
		if err := o.RetryDelay.validate(); err != nil {
			errs = append(errs, fmt.Errorf("task %q: %w", kind, err))
		}
	}
	if err := o.validateLimits(kind); err != nil {
		errs = append(errs, err)
	}
	if err := o.validateDurable(); err != nil {
		errs = append(errs, fmt.Errorf("task %q: %w", kind, err))
	}
	return errors.Join(errs...)
}

// subMillisecond rejects a duration above 0 and under a millisecond: baton
// keeps durations in whole milliseconds, so 1ns would silently become 0,
// which means zero (what zero stands for).
func subMillisecond(name string, d time.Duration, zero string) error {
	if d > 0 && d < time.Millisecond {
		return fmt.Errorf("%s %v is under 1ms: durations count in whole milliseconds; use at least 1ms, or 0 for %s", name, d, zero)
	}
	return nil
}

// validQueue checks a queue option: "" (the default) or a name that passes
// defaults.CheckQueue.
func validQueue(q string) error {
	if q == "" {
		return nil
	}
	return defaults.CheckQueue(q)
}

// EnqueueOpts override a task's registered defaults for one call. A nil
// *EnqueueOpts keeps every default.
type EnqueueOpts struct {
	// ID is the task id: 1 to 200 ASCII letters, digits, '-', '_' and ':'
	// ('.' is reserved for workflow steps; see backend.IDRule). Defaults to
	// a new random id. Enqueuing an id that is already queued or finished
	// does not run the task again; enqueuing it with another kind is an
	// error naming the kind it has.
	ID string `json:"id,omitempty"`
	// Queue overrides TaskOptions.Queue.
	Queue string `json:"queue,omitempty"`
	// MaxRetries overrides TaskOptions.MaxRetries when non-nil.
	MaxRetries *int `json:"max_retries,omitempty"`
	// RetryDelay overrides TaskOptions.RetryDelay.
	RetryDelay *RetryPolicy `json:"retry_delay,omitempty"`
	// Timeout overrides TaskOptions.Timeout.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Countdown delays the first attempt by this long.
	Countdown time.Duration `json:"countdown,omitempty"`
	// ETA runs the first attempt at this time (wins over Countdown).
	ETA time.Time `json:"eta,omitzero"`
	// Expires: a task that has not started by this time is not run and is
	// recorded REVOKED.
	Expires time.Time `json:"expires,omitzero"`
	// ExpiresIn is Expires relative to the enqueue time.
	ExpiresIn time.Duration `json:"expires_in,omitempty"`
	// LimitKey overrides, for this call, the key value of the task's keyed
	// limits (those with a Key): e.g. the tenant known to the caller. Limits
	// without a Key are not affected.
	LimitKey string `json:"limit_key,omitempty"`
}

func (o *EnqueueOpts) validate() error {
	if o == nil {
		return nil
	}
	var errs []error
	if o.MaxRetries != nil && *o.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("MaxRetries %d is negative: use 0 for no retries", *o.MaxRetries))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("Timeout %v is negative", o.Timeout))
	}
	if o.Countdown < 0 {
		errs = append(errs, fmt.Errorf("Countdown %v is negative: use 0 to run now", o.Countdown))
	}
	if o.ExpiresIn < 0 {
		errs = append(errs, fmt.Errorf("ExpiresIn %v is negative", o.ExpiresIn))
	}
	errs = append(errs, subMillisecond("Timeout", o.Timeout, "the task's default"),
		subMillisecond("Countdown", o.Countdown, "none"), subMillisecond("ExpiresIn", o.ExpiresIn, "none"))
	if err := validQueue(o.Queue); err != nil {
		errs = append(errs, err)
	}
	if len(o.LimitKey) > 200 {
		errs = append(errs, fmt.Errorf("LimitKey is %d bytes: keep it under 200", len(o.LimitKey)))
	}
	if o.RetryDelay != nil {
		if err := o.RetryDelay.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkEnqueueID checks the task id a caller chose in opts.
func checkEnqueueID(kind string, opts *EnqueueOpts) error {
	if opts == nil {
		return nil
	}
	if err := validCallerID("task id", opts.ID); err != nil {
		return fmt.Errorf("%w for %s: %w", ErrInvalidOptions, kind, err)
	}
	return nil
}

// validCallerID checks an id the caller chose (none is fine: baton picks
// one). Ids baton derives itself ("<workflow>.<n>", "<id>.err") are not
// held to it.
func validCallerID(what, id string) error {
	if id == "" {
		return nil
	}
	if err := backend.ValidID(id); err != nil {
		return fmt.Errorf("%s %w", what, err)
	}
	return nil
}
