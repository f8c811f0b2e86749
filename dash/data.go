package dash

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/chain"
)

// Display states of a workflow: the record's terminal state, or one of these
// while it runs.
const (
	stateRunning = "STARTED" // some step started or finished, none failed for good yet
	stateExpired = "EXPIRED" // the workflow's records are gone (ResultTTL)
)

// summary is one row of the workflow list.
type summary struct {
	ID           string    `json:"id"`
	Kind         string    `json:"kind"`
	State        string    `json:"state"`
	Done         int       `json:"done"`
	Total        int       `json:"total"`
	Created      time.Time `json:"created"`
	Finished     time.Time `json:"finished,omitzero"`
	Cancelled    bool      `json:"cancelled,omitempty"`
	Compensation string    `json:"compensation,omitempty"`
	Error        string    `json:"error,omitempty"`
}

// Duration is the time from creation to the end, or to now while running.
func (s *summary) Duration() time.Duration {
	if s.Created.IsZero() {
		return 0
	}
	if !s.Finished.IsZero() {
		return s.Finished.Sub(s.Created)
	}
	if terminal(s.State) || s.State == stateExpired {
		return 0
	}
	return time.Since(s.Created)
}

func terminal(s string) bool { return backend.State(s).Terminal() }

// stepView is one task of a workflow as the pages show it.
type stepView struct {
	ID         string    `json:"id"`
	Node       int       `json:"node"`
	Kind       string    `json:"kind"`
	Position   string    `json:"position"`
	State      string    `json:"state"`
	Retries    int       `json:"retries"`
	Executions int       `json:"executions"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	DurationMS int64     `json:"duration_ms"`
	Error      string    `json:"error,omitempty"`
	Result     string    `json:"result,omitempty"` // an excerpt
}

// detail is a workflow with its plan and every step.
type detail struct {
	summary
	Plan  *chain.Plan `json:"-"`
	Steps []stepView  `json:"steps"`
	// Callbacks are the link and on_error callbacks of the canvas, in plan
	// order; PENDING until they run (an on_error that never runs stays so).
	Callbacks []stepView `json:"callbacks,omitempty"`
	Final     string     `json:"result,omitempty"` // excerpt of the final result
}

// store reads workflows from Redis.
type store struct {
	rdb    redis.UniversalClient
	client *baton.Client
}

// list returns the page (offset, n) of workflows, newest first, and the
// number of workflows in the index.
func (s *store) list(ctx context.Context, offset, n int) ([]summary, int64, error) {
	total, err := s.rdb.ZCard(ctx, backend.WorkflowIndexKey).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("read workflow index: %w", err)
	}
	ids, err := s.rdb.ZRevRange(ctx, backend.WorkflowIndexKey, int64(offset), int64(offset+n-1)).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("read workflow index: %w", err)
	}
	if len(ids) == 0 {
		return nil, total, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, backend.WorkflowKey(id), "created", "kind", "tasks", "cancelled", "compensation")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, fmt.Errorf("read workflows: %w", err)
	}
	out := make([]summary, len(ids))
	var recIDs []string
	for i, id := range ids {
		v := cmds[i].Val()
		out[i] = summary{ID: id, Kind: str(v, 1), Total: atoi(str(v, 2)), Created: msTime(str(v, 0)),
			Cancelled: str(v, 3) == "1", Compensation: str(v, 4)}
		recIDs = append(recIDs, id)
		for n := 1; n <= out[i].Total; n++ {
			recIDs = append(recIDs, id+"."+strconv.Itoa(n))
		}
	}
	recs, err := s.client.Backend().GetMany(ctx, recIDs)
	if err != nil {
		return nil, 0, err
	}
	k := 0
	for i := range out {
		wf := recs[k]
		steps := recs[k+1 : k+1+out[i].Total]
		k += 1 + out[i].Total
		fillSummary(&out[i], wf, steps)
	}
	return out, total, nil
}

// fillSummary derives a workflow's state and progress from its records.
func fillSummary(s *summary, wf *backend.Record, steps []*backend.Record) {
	if s.Kind == "" && wf == nil {
		s.State = stateExpired
		return
	}
	s.State = string(backend.Pending)
	if wf != nil {
		if s.Created.IsZero() {
			s.Created = wf.EnqueuedAt
		}
		if wf.State.Terminal() {
			s.State, s.Finished, s.Error = string(wf.State), wf.FinishedAt, wf.Error
		}
	}
	for _, r := range steps {
		if r == nil {
			continue
		}
		if r.State.Terminal() {
			s.Done++
		}
		if r.State != backend.Pending && s.State == string(backend.Pending) {
			s.State = stateRunning
		}
	}
}

// get returns workflow id with its plan and steps; baton.ErrNotFound when
// it is unknown or expired.
func (s *store) get(ctx context.Context, id string) (*detail, error) {
	wf, err := s.client.Workflow(ctx, id)
	if err != nil {
		return nil, err
	}
	steps, err := wf.Steps(ctx)
	if err != nil {
		return nil, err
	}
	v, err := s.rdb.HMGet(ctx, backend.WorkflowKey(id), "created", "kind", "tasks", "cancelled", "compensation").Result()
	if err != nil {
		return nil, fmt.Errorf("read workflow %s: %w", id, err)
	}
	rec, err := s.client.Get(ctx, id)
	if err != nil && !errors.Is(err, baton.ErrNotFound) {
		return nil, err
	}
	d := &detail{
		summary: summary{ID: id, Kind: wf.Plan.Kind(), Total: len(steps), Created: msTime(str(v, 0)),
			Cancelled: str(v, 3) == "1", Compensation: str(v, 4)},
		Plan: wf.Plan,
	}
	recs := make([]*backend.Record, len(steps))
	for i, st := range steps {
		recs[i] = st.Record
		node := wf.Plan.Nodes[st.Node]
		sv := stepView{ID: node.TaskID, Node: st.Node, Kind: node.Sig.Kind, Position: st.Position, State: string(backend.Pending)}
		if r := st.Record; r != nil {
			sv.fill(r)
		} else {
			sv.State = stateExpired
		}
		d.Steps = append(d.Steps, sv)
	}
	if d.Callbacks, err = s.callbacks(ctx, wf.Plan); err != nil {
		return nil, err
	}
	fillSummary(&d.summary, rec, recs)
	if rec != nil && rec.State == backend.Success {
		d.Final = excerpt(rec.Result, 2000)
	}
	return d, nil
}

// fill sets what a record says about a step.
func (sv *stepView) fill(r *backend.Record) {
	sv.State, sv.Retries, sv.Executions = string(r.State), r.Retries, r.Executions
	sv.StartedAt, sv.FinishedAt, sv.Error = r.StartedAt, r.FinishedAt, r.Error
	sv.DurationMS = stepDuration(r).Milliseconds()
	if r.State == backend.Success {
		sv.Result = excerpt(r.Result, 300)
	}
	if r.Replaced != "" && !r.State.Terminal() {
		sv.Result = "replaced by workflow " + r.Replaced
	}
}

// callbacks reads the records of a plan's link and on_error callbacks.
func (s *store) callbacks(ctx context.Context, plan *chain.Plan) ([]stepView, error) {
	cbs := plan.AllCallbacks()
	if len(cbs) == 0 {
		return nil, nil
	}
	ids := make([]string, len(cbs))
	for i, cb := range cbs {
		ids[i] = cb.ID
	}
	recs, err := s.client.Backend().GetMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]stepView, len(cbs))
	for i, cb := range cbs {
		out[i] = stepView{ID: cb.ID, Node: cb.Node, Kind: cb.Sig.Kind, Position: callbackPosition(plan, cb), State: string(backend.Pending)}
		if recs[i] != nil {
			out[i].fill(recs[i])
		}
	}
	return out, nil
}

// callbackPosition says what a callback belongs to: "link of step 2 of 3 of
// a chain", "on_error of the whole group".
func callbackPosition(plan *chain.Plan, cb chain.Callback) string {
	n := plan.Nodes[cb.Node]
	switch {
	case n.Type == chain.TypeTask:
		return cb.Event + " of " + plan.Position(cb.Node)
	case n.Parent < 0:
		return cb.Event + " of the whole " + n.Type
	}
	return fmt.Sprintf("%s of the %s at node %d", cb.Event, n.Type, cb.Node)
}

// stepDuration is a step's run time, up to now while it runs.
func stepDuration(r *backend.Record) time.Duration {
	if r.StartedAt.IsZero() {
		return 0
	}
	if d := r.Duration(); d > 0 {
		return d
	}
	if r.State == backend.Started {
		return time.Since(r.StartedAt)
	}
	return 0
}

func str(v []any, i int) string {
	if i < len(v) {
		if s, ok := v[i].(string); ok {
			return s
		}
	}
	return ""
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func msTime(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n)
}
