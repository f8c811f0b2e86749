package baton

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/batonhq/baton/backend"
)

// The worker side of flow control: before a delivery of a limited kind is
// recorded STARTED, the worker takes its concurrency slots and checks its
// rate limits (one Redis round trip each, all limits of a kind batched).
// Over a limit, the delivery goes back to asynq with a throttledError:
// isFailure says it is not a failure (asynq leaves the retry count alone)
// and retryDelay gives asynq the time the limit frees.

const (
	// LimitLeaseDefault is how long a concurrency slot outlives the last
	// renewal by its worker (WorkerOptions.LimitLease); renewals come every
	// third of it. A SIGKILLed worker's slot is free again at most this long
	// after the kill.
	LimitLeaseDefault = 15 * time.Second
	// maxLimitWait is the longest a delivery waits for a limit inside its
	// worker slot; a longer wait goes back to asynq and holds no slot. The
	// wait is spent just before the handler runs, so the handler starts at
	// the admitted time however long the delivery took to get there.
	maxLimitWait = 100 * time.Millisecond
	// wakeLead is how much before its time a throttled delivery is moved
	// back to pending, to cover the trip to a worker; the rest of the wait
	// is spent in the worker (at most maxLimitWait).
	wakeLead = 80 * time.Millisecond
	// wakeHorizon bounds the waits a worker keeps a timer for. asynq
	// schedules to the whole second, so a throttled delivery is given to
	// asynq for one second past its time (never early) and the worker that
	// sent it away moves it to pending at its exact time (Inspector.RunTask):
	// starts keep their spacing to the millisecond, and when that worker dies
	// the delivery still comes back, at most ~1.25 s late. A wait beyond the
	// horizon comes back half a horizon early and gets its timer then.
	wakeHorizon = time.Minute
	// limitPublishEvery is how often a worker re-records the limits it
	// enforces (backend.LimitsKey) and checks them against other workers'.
	limitPublishEvery = time.Minute
)

// throttledError sends a delivery back to wait for a limit: not a failure,
// not a retry.
type throttledError struct {
	limit string
	wait  time.Duration // until the limit admits the task
	delay time.Duration // given to asynq: the backstop (see wakeAfter)
	err   error         // the upstream refusal that paused the limit, if any
}

func (e *throttledError) Error() string {
	s := fmt.Sprintf("throttled by limit %q: runs again in %v (waiting is not a retry)", e.limit, e.wait.Round(time.Millisecond))
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *throttledError) Unwrap() error { return e.err }

// kindLimits are the limits of one kind, with their defaults resolved.
type kindLimits struct {
	rates []rateLimit
	concs []ConcurrencyLimit
}

type rateLimit struct {
	RateLimit
	interval float64 // ms per unit of cost
}

// buildLimits resolves the limits of every definition that has some.
func buildLimits(defs map[string]Definition) map[string]*kindLimits {
	out := map[string]*kindLimits{}
	for kind, d := range defs {
		o := d.Options()
		if len(o.RateLimits) == 0 && len(o.ConcurrencyLimits) == 0 {
			continue
		}
		kl := &kindLimits{}
		for _, l := range o.RateLimits {
			l.Name = limitName(l.Name, kind)
			if l.Burst == 0 {
				l.Burst = 1
			}
			kl.rates = append(kl.rates, rateLimit{RateLimit: l, interval: float64(l.Per) / float64(time.Millisecond) / float64(l.Rate)})
		}
		for _, l := range o.ConcurrencyLimits {
			l.Name = limitName(l.Name, kind)
			kl.concs = append(kl.concs, l)
		}
		out[kind] = kl
	}
	return out
}

// limitDefs lists the limits this worker enforces, one per name.
func (w *Worker) limitDefs() []backend.LimitDef {
	byField := map[string]*backend.LimitDef{}
	add := func(d backend.LimitDef, kind string) {
		if have, ok := byField[d.Field()]; ok {
			have.Kinds = append(have.Kinds, kind)
			return
		}
		d.Kinds = []string{kind}
		byField[d.Field()] = &d
	}
	for kind, kl := range w.limits {
		for _, l := range kl.rates {
			add(backend.LimitDef{Type: "rate", Name: l.Name, Rate: l.Rate, PerMS: l.Per.Milliseconds(), Burst: l.Burst,
				Cost: l.Cost != nil, Keyed: l.Key != nil}, kind)
		}
		for _, l := range kl.concs {
			add(backend.LimitDef{Type: "concurrency", Name: l.Name, Max: l.Max, Keyed: l.Key != nil}, kind)
		}
	}
	out := make([]backend.LimitDef, 0, len(byField))
	for _, d := range byField {
		sort.Strings(d.Kinds)
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Field() < out[j].Field() })
	return out
}

// publishLimits records this worker's limits and warns about any that
// another live worker enforces differently: the state is shared, so both
// definitions would apply in turn.
func (w *Worker) publishLimits(ctx context.Context) {
	conflicts, err := w.be.PublishLimits(ctx, w.limitDefs())
	if err != nil {
		w.log.Warn("could not record the limits this worker enforces", "err", err)
	}
	for _, c := range conflicts {
		w.log.Warn("limit is defined differently by another worker: both share its state in Redis, so the fleet enforces a mix; configure every worker the same",
			"limit", c[0].Name, "type", c[0].Type, "here", c[0].String(), "there", c[1].String(), "there_kinds", strings.Join(c[1].Kinds, ","))
	}
}

func (w *Worker) publishLoop(ctx context.Context) {
	w.publishLimits(ctx)
	t := time.NewTicker(limitPublishEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.publishLimits(ctx)
		}
	}
}

type admissionKey struct{}

// admission is what a delivery holds under its limits while it runs.
type admission struct {
	w     *Worker
	kind  string
	slots []backend.ConcSlot
	stop  func() // stops the lease renewal
	// startAt is when the handler may start (a rate limit's reserved time
	// less than maxLimitWait away); zero for now.
	startAt time.Time

	mu    sync.Mutex
	rates []rateCharge
}

type rateCharge struct {
	check   backend.RateCheck
	charged int
}

// maxKeyLen caps a key value as stored in Redis key names; a longer one is
// replaced by its hash.
const maxKeyLen = 200

func keyOf(k *LimitKey, m *message) (string, bool) {
	if k == nil {
		return "", true
	}
	if m.LimitKey != "" {
		return m.LimitKey, true
	}
	s, err := k.fn(m.Args)
	if len(s) > maxKeyLen {
		sum := sha256.Sum256([]byte(s))
		s = "sha256:" + hex.EncodeToString(sum[:])
	}
	return s, err == nil // arguments that do not decode fail in the handler
}

// admit takes the delivery's concurrency slots and checks its rate limits.
// It returns the admission, or a *throttledError when a limit sends the
// delivery away, or an *errInfra when Redis fails.
func (w *Worker) admit(ctx context.Context, kl *kindLimits, m *message, retried int) (*admission, error) {
	delivery, _ := asynq.GetTaskID(ctx)
	queue, ok := asynq.GetQueueName(ctx)
	if !ok {
		queue = m.Queue
	}
	a := &admission{w: w, kind: m.Kind}
	for _, l := range kl.concs {
		if key, ok := keyOf(l.Key, m); ok {
			a.slots = append(a.slots, backend.ConcSlot{Name: l.Name, Key: key, Max: l.Max, Member: m.ID, Waiter: queue + " " + delivery,
				Keyed: l.Key != nil})
		}
	}
	member := m.ID + "/" + strconv.Itoa(retried)
	for _, l := range kl.rates {
		key, ok := keyOf(l.Key, m)
		cost := 1
		if ok && l.Cost != nil {
			var err error
			cost, err = l.Cost.fn(m.Args)
			ok = err == nil
		}
		if ok {
			a.rates = append(a.rates, rateCharge{charged: cost, check: backend.RateCheck{Name: l.Name, Key: key,
				Interval: l.interval, Burst: l.Burst, Cost: cost, Member: member, Record: len(kl.rates) > 1, Keyed: l.Key != nil}})
		}
	}
	if err := a.acquire(ctx, m); err != nil {
		return nil, err
	}
	if err := a.reserve(ctx, m); err != nil {
		a.release()
		return nil, err
	}
	a.renew()
	return a, nil
}

// acquire takes every concurrency slot or none.
func (a *admission) acquire(ctx context.Context, m *message) error {
	w := a.w
	for attempt := 0; len(a.slots) > 0; attempt++ {
		res, err := w.be.ConcAcquire(ctx, w.opts.LimitLease, a.slots)
		if err != nil {
			return &errInfra{err}
		}
		denied, earliest := "", time.Duration(-1)
		for i, r := range res {
			if !r.Held && (denied == "" || r.Earliest < earliest) {
				denied, earliest = a.slots[i].Name, r.Earliest
			}
		}
		if denied == "" {
			return nil
		}
		for i, r := range res { // all or none
			if r.Held {
				w.releaseSlot(ctx, a.slots[i])
			}
		}
		wait := w.slotWait(earliest)
		if wait > maxLimitWait || attempt == 2 {
			return w.throttle(ctx, m, denied, wait)
		}
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
	}
	return nil
}

// slotWait is how long a task denied a slot waits before it asks again if
// no finishing task wakes it first: half a lease and a random quarter more,
// or until the earliest holder's lease ends when that is sooner (a killed
// worker's slot).
func (w *Worker) slotWait(earliest time.Duration) time.Duration {
	lease := w.opts.LimitLease
	wait := lease/2 + rand.N(lease/4+1)
	if earliest >= 0 && earliest+50*time.Millisecond < wait {
		wait = earliest + 50*time.Millisecond
	}
	return wait
}

// reserve checks the rate limits; a wait up to maxLimitWait is left to
// waitStart, a longer one sends the delivery away.
func (a *admission) reserve(ctx context.Context, m *message) error {
	if len(a.rates) == 0 {
		return nil
	}
	checks := make([]backend.RateCheck, len(a.rates))
	for i, r := range a.rates {
		checks[i] = r.check
	}
	res, err := a.w.be.RateReserve(ctx, checks)
	if err != nil {
		return &errInfra{err}
	}
	var wait time.Duration
	limit := ""
	for i, r := range res {
		if r.Wait > wait {
			wait, limit = r.Wait, checks[i].Name
		}
	}
	switch {
	case wait == 0:
		return nil
	case wait <= maxLimitWait:
		a.startAt = time.Now().Add(wait) // waitStart spends it
		return nil
	}
	return a.w.throttle(ctx, m, limit, wait)
}

// waitStart waits, just before the handler runs, until the admitted time.
func (a *admission) waitStart(ctx context.Context) error {
	if a == nil || a.startAt.IsZero() {
		return nil
	}
	if d := time.Until(a.startAt); d > 0 {
		return sleepCtx(ctx, d)
	}
	return nil
}

// throttle records that m waits for limit and returns the error that sends
// the delivery back to asynq; a timer brings it back after wait.
func (w *Worker) throttle(ctx context.Context, m *message, limit string, wait time.Duration) error {
	if err := w.be.Throttle(ctx, m.meta(), limit, time.Now().Add(wait), "", ""); err != nil {
		w.log.Warn("could not record a throttled task", "task", m.ID, "kind", m.Kind, "err", err)
	}
	w.observeThrottled(ctx, m, limit, wait, nil)
	w.log.Debug("task throttled", "task", m.ID, "kind", m.Kind, "limit", limit, "wait", wait)
	return &throttledError{limit: limit, wait: wait, delay: w.wakeAfter(ctx, wait)}
}

// wakeAfter sets the timer that moves the current delivery to pending
// wakeLead before wait ends, and returns the delay to give asynq (the
// backstop).
func (w *Worker) wakeAfter(ctx context.Context, wait time.Duration) time.Duration {
	if wait > wakeHorizon {
		return wait - wakeHorizon/2
	}
	queue, _ := asynq.GetQueueName(ctx)
	id, _ := asynq.GetTaskID(ctx)
	if queue != "" && id != "" {
		w.timers.after(max(wait-wakeLead, 0), func(ctx context.Context) { w.wakeWaiter(ctx, queue+" "+id) })
	}
	return wait + time.Second
}

// wakeTimers are a worker's pending wake-ups; Shutdown stops them (asynq's
// backstop schedule then brings the deliveries back).
type wakeTimers struct {
	mu     sync.Mutex
	closed bool
	timers map[*time.Timer]struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (t *wakeTimers) after(d time.Duration, f func(ctx context.Context)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if t.timers == nil {
		t.timers = map[*time.Timer]struct{}{}
		t.ctx, t.cancel = context.WithCancel(context.Background())
	}
	var tm *time.Timer
	t.wg.Add(1)
	tm = time.AfterFunc(d, func() {
		defer t.wg.Done()
		t.mu.Lock()
		delete(t.timers, tm)
		ctx := t.ctx
		t.mu.Unlock()
		f(ctx)
	})
	t.timers[tm] = struct{}{}
}

// stop cancels the timers not fired yet and waits for the running ones.
func (t *wakeTimers) stop() {
	t.mu.Lock()
	t.closed = true
	for tm := range t.timers {
		if tm.Stop() {
			t.wg.Done()
		}
	}
	t.timers = nil
	if t.cancel != nil {
		t.cancel()
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// renew keeps the slots' leases alive while the task runs.
func (a *admission) renew() {
	if len(a.slots) == 0 {
		return
	}
	w := a.w
	lease := w.opts.LimitLease
	renew := make([]backend.ConcSlot, len(a.slots))
	for i, s := range a.slots {
		renew[i] = s
		renew[i].Waiter = ""
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(lease / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			res, err := w.be.ConcAcquire(ctx, lease, renew)
			if err != nil {
				if ctx.Err() == nil {
					w.log.Warn("could not renew a concurrency slot; it is lost if this lasts a lease", "kind", a.kind, "err", err)
				}
				continue
			}
			for i, r := range res {
				if !r.Held {
					w.log.Warn("concurrency slot lost (its lease ran out before a renewal): the limit may be exceeded while this task runs",
						"limit", renew[i].Name, "key", renew[i].Key, "task", renew[i].Member)
				}
			}
		}
	}()
	a.stop = func() { cancel(); <-done }
}

// release gives the slots back, each waking one waiting task.
func (a *admission) release() {
	if a.stop != nil {
		a.stop()
	}
	if len(a.slots) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range a.slots {
		a.w.releaseSlot(ctx, s)
	}
}

// releaseSlot frees s and wakes the task it was handed to; when that task
// is gone, the next one.
func (w *Worker) releaseSlot(ctx context.Context, s backend.ConcSlot) {
	for range 3 {
		entry, err := w.be.ConcRelease(ctx, s)
		if err != nil {
			w.log.Warn("could not release a concurrency slot; its lease frees it", "limit", s.Name, "err", err)
			return
		}
		if entry == "" || w.wakeWaiter(ctx, entry) {
			return
		}
		s.Member = "" // given back already: just hand the slot on
	}
}

// asynq's Inspector.RunTask has no sentinel errors for a task that is
// running or pending already; these are its messages (pinned by
// TestAsynqRunTaskMessages).
const (
	asynqRunning = "already running"
	asynqPending = "already in pending"
)

// wakeWaiter moves a waiting task from asynq's retry set to pending at once
// and wakes idle workers. It reports false when the task is gone.
func (w *Worker) wakeWaiter(ctx context.Context, entry string) bool {
	queue, id, ok := backend.ParseWaiter(entry)
	if !ok || ctx.Err() != nil {
		return false
	}
	insp := asynq.NewInspectorFromRedisClient(w.rdb)
	for range 40 {
		err := insp.RunTask(queue, id)
		switch {
		case err == nil:
			w.be.Wake(queue)
			return true
		case strings.Contains(err.Error(), asynqPending):
			return true
		case strings.Contains(err.Error(), asynqRunning):
			// Its delivery is on the way back to asynq's retry set.
			if sleepCtx(ctx, 25*time.Millisecond) != nil {
				return false
			}
		default:
			return false
		}
	}
	return false
}

// setCost corrects the charge under rate limit name to cost.
func (a *admission) setCost(ctx context.Context, name string, cost int) error {
	a.mu.Lock()
	var c backend.RateCheck
	delta := 0
	for i := range a.rates {
		if r := &a.rates[i]; r.check.Name == name {
			c, delta = r.check, cost-r.charged
			r.charged = cost
		}
	}
	a.mu.Unlock()
	if delta == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := a.w.be.RateAdjust(ctx, c, delta); err != nil {
		return fmt.Errorf("baton: set cost under limit %s: %w", name, err)
	}
	return nil
}

// pauseLimits handles an upstream refusal for rate (RateLimited): every
// rate limit of the task pauses for d for everyone, and the task gets a
// new reservation after the pause. It returns the *throttledError to give
// asynq, or nil when Redis failed: the caller then retries as usual.
func (w *Worker) pauseLimits(ctx context.Context, log *slog.Logger, a *admission, m *message, herr error, d time.Duration) error {
	a.mu.Lock()
	rates := append([]rateCharge(nil), a.rates...)
	a.mu.Unlock()
	var wait time.Duration
	limit := ""
	for _, r := range rates {
		wt, err := w.be.RatePause(ctx, r.check, d)
		if err != nil {
			log.Warn("could not pause the rate limit after an upstream refusal", "limit", r.check.Name, "err", err)
			return nil
		}
		if wt >= wait {
			wait, limit = wt, r.check.Name
		}
	}
	if err := w.be.Throttle(ctx, m.meta(), limit, time.Now().Add(wait), Retry, herr.Error()); err != nil {
		log.Warn("could not record a throttled task", "err", err)
	}
	w.observeThrottled(ctx, m, limit, wait, herr)
	log.Info("upstream refused for rate: limit paused for every task under it", "limit", limit, "pause", d, "runs_in", wait, "err", herr)
	return &throttledError{limit: limit, wait: wait, delay: w.wakeAfter(ctx, wait), err: herr}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// isThrottled reports whether err sends a delivery back to wait for a limit.
func isThrottled(err error) (*throttledError, bool) {
	var t *throttledError
	ok := errors.As(err, &t)
	return t, ok
}
