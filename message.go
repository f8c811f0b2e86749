package baton

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/batonhq/baton/chain"
)

// message is the JSON envelope baton puts in an asynq task's payload. The
// asynq task type is the kind. Fields are short: every task carries them.
type message struct {
	V          int             `json:"v"`
	ID         string          `json:"id"`
	Kind       string          `json:"kind"`
	Args       json.RawMessage `json:"args,omitempty"`
	Queue      string          `json:"q,omitempty"`
	MaxRetries *int            `json:"mr,omitempty"` // nil: the worker's registered default
	Retry      *RetryPolicy    `json:"rp,omitempty"`
	TimeoutMS  int64           `json:"to,omitempty"`
	ExpiresMS  int64           `json:"exp,omitempty"`
	EnqueuedMS int64           `json:"enq,omitempty"`
	RunAtMS    int64           `json:"at,omitempty"`
	// Canvas position: the workflow and the node of its stored plan.
	Workflow string `json:"wf,omitempty"`
	Node     int    `json:"n,omitempty"`
	Parent   string `json:"p,omitempty"`
	// Plan is the workflow's plan, carried inline when small.
	Plan json.RawMessage `json:"pl,omitempty"`
	// LimitKey overrides the key value of the task's keyed limits.
	LimitKey string `json:"lk,omitempty"`
	// Durable runs (durable.go): RG is the generation a delivery resumes
	// (0 for the first); W names the run operation awaiting this child.
	RG int        `json:"rg,omitempty"`
	W  *waiterRef `json:"w,omitempty"`
	// Trace is what the observers' Propagators carried from where the task
	// was enqueued (the W3C trace context, when tracing is on); absent in
	// messages of older versions and of producers without one.
	Trace map[string]string `json:"tc,omitempty"`

	asynqMax int // asynq's retry budget, not sent
}

const messageVersion = 1

func (m *message) timeout() time.Duration { return time.Duration(m.TimeoutMS) * time.Millisecond }

func (m *message) expires() time.Time {
	if m.ExpiresMS == 0 {
		return time.Time{}
	}
	return time.UnixMilli(m.ExpiresMS)
}

// decodeMessage parses a payload; its errors say what is wrong with it.
func decodeMessage(payload []byte) (*message, error) {
	var m message
	if err := json.Unmarshal(payload, &m); err != nil {
		return nil, fmt.Errorf("task payload is not a baton message (JSON envelope): %w; was it enqueued with a raw asynq client?", err)
	}
	if m.V != messageVersion {
		return nil, fmt.Errorf("task payload has message version %d, this worker reads version %d: upgrade the worker", m.V, messageVersion)
	}
	if m.ID == "" || m.Kind == "" {
		return nil, fmt.Errorf("task payload lacks id or kind: not a baton message")
	}
	return &m, nil
}

// checkMessage checks, before a worker uses it, what decodeMessage cannot
// see alone: that a workflow step's node is a task of its plan with the
// message's id and kind (plan is the workflow's plan, verified; nil for a
// task outside workflows), and that its numbers make sense. A message that
// fails it can never run: it is failed once, never retried.
func checkMessage(m *message, plan *chain.Plan) error {
	var errs []error
	if m.MaxRetries != nil && *m.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("max retries %d is negative", *m.MaxRetries))
	}
	if m.TimeoutMS < 0 {
		errs = append(errs, fmt.Errorf("timeout %dms is negative", m.TimeoutMS))
	}
	if m.Retry != nil {
		if err := m.Retry.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case m.Workflow == "" && m.Node != 0:
		errs = append(errs, fmt.Errorf("node %d without a workflow", m.Node))
	case m.Workflow == "" && len(m.Plan) > 0:
		errs = append(errs, errors.New("a plan without a workflow"))
	case m.Workflow != "" && plan == nil:
		errs = append(errs, fmt.Errorf("workflow %s has no plan", m.Workflow))
	case m.Workflow != "":
		if m.Node < 0 || m.Node >= len(plan.Nodes) {
			errs = append(errs, fmt.Errorf("node %d is out of range: the plan of workflow %s has %d nodes", m.Node, m.Workflow, len(plan.Nodes)))
			break
		}
		n := plan.Nodes[m.Node]
		switch {
		case n.Type != chain.TypeTask:
			errs = append(errs, fmt.Errorf("node %d of workflow %s is a %s, not a task", m.Node, m.Workflow, n.Type))
		case n.Sig.Kind != m.Kind:
			errs = append(errs, fmt.Errorf("node %d of workflow %s is task %q, not %q", m.Node, m.Workflow, n.Sig.Kind, m.Kind))
		case n.TaskID != m.ID:
			errs = append(errs, fmt.Errorf("node %d of workflow %s is step %s, not %s", m.Node, m.Workflow, n.TaskID, m.ID))
		}
	}
	return errors.Join(errs...)
}
