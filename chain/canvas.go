package chain

import (
	"encoding/json"
	"errors"
	"fmt"
)

// DefaultResultField is where a parent's result goes when the next
// signature has static args.
const DefaultResultField = "input"

// Canvas is a Signature, *Chain, *Group or *Chord.
type Canvas interface{ canvas() }

// Signature is one task in a canvas: kind, static args and options.
type Signature struct {
	Kind string `json:"task"`
	// Args are the static (partial) args: any JSON with no parent result; a
	// JSON object when a parent result is to be added.
	Args json.RawMessage `json:"args,omitempty"`
	// Options is the task's per-call options (baton.EnqueueOpts as JSON),
	// opaque to this package.
	Options json.RawMessage `json:"options,omitempty"`
	// Immutable signatures ignore their parent's result.
	Immutable bool `json:"immutable,omitempty"`
	// ResultField names the field the parent result is put in beside static
	// args. Defaults to "input".
	ResultField string `json:"result_field,omitempty"`
	// ContinueOnFailure lets the workflow go on when this task fails for
	// good: its FAILURE is recorded, and the next step receives a Failed
	// value ({"failed": true, "id", "kind", "error"}) in place of a result.
	// The research pipeline's --allow-partial uses it on its fetches.
	ContinueOnFailure bool `json:"continue_on_failure,omitempty"`
	// OnError runs once if this task fails for good, with ErrorInfo as args.
	OnError *Signature `json:"on_error,omitempty"`
	// Compensate runs if a later step of the workflow fails for good after
	// this task succeeded (a saga); it receives this task's result like a
	// chained step.
	Compensate *Signature `json:"compensate,omitempty"`
}

// ErrorInfo is the payload of an on-error callback.
type ErrorInfo struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Error    string `json:"error"`
	Workflow string `json:"workflow,omitempty"`
}

// Failed is what a ContinueOnFailure task hands on instead of a result.
type Failed struct {
	Failed bool   `json:"failed"`
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Error  string `json:"error"`
	// Args are the failed task's args (omitted above 4 KiB).
	Args json.RawMessage `json:"args,omitempty"`
}

// Chain runs its steps one after another, each fed the previous result.
type Chain struct{ Steps []Canvas }

// Group runs its members in parallel; its result is their ordered results.
type Group struct{ Members []Canvas }

// Chord runs Body once after every Header member succeeded.
type Chord struct {
	Header *Group
	Body   Canvas
}

func (*Signature) canvas() {}
func (*Chain) canvas()     {}
func (*Group) canvas()     {}
func (*Chord) canvas()     {}

// NewChain builds a chain.
func NewChain(steps ...Canvas) *Chain { return &Chain{Steps: steps} }

// NewGroup builds a group.
func NewGroup(members ...Canvas) *Group { return &Group{Members: members} }

// NewChord builds a chord.
func NewChord(header *Group, body Canvas) *Chord { return &Chord{Header: header, Body: body} }

// Validate checks a canvas's shape and depth (MaxDepth); errors carry the
// JSON path of the node.
func Validate(c Canvas) error { return validate(c, "$", 0) }

func validate(c Canvas, path string, depth int) error {
	if depth > MaxDepth {
		return depthError(path)
	}
	switch n := c.(type) {
	case *Signature:
		if n == nil {
			return fmt.Errorf("%s: empty signature", path)
		}
		if n.Kind == "" {
			return fmt.Errorf("%s.task: missing task kind", path)
		}
		if len(n.Args) > 0 && !json.Valid(n.Args) {
			return fmt.Errorf("%s.args: not valid JSON", path)
		}
		if n.OnError != nil {
			if err := validate(n.OnError, path+".on_error", depth+1); err != nil {
				return err
			}
		}
		if n.Compensate != nil {
			if err := validate(n.Compensate, path+".compensate", depth+1); err != nil {
				return err
			}
		}
		return nil
	case *Chain:
		if n == nil || len(n.Steps) == 0 {
			return fmt.Errorf("%s.chain: a chain needs at least one step", path)
		}
		for i, s := range n.Steps {
			if err := validate(s, fmt.Sprintf("%s.chain[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
		return nil
	case *Group:
		if n == nil || len(n.Members) == 0 {
			return fmt.Errorf("%s.group: a group needs at least one member", path)
		}
		for i, s := range n.Members {
			if err := validate(s, fmt.Sprintf("%s.group[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
		return nil
	case *Chord:
		if n == nil || n.Header == nil || len(n.Header.Members) == 0 {
			return fmt.Errorf("%s.chord.header: a chord needs at least one header task", path)
		}
		if n.Body == nil {
			return fmt.Errorf("%s.chord.body: a chord needs a body", path)
		}
		for i, s := range n.Header.Members {
			if err := validate(s, fmt.Sprintf("%s.chord.header[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
		return validate(n.Body, path+".chord.body", depth+1)
	case nil:
		return fmt.Errorf("%s: empty canvas node", path)
	}
	return fmt.Errorf("%s: unknown canvas node %T", path, c)
}

// Input builds a task's payload from its static args and its parent's result.
// input is nil when the task has no parent (or is immutable).
func (s *Signature) Input(input json.RawMessage) (json.RawMessage, error) {
	if s.Immutable || input == nil {
		return s.Args, nil
	}
	if len(s.Args) == 0 || string(s.Args) == "null" {
		return input, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(s.Args, &obj); err != nil || obj == nil {
		return nil, errors.New("static args must be a JSON object to receive the previous step's result (or mark the step immutable)")
	}
	field := s.ResultField
	if field == "" {
		field = DefaultResultField
	}
	obj[field] = input
	return json.Marshal(obj)
}
