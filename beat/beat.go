// Package beat runs periodic tasks, like Celery beat: it reads a schedule
// (see Schedule) and enqueues each entry's runs when they fall due.
//
// Every run is enqueued exactly once however many beat processes run (for
// availability, run two): a run's id is derived from its entry and tick
// (Entry.RunID), and baton's enqueue and submit are idempotent by id. On top
// of that a Redis SET NX lease per (entry, tick) lets one process do the
// enqueue while the others only check, a little later, that the run exists
// (and enqueue it, idempotently, if its lease holder died in between).
//
// Ticks missed while no beat ran are not replayed: a beat starts with the
// next tick. Run two beats so that a restart loses nothing.
package beat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/chain"
)

// Defaults of Options.
const (
	// CatchUpDefault is how late a tick may be fired: after a pause (a slow
	// Redis, a suspended machine) ticks older than this are skipped.
	CatchUpDefault = time.Minute
)

// keyPrefix prefixes the Redis keys of beat: leases and last runs.
const keyPrefix = "baton:beat:"

// LeaseKey is the key claimed (SET NX) by the process enqueuing a run.
func LeaseKey(runID string) string { return keyPrefix + "lease:" + runID }

// LastKey is the hash of entry name → id of its last run.
const LastKey = keyPrefix + "last"

// Options configure a Beat.
type Options struct {
	// Logger receives a line per run. Defaults to slog.Default().
	Logger *slog.Logger
	// Instance names this process in leases and logs. Defaults to
	// hostname:pid.
	Instance string
	// CatchUp bounds how late a due tick is still fired. Defaults to
	// CatchUpDefault (1m).
	CatchUp time.Duration
}

// Beat enqueues the runs of a schedule.
type Beat struct {
	client   *baton.Client
	rdb      redis.UniversalClient
	sched    *Schedule
	log      *slog.Logger
	instance string
	catchUp  time.Duration
	now      func() time.Time
	wg       sync.WaitGroup
}

// New returns a Beat enqueuing through client.
func New(client *baton.Client, s *Schedule, opts *Options) *Beat {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Instance == "" {
		h, _ := os.Hostname()
		o.Instance = h + ":" + strconv.Itoa(os.Getpid())
	}
	if o.CatchUp <= 0 {
		o.CatchUp = CatchUpDefault
	}
	return &Beat{client: client, rdb: client.Redis(), sched: s, log: o.Logger.With("component", "beat"),
		instance: o.Instance, catchUp: o.CatchUp, now: time.Now}
}

// Run fires due runs until ctx ends. It returns nil when ctx is cancelled.
func (b *Beat) Run(ctx context.Context) error {
	defer b.wg.Wait()
	start := b.now()
	next := make([]time.Time, len(b.sched.Entries))
	for i, e := range b.sched.Entries {
		next[i] = e.Next(start.Add(-time.Millisecond)) // a tick at this very instant counts
		b.log.Info("scheduled", "entry", e.Name, "spec", e.Spec(), "next", next[i].Format(time.RFC3339))
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		soonest := next[0]
		for _, t := range next[1:] {
			if t.Before(soonest) {
				soonest = t
			}
		}
		if d := soonest.Sub(b.now()); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		now := b.now()
		for i, e := range b.sched.Entries {
			for !next[i].After(now) {
				tick := next[i]
				if now.Sub(tick) > b.catchUp {
					b.log.Warn("skipped a run that is too late", "entry", e.Name, "tick", tick.Format(time.RFC3339), "late", now.Sub(tick))
				} else {
					b.fire(ctx, e, tick)
				}
				next[i] = e.Next(tick)
			}
		}
	}
}

// period estimates the time between two ticks of e around tick.
func period(e *Entry, tick time.Time) time.Duration {
	if e.Every > 0 {
		return e.Every
	}
	return e.Next(tick).Sub(tick)
}

// fire enqueues the run of e at tick, or lets the lease holder do it.
func (b *Beat) fire(ctx context.Context, e *Entry, tick time.Time) {
	id := e.RunID(tick)
	p := period(e, tick)
	ttl := min(max(2*p, time.Minute), 48*time.Hour)
	won, err := b.rdb.SetNX(ctx, LeaseKey(id), b.instance, ttl).Result()
	if err != nil {
		// Redis trouble: try the idempotent enqueue anyway.
		b.log.Warn("could not take the run lease; enqueuing anyway (idempotent by id)", "entry", e.Name, "id", id, "err", err)
		won = true
	}
	if !won {
		// Another beat holds the lease. Check later that the run exists,
		// in case that beat died before enqueuing it.
		grace := min(max(p/2, 200*time.Millisecond), 10*time.Second)
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if _, err := b.client.Get(ctx, id); errors.Is(err, baton.ErrNotFound) {
				b.log.Warn("the lease holder did not enqueue the run; enqueuing it", "entry", e.Name, "id", id)
				b.enqueue(ctx, e, id, tick)
			}
		}()
		return
	}
	b.enqueue(ctx, e, id, tick)
}

func (b *Beat) enqueue(ctx context.Context, e *Entry, id string, tick time.Time) {
	err := b.submit(ctx, e, id)
	if err != nil {
		b.log.Error("run not enqueued", "entry", e.Name, "id", id, "err", err)
		// Free the lease so that another beat's check can enqueue it.
		_ = b.rdb.Del(context.WithoutCancel(ctx), LeaseKey(id)).Err()
		return
	}
	_ = b.rdb.HSet(ctx, LastKey, e.Name, id).Err()
	b.log.Info("enqueued", "entry", e.Name, "id", id, "tick", tick.Format(time.RFC3339))
}

func (b *Beat) submit(ctx context.Context, e *Entry, id string) error {
	if e.Task != "" {
		var o baton.EnqueueOpts
		if e.Options != nil {
			o = *e.Options
		}
		o.ID = id
		_, err := b.client.EnqueueKind(ctx, e.Task, e.Args, &o)
		return err
	}
	cv, err := chain.Parse(e.Canvas)
	if err != nil {
		return fmt.Errorf("canvas: %w", err)
	}
	_, err = b.client.Submit(ctx, cv, &baton.SubmitOpts{ID: id})
	return err
}
