package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/batonhq/baton"
)

// The built-in tasks: small, dependency-free tasks that every `baton worker`
// registers, for trying baton out, smoke-testing a deployment and testing
// retries and canvases from the command line:
//
//	baton enqueue echo --args '{"x": 1}' --wait
//	baton enqueue sleep --args '{"ms": 500, "result": "done"}'
//	baton enqueue fail --args '{"message": "boom"}' --wait
//	baton enqueue flaky --args '{"fail_times": 2}' --wait

// Echo returns its arguments unchanged: any JSON value.
var Echo = baton.NewTask("echo", echo, nil)

func echo(_ context.Context, args json.RawMessage) (json.RawMessage, error) {
	return args, nil
}

// SleepArgs are the arguments of the sleep task.
type SleepArgs struct {
	// MS is how long to sleep, in milliseconds.
	MS int64 `json:"ms"`
	// Result is what the task returns. When it is absent, the task returns
	// Input, so a sleep in a chain passes the previous step's result on.
	Result json.RawMessage `json:"result,omitempty"`
	// Input is the previous step's result when sleep is a chained step with
	// static args (chain.DefaultResultField).
	Input json.RawMessage `json:"input,omitempty"`
}

// Sleep waits MS milliseconds (or until its context ends: timeout, shutdown,
// cancellation), then returns Result, else Input, else null.
var Sleep = baton.NewTask("sleep", sleep, nil)

func sleep(ctx context.Context, a SleepArgs) (json.RawMessage, error) {
	if a.MS < 0 {
		return nil, baton.Permanent(fmt.Errorf("sleep: ms is %d: use a duration >= 0 in milliseconds", a.MS))
	}
	t := time.NewTimer(time.Duration(a.MS) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("sleep interrupted after less than %dms: %w", a.MS, context.Cause(ctx))
	case <-t.C:
	}
	switch {
	case len(a.Result) > 0:
		return a.Result, nil
	case len(a.Input) > 0:
		return a.Input, nil
	}
	return json.RawMessage("null"), nil
}

// FailArgs are the arguments of the fail task.
type FailArgs struct {
	// Message is the error text. Defaults to FailMessageDefault.
	Message string `json:"message,omitempty"`
	// Permanent fails at once, without retries (baton.Permanent).
	Permanent bool `json:"permanent,omitempty"`
	// RetryAfterMS asks for the next attempt after this many milliseconds
	// instead of the retry policy's delay (baton.RetryAfter).
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// FailMessageDefault is the fail task's error text when none is given.
const FailMessageDefault = "the fail task always fails"

// Fail always fails. It is registered with MaxRetries 2 and a fixed 100ms
// retry delay, so by default it runs 3 times within a fraction of a second
// and ends in FAILURE with its message.
var Fail = baton.NewTask("fail", fail, &baton.TaskOptions{
	MaxRetries: 2,
	RetryDelay: baton.FixedDelay(100 * time.Millisecond),
})

func fail(_ context.Context, a FailArgs) (json.RawMessage, error) {
	msg := a.Message
	if msg == "" {
		msg = FailMessageDefault
	}
	err := errors.New(msg)
	switch {
	case a.Permanent:
		return nil, baton.Permanent(err)
	case a.RetryAfterMS > 0:
		return nil, baton.RetryAfter(time.Duration(a.RetryAfterMS)*time.Millisecond, err)
	}
	return nil, err
}

// FlakyArgs are the arguments of the flaky task.
type FlakyArgs struct {
	// FailTimes is how many attempts fail before one succeeds.
	FailTimes int `json:"fail_times"`
	// Key names the attempt counter. Defaults to the task id, so each task
	// counts its own attempts; tasks that share a key share a counter.
	Key string `json:"key,omitempty"`
}

// Flaky fails its first fail_times attempts (FlakyArgs), then succeeds and
// returns its arguments unchanged. Attempts are counted in the worker
// process, keyed by key or the task id, so with several worker processes a
// task may fail more often before it succeeds. It is registered with
// MaxRetries 3 and a fixed 100ms retry delay: fail_times up to 3 succeeds
// with the defaults.
var Flaky = baton.NewTask("flaky", flaky, &baton.TaskOptions{
	MaxRetries: 3,
	RetryDelay: baton.FixedDelay(100 * time.Millisecond),
})

// flakyAttempts counts attempts per key; a key is dropped when its task
// succeeds.
var flakyAttempts = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

func flaky(ctx context.Context, raw json.RawMessage) (json.RawMessage, error) {
	var a FlakyArgs
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, baton.Permanent(fmt.Errorf("flaky: args must be an object like {\"fail_times\": 2}: %w", err))
		}
	}
	key := a.Key
	if key == "" {
		info, ok := baton.InfoFrom(ctx)
		if !ok {
			return nil, baton.Permanent(errors.New("flaky: no task info in the context: give a key"))
		}
		key = info.ID
	}
	flakyAttempts.Lock()
	flakyAttempts.n[key]++
	attempt := flakyAttempts.n[key]
	if attempt > a.FailTimes {
		delete(flakyAttempts.n, key)
	}
	flakyAttempts.Unlock()
	if attempt <= a.FailTimes {
		return nil, fmt.Errorf("flaky: attempt %d fails on purpose (the first %d fail)", attempt, a.FailTimes)
	}
	return raw, nil
}

// Builtins returns the built-in task definitions (echo, sleep, fail, flaky),
// which `baton worker` registers.
func Builtins() []baton.Definition {
	return []baton.Definition{Echo, Sleep, Fail, Flaky}
}
