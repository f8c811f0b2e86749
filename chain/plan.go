package chain

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Node types in a Plan.
const (
	TypeTask  = "task"
	TypeChain = "chain"
	TypeGroup = "group"
	TypeChord = "chord" // a chain of two: the header group, then the body
)

// Node is one node of a compiled canvas.
type Node struct {
	Type     string     `json:"t"`
	Parent   int        `json:"p"` // -1 for the root
	Index    int        `json:"i"` // position in the parent
	Children []int      `json:"c,omitempty"`
	TaskID   string     `json:"id,omitempty"`
	Sig      *Signature `json:"s,omitempty"`
	// Link and OnError are the callbacks of a chain, group or chord node as
	// a whole; a task's own are in Sig.
	Link    *Signature `json:"l,omitempty"`
	OnError *Signature `json:"e,omitempty"`
}

// Plan is a canvas compiled for one workflow: a flat tree with every task's
// id assigned. It is immutable once built and is stored with the workflow.
type Plan struct {
	Workflow string `json:"wf"`
	Nodes    []Node `json:"nodes"` // Nodes[0] is the root
	// Input is fed to the first steps as if it were a previous result; nil
	// for none.
	Input json.RawMessage `json:"in,omitempty"`
	// Awaiter says who waits for the workflow to end (a task it replaces);
	// opaque to this package.
	Awaiter json.RawMessage `json:"aw,omitempty"`
}

// emptyList is the result of an empty group.
var emptyList = json.RawMessage("[]")

// Compile turns a canvas into the plan of workflow wfID. Groups directly
// inside groups (chord headers included) are unrolled into them and chains
// directly inside chains spliced into them, unless the inner node has
// callbacks of its own; task ids are the same either way.
func Compile(wfID string, c Canvas) (*Plan, error) {
	if err := Validate(c); err != nil {
		return nil, err
	}
	p := &Plan{Workflow: wfID}
	n := 0
	var add func(c Canvas, parent, index int) int
	add = func(c Canvas, parent, index int) int {
		idx := len(p.Nodes)
		p.Nodes = append(p.Nodes, Node{Parent: parent, Index: index})
		var (
			kids []Canvas
			cb   Callbacks
		)
		switch v := c.(type) {
		case *Signature:
			n++
			sig := *v
			p.Nodes[idx].Type = TypeTask
			p.Nodes[idx].Sig = &sig
			p.Nodes[idx].TaskID = wfID + "." + strconv.Itoa(n)
			return idx
		case *Chain:
			p.Nodes[idx].Type = TypeChain
			kids, cb = splice(v.Steps), v.Callbacks
		case *Group:
			p.Nodes[idx].Type = TypeGroup
			kids, cb = unroll(v.Members), v.Callbacks
		case *Chord:
			p.Nodes[idx].Type = TypeChord
			header := v.Header
			if header == nil {
				header = &Group{}
			}
			kids, cb = []Canvas{header, v.Body}, v.Callbacks
		}
		p.Nodes[idx].Link, p.Nodes[idx].OnError = cb.Link, cb.OnError
		children := make([]int, len(kids))
		for i, k := range kids {
			children[i] = add(k, idx, i)
		}
		p.Nodes[idx].Children = children
		return idx
	}
	add(c, -1, 0)
	return p, nil
}

// unroll splices the members of groups without callbacks into the list of a
// group's members, recursively (Celery unrolls nested groups).
func unroll(members []Canvas) []Canvas {
	return flatten(members, func(c Canvas) ([]Canvas, bool) {
		g, ok := c.(*Group)
		return g.members(), ok && g.Callbacks.empty()
	})
}

// splice does for chains in a chain what unroll does for groups.
func splice(steps []Canvas) []Canvas {
	return flatten(steps, func(c Canvas) ([]Canvas, bool) {
		ch, ok := c.(*Chain)
		return ch.steps(), ok && ch.Callbacks.empty()
	})
}

// flatten replaces each item that inner accepts by its children, recursively.
func flatten(items []Canvas, inner func(Canvas) ([]Canvas, bool)) []Canvas {
	out := make([]Canvas, 0, len(items))
	for _, it := range items {
		if kids, ok := inner(it); ok {
			out = append(out, flatten(kids, inner)...)
			continue
		}
		out = append(out, it)
	}
	return out
}

func (g *Group) members() []Canvas {
	if g == nil {
		return nil
	}
	return g.Members
}

func (c *Chain) steps() []Canvas {
	if c == nil {
		return nil
	}
	return c.Steps
}

// maxPlanDepth bounds how deep a plan's nodes may sit: a chord puts its
// header members two nodes below it, so twice the canvas depth.
const maxPlanDepth = 2*MaxDepth + 1

// Verify checks that a plan read back (from a message or from Redis) is
// one Compile could have built, so that walking it can neither panic nor
// loop: parents come before their children and agree with them, every
// node's type is known and has the children it needs, every task has an
// id and a kind.
func (p *Plan) Verify() error {
	if len(p.Nodes) == 0 {
		return errors.New("the plan has no nodes")
	}
	depth := make([]int, len(p.Nodes))
	for i := range p.Nodes {
		n := &p.Nodes[i]
		switch {
		case i == 0 && n.Parent != -1:
			return fmt.Errorf("node 0 is the root, but has parent %d", n.Parent)
		case i > 0 && (n.Parent < 0 || n.Parent >= i):
			return fmt.Errorf("node %d has parent %d, not an earlier node", i, n.Parent)
		case i > 0:
			depth[i] = depth[n.Parent] + 1
			if depth[i] > maxPlanDepth {
				return fmt.Errorf("node %d is nested more than %d nodes deep", i, maxPlanDepth)
			}
			siblings := p.Nodes[n.Parent].Children
			if n.Index < 0 || n.Index >= len(siblings) || siblings[n.Index] != i {
				return fmt.Errorf("node %d is not child %d of its parent %d", i, n.Index, n.Parent)
			}
		}
		for j, c := range n.Children {
			if c <= i || c >= len(p.Nodes) || p.Nodes[c].Parent != i || p.Nodes[c].Index != j {
				return fmt.Errorf("node %d: child %d (node %d) does not point back to it", i, j, c)
			}
		}
		switch n.Type {
		case TypeTask:
			if n.Sig == nil || n.Sig.Kind == "" || n.TaskID == "" || len(n.Children) > 0 {
				return fmt.Errorf("node %d is a task without an id or a kind, or with children", i)
			}
		case TypeChain:
			if len(n.Children) == 0 {
				return fmt.Errorf("node %d is an empty chain", i)
			}
		case TypeGroup: // an empty group is valid: its result is []
		case TypeChord:
			if len(n.Children) != 2 || p.Nodes[n.Children[0]].Type != TypeGroup {
				return fmt.Errorf("node %d is a chord without a header group and a body", i)
			}
		default:
			return fmt.Errorf("node %d has unknown type %q", i, n.Type)
		}
	}
	return nil
}

// Kind is the root node's type, the workflow's canvas kind.
func (p *Plan) Kind() string { return p.Nodes[0].Type }

// Tasks returns the task nodes in plan order.
func (p *Plan) Tasks() []int {
	var out []int
	for i, n := range p.Nodes {
		if n.Type == TypeTask {
			out = append(out, i)
		}
	}
	return out
}

// NodeOf returns the node index of a task id, or -1.
func (p *Plan) NodeOf(taskID string) int {
	for i, n := range p.Nodes {
		if n.TaskID == taskID {
			return i
		}
	}
	return -1
}

// GroupID is the id a group node's join is stored under.
func (p *Plan) GroupID(node int) string { return p.Workflow + ".g" + strconv.Itoa(node) }

// Dispatch is a task to enqueue: its node, id and payload.
type Dispatch struct {
	Node   int
	TaskID string
	Sig    *Signature
	Args   json.RawMessage
	Parent string // id of the task whose result it received, if any
}

// Action is what follows a step, a node's start or its completion. Every
// part of it is idempotent to carry out, so a redelivered step can carry
// it out again.
type Action struct {
	// Callbacks to enqueue under their fixed ids.
	Callbacks []Callback
	// Dispatch: tasks to enqueue.
	Dispatch []Dispatch
	// Joins: results to store in groups; a group whose results are all in
	// completes (Complete(j.Group, list, j.Last)).
	Joins []Join
	// Done: the workflow finished with Result.
	Done   bool
	Result json.RawMessage
}

// Join stores Result at Index of group node Group (of Size members).
type Join struct {
	Group  int
	Index  int
	Size   int
	Result json.RawMessage
	// Last is the task whose completion this is (the next step's parent).
	Last string
}

// Callback is a link or on_error callback to run once, under a fixed id.
type Callback struct {
	ID    string
	Node  int    // the node it belongs to
	Event string // "link" or "on_error"
	Sig   *Signature
	Args  json.RawMessage // its payload: Sig fed the result or the ErrorInfo
}

// Callback events.
const (
	EventLink    = "link"
	EventOnError = "on_error"
)

func (a *Action) merge(b Action) {
	a.Callbacks = append(a.Callbacks, b.Callbacks...)
	a.Dispatch = append(a.Dispatch, b.Dispatch...)
	a.Joins = append(a.Joins, b.Joins...)
	if b.Done {
		a.Done, a.Result = true, b.Result
	}
}

// Start returns what begins node fed input (nil for none): its first tasks,
// or, for an empty group, its completion with [].
func (p *Plan) Start(node int, input json.RawMessage, parent string) (Action, error) {
	n := &p.Nodes[node]
	switch n.Type {
	case TypeTask:
		args, err := n.Sig.Input(input)
		if err != nil {
			return Action{}, fmt.Errorf("step %s (%s): %w", n.TaskID, n.Sig.Kind, err)
		}
		return Action{Dispatch: []Dispatch{{Node: node, TaskID: n.TaskID, Sig: n.Sig, Args: args, Parent: parent}}}, nil
	case TypeChain, TypeChord:
		return p.Start(n.Children[0], input, parent)
	case TypeGroup:
		if len(n.Children) == 0 {
			return p.Complete(node, emptyList, parent)
		}
		var out Action
		for _, c := range n.Children {
			a, err := p.Start(c, input, parent)
			if err != nil {
				return Action{}, err
			}
			out.merge(a)
		}
		return out, nil
	}
	return Action{}, fmt.Errorf("plan: unknown node type %q", n.Type)
}

// Complete says what follows node finishing with result: its success
// callbacks and those of every node it completes with it, then the next
// step, a group join, or the end of the workflow. lastTask is the id of the
// task whose completion this is (recorded as the next step's parent).
func (p *Plan) Complete(node int, result json.RawMessage, lastTask string) (Action, error) {
	var out Action
	for {
		n := &p.Nodes[node]
		if link, _ := p.callbacks(node); link != nil {
			cb, err := p.callback(node, EventLink, link, result)
			if err != nil {
				return Action{}, err
			}
			out.Callbacks = append(out.Callbacks, cb)
		}
		if n.Parent < 0 {
			out.Done, out.Result = true, result
			return out, nil
		}
		parent := &p.Nodes[n.Parent]
		switch parent.Type {
		case TypeChain, TypeChord:
			if n.Index+1 < len(parent.Children) {
				a, err := p.Start(parent.Children[n.Index+1], result, lastTask)
				if err != nil {
					return Action{}, err
				}
				out.merge(a)
				return out, nil
			}
			node = n.Parent
		case TypeGroup:
			out.Joins = append(out.Joins, Join{Group: n.Parent, Index: n.Index, Size: len(parent.Children), Result: result, Last: lastTask})
			return out, nil
		default:
			return Action{}, fmt.Errorf("plan: node %d has a parent of type %q", node, parent.Type)
		}
	}
}

// callbacks returns node's success and error callbacks: a task's from its
// signature, a chain's, group's or chord's from the node.
func (p *Plan) callbacks(node int) (link, onError *Signature) {
	n := &p.Nodes[node]
	if n.Sig != nil {
		return n.Sig.Link, n.Sig.OnError
	}
	return n.Link, n.OnError
}

func (p *Plan) callback(node int, event string, sig *Signature, input json.RawMessage) (Callback, error) {
	args, err := sig.Input(input)
	if err != nil {
		return Callback{}, fmt.Errorf("%s callback %q of %s: %w", event, sig.Kind, p.describe(node), err)
	}
	return Callback{ID: p.CallbackID(node, event), Node: node, Event: event, Sig: sig, Args: args}, nil
}

// CallbackID is the fixed id of node's link or on_error callback: the
// task's id + ".link" / ".err", or "<workflow>.n<node>.link" / ".err" for a
// chain, group or chord.
func (p *Plan) CallbackID(node int, event string) string {
	suffix := ".link"
	if event == EventOnError {
		suffix = ".err"
	}
	if id := p.Nodes[node].TaskID; id != "" {
		return id + suffix
	}
	return p.Workflow + ".n" + strconv.Itoa(node) + suffix
}

// describe names a node for messages: a task's id, else its type and index.
func (p *Plan) describe(node int) string {
	if id := p.Nodes[node].TaskID; id != "" {
		return "task " + id
	}
	return fmt.Sprintf("the %s at node %d", p.Nodes[node].Type, node)
}

// Failed returns the error callbacks to run, once each, when task node
// fails for good, fed info (an ErrorInfo): the task's own, those of every
// chain, group and chord that encloses it (so a canvas's on_error fires once
// however many of its tasks fail), and, when the task is in a chord's
// header (or a group followed by a step in a chain, the same thing), those
// of the body that will not run (and of its members when the body is a
// group), innermost first.
func (p *Plan) Failed(node int, info json.RawMessage) ([]Callback, error) {
	var out []Callback
	add := func(n int) error {
		if _, onErr := p.callbacks(n); onErr != nil {
			cb, err := p.callback(n, EventOnError, onErr, info)
			if err != nil {
				return err
			}
			out = append(out, cb)
		}
		return nil
	}
	if err := add(node); err != nil {
		return nil, err
	}
	for cur := node; p.Nodes[cur].Parent >= 0; cur = p.Nodes[cur].Parent {
		par, c := p.Nodes[cur].Parent, p.Nodes[cur]
		if seq := p.Nodes[par].Type; (seq == TypeChord || seq == TypeChain) && c.Type == TypeGroup && c.Index+1 < len(p.Nodes[par].Children) {
			body := p.Nodes[par].Children[c.Index+1]
			if err := add(body); err != nil {
				return nil, err
			}
			if p.Nodes[body].Type == TypeGroup {
				for _, m := range p.Nodes[body].Children {
					if err := add(m); err != nil {
						return nil, err
					}
				}
			}
		}
		if err := add(par); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// AllCallbacks lists every link and on_error callback of the plan, in node
// order, without args.
func (p *Plan) AllCallbacks() []Callback {
	var out []Callback
	for i := range p.Nodes {
		link, onErr := p.callbacks(i)
		if link != nil {
			out = append(out, Callback{ID: p.CallbackID(i, EventLink), Node: i, Event: EventLink, Sig: link})
		}
		if onErr != nil {
			out = append(out, Callback{ID: p.CallbackID(i, EventOnError), Node: i, Event: EventOnError, Sig: onErr})
		}
	}
	return out
}

// LinksOnPath reports whether node, or a node it completes with it on the
// way to the root, has a success callback.
func (p *Plan) LinksOnPath(node int) bool {
	for cur := node; cur >= 0; cur = p.Nodes[cur].Parent {
		if link, _ := p.callbacks(cur); link != nil {
			return true
		}
	}
	return false
}

// Downstream lists the task nodes that can no longer run once node fails:
// every later step of each enclosing chain or chord, up to the root.
// Members of an enclosing group are left to finish.
func (p *Plan) Downstream(node int) []int {
	var out []int
	for cur := node; p.Nodes[cur].Parent >= 0; cur = p.Nodes[cur].Parent {
		parent := p.Nodes[p.Nodes[cur].Parent]
		if parent.Type != TypeChain && parent.Type != TypeChord {
			continue
		}
		for _, sib := range parent.Children[p.Nodes[cur].Index+1:] {
			out = append(out, p.tasksUnder(sib)...)
		}
	}
	return out
}

func (p *Plan) tasksUnder(node int) []int {
	n := p.Nodes[node]
	if n.Type == TypeTask {
		return []int{node}
	}
	var out []int
	for _, c := range n.Children {
		out = append(out, p.tasksUnder(c)...)
	}
	return out
}

// Position describes where a task sits, for messages: "step 2 of chain" etc.
func (p *Plan) Position(node int) string {
	n := p.Nodes[node]
	if n.Parent < 0 {
		return "the only step"
	}
	parent := p.Nodes[n.Parent]
	switch parent.Type {
	case TypeChain:
		return fmt.Sprintf("step %d of %d of a chain", n.Index+1, len(parent.Children))
	case TypeChord:
		if n.Index == 0 {
			return "chord header"
		}
		return "chord body"
	case TypeGroup:
		gp := n.Parent
		if p.Nodes[gp].Parent >= 0 && p.Nodes[p.Nodes[gp].Parent].Type == TypeChord {
			if p.Nodes[gp].Index == 0 {
				return fmt.Sprintf("header task %d of %d of a chord", n.Index+1, len(parent.Children))
			}
			return fmt.Sprintf("member %d of %d of a chord body", n.Index+1, len(parent.Children))
		}
		return fmt.Sprintf("member %d of %d of a group", n.Index+1, len(parent.Children))
	}
	return ""
}

// CheckInputs verifies, before anything runs, that every task that will
// receive a previous result can take it: static args beside a result must be
// a JSON array or object (or the signature immutable). first are the tasks
// that start the workflow without input. Callbacks always receive an input
// (a result or an ErrorInfo), and are checked likewise.
func (p *Plan) CheckInputs(first []Dispatch) error {
	starts := map[int]bool{}
	for _, d := range first {
		starts[d.Node] = true
	}
	null := json.RawMessage("null")
	for _, n := range p.Tasks() {
		sig := p.Nodes[n].Sig
		if !starts[n] {
			if _, err := sig.Input(null); err != nil {
				return fmt.Errorf("%s (%s, task %q): %w", p.Nodes[n].TaskID, p.Position(n), sig.Kind, err)
			}
		}
		if c := sig.Compensate; c != nil {
			if _, err := c.Input(null); err != nil {
				return fmt.Errorf("compensate callback %q of %s: %w", c.Kind, p.describe(n), err)
			}
		}
	}
	for _, cb := range p.AllCallbacks() {
		if _, err := p.callback(cb.Node, cb.Event, cb.Sig, null); err != nil {
			return err
		}
	}
	return nil
}

// IsFinal reports whether node finishing successfully finishes the whole
// workflow: it is the last step of every enclosing chain or chord, and no
// group encloses it.
func (p *Plan) IsFinal(node int) bool {
	for cur := node; p.Nodes[cur].Parent >= 0; cur = p.Nodes[cur].Parent {
		parent := p.Nodes[p.Nodes[cur].Parent]
		if parent.Type == TypeGroup || p.Nodes[cur].Index != len(parent.Children)-1 {
			return false
		}
	}
	return true
}
