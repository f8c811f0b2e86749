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
	// JSON array (the result is prepended) or object (the result goes in
	// ResultField) when a parent result is to be added.
	Args json.RawMessage `json:"args,omitempty"`
	// Options is the task's per-call options (baton.EnqueueOpts as JSON),
	// opaque to this package.
	Options json.RawMessage `json:"options,omitempty"`
	// Immutable signatures ignore their parent's result.
	Immutable bool `json:"immutable,omitempty"`
	// ResultField names the field the parent result is put in beside static
	// args that are a JSON object. Defaults to "input".
	ResultField string `json:"result_field,omitempty"`
	// ContinueOnFailure lets the workflow go on when this task fails for
	// good: its FAILURE is recorded, and the next step receives a Failed
	// value ({"failed": true, "id", "kind", "error"}) in place of a result.
	// The research pipeline's --allow-partial uses it on its fetches.
	ContinueOnFailure bool `json:"continue_on_failure,omitempty"`
	// OnError runs once if this task fails for good, with ErrorInfo as its
	// input (like a previous result). On a chord body it also runs, once,
	// when a header task fails and the body is skipped.
	OnError *Signature `json:"on_error,omitempty"`
	// Link runs once after this task succeeded, with its result as input
	// (like a chained step). Its own result goes nowhere: the workflow goes
	// on with this task's result.
	Link *Signature `json:"link,omitempty"`
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

// Callbacks are the callbacks of a chain, group or chord as a whole.
type Callbacks struct {
	// Link runs once when the node succeeded, with the node's result (a
	// chain's last result, a group's list) as input.
	Link *Signature
	// OnError runs once when any task of the node fails for good (however
	// many do), with the ErrorInfo of the first failure as input.
	OnError *Signature
}

// Chain runs its steps one after another, each fed the previous result.
type Chain struct {
	Steps []Canvas
	Callbacks
}

// Group runs its members in parallel; its result is their ordered results.
// A group directly inside a group (or a chord header) is unrolled into it,
// as Celery does: Group(a, Group(b, c)) gives [a, b, c]. An empty group's
// result is [].
type Group struct {
	Members []Canvas
	Callbacks
}

// Chord runs Body once after every Header member succeeded. An empty (or
// nil) Header runs Body at once with [].
type Chord struct {
	Header *Group
	Body   Canvas
	Callbacks
}

// WithLink sets the task's success callback and returns the task.
func (s *Signature) WithLink(cb *Signature) *Signature { s.Link = cb; return s }

// WithOnError sets the task's error callback and returns the task.
func (s *Signature) WithOnError(cb *Signature) *Signature { s.OnError = cb; return s }

// WithLink sets the chain's success callback and returns the chain.
func (c *Chain) WithLink(cb *Signature) *Chain { c.Link = cb; return c }

// WithOnError sets the chain's error callback and returns the chain.
func (c *Chain) WithOnError(cb *Signature) *Chain { c.OnError = cb; return c }

// WithLink sets the group's success callback and returns the group.
func (g *Group) WithLink(cb *Signature) *Group { g.Link = cb; return g }

// WithOnError sets the group's error callback and returns the group.
func (g *Group) WithOnError(cb *Signature) *Group { g.OnError = cb; return g }

// WithLink sets the chord's success callback and returns the chord.
func (c *Chord) WithLink(cb *Signature) *Chord { c.Link = cb; return c }

// WithOnError sets the chord's error callback and returns the chord.
func (c *Chord) WithOnError(cb *Signature) *Chord { c.OnError = cb; return c }

func (*Signature) canvas() {}
func (*Chain) canvas()     {}
func (*Group) canvas()     {}
func (*Chord) canvas()     {}

// NewChain builds a chain.
func NewChain(steps ...Canvas) *Chain { return &Chain{Steps: steps} }

// NewGroup builds a group; with no members its result is [].
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
		for _, cb := range []struct {
			name string
			sig  *Signature
		}{{"on_error", n.OnError}, {"link", n.Link}, {"compensate", n.Compensate}} {
			if cb.sig != nil {
				if err := validate(cb.sig, path+"."+cb.name, depth+1); err != nil {
					return err
				}
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
		return n.Callbacks.validate(path, depth)
	case *Group:
		if n == nil {
			return fmt.Errorf("%s: empty group node", path)
		}
		for i, s := range n.Members {
			if err := validate(s, fmt.Sprintf("%s.group[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
		return n.Callbacks.validate(path, depth)
	case *Chord:
		if n == nil {
			return fmt.Errorf("%s: empty chord node", path)
		}
		if n.Body == nil {
			return fmt.Errorf("%s.chord.body: a chord needs a body", path)
		}
		for i, s := range n.headerMembers() {
			if err := validate(s, fmt.Sprintf("%s.chord.header[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
		if n.Header != nil && !n.Header.Callbacks.empty() {
			return fmt.Errorf("%s.chord.header: a chord's header takes no callbacks of its own: set them on the chord (or chain the group before a body)", path)
		}
		if err := validate(n.Body, path+".chord.body", depth+1); err != nil {
			return err
		}
		return n.Callbacks.validate(path, depth)
	case nil:
		return fmt.Errorf("%s: empty canvas node", path)
	}
	return fmt.Errorf("%s: unknown canvas node %T", path, c)
}

func (cb Callbacks) validate(path string, depth int) error {
	if cb.Link != nil {
		if err := validate(cb.Link, path+".link", depth+1); err != nil {
			return err
		}
	}
	if cb.OnError != nil {
		return validate(cb.OnError, path+".on_error", depth+1)
	}
	return nil
}

func (cb Callbacks) empty() bool { return cb.Link == nil && cb.OnError == nil }

// headerMembers is the chord's header, nil for none.
func (c *Chord) headerMembers() []Canvas {
	if c.Header == nil {
		return nil
	}
	return c.Header.Members
}

// Input builds a task's payload from its static args and its parent's result.
// input is nil when the task has no parent (or is immutable). With no static
// args the result is the payload; with a JSON array of static args it is
// prepended to them (Celery's partial: add.s(8) fed 4 runs add(4, 8)); with
// a JSON object it is set in the field ResultField ("input").
func (s *Signature) Input(input json.RawMessage) (json.RawMessage, error) {
	if s.Immutable || input == nil {
		return s.Args, nil
	}
	if len(s.Args) == 0 || string(s.Args) == "null" {
		return input, nil
	}
	var arr []json.RawMessage
	if err := json.Unmarshal(s.Args, &arr); err == nil && arr != nil {
		return json.Marshal(append([]json.RawMessage{input}, arr...))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(s.Args, &obj); err != nil || obj == nil {
		return nil, errors.New("static args must be a JSON array (the previous result is prepended) or object (it goes in \"input\") to receive the previous step's result (or mark the step immutable)")
	}
	field := s.ResultField
	if field == "" {
		field = DefaultResultField
	}
	obj[field] = input
	return json.Marshal(obj)
}
