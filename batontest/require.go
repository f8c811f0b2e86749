package batontest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/batonhq/baton"
)

// RequireOpts narrow what RequireEnqueued and RequireNotEnqueued match.
// Every field set must hold.
type RequireOpts struct {
	// Queue is the queue the task must be on. Defaults to any.
	Queue string
	// Count is how many tasks must match: RequireEnqueued fails unless
	// exactly Count do. Defaults to at least one.
	Count int
}

// requireTimeout bounds the Redis reads of one assertion.
const requireTimeout = 10 * time.Second

// RequireEnqueued stops the test unless a task of kind whose arguments
// are JSON-equal to args (any arguments when args is nil; a
// json.RawMessage is compared as the JSON it holds) is on the Env's queues:
// enqueued and not run yet, waiting, or failed for good (see QueuedTask; a
// task that succeeded has left the queues). The failure lists what the
// queues hold instead. It returns the tasks that match.
func RequireEnqueued(tb testing.TB, env *Env, kind string, args any, opts *RequireOpts) []QueuedTask {
	tb.Helper()
	var o RequireOpts
	if opts != nil {
		o = *opts
	}
	match, all := matching(tb, env, kind, args, o)
	switch {
	case o.Count > 0 && len(match) != o.Count:
		tb.Fatalf("batontest: RequireEnqueued: want %d task(s) %s, found %d; %s", o.Count, what(kind, args, o), len(match), listing(all))
	case len(match) == 0:
		tb.Fatalf("batontest: RequireEnqueued: no task %s is enqueued; %s", what(kind, args, o), listing(all))
	}
	return match
}

// RequireNotEnqueued stops the test when a task matching kind, args and
// opts (as RequireEnqueued matches them; opts.Count is ignored) is on the
// Env's queues, listing the tasks that match.
func RequireNotEnqueued(tb testing.TB, env *Env, kind string, args any, opts *RequireOpts) {
	tb.Helper()
	var o RequireOpts
	if opts != nil {
		o = *opts
	}
	o.Count = 0
	if match, _ := matching(tb, env, kind, args, o); len(match) > 0 {
		tb.Fatalf("batontest: RequireNotEnqueued: found %d task(s) %s, want none; %s", len(match), what(kind, args, o), listing(match))
	}
}

// RequireRecord stops the test unless the record of task id is in state,
// saying what it is instead (with its error); it returns the record.
func RequireRecord(tb testing.TB, env *Env, id string, state baton.State) *baton.Record {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), requireTimeout)
	defer cancel()
	rec, err := env.client.Get(ctx, id)
	if errors.Is(err, baton.ErrNotFound) {
		tb.Fatalf("batontest: RequireRecord: task %s has no record, want %s: it was never enqueued (or its record expired)", id, state)
	}
	if err != nil {
		tb.Fatalf("batontest: RequireRecord: %v", err)
	}
	if rec.State != state {
		msg := fmt.Sprintf("batontest: RequireRecord: task %s (%s) is %s, want %s", id, rec.Kind, rec.State, state)
		if rec.Error != "" {
			msg += fmt.Sprintf("; error: %s", rec.Error)
		}
		if rec.Retries > 0 {
			msg += fmt.Sprintf("; retries: %d", rec.Retries)
		}
		tb.Fatal(msg)
	}
	return rec
}

// matching returns the queued tasks that match, and all of them.
func matching(tb testing.TB, env *Env, kind string, args any, o RequireOpts) (match, all []QueuedTask) {
	tb.Helper()
	want, err := canonical(args)
	if err != nil {
		tb.Fatalf("batontest: args %T: %v", args, err)
	}
	ctx, cancel := context.WithTimeout(tb.Context(), requireTimeout)
	defer cancel()
	all, err = env.Queued(ctx)
	if err != nil {
		tb.Fatalf("batontest: %v", err)
	}
	for _, t := range all {
		if t.Kind != kind || o.Queue != "" && t.Queue != o.Queue {
			continue
		}
		if args != nil {
			got, err := canonical(t.Args)
			if err != nil || !jsonEqual(want, got) {
				continue
			}
		}
		match = append(match, t)
	}
	return match, all
}

// what names the tasks looked for.
func what(kind string, args any, o RequireOpts) string {
	s := fmt.Sprintf("of kind %q", kind)
	if args != nil {
		b, _ := toJSON(args)
		s += " with args " + clip(string(b), 200)
	}
	if o.Queue != "" {
		s += fmt.Sprintf(" on queue %q", o.Queue)
	}
	return s
}

// listing shows tasks, one a line.
func listing(ts []QueuedTask) string {
	if len(ts) == 0 {
		return "the queues hold no task"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the queues hold %d task(s):", len(ts))
	now := time.Now()
	for _, t := range ts {
		b.WriteString("\n  ")
		b.WriteString(t.describe(now))
	}
	return b.String()
}

func toJSON(v any) ([]byte, error) {
	switch a := v.(type) {
	case json.RawMessage:
		return a, nil
	case []byte:
		return a, nil
	}
	return json.Marshal(v)
}

// canonical decodes v's JSON with numbers kept exact.
func canonical(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	b, err := toJSON(v)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	return out, nil
}

// jsonEqual compares decoded JSON values; numbers by value (1 == 1.0).
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		p, ok1 := new(big.Rat).SetString(string(x))
		q, ok2 := new(big.Rat).SetString(string(y))
		return ok1 && ok2 && p.Cmp(q) == 0
	default:
		return a == b
	}
}
