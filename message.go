package baton

import (
	"encoding/json"
	"fmt"
	"time"
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
	// Durable runs (durable.go): RG is the generation a delivery resumes
	// (0 for the first); W names the run operation awaiting this child.
	RG int        `json:"rg,omitempty"`
	W  *waiterRef `json:"w,omitempty"`

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
