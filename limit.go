package baton

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Flow control: rate and concurrency limits per task kind, and per key
// computed from the task's arguments, enforced in Redis for the whole fleet.
//
// A rate limit is a GCRA (generic cell rate algorithm) per limit and key:
// one Redis key holds the theoretical arrival time, each check is one Lua
// script. A delivery over the limit reserves the next free slot and is
// rescheduled to exactly that time, so waiting tasks are spread one
// interval apart instead of all starting when the window opens; its
// reservation is remembered, so it is not charged again when it comes back.
//
// A concurrency limit is a set of leases per limit and key: a running task
// holds a slot its worker renews; a killed worker's slot comes back when its
// lease (WorkerOptions.LimitLease) runs out. A finishing task wakes exactly
// one waiting task.
//
// Waiting is not failing: a task over a limit goes back to asynq, not
// counted as a retry and holding no worker slot, until the time the limit
// frees. Its record says so (Record.Throttled, ThrottledUntil, Throttles).
// A kind without limits costs nothing: no Redis call is made.

// RateLimit caps how often tasks start, across every worker that shares the
// Redis. With Key, each key value (a host, a tenant, a model) has its own
// allowance.
type RateLimit struct {
	// Name identifies the limit: its state in Redis, its metrics and its row
	// in `baton inspect`. Tasks of different kinds whose limits have the
	// same Name (and key value) share one allowance. Defaults to the kind.
	Name string
	// Rate is how many tasks (or units of Cost) start per Per. Required.
	Rate int
	// Per is the period of Rate. Required: time.Second, time.Minute, ...
	Per time.Duration
	// Burst is how many (units) may start at once after a quiet spell; over
	// any window of length W at most W×Rate/Per + Burst start. Defaults to
	// 1: starts are spread Per/Rate apart.
	Burst int
	// Key, when set, keeps one allowance per key value; build it with KeyBy.
	// EnqueueOpts.LimitKey overrides it for one call.
	Key *LimitKey
	// Cost, when set, charges each task that many units instead of one
	// (estimated tokens, bytes); build it with CostBy. A handler corrects
	// the estimate once it knows the real cost with SetCost.
	Cost *LimitCost
}

// ConcurrencyLimit caps how many tasks run at once across the fleet. With
// Key, each key value has Max slots of its own.
type ConcurrencyLimit struct {
	// Name identifies the limit, as RateLimit.Name. Defaults to the kind.
	Name string
	// Max is how many may run at once. Required.
	Max int
	// Key, when set, keeps Max slots per key value; build it with KeyBy.
	Key *LimitKey
}

// LimitKey computes a limit's key value from a task's arguments. Build it
// with KeyBy; its argument type must be the task's.
type LimitKey struct {
	typ reflect.Type
	fn  func(raw json.RawMessage) (string, error)
}

// KeyBy returns the key of a limit computed by f from the typed arguments,
// e.g. KeyBy(func(a FetchArgs) string { return host(a.URL) }).
func KeyBy[A any](f func(args A) string) *LimitKey {
	if f == nil {
		panic("baton: KeyBy with a nil function")
	}
	return &LimitKey{typ: reflect.TypeFor[A](), fn: func(raw json.RawMessage) (string, error) {
		a, err := decodeArgs[A](raw)
		if err != nil {
			return "", err
		}
		return f(a), nil
	}}
}

// LimitCost computes what a task costs against a rate limit. Build it with
// CostBy.
type LimitCost struct {
	typ reflect.Type
	fn  func(raw json.RawMessage) (int, error)
}

// CostBy returns the cost of a task computed by f from its typed arguments
// (a negative cost counts as 0).
func CostBy[A any](f func(args A) int) *LimitCost {
	if f == nil {
		panic("baton: CostBy with a nil function")
	}
	return &LimitCost{typ: reflect.TypeFor[A](), fn: func(raw json.RawMessage) (int, error) {
		a, err := decodeArgs[A](raw)
		if err != nil {
			return 0, err
		}
		return max(f(a), 0), nil
	}}
}

func decodeArgs[A any](raw json.RawMessage) (A, error) {
	var a A
	if len(raw) == 0 || string(raw) == "null" {
		return a, nil
	}
	err := json.Unmarshal(raw, &a)
	return a, err
}

// SetCost corrects the cost the running task was charged under its rate
// limit named limit (a RateLimit with Cost) to cost: the difference is
// refunded or charged more, so the next tasks see the real usage (e.g. the
// tokens the provider reported instead of the estimate). It does nothing
// outside a task with such a limit.
func SetCost(ctx context.Context, limit string, cost int) error {
	a, _ := ctx.Value(admissionKey{}).(*admission)
	if a == nil {
		return nil
	}
	return a.setCost(ctx, limit, max(cost, 0))
}

// RateLimited wraps err from an upstream that refused for rate (an HTTP
// 429) and asked to wait d (its Retry-After). When the task has rate
// limits, each one pauses for d for everyone, not only this task, and the
// task runs again after the pause without counting an attempt. Without rate
// limits it is RetryAfter(d, err). A nil err stays nil.
func RateLimited(d time.Duration, err error) error {
	if err == nil {
		return nil
	}
	return &rateLimitedError{ra: &retryAfterError{err: err, delay: max(d, 0)}}
}

type rateLimitedError struct{ ra *retryAfterError }

func (e *rateLimitedError) Error() string { return e.ra.Error() }
func (e *rateLimitedError) Unwrap() error { return e.ra }

func rateLimitedDelay(err error) (time.Duration, bool) {
	var r *rateLimitedError
	if errors.As(err, &r) {
		return r.ra.delay, true
	}
	return 0, false
}

// WithLimits returns def with more limits, for limits decided when workers
// are deployed rather than in code (`baton worker` applies
// BATON_RATE_LIMITS and BATON_CONCURRENCY_LIMITS with it). A limit replaces
// one of def's with the same name. Keys and costs must take def's argument
// type.
func WithLimits(def Definition, rates []RateLimit, concs []ConcurrencyLimit) (Definition, error) {
	kind := def.Kind()
	o := def.Options()
	o.RateLimits = replaceByName(kind, o.RateLimits, rates, func(l RateLimit) string { return l.Name })
	o.ConcurrencyLimits = replaceByName(kind, o.ConcurrencyLimits, concs, func(l ConcurrencyLimit) string { return l.Name })
	if err := errors.Join(o.validateLimits(kind), o.checkLimitArgs(kind, def.argsRType())); err != nil {
		return nil, fmt.Errorf("baton: %w", err)
	}
	return &limitedDef{Definition: def, opts: o}, nil
}

func replaceByName[L any](kind string, have, add []L, name func(L) string) []L {
	named := func(l L) string {
		if n := name(l); n != "" {
			return n
		}
		return kind
	}
	out := make([]L, 0, len(have)+len(add))
	for _, h := range have {
		replaced := false
		for _, a := range add {
			replaced = replaced || named(a) == named(h)
		}
		if !replaced {
			out = append(out, h)
		}
	}
	return append(out, add...)
}

// limitedDef is a definition with the limits WithLimits gave it.
type limitedDef struct {
	Definition
	opts TaskOptions
}

func (d *limitedDef) Options() TaskOptions { return d.opts }

func limitName(name, kind string) string {
	if name == "" {
		return kind
	}
	return name
}

func validLimitName(name string) error {
	if len(name) > 100 {
		return fmt.Errorf("name is %d bytes: keep it under 100", len(name))
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == '{' || r == '}' || r == ':' || r == 0x7f }) {
		return fmt.Errorf("name %q has a space, control character, colon or brace: use letters, digits and -_./", name)
	}
	return nil
}

// validateLimits checks the limits of a task of kind.
func (o TaskOptions) validateLimits(kind string) error {
	var errs []error
	seen := map[string]bool{}
	for i, l := range o.RateLimits {
		name := limitName(l.Name, kind)
		where := fmt.Sprintf("task %q: RateLimits[%d] (%s)", kind, i, name)
		if err := validLimitName(name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		if seen[name] {
			errs = append(errs, fmt.Errorf("%s: two rate limits named %q: give each its own Name", where, name))
		}
		seen[name] = true
		if l.Rate < 1 {
			errs = append(errs, fmt.Errorf("%s: Rate %d must be at least 1 (tasks per Per); use e.g. Rate: 10, Per: time.Second", where, l.Rate))
		}
		if l.Per <= 0 {
			errs = append(errs, fmt.Errorf("%s: Per %v must be positive; use e.g. time.Second or time.Minute", where, l.Per))
		}
		if l.Burst < 0 {
			errs = append(errs, fmt.Errorf("%s: Burst %d is negative: use 0 for the default (1)", where, l.Burst))
		}
	}
	seen = map[string]bool{}
	for i, l := range o.ConcurrencyLimits {
		name := limitName(l.Name, kind)
		where := fmt.Sprintf("task %q: ConcurrencyLimits[%d] (%s)", kind, i, name)
		if err := validLimitName(name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		if seen[name] {
			errs = append(errs, fmt.Errorf("%s: two concurrency limits named %q: give each its own Name", where, name))
		}
		seen[name] = true
		if l.Max < 1 {
			errs = append(errs, fmt.Errorf("%s: Max %d must be at least 1 (tasks running at once)", where, l.Max))
		}
	}
	return errors.Join(errs...)
}

// checkLimitArgs checks that keys and costs take the task's argument type.
func (o TaskOptions) checkLimitArgs(kind string, args reflect.Type) error {
	var errs []error
	check := func(what string, typ reflect.Type) {
		if typ != nil && typ != args {
			errs = append(errs, fmt.Errorf("task %q: %s takes %s, but the task's arguments are %s: build it with the task's argument type", kind, what, typ, args))
		}
	}
	for i, l := range o.RateLimits {
		if l.Key != nil {
			check(fmt.Sprintf("RateLimits[%d].Key", i), l.Key.typ)
		}
		if l.Cost != nil {
			check(fmt.Sprintf("RateLimits[%d].Cost", i), l.Cost.typ)
		}
	}
	for i, l := range o.ConcurrencyLimits {
		if l.Key != nil {
			check(fmt.Sprintf("ConcurrencyLimits[%d].Key", i), l.Key.typ)
		}
	}
	return errors.Join(errs...)
}
