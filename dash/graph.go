package dash

import (
	"fmt"
	"math"
	"strings"

	"github.com/batonhq/baton/chain"
)

// Geometry of the canvas drawing, in SVG user units.
const (
	boxW   = 184.0
	boxH   = 62.0
	gapX   = 56.0 // between consecutive steps of a chain
	gapY   = 16.0 // between members of a group
	margin = 20.0
)

// graph is a workflow's plan laid out for drawing: chain steps left to
// right, group members stacked, chord header fanning into its body.
type graph struct {
	Width, Height float64
	Boxes         []box
	Edges         []edge
	Joins         []point
	// Callbacks are the link and on_error callbacks, in a row below the
	// canvas, each tied by a dashed line (CallbackEdges) to its node.
	Callbacks     []box
	CallbackEdges []edge
}

// box is one task step, or one callback.
type box struct {
	X, Y  float64
	Step  stepView
	Num   int    // 1-based order in the plan (steps only)
	Event string // "link" or "on_error" (callbacks only)
}

type point struct{ X, Y float64 }

// edge is a curve from one step's right side to another's left side.
type edge struct {
	From, To string // task ids, or "" for a join point
	Path     string
}

type size struct{ w, h float64 }

type layouter struct {
	plan  *chain.Plan
	steps map[int]stepView
	sizes map[int]size
	pos   map[int]point // top-left of every task box
	num   map[int]int
	g     *graph
}

// cbGap is the space between the canvas and its row of callbacks.
const cbGap = 36.0

// layout draws plan with the current state of its steps and callbacks.
func layout(plan *chain.Plan, steps, callbacks []stepView) *graph {
	l := &layouter{plan: plan, steps: map[int]stepView{}, sizes: map[int]size{}, pos: map[int]point{}, num: map[int]int{}, g: &graph{}}
	for i, s := range steps {
		l.steps[s.Node] = s
		l.num[s.Node] = i + 1
	}
	sz := l.size(0)
	l.place(0, margin, margin)
	l.connect(0)
	l.g.Width, l.g.Height = sz.w+2*margin, sz.h+2*margin
	for i, n := range plan.Tasks() {
		p := l.pos[n]
		st, ok := l.steps[n]
		if !ok {
			st = stepView{ID: plan.Nodes[n].TaskID, Node: n, Kind: plan.Nodes[n].Sig.Kind, State: "PENDING"}
		}
		l.g.Boxes = append(l.g.Boxes, box{X: p.X, Y: p.Y, Step: st, Num: i + 1})
	}
	l.placeCallbacks(callbacks, sz)
	return l.g
}

// placeCallbacks puts the plan's callbacks in a row below the canvas, each
// under the middle of the node it belongs to where there is room.
func (l *layouter) placeCallbacks(views []stepView, sz size) {
	specs := l.plan.AllCallbacks()
	if len(specs) == 0 {
		return
	}
	byID := map[string]stepView{}
	for _, v := range views {
		byID[v.ID] = v
	}
	y := margin + sz.h + cbGap
	next := margin
	for _, cb := range specs {
		st, ok := byID[cb.ID]
		if !ok {
			st = stepView{ID: cb.ID, Node: cb.Node, Kind: cb.Sig.Kind, State: "PENDING"}
		}
		left, right, bottom, found := l.span(cb.Node)
		mid := (left + right) / 2
		x := math.Max(next, mid-boxW/2)
		l.g.Callbacks = append(l.g.Callbacks, box{X: x, Y: y, Step: st, Event: cb.Event})
		if found {
			l.g.CallbackEdges = append(l.g.CallbackEdges, edge{From: cb.ID, Path: drop(point{mid, bottom}, point{x + boxW/2, y})})
		}
		next = x + boxW + gapY
	}
	l.g.Width = math.Max(l.g.Width, next-gapY+margin)
	l.g.Height = y + boxH + margin
}

// span is the extent of the tasks under node n: left and right edges, the
// bottom, and whether it has any task.
func (l *layouter) span(n int) (left, right, bottom float64, found bool) {
	left = math.Inf(1)
	var walk func(int)
	walk = func(n int) {
		node := l.plan.Nodes[n]
		if node.Type == chain.TypeTask {
			p := l.pos[n]
			left, right, bottom, found = math.Min(left, p.X), math.Max(right, p.X+boxW), math.Max(bottom, p.Y+boxH), true
			return
		}
		for _, c := range node.Children {
			walk(c)
		}
	}
	walk(n)
	if !found {
		left, right = margin, margin+boxW
	}
	return left, right, bottom, found
}

// drop is a vertical S-curve from a down to b.
func drop(a, b point) string {
	dy := (b.Y - a.Y) / 2
	return fmt.Sprintf("M%.1f %.1f C%.1f %.1f %.1f %.1f %.1f %.1f", a.X, a.Y, a.X, a.Y+dy, b.X, b.Y-dy, b.X, b.Y)
}

func (l *layouter) size(n int) size {
	if s, ok := l.sizes[n]; ok {
		return s
	}
	node := l.plan.Nodes[n]
	var s size
	switch node.Type {
	case chain.TypeTask:
		s = size{boxW, boxH}
	case chain.TypeGroup:
		for i, c := range node.Children {
			cs := l.size(c)
			s.w = math.Max(s.w, cs.w)
			s.h += cs.h
			if i > 0 {
				s.h += gapY
			}
		}
	default: // chain, chord: in sequence
		for i, c := range node.Children {
			cs := l.size(c)
			s.h = math.Max(s.h, cs.h)
			s.w += cs.w
			if i > 0 {
				s.w += gapX
			}
		}
	}
	l.sizes[n] = s
	return s
}

// place puts node n in the box of its size at (x, y).
func (l *layouter) place(n int, x, y float64) {
	node := l.plan.Nodes[n]
	s := l.size(n)
	switch node.Type {
	case chain.TypeTask:
		l.pos[n] = point{x, y}
	case chain.TypeGroup:
		cy := y
		for _, c := range node.Children {
			cs := l.size(c)
			l.place(c, x+(s.w-cs.w)/2, cy)
			cy += cs.h + gapY
		}
	default:
		cx := x
		for _, c := range node.Children {
			cs := l.size(c)
			l.place(c, cx, y+(s.h-cs.h)/2)
			cx += cs.w + gapX
		}
	}
}

// entries and exits are the tasks that start and end node n.
func (l *layouter) entries(n int) []int {
	node := l.plan.Nodes[n]
	switch node.Type {
	case chain.TypeTask:
		return []int{n}
	case chain.TypeGroup:
		var out []int
		for _, c := range node.Children {
			out = append(out, l.entries(c)...)
		}
		return out
	}
	if len(node.Children) == 0 {
		return nil
	}
	return l.entries(node.Children[0])
}

func (l *layouter) exits(n int) []int {
	node := l.plan.Nodes[n]
	switch node.Type {
	case chain.TypeTask:
		return []int{n}
	case chain.TypeGroup:
		var out []int
		for _, c := range node.Children {
			out = append(out, l.exits(c)...)
		}
		return out
	}
	if len(node.Children) == 0 {
		return nil
	}
	return l.exits(node.Children[len(node.Children)-1])
}

// connect draws the edges between consecutive steps of every sequence.
// Many exits into many entries meet at a join point instead of a full mesh.
func (l *layouter) connect(n int) {
	node := l.plan.Nodes[n]
	for _, c := range node.Children {
		l.connect(c)
	}
	if node.Type == chain.TypeTask || node.Type == chain.TypeGroup {
		return
	}
	for i := 0; i+1 < len(node.Children); i++ {
		outs, ins := l.exits(node.Children[i]), l.entries(node.Children[i+1])
		if len(outs) > 1 && len(ins) > 1 {
			j := l.joinPoint(node.Children[i], node.Children[i+1])
			l.g.Joins = append(l.g.Joins, j)
			for _, o := range outs {
				l.g.Edges = append(l.g.Edges, edge{From: l.plan.Nodes[o].TaskID, Path: curve(l.out(o), j)})
			}
			for _, in := range ins {
				l.g.Edges = append(l.g.Edges, edge{To: l.plan.Nodes[in].TaskID, Path: curve(j, l.in(in))})
			}
			continue
		}
		for _, o := range outs {
			for _, in := range ins {
				l.g.Edges = append(l.g.Edges, edge{From: l.plan.Nodes[o].TaskID, To: l.plan.Nodes[in].TaskID, Path: curve(l.out(o), l.in(in))})
			}
		}
	}
}

// joinPoint lies in the gap between sequence members a and b, level with
// the middle of their boxes.
func (l *layouter) joinPoint(a, b int) point {
	var right, left, top, bottom float64 = 0, math.Inf(1), math.Inf(1), 0
	for _, o := range l.exits(a) {
		right = math.Max(right, l.pos[o].X+boxW)
		top, bottom = math.Min(top, l.pos[o].Y), math.Max(bottom, l.pos[o].Y+boxH)
	}
	for _, in := range l.entries(b) {
		left = math.Min(left, l.pos[in].X)
		top, bottom = math.Min(top, l.pos[in].Y), math.Max(bottom, l.pos[in].Y+boxH)
	}
	return point{(right + left) / 2, (top + bottom) / 2}
}

func (l *layouter) out(n int) point { p := l.pos[n]; return point{p.X + boxW, p.Y + boxH/2} }
func (l *layouter) in(n int) point  { p := l.pos[n]; return point{p.X, p.Y + boxH/2} }

// curve is a horizontal S-curve from a to b.
func curve(a, b point) string {
	dx := (b.X - a.X) / 2
	return fmt.Sprintf("M%.1f %.1f C%.1f %.1f %.1f %.1f %.1f %.1f", a.X, a.Y, a.X+dx, a.Y, b.X-dx, b.Y, b.X, b.Y)
}

// truncate shortens s to n runes with an ellipsis.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return strings.TrimSpace(string(r[:n-1])) + "…"
}
