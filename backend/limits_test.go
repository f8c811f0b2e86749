package backend_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/internal/redistest"
)

// rc is a check of limit "l" with key "k": 10/s burst `burst`.
func rc(member string, burst int) backend.RateCheck {
	return backend.RateCheck{Name: "l", Key: "k", Keyed: true, Interval: 100, Burst: burst, Cost: 1, Member: member}
}

func withKey(c backend.RateCheck, key string) backend.RateCheck {
	c.Key = key
	return c
}

func reserve(t *testing.T, f *fixture, c backend.RateCheck) backend.RateResult {
	t.Helper()
	res, err := f.be.RateReserve(context.Background(), []backend.RateCheck{c})
	require.NoError(t, err)
	require.Len(t, res, 1)
	return res[0]
}

// tatAhead is how far the limit's TAT is ahead of the server's clock.
func (f *fixture) tatAhead(t *testing.T, name, key string) time.Duration {
	t.Helper()
	ctx := context.Background()
	v, err := f.rdb.Get(ctx, backend.RateTATKey(name, key)).Result()
	if err != nil {
		return 0
	}
	tat, err := strconv.ParseFloat(v, 64)
	require.NoError(t, err)
	now, err := f.rdb.Time(ctx).Result()
	require.NoError(t, err)
	return time.Duration((tat - float64(now.UnixMicro())/1000) * float64(time.Millisecond))
}

func near(t *testing.T, got, want time.Duration, what string) {
	t.Helper()
	require.InDelta(t, float64(want), float64(got), float64(40*time.Millisecond), "%s: got %v, want about %v", what, got, want)
}

func TestRateGCRA(t *testing.T) {
	f := setup(t)
	// Burst 3: three at once, then one per 100 ms, reserved in order.
	for i := range 3 {
		r := reserve(t, f, rc("m"+strconv.Itoa(i), 3))
		require.Zero(t, r.Wait, "attempt %d is within the burst", i)
		require.False(t, r.Found)
	}
	near(t, reserve(t, f, rc("m3", 3)).Wait, 100*time.Millisecond, "4th")
	near(t, reserve(t, f, rc("m4", 3)).Wait, 200*time.Millisecond, "5th")
	before := f.tatAhead(t, "l", "k")
	near(t, before, 500*time.Millisecond, "TAT after 5 attempts")

	t.Run("a reservation answers its member again without a charge", func(t *testing.T) {
		r := reserve(t, f, rc("m4", 3))
		require.True(t, r.Found)
		near(t, r.Wait, 200*time.Millisecond, "same reserved time")
		near(t, f.tatAhead(t, "l", "k"), before, "TAT unchanged")
	})
	t.Run("an attempt admitted at once is not remembered unless asked", func(t *testing.T) {
		r := reserve(t, f, rc("m0", 3))
		require.False(t, r.Found, "m0 was admitted at once without Record: a new attempt charges again")
	})
	t.Run("Record remembers an immediate admission", func(t *testing.T) {
		c := backend.RateCheck{Name: "l2", Key: "", Interval: 100, Burst: 1, Cost: 1, Member: "x/0", Record: true}
		require.Zero(t, reserve(t, f, c).Wait)
		r := reserve(t, f, c)
		require.True(t, r.Found)
		require.Zero(t, r.Wait)
	})
	t.Run("keys are independent", func(t *testing.T) {
		c := rc("other", 1)
		c.Key = "k2"
		require.Zero(t, reserve(t, f, c).Wait)
	})
	t.Run("every key has a TTL", func(t *testing.T) {
		for _, k := range []string{backend.RateTATKey("l", "k"), backend.RateReservedKey("l", "k"), backend.RateKeysKey("l")} {
			f.requireTTL(t, k)
		}
	})
}

func TestRateCostAndAdjust(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	// 100 units per second, burst 100: a cost of 50 uses half a second.
	c := backend.RateCheck{Name: "tok", Key: "model", Interval: 10, Burst: 100, Cost: 50, Member: "t/0"}
	require.Zero(t, reserve(t, f, c).Wait)
	near(t, f.tatAhead(t, "tok", "model"), 500*time.Millisecond, "estimate charged")
	require.NoError(t, f.be.RateAdjust(ctx, c, -40)) // the call used 10
	near(t, f.tatAhead(t, "tok", "model"), 100*time.Millisecond, "refunded to the real cost")
	require.NoError(t, f.be.RateAdjust(ctx, c, 90)) // it used 100 after all
	near(t, f.tatAhead(t, "tok", "model"), time.Second, "extra charge")

	// A cost above the burst still runs: it reserves the time it needs.
	big := backend.RateCheck{Name: "tok", Key: "other", Interval: 10, Burst: 100, Cost: 300, Member: "big/0"}
	near(t, reserve(t, f, big).Wait, 2*time.Second, "300 units with a burst of 100 wait 2 s")
}

func TestRatePause(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	require.Zero(t, reserve(t, f, rc("a", 1)).Wait)
	near(t, reserve(t, f, rc("b", 1)).Wait, 100*time.Millisecond, "b reserved")
	near(t, reserve(t, f, rc("c", 1)).Wait, 200*time.Millisecond, "c reserved")

	// "a" ran and the upstream said 429, Retry-After 1 s.
	wait, err := f.be.RatePause(ctx, rc("a", 1), time.Second)
	require.NoError(t, err)
	require.GreaterOrEqual(t, wait, time.Second, "the refused attempt waits out the pause")
	// b and c keep their order and spacing, a second later.
	near(t, reserve(t, f, rc("b", 1)).Wait, 1100*time.Millisecond, "b moved by the pause")
	near(t, reserve(t, f, rc("c", 1)).Wait, 1200*time.Millisecond, "c moved by the pause")
	near(t, wait, 1300*time.Millisecond, "a after the others")
	// A newcomer waits for the pause too.
	near(t, reserve(t, f, rc("d", 1)).Wait, 1400*time.Millisecond, "d after a")
	// A second refusal seen at the same time (another worker's) does not
	// add its pause to the first: b and c stay where they are.
	wait, err = f.be.RatePause(ctx, rc("e", 1), time.Second)
	require.NoError(t, err)
	near(t, wait, 1500*time.Millisecond, "e at the end of the line")
	near(t, reserve(t, f, rc("b", 1)).Wait, 1100*time.Millisecond, "b not moved twice")
	f.requireTTL(t, backend.RatePauseKey("l", "k"))

	// On an idle limit with a large burst, a pause still holds everyone
	// back: the first admission comes at the end of the pause, not before.
	wait, err = f.be.RatePause(ctx, withKey(rc("x", 5), "idle"), 500*time.Millisecond)
	require.NoError(t, err)
	near(t, wait, 500*time.Millisecond, "the refused attempt")
	near(t, reserve(t, f, withKey(rc("y", 5), "idle")).Wait, 600*time.Millisecond, "the next one, one interval later")
}

func TestConcurrencySlots(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	lease := 10 * time.Second
	slot := func(member string) backend.ConcSlot {
		return backend.ConcSlot{Name: "c", Key: "tenant", Keyed: true, Max: 2, Member: member, Waiter: "q " + member + "-delivery"}
	}
	acquire := func(member string) backend.ConcResult {
		res, err := f.be.ConcAcquire(ctx, lease, []backend.ConcSlot{slot(member)})
		require.NoError(t, err)
		return res[0]
	}
	require.True(t, acquire("t1").Held)
	require.True(t, acquire("t2").Held)
	r := acquire("t3")
	require.False(t, r.Held, "Max 2")
	require.InDelta(t, float64(lease), float64(r.Earliest), float64(time.Second), "the earliest lease ends in about a lease")
	require.True(t, acquire("t1").Held, "re-entrant for a holder")
	require.False(t, acquire("t4").Held)

	// t1 finishes: its slot goes to the longest-waiting task, t3.
	w, err := f.be.ConcRelease(ctx, slot("t1"))
	require.NoError(t, err)
	require.Equal(t, "q t3-delivery", w)
	q, id, ok := backend.ParseWaiter(w)
	require.True(t, ok)
	require.Equal(t, "q", q)
	require.Equal(t, "t3-delivery", id)
	require.True(t, acquire("t3").Held)
	waiting, err := f.rdb.ZRange(ctx, backend.ConcWaitersKey("c", "tenant"), 0, -1).Result()
	require.NoError(t, err)
	require.Equal(t, []string{"q t4-delivery"}, waiting, "t3 left the waiters when it got the slot")
	// Releasing with no free slot hands nothing on.
	require.True(t, acquire("t2").Held)
	w, err = f.be.ConcRelease(ctx, backend.ConcSlot{Name: "c", Key: "tenant", Keyed: true, Max: 2})
	require.NoError(t, err)
	require.Empty(t, w, "both slots held: no waiter woken")
	for _, k := range []string{backend.ConcHoldersKey("c", "tenant"), backend.ConcWaitersKey("c", "tenant"), backend.ConcKeysKey("c")} {
		f.requireTTL(t, k)
	}
}

// TestConcurrencyLeaseExpires: a holder that stops renewing (a killed
// worker) loses its slot when its lease runs out, not before.
func TestConcurrencyLeaseExpires(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	lease := 500 * time.Millisecond
	one := func(member string) backend.ConcSlot { return backend.ConcSlot{Name: "solo", Max: 1, Member: member} }
	res, err := f.be.ConcAcquire(ctx, lease, []backend.ConcSlot{one("dead")})
	require.NoError(t, err)
	require.True(t, res[0].Held)
	held := time.Now()
	var got time.Time
	redistest.WaitFor(t, 5*time.Second, "the dead holder's slot frees", func() bool {
		res, err := f.be.ConcAcquire(ctx, lease, []backend.ConcSlot{one("next")})
		require.NoError(t, err)
		if res[0].Held {
			got = time.Now()
		}
		return res[0].Held
	})
	took := got.Sub(held)
	require.GreaterOrEqual(t, took, lease-20*time.Millisecond, "not before the lease ends")
	require.Less(t, took, lease+200*time.Millisecond, "right after it")
}

func TestThrottleRecord(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	until := time.Now().Add(3 * time.Second)
	require.NoError(t, f.be.Throttle(ctx, meta("th1"), "fetch.host", until, "", ""))
	r, err := f.be.Get(ctx, "th1")
	require.NoError(t, err)
	require.Equal(t, backend.Pending, r.State, "a task without a record is PENDING while it waits")
	require.Equal(t, "k", r.Kind)
	require.Equal(t, "fetch.host", r.Throttled)
	require.Equal(t, until.UnixMilli(), r.ThrottledUntil.UnixMilli())
	require.Equal(t, 1, r.Throttles)
	require.Equal(t, 0, r.Retries)

	// A task waiting for a retry keeps its state; the record counts waits.
	_, err = f.be.Finish(ctx, backend.Outcome{ID: "th1", State: backend.Retry, Retries: 1, Error: "boom", NextTry: until})
	require.NoError(t, err)
	require.NoError(t, f.be.Throttle(ctx, meta("th1"), "fetch.host", until, "", ""))
	r, err = f.be.Get(ctx, "th1")
	require.NoError(t, err)
	require.Equal(t, backend.Retry, r.State)
	require.Equal(t, 2, r.Throttles)

	// Starting clears the throttle fields and keeps the count.
	_, err = f.be.Start(ctx, backend.StartRequest{Meta: meta("th1"), Retries: 1})
	require.NoError(t, err)
	r, err = f.be.Get(ctx, "th1")
	require.NoError(t, err)
	require.Equal(t, backend.Started, r.State)
	require.Empty(t, r.Throttled)
	require.True(t, r.ThrottledUntil.IsZero())
	require.Equal(t, 2, r.Throttles)

	// A terminal record is left alone.
	_, err = f.be.Finish(ctx, backend.Outcome{ID: "th1", State: backend.Success, Result: []byte(`1`)})
	require.NoError(t, err)
	require.NoError(t, f.be.Throttle(ctx, meta("th1"), "fetch.host", until, backend.Retry, "x"))
	r, err = f.be.Get(ctx, "th1")
	require.NoError(t, err)
	require.Equal(t, backend.Success, r.State)
	require.Empty(t, r.Throttled)
	f.requireTTL(t, backend.TaskKey("th1"))
}

func TestLimitDefinitionsAndUsage(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	rate := backend.LimitDef{Type: "rate", Name: "l", Kinds: []string{"fetch"}, Rate: 10, PerMS: 1000, Burst: 1, Keyed: true}
	conc := backend.LimitDef{Type: "concurrency", Name: "c", Kinds: []string{"analyze"}, Max: 2}
	conflicts, err := f.be.PublishLimits(ctx, []backend.LimitDef{rate, conc})
	require.NoError(t, err)
	require.Empty(t, conflicts)
	f.requireTTL(t, backend.LimitsKey)

	other := rate
	other.Rate = 20
	conflicts, err = f.be.PublishLimits(ctx, []backend.LimitDef{other})
	require.NoError(t, err)
	require.Len(t, conflicts, 1, "a live worker recorded 10/s, this one says 20/s")
	require.Equal(t, "20/s burst 1 per key", conflicts[0][0].String())
	require.Equal(t, "10/s burst 1 per key", conflicts[0][1].String())
	_, err = f.be.PublishLimits(ctx, []backend.LimitDef{rate})
	require.NoError(t, err)

	for _, m := range []string{"a", "b", "c", "d"} {
		reserve(t, f, rc(m, 1))
	}
	for _, m := range []string{"t1", "t2", "t3"} {
		_, err := f.be.ConcAcquire(ctx, 10*time.Second, []backend.ConcSlot{{Name: "c", Max: 2, Member: m, Waiter: "q " + m}})
		require.NoError(t, err)
	}
	ls, err := backend.ReadLimits(ctx, f.rdb)
	require.NoError(t, err)
	require.Len(t, ls, 2)
	c, r := ls[0], ls[1]
	require.Equal(t, "concurrency", c.Type)
	require.Equal(t, []string{"analyze"}, c.Kinds)
	require.InDelta(t, 2, c.InUse, 0.001, "two slots held")
	require.Equal(t, 1, c.Waiting, "one task waits for a slot")
	require.InDelta(t, 1, c.Usage, 0.001)
	require.Equal(t, "rate", r.Type)
	require.Equal(t, 1, r.ActiveKeys)
	require.Equal(t, "k", r.Keys[0].Key)
	require.InDelta(t, 1, r.InUse, 0.001, "burst 1 in use")
	require.Equal(t, 3, r.Waiting, "three reservations ahead")
}
