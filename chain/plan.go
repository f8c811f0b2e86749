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
}

// Plan is a canvas compiled for one workflow: a flat tree with every task's
// id assigned. It is immutable once built and is stored with the workflow.
type Plan struct {
	Workflow string `json:"wf"`
	Nodes    []Node `json:"nodes"` // Nodes[0] is the root
}

// Compile turns a canvas into the plan of workflow wfID.
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
		var kids []Canvas
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
			kids = v.Steps
		case *Group:
			p.Nodes[idx].Type = TypeGroup
			kids = v.Members
		case *Chord:
			p.Nodes[idx].Type = TypeChord
			kids = []Canvas{v.Header, v.Body}
		}
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
		case TypeChain, TypeGroup:
			if len(n.Children) == 0 {
				return fmt.Errorf("node %d is an empty %s", i, n.Type)
			}
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

// Start returns the tasks that begin node, fed input (nil for none).
func (p *Plan) Start(node int, input json.RawMessage, parent string) ([]Dispatch, error) {
	n := &p.Nodes[node]
	switch n.Type {
	case TypeTask:
		args, err := n.Sig.Input(input)
		if err != nil {
			return nil, fmt.Errorf("step %s (%s): %w", n.TaskID, n.Sig.Kind, err)
		}
		return []Dispatch{{Node: node, TaskID: n.TaskID, Sig: n.Sig, Args: args, Parent: parent}}, nil
	case TypeChain, TypeChord:
		return p.Start(n.Children[0], input, parent)
	case TypeGroup:
		var out []Dispatch
		for _, c := range n.Children {
			d, err := p.Start(c, input, parent)
			if err != nil {
				return nil, err
			}
			out = append(out, d...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("plan: unknown node type %q", n.Type)
}

// Action is what follows a node's completion.
type Action struct {
	// Dispatch: enqueue these tasks.
	Dispatch []Dispatch
	// Join: store the result at Index of group node Group (of Size members);
	// when all are in, the group completes with the ordered list.
	Join  bool
	Group int
	Index int
	Size  int
	// Done: the workflow finished with Result.
	Done   bool
	Result json.RawMessage
}

// Complete says what follows node finishing with result. lastTask is the id
// of the task whose completion this is (recorded as the next step's parent).
func (p *Plan) Complete(node int, result json.RawMessage, lastTask string) (Action, error) {
	n := &p.Nodes[node]
	if n.Parent < 0 {
		return Action{Done: true, Result: result}, nil
	}
	parent := &p.Nodes[n.Parent]
	switch parent.Type {
	case TypeChain, TypeChord:
		if n.Index+1 < len(parent.Children) {
			d, err := p.Start(parent.Children[n.Index+1], result, lastTask)
			return Action{Dispatch: d}, err
		}
		return p.Complete(n.Parent, result, lastTask)
	case TypeGroup:
		return Action{Join: true, Group: n.Parent, Index: n.Index, Size: len(parent.Children)}, nil
	}
	return Action{}, fmt.Errorf("plan: node %d has a parent of type %q", node, parent.Type)
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
			return fmt.Sprintf("header task %d of %d of a chord", n.Index+1, len(parent.Children))
		}
		return fmt.Sprintf("member %d of %d of a group", n.Index+1, len(parent.Children))
	}
	return ""
}

// CheckInputs verifies, before anything runs, that every task that will
// receive a previous result can take it: static args beside a result must be
// a JSON object (or the signature immutable). first are the tasks that start
// the workflow without input.
func (p *Plan) CheckInputs(first []Dispatch) error {
	starts := map[int]bool{}
	for _, d := range first {
		starts[d.Node] = true
	}
	for _, n := range p.Tasks() {
		if starts[n] {
			continue
		}
		sig := p.Nodes[n].Sig
		if _, err := sig.Input(json.RawMessage("null")); err != nil {
			return fmt.Errorf("%s (%s, task %q): %w", p.Nodes[n].TaskID, p.Position(n), sig.Kind, err)
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
