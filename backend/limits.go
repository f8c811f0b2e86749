package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Flow control: the Redis side of rate and concurrency limits (see the
// scripts in limits_scripts.go and the root package's limit.go). The write
// side is for baton's worker; ReadLimits is for anyone.

// ReservationKeep is how long a rate limit remembers a reservation after its
// time: an attempt (or a redelivery of it) that comes back within it is not
// charged again.
const ReservationKeep = 10 * time.Minute

// Fields of the task hash written by flow control.
const (
	fThrottled      = "throttled"       // the limit a task last waited for
	fThrottledUntil = "throttled_until" // when it may run (unix ms)
	fThrottles      = "throttles"       // how many times it waited
)

// RateCheck is one rate limit to check for one attempt of a task.
type RateCheck struct {
	Name string // the limit
	Key  string // the key value ("" for a limit without a key)
	// Interval is the emission interval per unit of cost, in ms (Per/Rate).
	Interval float64
	Burst    int // tolerance, in units of cost
	Cost     int
	// Member names the attempt: "<task id>/<attempt>".
	Member string
	// Record keeps a reservation for an attempt admitted at once, so that a
	// redelivery of it is not charged again (used when a task has several
	// rate limits: another one may send it away).
	Record bool
	// Keyed notes the key value in the limit's index (for inspection); a
	// limit without a key has the single key value "".
	Keyed bool
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func (c RateCheck) tau() float64 { return float64(c.Burst) * c.Interval }

func fmtF(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func micros(v any) time.Duration {
	n, _ := v.(int64)
	return time.Duration(n) * time.Microsecond
}

// RateResult is the answer to one RateCheck.
type RateResult struct {
	// Wait is 0 when the attempt may start now, else how long until its
	// reserved time.
	Wait time.Duration
	// Found is true when an earlier reservation of the same attempt
	// answered: nothing was charged.
	Found bool
}

// RateReserve checks rate limits for one attempt, in one round trip. Each
// limit admits the attempt now or reserves a later time for it.
func (b *Backend) RateReserve(ctx context.Context, checks []RateCheck) ([]RateResult, error) {
	calls := make([]*call, len(checks))
	keep := strconv.FormatInt(ReservationKeep.Milliseconds(), 10)
	for i, c := range checks {
		calls[i] = &call{script: rateScript,
			keys: []string{RateTATKey(c.Name, c.Key), RateReservedKey(c.Name, c.Key), RateKeysKey(c.Name)},
			args: []any{fmtF(c.Interval), fmtF(c.tau()), c.Cost, c.Member, flag(c.Record), c.Key, keep, flag(c.Keyed)}}
	}
	if err := b.pipe.do(ctx, calls...); err != nil {
		return nil, fmt.Errorf("backend: rate limit check: %w", err)
	}
	out := make([]RateResult, len(calls))
	for i, c := range calls {
		arr, ok := c.res.([]any)
		if !ok || len(arr) != 2 {
			return nil, fmt.Errorf("backend: rate limit %s: unexpected script reply %v", checks[i].Name, c.res)
		}
		found, _ := arr[1].(int64)
		out[i] = RateResult{Wait: micros(arr[0]), Found: found == 1}
	}
	return out, nil
}

// RateAdjust charges delta more units (a refund when negative) to a rate
// limit's key, after the fact: the correction of an estimated cost.
func (b *Backend) RateAdjust(ctx context.Context, c RateCheck, delta int) error {
	if delta == 0 {
		return nil
	}
	cl := &call{script: rateAdjustScript, keys: []string{RateTATKey(c.Name, c.Key)},
		args: []any{fmtF(c.Interval), delta, ReservationKeep.Milliseconds()}}
	if err := b.pipe.do(ctx, cl); err != nil {
		return fmt.Errorf("backend: rate limit %s adjust: %w", c.Name, err)
	}
	return nil
}

// RatePause lowers a rate limit's allowance for everyone: nothing is
// admitted under c's limit and key for pause, reservations move later by
// pause, and c's attempt gets a new reservation after them, whose wait is
// returned.
func (b *Backend) RatePause(ctx context.Context, c RateCheck, pause time.Duration) (time.Duration, error) {
	cl := &call{script: ratePauseScript,
		keys: []string{RateTATKey(c.Name, c.Key), RateReservedKey(c.Name, c.Key), RateKeysKey(c.Name), RatePauseKey(c.Name, c.Key)},
		args: []any{fmtF(c.Interval), fmtF(c.tau()), fmtF(float64(pause) / float64(time.Millisecond)), c.Cost, c.Member,
			ReservationKeep.Milliseconds(), c.Key, flag(c.Keyed)}}
	if err := b.pipe.do(ctx, cl); err != nil {
		return 0, fmt.Errorf("backend: rate limit %s pause: %w", c.Name, err)
	}
	return micros(cl.res), nil
}

// ConcSlot is one concurrency limit slot of a task.
type ConcSlot struct {
	Name   string
	Key    string
	Max    int
	Member string // the task id
	// Waiter is "<queue> <asynq task id>": where to wake the task when a
	// slot frees. Empty for a renewal.
	Waiter string
	// Keyed notes the key value in the limit's index, as RateCheck.Keyed.
	Keyed bool
}

// ConcResult is the answer to one acquire.
type ConcResult struct {
	Held bool
	// Earliest is, when not held, how long until the first holder's lease
	// ends (when its worker died, the slot frees then).
	Earliest time.Duration
}

// ConcAcquire takes or renews slots, in one round trip.
func (b *Backend) ConcAcquire(ctx context.Context, lease time.Duration, slots []ConcSlot) ([]ConcResult, error) {
	calls := make([]*call, len(slots))
	for i, s := range slots {
		calls[i] = &call{script: concAcquireScript,
			keys: []string{ConcHoldersKey(s.Name, s.Key), ConcWaitersKey(s.Name, s.Key), ConcKeysKey(s.Name)},
			args: []any{s.Member, lease.Milliseconds(), s.Max, s.Waiter, s.Key, flag(s.Keyed)}}
	}
	if err := b.pipe.do(ctx, calls...); err != nil {
		return nil, fmt.Errorf("backend: concurrency limit acquire: %w", err)
	}
	out := make([]ConcResult, len(calls))
	for i, c := range calls {
		arr, ok := c.res.([]any)
		if !ok || len(arr) != 2 {
			return nil, fmt.Errorf("backend: concurrency limit %s: unexpected script reply %v", slots[i].Name, c.res)
		}
		held, _ := arr[0].(int64)
		ms, _ := arr[1].(int64)
		out[i] = ConcResult{Held: held == 1, Earliest: time.Duration(ms) * time.Millisecond}
	}
	return out, nil
}

// ConcRelease gives a slot back (s.Member "" gives nothing back) and returns
// the waiter entry the free slot was handed to, or "".
func (b *Backend) ConcRelease(ctx context.Context, s ConcSlot) (string, error) {
	c := &call{script: concReleaseScript, keys: []string{ConcHoldersKey(s.Name, s.Key), ConcWaitersKey(s.Name, s.Key)},
		args: []any{s.Member, s.Max}}
	if err := b.pipe.do(ctx, c); err != nil {
		return "", fmt.Errorf("backend: concurrency limit %s release: %w", s.Name, err)
	}
	w, _ := c.res.(string)
	return w, nil
}

// Throttle records on a task that it waits for limit until the given time.
// Its state is kept, or set to state when not empty (with errText). A task
// with no record yet gets a PENDING one from meta.
func (b *Backend) Throttle(ctx context.Context, meta Meta, limit string, until time.Time, state State, errText string) error {
	args := []any{b.ttlFor(until), limit, ms(until), string(state), errText}
	args = append(args, meta.fields()...)
	c := &call{script: throttleScript, keys: []string{TaskKey(meta.ID)}, args: args}
	if err := b.pipe.do(ctx, c); err != nil {
		return fmt.Errorf("backend: record throttle of %s: %w", meta.ID, err)
	}
	return nil
}

// LimitDef is a limit as workers enforce it, kept in LimitsKey for
// inspection and to catch workers configured differently.
type LimitDef struct {
	Type  string   `json:"type"` // "rate" or "concurrency"
	Name  string   `json:"name"`
	Kinds []string `json:"kinds"`
	// Rate limits: Rate per PerMS, Burst; Cost is true when attempts cost
	// more than one unit (a token budget).
	Rate  int   `json:"rate,omitempty"`
	PerMS int64 `json:"per_ms,omitempty"`
	Burst int   `json:"burst,omitempty"`
	Cost  bool  `json:"cost,omitempty"`
	// Concurrency limits: at most Max at once.
	Max int `json:"max,omitempty"`
	// Keyed is true when the limit applies per key value.
	Keyed bool `json:"keyed,omitempty"`
	// Seen is when a worker last said it enforces this definition (unix ms).
	Seen int64 `json:"seen"`
}

// Field is the definition's field in LimitsKey.
func (d LimitDef) Field() string { return d.Type + ":" + d.Name }

// Same reports whether two definitions enforce the same limit (kinds and
// times aside).
func (d LimitDef) Same(o LimitDef) bool {
	return d.Type == o.Type && d.Name == o.Name && d.Rate == o.Rate && d.PerMS == o.PerMS && d.Burst == o.Burst &&
		d.Cost == o.Cost && d.Max == o.Max && d.Keyed == o.Keyed
}

// String is the definition as a person reads it: "10/1s burst 1 per key".
func (d LimitDef) String() string {
	var s string
	if d.Type == "rate" {
		s = fmt.Sprintf("%d/%s burst %d", d.Rate, fmtPer(time.Duration(d.PerMS)*time.Millisecond), d.Burst)
		if d.Cost {
			s += " (by cost)"
		}
	} else {
		s = fmt.Sprintf("max %d", d.Max)
	}
	if d.Keyed {
		s += " per key"
	}
	return s
}

func fmtPer(d time.Duration) string {
	switch d {
	case time.Second:
		return "s"
	case time.Minute:
		return "m"
	case time.Hour:
		return "h"
	}
	return d.String()
}

// LimitDefStale is how long a definition no worker refreshed stays listed.
const LimitDefStale = 10 * time.Minute

// PublishLimits records the definitions this worker enforces and returns,
// for each one that a live worker recorded differently, the other
// definition (same order as the conflicting entries of defs).
func (b *Backend) PublishLimits(ctx context.Context, defs []LimitDef) (conflicts [][2]LimitDef, err error) {
	cur, err := b.rdb.HGetAll(ctx, LimitsKey).Result()
	if err != nil {
		return nil, fmt.Errorf("backend: read limit definitions: %w", err)
	}
	now := time.Now()
	pipe := b.rdb.Pipeline()
	for f, v := range cur {
		var d LimitDef
		if json.Unmarshal([]byte(v), &d) != nil || now.Sub(time.UnixMilli(d.Seen)) > LimitDefStale {
			pipe.HDel(ctx, LimitsKey, f)
		}
	}
	for _, d := range defs {
		if v, ok := cur[d.Field()]; ok {
			var old LimitDef
			if json.Unmarshal([]byte(v), &old) == nil && !old.Same(d) && now.Sub(time.UnixMilli(old.Seen)) <= LimitDefStale {
				conflicts = append(conflicts, [2]LimitDef{d, old})
			}
		}
		d.Seen = now.UnixMilli()
		j, _ := json.Marshal(d)
		pipe.HSet(ctx, LimitsKey, d.Field(), j)
	}
	pipe.PExpire(ctx, LimitsKey, LimitDefStale)
	if _, err := pipe.Exec(ctx); err != nil {
		return conflicts, fmt.Errorf("backend: record limit definitions: %w", err)
	}
	return conflicts, nil
}

// LimitKeyState is the state of one key value of a limit.
type LimitKeyState struct {
	Key string `json:"key"`
	// InUse is, for a rate limit, the units of the allowance in use (0 to
	// Burst; reservations beyond it are Waiting); for a concurrency limit
	// the slots held.
	InUse float64 `json:"in_use"`
	// Waiting is how many task attempts wait for this key: reservations not
	// yet due, or tasks waiting for a slot.
	Waiting int `json:"waiting"`
}

// LimitState is a limit's definition and current usage.
type LimitState struct {
	LimitDef
	// Keys are the most recently used key values (at most MaxLimitKeys).
	Keys []LimitKeyState `json:"keys"`
	// ActiveKeys counts key values used in the last day (up to 1,000; 1
	// for a limit without a key).
	ActiveKeys int `json:"active_keys"`
	// InUse sums the keys' InUse; Waiting their Waiting.
	InUse   float64 `json:"in_use"`
	Waiting int     `json:"waiting"`
	// Usage is the highest InUse of a key over its capacity (Burst or Max),
	// from 0 to 1.
	Usage float64 `json:"usage"`
}

// MaxLimitKeys caps the key values ReadLimits reads per limit.
const MaxLimitKeys = 100

// ReadLimits returns every limit a live worker enforces with its usage, read
// from rdb at the Redis server's time, sorted by type and name.
func ReadLimits(ctx context.Context, rdb redis.UniversalClient) ([]LimitState, error) {
	raw, err := rdb.HGetAll(ctx, LimitsKey).Result()
	if err != nil {
		return nil, fmt.Errorf("backend: read limits: %w", err)
	}
	if len(raw) == 0 {
		return nil, nil
	}
	tm, err := rdb.Time(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("backend: read limits: %w", err)
	}
	now := float64(tm.UnixMicro()) / 1000
	var out []LimitState
	for _, v := range raw {
		var d LimitDef
		if json.Unmarshal([]byte(v), &d) != nil || tm.Sub(time.UnixMilli(d.Seen)) > LimitDefStale {
			continue
		}
		out = append(out, LimitState{LimitDef: d})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Field() < out[j].Field() })

	// Round 1: key values of every limit with a key.
	pipe := rdb.Pipeline()
	idx := make([]*redis.ZSliceCmd, len(out))
	for i, l := range out {
		k := RateKeysKey(l.Name)
		if l.Type != "rate" {
			k = ConcKeysKey(l.Name)
		}
		idx[i] = pipe.ZRevRangeWithScores(ctx, k, 0, MaxLimitKeys*10)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("backend: read limits: %w", err)
	}
	// Round 2: the state of each key value.
	pipe = rdb.Pipeline()
	type keyCmds struct {
		a *redis.StringCmd
		b *redis.IntCmd
		c *redis.IntCmd
	}
	cmds := make([][]keyCmds, len(out))
	lo := fmtF(now)
	for i := range out {
		l := &out[i]
		zs := idx[i].Val()
		if !l.Keyed {
			zs = []redis.Z{{Score: now, Member: ""}} // no index: the single key ""
		}
		for n, z := range zs {
			if now-z.Score > float64(24*time.Hour/time.Millisecond) {
				continue
			}
			l.ActiveKeys++
			if n >= MaxLimitKeys {
				continue
			}
			key := fmt.Sprint(z.Member)
			l.Keys = append(l.Keys, LimitKeyState{Key: key})
			if l.Type == "rate" {
				cmds[i] = append(cmds[i], keyCmds{a: pipe.Get(ctx, RateTATKey(l.Name, key)),
					b: pipe.ZCount(ctx, RateReservedKey(l.Name, key), "("+lo, "+inf")})
			} else {
				cmds[i] = append(cmds[i], keyCmds{b: pipe.ZCount(ctx, ConcHoldersKey(l.Name, key), "("+lo, "+inf"),
					c: pipe.ZCard(ctx, ConcWaitersKey(l.Name, key))})
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("backend: read limits: %w", err)
	}
	for i := range out {
		l := &out[i]
		for j, c := range cmds[i] {
			ks := &l.Keys[j]
			capacity := float64(l.Max)
			if l.Type == "rate" {
				capacity = float64(l.Burst)
				tat, _ := strconv.ParseFloat(c.a.Val(), 64)
				if tat > now && l.Rate > 0 {
					interval := float64(l.PerMS) / float64(l.Rate)
					ks.InUse = min((tat-now)/interval, capacity)
				}
				ks.Waiting = int(c.b.Val())
			} else {
				ks.InUse = float64(c.b.Val())
				ks.Waiting = int(c.c.Val())
			}
			l.InUse += ks.InUse
			l.Waiting += ks.Waiting
			if capacity > 0 {
				l.Usage = max(l.Usage, min(ks.InUse/capacity, 1))
			}
		}
	}
	return out, nil
}

// ParseWaiter splits a waiter entry into its queue and asynq task id.
func ParseWaiter(entry string) (queue, id string, ok bool) {
	return strings.Cut(entry, " ")
}
