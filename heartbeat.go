package baton

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/batonhq/baton/backend"
)

// Heartbeats of long tasks (durable or not).
//
// A task registered with TaskOptions.HeartbeatTimeout must call Heartbeat
// at least once per timeout. Each attempt registers itself when it starts
// (backend.HeartbeatBegin: a sorted set scored by when its next heartbeat is
// due, and its asynq delivery in its record); Heartbeat pushes the due time
// and stores the details: the first call at once, then at most once per
// timeout/4 (a call inside that window is written at its end). When
// heartbeats stop:
//   - a killed worker: every heartbeatInterval one worker of the fleet (a
//     Redis lock picks it) lists the overdue tasks and re-enqueues each one's
//     delivery as a recovery copy, superseding the old one (recover.go's
//     copy and supersede). The copy reads the last details with
//     HeartbeatDetails. Bound: the task runs again within HeartbeatTimeout +
//     heartbeatInterval + a dequeue, after its last heartbeat was written.
//   - a hung handler: its own worker cancels the handler's context once
//     the timeout passes without a heartbeat; the fleet re-enqueues it as
//     above, and the hung attempt's outcome is dropped (its delivery was
//     superseded).

// heartbeatInterval is how often the fleet looks for overdue heartbeats.
const heartbeatInterval = 500 * time.Millisecond

// heartbeatReaperLock picks the worker that runs a pass.
const heartbeatReaperLock = "baton:hbreaper"

// errHeartbeatOverdue is the cause of a handler context cancelled for a
// missed heartbeat.
var errHeartbeatOverdue = errors.New("baton: heartbeat overdue")

type heartbeatKey struct{}

// heartbeat is one attempt's heartbeat state.
type heartbeat struct {
	be      *backend.Backend
	id      string
	timeout time.Duration
	every   time.Duration
	last    []byte // the details of the previous attempt's last heartbeat

	cancel   context.CancelCauseFunc
	watchdog *time.Timer
	overdue  atomic.Bool

	mu        sync.Mutex
	wrote     time.Time
	pending   []byte
	trailing  *time.Timer
	ended     bool
	inFlight  sync.WaitGroup
	lastError error
}

// Heartbeat tells baton that the running task is alive and records details
// (any JSON value, nil for none), which the next attempt reads with
// HeartbeatDetails if this one dies. The task must be registered with
// TaskOptions.HeartbeatTimeout; a task whose heartbeats stop for that long
// is considered dead and runs again (see the README's Guarantees). Calls are
// cheap: at most one Redis write per HeartbeatTimeout/4, the latest details
// written at the end of that window.
func Heartbeat(ctx context.Context, details any) error {
	hb, ok := ctx.Value(heartbeatKey{}).(*heartbeat)
	if !ok {
		return errors.New("baton: Heartbeat called outside a task that has TaskOptions.HeartbeatTimeout: set it on the task's options")
	}
	var raw []byte
	if details != nil {
		b, err := json.Marshal(details)
		if err != nil {
			return fmt.Errorf("baton: heartbeat details %T: %w", details, err)
		}
		raw = b
	}
	return hb.beat(ctx, raw)
}

// HeartbeatDetails decodes into out the details of the last heartbeat of
// the task's previous attempt (one that died or failed) and reports whether
// there were any.
func HeartbeatDetails(ctx context.Context, out any) (bool, error) {
	hb, ok := ctx.Value(heartbeatKey{}).(*heartbeat)
	if !ok || hb.last == nil {
		return false, nil
	}
	if err := json.Unmarshal(hb.last, out); err != nil {
		return true, fmt.Errorf("baton: heartbeat details into %T: %w", out, err)
	}
	return true, nil
}

func (hb *heartbeat) beat(ctx context.Context, raw []byte) error {
	hb.mu.Lock()
	if hb.ended {
		hb.mu.Unlock()
		return nil
	}
	hb.watchdog.Reset(hb.timeout)
	now := time.Now()
	if now.Sub(hb.wrote) < hb.every {
		hb.pending = raw
		if hb.trailing == nil {
			hb.inFlight.Add(1)
			hb.trailing = time.AfterFunc(hb.wrote.Add(hb.every).Sub(now), hb.flush)
		}
		err := hb.lastError
		hb.mu.Unlock()
		return err
	}
	hb.wrote = now
	hb.mu.Unlock()
	return hb.be.Heartbeat(ctx, hb.id, raw, hb.timeout)
}

// flush writes the details of heartbeats that came inside a write window.
func (hb *heartbeat) flush() {
	defer hb.inFlight.Done()
	hb.mu.Lock()
	raw := hb.pending
	hb.trailing, hb.pending, hb.wrote = nil, nil, time.Now()
	ended := hb.ended
	hb.mu.Unlock()
	if ended {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), callbackTimeout)
	defer cancel()
	err := hb.be.Heartbeat(ctx, hb.id, raw, hb.timeout)
	hb.mu.Lock()
	hb.lastError = err
	hb.mu.Unlock()
}

// beginHeartbeat registers an attempt of a heartbeating task and returns
// the handler's context, cancelled when a heartbeat is overdue.
func (w *Worker) beginHeartbeat(ctx context.Context, m *message, delivery string, timeout time.Duration) (*heartbeat, context.Context, error) {
	last, err := w.be.HeartbeatBegin(ctx, m.ID, m.Queue, delivery, timeout)
	if err != nil {
		return nil, nil, &errInfra{err}
	}
	hctx, cancel := context.WithCancelCause(ctx)
	// The first Heartbeat call is written at once (wrote is zero).
	hb := &heartbeat{be: w.be, id: m.ID, timeout: timeout, every: timeout / 4, last: last, cancel: cancel}
	hb.watchdog = time.AfterFunc(timeout, func() {
		hb.overdue.Store(true)
		cancel(errHeartbeatOverdue)
	})
	return hb, context.WithValue(hctx, heartbeatKey{}, hb), nil
}

// endHeartbeat unregisters the attempt. If its heartbeat was overdue the
// fleet may have re-enqueued the task: the delivery is then done, its
// outcome dropped; otherwise the attempt failed with a heartbeat timeout.
func (w *Worker) endHeartbeat(ctx context.Context, log *slog.Logger, m *message, hb *heartbeat, herr *error) (bool, error) {
	hb.mu.Lock()
	hb.ended = true
	hb.watchdog.Stop()
	if hb.trailing != nil && hb.trailing.Stop() {
		hb.inFlight.Done()
	}
	hb.mu.Unlock()
	hb.inFlight.Wait()
	hb.cancel(nil)
	if err := w.be.HeartbeatEnd(ctx, m.ID); err != nil {
		log.Warn("could not unregister the heartbeat; the fleet drops it when it finds it overdue", "err", err)
	}
	if !hb.overdue.Load() {
		return false, nil
	}
	delivery, _ := asynq.GetTaskID(ctx)
	if sup, err := w.be.Superseded(ctx, m.ID, delivery); err == nil && sup {
		log.Warn("heartbeat overdue: the task was re-enqueued elsewhere; dropping this attempt's outcome", "timeout", hb.timeout)
		return true, nil
	}
	if *herr == nil || errors.Is(*herr, context.Canceled) {
		*herr = fmt.Errorf("no heartbeat for %v (TaskOptions.HeartbeatTimeout): the handler was cancelled", hb.timeout)
	}
	return false, nil
}

// heartbeatLoop re-enqueues tasks whose heartbeat is overdue, every
// heartbeatInterval, on the one worker of the fleet that wins the lock.
func (w *Worker) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(heartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := w.reapHeartbeats(ctx); err != nil && ctx.Err() == nil {
			w.log.Debug("heartbeat pass failed", "err", err)
		} else if n > 0 {
			w.log.Warn("re-enqueued tasks whose heartbeat stopped", "tasks", n)
		}
	}
}

// reapHeartbeats runs one pass if this worker wins the lock.
func (w *Worker) reapHeartbeats(ctx context.Context) (int, error) {
	ok, err := w.rdb.SetNX(ctx, heartbeatReaperLock, "1", heartbeatInterval-50*time.Millisecond).Result()
	if err != nil || !ok {
		return 0, err
	}
	overdue, err := w.be.OverdueHeartbeats(ctx, time.Now(), 100)
	if err != nil || len(overdue) == 0 {
		return 0, err
	}
	insp := asynq.NewInspectorFromRedisClient(w.rdb)
	n := 0
	for _, o := range overdue {
		if o.State == Started && o.Queue != "" && o.Delivery != "" {
			info, err := insp.GetTaskInfo(o.Queue, o.Delivery)
			switch {
			case err == nil && info.State == asynq.TaskStateActive:
				recovered, err := w.recoverOne(ctx, info)
				if err != nil {
					return n, err
				}
				if recovered {
					n++
				}
			case err != nil && !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound):
				return n, err
			}
		}
		// Re-enqueued, or nothing to do (it ended, or waits for a retry and
		// registers again when it starts).
		if err := w.be.DropHeartbeat(ctx, o); err != nil {
			return n, err
		}
	}
	return n, nil
}

// usesHeartbeats reports whether a registered task has a HeartbeatTimeout:
// only such workers run the heartbeat pass.
func (w *Worker) usesHeartbeats() bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	for _, d := range w.defs {
		if d.Options().HeartbeatTimeout > 0 {
			return true
		}
	}
	return false
}

// stoppable is a background loop that can be stopped and waited for.
type stoppable struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *stoppable) start(loop func(context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() { defer close(s.done); loop(ctx) }()
}

func (s *stoppable) stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
}
