package baton

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// Fast recovery of a dead worker's tasks.
//
// asynq gives a killed worker's in-flight task back only after its lease
// (30 s) has been expired for another 30 s and a recoverer (every minute)
// notices: 60–90 s. baton shortens that with asynq's public API. Every
// asynq server heartbeats the ids of the tasks it runs (Inspector.Servers;
// the entry expires 10 s after the server's last heartbeat). About every
// RecoverInterval one worker of the fleet (a Redis lock picks it) lists the
// active tasks of its queues; a task that no live server runs, whose record
// says it started (or finished) more than orphanAfter ago, is an orphan. Its
// delivery is marked superseded in the backend and a copy of the same
// message is enqueued under a derived asynq id, so it runs again at once.
// When asynq later gives the original delivery back, the start script sees
// it was superseded and drops it; a step whose SUCCESS was recorded is never
// run again either way.

const (
	// RecoverIntervalDefault is how often workers look for orphaned tasks.
	RecoverIntervalDefault = 3 * time.Second
	// orphanAfter: asynq's server entry lives 10 s past the last heartbeat
	// (sent every 5 s), so a task started more recently may simply not be
	// listed yet.
	orphanAfter = 12 * time.Second
	reaperLock  = "baton:reaper"
)

func (w *Worker) recoverLoop(ctx context.Context) {
	interval := w.opts.RecoverInterval
	for {
		jitter := time.Duration(rand.Int64N(int64(interval) / 2))
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval + jitter):
		}
		if n, err := w.recoverOrphans(ctx); err != nil && ctx.Err() == nil {
			w.log.Debug("orphan recovery pass failed", "err", err)
		} else if n > 0 {
			w.log.Warn("re-enqueued tasks of a dead worker", "tasks", n)
		}
	}
}

// recoverOrphans runs one pass if this worker wins the fleet-wide lock and
// returns how many orphans it re-enqueued.
func (w *Worker) recoverOrphans(ctx context.Context) (int, error) {
	ok, err := w.rdb.SetNX(ctx, reaperLock, "1", w.opts.RecoverInterval).Result()
	if err != nil || !ok {
		return 0, err
	}
	insp := asynq.NewInspectorFromRedisClient(w.rdb)
	servers, err := insp.Servers()
	if err != nil {
		return 0, err
	}
	live := map[string]bool{}
	for _, s := range servers {
		for _, wi := range s.ActiveWorkers {
			live[wi.TaskID] = true
		}
	}
	n := 0
	for q := range w.opts.Queues {
		for page := 1; ; page++ {
			active, err := insp.ListActiveTasks(q, asynq.PageSize(500), asynq.Page(page))
			if errors.Is(err, asynq.ErrQueueNotFound) {
				break
			}
			if err != nil {
				return n, err
			}
			for _, t := range active {
				if live[t.ID] {
					continue
				}
				if ok, err := w.recoverOne(ctx, t); err != nil {
					return n, err
				} else if ok {
					n++
				}
			}
			if len(active) < 500 {
				break
			}
		}
	}
	return n, nil
}

func (w *Worker) recoverOne(ctx context.Context, t *asynq.TaskInfo) (bool, error) {
	m, err := decodeMessage(t.Payload)
	if err != nil {
		return false, nil // not ours
	}
	rec, err := w.be.Get(ctx, m.ID)
	if err != nil {
		return false, nil // no record (yet): leave it to asynq's recoverer
	}
	var since time.Time
	switch rec.State {
	case Started:
		since = rec.StartedAt
	case Success, Failure, Revoked:
		since = rec.FinishedAt // died between recording and acknowledging
	default:
		return false, nil
	}
	if since.IsZero() || time.Since(since) < orphanAfter {
		return false, nil
	}
	marked, err := w.be.Supersede(ctx, m.ID, t.ID, rec.State)
	if err != nil || !marked {
		return false, err
	}
	copyID := recoveryID(t.ID)
	_, err = w.client.aq.EnqueueContext(ctx, asynq.NewTask(t.Type, t.Payload),
		asynq.TaskID(copyID), asynq.Queue(t.Queue), asynq.MaxRetry(max(t.MaxRetry, 1)), asynq.Timeout(asynqTimeout))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return false, err
	}
	w.be.Wake(t.Queue)
	w.log.Warn("task orphaned by a dead worker re-enqueued", "task", m.ID, "kind", m.Kind, "delivery", t.ID, "copy", copyID, "state", rec.State)
	return true, nil
}

// recoveryID derives the asynq id of a recovery copy: "<id>~r1", "<id>~r2".
func recoveryID(id string) string {
	if i := strings.LastIndex(id, "~r"); i > 0 {
		if n, err := strconv.Atoi(id[i+2:]); err == nil {
			return id[:i] + "~r" + strconv.Itoa(n+1)
		}
	}
	return id + "~r1"
}
