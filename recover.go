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
// active tasks of its queues; a task that no live server has listed for
// orphanAfter is an orphan, whatever its state. A copy of the same message
// is enqueued under a derived asynq id, so it runs again at once, and then
// the orphaned delivery is marked superseded in the backend.
// When asynq later gives the original delivery back, the start script sees
// it was superseded and drops it; a step whose SUCCESS was recorded is never
// run again either way.

const (
	// RecoverIntervalDefault is how often workers look for orphaned tasks.
	RecoverIntervalDefault = 3 * time.Second
	// orphanAfter: a live server lists a task it runs within one heartbeat
	// (5 s); a dead server's entry lives 10 s past its last heartbeat.
	orphanAfter = 8 * time.Second
	reaperLock  = "baton:reaper"
)

// orphanSeenKey is the hash mapping an active asynq task id of queue q to
// when it was first seen unlisted by every live server (unix ms). One hash
// per queue: the lock winner only scans its own queues and must not forget
// what a worker of other queues noted. The {q} hash tag is asynq's, so on
// Redis Cluster it lives beside the queue.
func orphanSeenKey(q string) string { return "baton:orphans:{" + q + "}" }

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
	var orphans []*asynq.TaskInfo
	for q := range w.opts.Queues {
		var unlisted []*asynq.TaskInfo
		for page := 1; ; page++ {
			ts, err := insp.ListActiveTasks(q, asynq.PageSize(500), asynq.Page(page))
			if errors.Is(err, asynq.ErrQueueNotFound) {
				break
			}
			if err != nil {
				return 0, err
			}
			for _, t := range ts {
				if !live[t.ID] {
					unlisted = append(unlisted, t)
				}
			}
			if len(ts) < 500 {
				break
			}
		}
		found, err := w.unlistedFor(ctx, q, unlisted)
		if err != nil {
			return 0, err
		}
		orphans = append(orphans, found...)
	}
	n := 0
	for _, t := range orphans {
		if ok, err := w.recoverOne(ctx, t); err != nil {
			return n, err
		} else if ok {
			n++
		}
	}
	return n, nil
}

// unlistedFor keeps, in the hash orphanSeenKey(q), when each active task of
// queue q was first seen unlisted by any live asynq server, forgets tasks
// that are listed again or no longer active, and returns those unlisted for
// orphanAfter or longer (whatever their state: a worker may die before it
// records STARTED).
func (w *Worker) unlistedFor(ctx context.Context, q string, unlisted []*asynq.TaskInfo) ([]*asynq.TaskInfo, error) {
	key := orphanSeenKey(q)
	seen, err := w.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, err
	}
	if len(seen) == 0 && len(unlisted) == 0 {
		return nil, nil
	}
	now := time.Now()
	isUnlisted := map[string]bool{}
	pipe := w.rdb.Pipeline()
	var out []*asynq.TaskInfo
	for _, t := range unlisted {
		isUnlisted[t.ID] = true
		first, ok := seen[t.ID]
		if !ok {
			pipe.HSetNX(ctx, key, t.ID, now.UnixMilli())
			continue
		}
		ms, _ := strconv.ParseInt(first, 10, 64)
		if now.Sub(time.UnixMilli(ms)) >= orphanAfter {
			out = append(out, t)
		}
	}
	for id := range seen {
		if !isUnlisted[id] { // listed again, or no longer active
			pipe.HDel(ctx, key, id)
		}
	}
	pipe.Expire(ctx, key, time.Hour)
	_, err = pipe.Exec(ctx)
	return out, err
}

func (w *Worker) recoverOne(ctx context.Context, t *asynq.TaskInfo) (bool, error) {
	m, err := decodeMessage(t.Payload)
	if err != nil {
		return false, nil // not ours
	}
	if done, err := w.be.Superseded(ctx, m.ID, t.ID); err != nil || done {
		return false, err // a copy was made before
	}
	// The copy first, then the mark: a crash in between leaves the original
	// delivery valid, never neither.
	copyID := recoveryID(t.ID)
	_, err = w.client.aq.EnqueueContext(ctx, asynq.NewTask(t.Type, t.Payload),
		asynq.TaskID(copyID), asynq.Queue(t.Queue), asynq.MaxRetry(max(t.MaxRetry, 1)), asynq.Timeout(asynqTimeout))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return false, err
	}
	if _, err := w.be.Supersede(ctx, m.ID, t.ID); err != nil {
		return false, err
	}
	w.be.Wake(t.Queue)
	w.log.Warn("task orphaned by a dead worker re-enqueued", "task", m.ID, "kind", m.Kind, "delivery", t.ID, "copy", copyID)
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
