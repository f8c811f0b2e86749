package baton

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/batonhq/baton/backend"
)

// The worker's half of durable runs (protocol in durable.go): the start and
// claim of a delivery, the handler's context, what happens after the
// handler stopped (parked, failed for good, taken over), resumes, and the
// notification of a run when its child ends.

// waiterRef names the operation of a durable run that awaits a child: sent
// in the child's message (message.W) and in a Call'ed canvas's awaiter note.
type waiterRef struct {
	Run   string `json:"r"`
	Seq   int    `json:"s"`
	Index int    `json:"i,omitempty"`
}

// awaitDurable is the awaiter kind of a canvas Call'ed by a durable run;
// its data is a waiterRef.
const awaitDurable = "durable"

// execution is what a delivery's handler runs with besides its message: a
// durable run, a heartbeat. nil for a plain task.
type execution struct {
	run *durableRun
	hb  *heartbeat
}

// isDurable reports whether m is a delivery of a durable run.
func (w *Worker) isDurable(m *message) (Definition, bool) {
	def := w.def(m.Kind)
	return def, m.RG > 0 || (def != nil && def.isDurable())
}

// startDelivery records the start of a delivery: Backend.Start, or for a
// durable run its claim (StartDurable).
func (w *Worker) startDelivery(ctx context.Context, m *message, req backend.StartRequest) (backend.Status, error) {
	def, durable := w.isDurable(m)
	if !durable {
		return w.be.Start(ctx, req)
	}
	stored := *m
	stored.RG, stored.RunAtMS = 0, 0
	raw, err := json.Marshal(&stored)
	if err != nil {
		return backend.Status{}, err
	}
	var events []string
	if def != nil {
		events = def.Options().Events
	}
	return w.be.StartDurable(ctx, req, backend.DurableStart{Gen: m.RG, Root: rootDelivery(req.DeliveryID), Msg: raw, Events: events})
}

// rootDelivery strips the recovery suffix ("~r<n>", recover.go) from an
// asynq task id: a recovery copy counts as the delivery it copies.
func rootDelivery(id string) string {
	if i := strings.LastIndex(id, "~r"); i > 0 {
		if _, err := strconv.Atoi(id[i+2:]); err == nil {
			return id[:i]
		}
	}
	return id
}

// resumeID is the asynq id of a resume of run at generation gen: "~<gen>"
// for a wake-up now, "~<gen>t" for the timer of a wait.
func resumeID(run string, gen int, timer bool) string {
	id := run + "~" + strconv.Itoa(gen)
	if timer {
		id += "t"
	}
	return id
}

// rewake makes sure a parked run's wake-up exists, for a delivery that
// finds the run parked at a later generation than its own (it parked the run
// and was delivered again before its ack, maybe before its timer was
// enqueued).
func (w *Worker) rewake(ctx context.Context, log *slog.Logger, m *message, st backend.Status) error {
	rs := st.Run
	var err error
	switch {
	case rs.WakeReady:
		err = w.client.enqueueResume(ctx, m, rs.Gen, time.Time{})
	case !rs.WakeAt.IsZero():
		err = w.client.enqueueResume(ctx, m, rs.Gen, rs.WakeAt)
	}
	if err != nil {
		return &errInfra{err}
	}
	log.Info("durable run already parked by this delivery; wake-up ensured", "gen", rs.Gen, "ready", rs.WakeReady)
	return nil
}

// enqueueResume enqueues the resume of run m at generation gen: at once, or
// at at (a timer). Idempotent: asynq refuses an id it holds.
func (c *Client) enqueueResume(ctx context.Context, m *message, gen int, at time.Time) error {
	r := *m
	r.RG, r.RunAtMS, r.ExpiresMS = gen, 0, 0 // a started run does not expire
	aopts := []asynq.Option{asynq.TaskID(resumeID(m.ID, gen, !at.IsZero())), asynq.Queue(r.Queue),
		asynq.MaxRetry(asynqMaxRetryUnknown), asynq.Timeout(asynqTimeout)}
	if !at.IsZero() {
		r.RunAtMS = at.UnixMilli()
		aopts = append(aopts, asynq.ProcessAt(at))
	}
	payload, err := json.Marshal(&r) // accepted once already: no size limit applies
	if err != nil {
		return fmt.Errorf("baton: resume durable run %s: encode message: %w", m.ID, err)
	}
	_, err = c.aq.EnqueueContext(ctx, asynq.NewTask(r.Kind, payload), aopts...)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) && !errors.Is(err, asynq.ErrDuplicateTask) {
		return fmt.Errorf("baton: resume durable run %s: %w", m.ID, err)
	}
	if at.IsZero() || !at.After(time.Now()) {
		c.be.Wake(r.Queue)
	}
	return nil
}

// resumeStored enqueues a resume from the run's stored message.
func (c *Client) resumeStored(ctx context.Context, raw []byte, gen int) error {
	m, err := decodeMessage(raw)
	if err != nil {
		return fmt.Errorf("baton: resume: the run's stored message is corrupt: %w", err)
	}
	return c.enqueueResume(ctx, m, gen, time.Time{})
}

// prepare builds the context the handler runs with: the durable run of a
// claimed durable delivery, the heartbeat of a task that has a
// HeartbeatTimeout. It returns a nil execution for a plain task.
func (w *Worker) prepare(ctx context.Context, def Definition, m *message, st backend.Status, delivery string) (context.Context, *execution, error) {
	var ex execution
	if st.Run != nil && st.Run.Log != nil {
		opts := def.Options()
		r := &durableRun{w: w, m: m, log: st.Run.Log, rctx: context.WithoutCancel(ctx),
			fence:    backend.Fence{Run: m.ID, Gen: st.Run.Gen, Root: rootDelivery(delivery), Delivery: delivery},
			maxOps:   firstPositive(opts.MaxOperations, w.opts.MaxOperations, MaxOperationsDefault),
			maxBytes: firstPositive(opts.MaxRecordedBytes, w.opts.MaxRecordedBytes, MaxRecordedBytesDefault),
			bytes:    st.Run.Log.Bytes}
		dc := &Durable{ctx: ctx, run: r, step: -1, ckpt: st.Run.Log.Checkpoints}
		ctx = context.WithValue(ctx, durableKey{}, dc)
		ex.run = r
	}
	if d := def.Options().HeartbeatTimeout; d > 0 {
		hb, hctx, err := w.beginHeartbeat(ctx, m, delivery, d)
		if err != nil {
			return nil, nil, err
		}
		ctx, ex.hb = hctx, hb
	}
	if ex.run == nil && ex.hb == nil {
		return ctx, nil, nil
	}
	return ctx, &ex, nil
}

func firstPositive(vs ...int) int {
	for _, v := range vs {
		if v > 0 {
			return v
		}
	}
	return 0
}

// settle handles how the handler stopped, before the worker records an
// outcome. It reports true when the delivery is done (with the error to
// return to asynq): the run parked, was taken over, failed for good, or a
// missed heartbeat had it re-enqueued elsewhere. Otherwise it may rewrite
// herr: an operation interrupted by the attempt's context, or a recorded
// failure of an operation returned by the handler (final: a retry would
// replay it).
func (w *Worker) settle(ctx context.Context, log *slog.Logger, m *message, ex *execution, retried int, herr *error) (bool, error) {
	if ex == nil {
		return false, nil
	}
	var x runEnd
	if r := ex.run; r != nil {
		// From here the handler goroutine, should it still run (abandoned at
		// its timeout), writes nothing more.
		r.mu.Lock()
		r.closed, x = true, r.end
		r.mu.Unlock()
	}
	if ex.hb != nil {
		if done, err := w.endHeartbeat(ctx, log, m, ex.hb, herr); done {
			return true, err
		}
	}
	if ex.run == nil {
		return false, nil
	}
	switch {
	case x.parked:
		if !x.wake.IsZero() {
			if err := w.client.enqueueResume(ctx, m, x.gen, x.wake); err != nil {
				// Retried: the redelivery finds the run parked and enqueues it.
				log.Warn("durable run parked; could not enqueue its timer yet", "err", err)
				return true, &errInfra{err}
			}
		}
		w.observeParked(ctx, m, x.waitFor)
		log.Debug("durable run parked", "gen", x.gen, "until", x.wake)
		return true, nil
	case x.lost != nil:
		log.Info("durable run ended or taken over elsewhere; this delivery stops", "why", x.lost)
		return true, nil
	case x.abort != nil:
		log.Warn("durable run failed for good", "err", x.abort)
		return true, w.fail(ctx, log, m, retried, Failure, "", x.abort.Error(), true)
	case x.infra != nil:
		log.Warn("durable run: Redis failed during an operation; will replay", "err", x.infra)
		return true, &errInfra{x.infra}
	case x.stopped != nil && ctx.Err() != nil && !w.stopping.Load() && w.revoked(m):
		log.Info("durable run cancelled while running")
		return true, nil
	case x.stopped != nil:
		*herr = fmt.Errorf("interrupted during a durable operation: %w", x.stopped)
	case *herr == nil && !ex.run.returned.Load():
		*herr = errors.New("the durable handler exited without returning (runtime.Goexit in the handler)")
	}
	if *herr != nil && recordedFailure(*herr) && !IsPermanent(*herr) {
		*herr = Permanent(*herr)
	}
	return false, nil
}

// childEnded tells the durable run awaiting m (a child of its Call or Map)
// that m ended, and resumes the run if m was the last it waited for. It is
// called on every terminal path of m, again on every redelivery that finds
// m terminal: idempotent.
func (w *Worker) childEnded(ctx context.Context, m *message, out backend.ChildOutcome) error {
	if m.W == nil {
		return nil
	}
	gen, raw, err := w.be.NotifyChild(ctx, m.W.Run, m.W.Seq, m.ID, m.W.Index, out)
	if err == nil && gen > 0 {
		err = w.client.resumeStored(ctx, raw, gen)
	}
	if err != nil {
		return &errInfra{err}
	}
	return nil
}

// canvasEnded is the awaiter of a canvas Call'ed by a durable run.
func (w *Worker) canvasEnded(ctx context.Context, data json.RawMessage, end workflowEnd) error {
	var ref waiterRef
	if err := json.Unmarshal(data, &ref); err != nil || ref.Run == "" {
		w.log.Error("durable awaiter note is corrupt; the run is not told of its canvas's end", "workflow", end.ID, "err", err)
		return nil
	}
	if err := w.workflowEndedFor(ctx, ref.Run, ref.Seq, end); err != nil {
		return &errInfra{err}
	}
	return nil
}

// workflowEndedFor records the end of the canvas of operation seq of run.
func (w *Worker) workflowEndedFor(ctx context.Context, run string, seq int, end workflowEnd) error {
	payload := end.Error
	if end.State == Success {
		payload = string(end.Result)
	}
	gen, raw, err := w.be.NotifyChild(ctx, run, seq, end.ID, 0, backend.ChildOutcome{State: end.State, Reason: end.Reason, Payload: payload})
	if err == nil && gen > 0 {
		err = w.client.resumeStored(ctx, raw, gen)
	}
	return err
}

// revoked reports whether task m's record is REVOKED (its run was cancelled
// while this delivery ran).
func (w *Worker) revoked(m *message) bool {
	ctx, cancel := context.WithTimeout(context.Background(), callbackTimeout)
	defer cancel()
	r, err := w.be.Get(ctx, m.ID)
	return err == nil && r.State == Revoked
}
