package chain

import (
	"encoding/json"
	"strings"
	"testing"
)

// The plan on its own: pure logic, no Redis.

func task(kind string) *Signature { return &Signature{Kind: kind} }

// args is a task with JSON static args.
func args(kind, raw string) *Signature { return &Signature{Kind: kind, Args: json.RawMessage(raw)} }

func mustCompile(t *testing.T, c Canvas) *Plan {
	t.Helper()
	p, err := Compile("wf", c)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

// shape renders a plan's tree: tasks by kind, containers by type.
func shape(p *Plan, n int) string {
	node := p.Nodes[n]
	if node.Type == TypeTask {
		return node.Sig.Kind
	}
	parts := make([]string, len(node.Children))
	for i, c := range node.Children {
		parts[i] = shape(p, c)
	}
	return node.Type + "(" + strings.Join(parts, " ") + ")"
}

// node returns the index of the task of kind.
func node(t *testing.T, p *Plan, kind string) int {
	t.Helper()
	for i, n := range p.Nodes {
		if n.Sig != nil && n.Sig.Kind == kind {
			return i
		}
	}
	t.Fatalf("no task %q in the plan", kind)
	return -1
}

func dispatched(a Action) []string {
	var out []string
	for _, d := range a.Dispatch {
		out = append(out, d.Sig.Kind+"<"+string(d.Args)+">")
	}
	return out
}

func eq[T comparable](t *testing.T, got, want T, what string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func TestCompileFlattens(t *testing.T) {
	cases := []struct {
		name string
		c    Canvas
		want string
	}{
		{"group in group is unrolled", NewGroup(task("a"), NewGroup(task("b"), NewGroup(task("c"), task("d")))),
			"group(a b c d)"},
		{"group in a chord header is unrolled", NewChord(NewGroup(NewGroup(task("a"), task("b"))), task("body")),
			"chord(group(a b) body)"},
		{"chain in chain is spliced", NewChain(task("a"), NewChain(task("b"), NewChain(task("c"))), task("d")),
			"chain(a b c d)"},
		{"a chain ending in a group keeps the group", NewGroup(NewChain(task("a"), NewGroup(task("b"), task("c")))),
			"group(chain(a group(b c)))"},
		{"a group with a callback stays a group", NewGroup(task("a"), NewGroup(task("b")).WithLink(task("cb"))),
			"group(a group(b))"},
		{"a chain with a callback stays a chain", NewChain(task("a"), NewChain(task("b"), task("c")).WithOnError(task("eb"))),
			"chain(a chain(b c))"},
		{"a chord inside a group is not unrolled", NewGroup(NewChord(NewGroup(task("a")), task("b"))),
			"group(chord(group(a) b))"},
		{"empty groups vanish in groups", NewGroup(task("a"), NewGroup(), NewGroup(NewGroup())),
			"group(a)"},
		{"a nil chord header is empty", &Chord{Body: task("b")}, "chord(group() b)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eq(t, shape(mustCompile(t, tc.c), 0), tc.want, "plan")
		})
	}
	t.Run("task ids count depth first, flattened or not", func(t *testing.T) {
		p := mustCompile(t, NewGroup(task("a"), NewGroup(task("b"), NewGroup(task("c")))))
		for i, kind := range []string{"a", "b", "c"} {
			eq(t, p.Nodes[node(t, p, kind)].TaskID, "wf."+string(rune('1'+i)), "id of "+kind)
		}
	})
	t.Run("the canvas is not changed", func(t *testing.T) {
		inner := NewGroup(task("b"), task("c"))
		g := NewGroup(task("a"), inner)
		mustCompile(t, g)
		eq(t, len(g.Members), 2, "members of the outer group")
		eq(t, len(inner.Members), 2, "members of the inner group")
	})
}

func TestStart(t *testing.T) {
	t.Run("a chain starts with its first task", func(t *testing.T) {
		p := mustCompile(t, NewChain(args("a", "1"), task("b")))
		a, err := p.Start(0, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		eq(t, strings.Join(dispatched(a), ","), "a<1>", "dispatch")
	})
	t.Run("input feeds every first task", func(t *testing.T) {
		p := mustCompile(t, NewGroup(args("add", "[1]"), task("id"), args("obj", `{"k":1}`), &Signature{Kind: "imm", Args: json.RawMessage("7"), Immutable: true}))
		a, err := p.Start(0, json.RawMessage("5"), "")
		if err != nil {
			t.Fatal(err)
		}
		eq(t, strings.Join(dispatched(a), ","), `add<[5,1]>,id<5>,obj<{"input":5,"k":1}>,imm<7>`, "dispatch")
	})
	t.Run("an empty group ends the workflow at once with []", func(t *testing.T) {
		p := mustCompile(t, NewGroup())
		a, err := p.Start(0, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		eq(t, a.Done, true, "done")
		eq(t, string(a.Result), "[]", "result")
	})
	t.Run("an empty chord header runs the body with []", func(t *testing.T) {
		p := mustCompile(t, NewChord(NewGroup(), args("body", "[9]")))
		a, err := p.Start(0, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		eq(t, strings.Join(dispatched(a), ","), "body<[[],9]>", "dispatch")
	})
	t.Run("an empty group in a group member joins at once", func(t *testing.T) {
		p := mustCompile(t, NewGroup(args("a", "1"), NewChain(NewGroup())))
		a, err := p.Start(0, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		eq(t, strings.Join(dispatched(a), ","), "a<1>", "dispatch")
		eq(t, len(a.Joins), 1, "joins")
		j := a.Joins[0]
		eq(t, j.Group, 0, "join group")
		eq(t, j.Index, 1, "join index")
		eq(t, j.Size, 2, "join size")
		eq(t, string(j.Result), "[]", "join result")
	})
	t.Run("static args that cannot take the input", func(t *testing.T) {
		p := mustCompile(t, args("a", "1"))
		if _, err := p.Start(0, json.RawMessage("2"), ""); err == nil || !strings.Contains(err.Error(), "JSON array") {
			t.Fatalf("want an error naming the args that fit, got %v", err)
		}
	})
}

func TestComplete(t *testing.T) {
	t.Run("a chain step starts the next", func(t *testing.T) {
		p := mustCompile(t, NewChain(args("a", "1"), args("b", "[2]"), task("c")))
		a, err := p.Complete(node(t, p, "a"), json.RawMessage("10"), "wf.1")
		if err != nil {
			t.Fatal(err)
		}
		eq(t, strings.Join(dispatched(a), ","), "b<[10,2]>", "dispatch")
		eq(t, a.Dispatch[0].Parent, "wf.1", "parent")
	})
	t.Run("the last step ends the workflow", func(t *testing.T) {
		p := mustCompile(t, NewChain(task("a"), task("b")))
		a, err := p.Complete(node(t, p, "b"), json.RawMessage(`"x"`), "wf.2")
		if err != nil {
			t.Fatal(err)
		}
		eq(t, a.Done, true, "done")
		eq(t, string(a.Result), `"x"`, "result")
	})
	t.Run("a group member joins its group", func(t *testing.T) {
		p := mustCompile(t, NewChord(NewGroup(task("a"), task("b"), task("c")), task("sum")))
		a, err := p.Complete(node(t, p, "b"), json.RawMessage("2"), "wf.2")
		if err != nil {
			t.Fatal(err)
		}
		eq(t, len(a.Joins), 1, "joins")
		eq(t, a.Joins[0].Index, 1, "index")
		eq(t, a.Joins[0].Size, 3, "size")
		eq(t, a.Joins[0].Last, "wf.2", "last")
		// and the complete group starts the body with the list
		b, err := p.Complete(a.Joins[0].Group, json.RawMessage("[1,2,3]"), "wf.2")
		if err != nil {
			t.Fatal(err)
		}
		eq(t, strings.Join(dispatched(b), ","), "sum<[1,2,3]>", "body")
	})
	t.Run("links of the task and of every node it completes, innermost first", func(t *testing.T) {
		inner := NewChain(task("a"), task("b").WithLink(args("lb", "[]"))).WithLink(task("lchain"))
		p := mustCompile(t, NewChain(task("x"), inner).WithLink(&Signature{Kind: "lroot", Args: json.RawMessage(`"fixed"`), Immutable: true}))
		a, err := p.Complete(node(t, p, "b"), json.RawMessage("3"), "wf.3")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, cb := range a.Callbacks {
			got = append(got, cb.ID+"="+cb.Sig.Kind+"<"+string(cb.Args)+">")
		}
		eq(t, strings.Join(got, ","), `wf.3.link=lb<[3]>,wf.n2.link=lchain<3>,wf.n0.link=lroot<"fixed">`, "callbacks")
		eq(t, a.Done, true, "done")
		eq(t, p.LinksOnPath(node(t, p, "b")), true, "links on the path of b")
		eq(t, p.LinksOnPath(node(t, p, "x")), true, "the root's link is on every path")
	})
	t.Run("a group's link waits for the group", func(t *testing.T) {
		p := mustCompile(t, NewGroup(task("a"), task("b")).WithLink(task("cb")))
		a, err := p.Complete(node(t, p, "a"), json.RawMessage("1"), "wf.1")
		if err != nil {
			t.Fatal(err)
		}
		eq(t, len(a.Callbacks), 0, "callbacks before the join")
		b, err := p.Complete(0, json.RawMessage("[1,2]"), "wf.2")
		if err != nil {
			t.Fatal(err)
		}
		eq(t, len(b.Callbacks), 1, "callbacks when the group completes")
		eq(t, string(b.Callbacks[0].Args), "[1,2]", "link input")
	})
}

func TestFailed(t *testing.T) {
	eb := func(name string) *Signature { return args(name, "[]") }
	info := json.RawMessage(`{"id":"wf.2"}`)
	ids := func(cbs []Callback) string {
		var out []string
		for _, c := range cbs {
			out = append(out, c.ID+"="+c.Sig.Kind)
		}
		return strings.Join(out, ",")
	}
	t.Run("the task, then every enclosing canvas", func(t *testing.T) {
		p := mustCompile(t, NewChain(task("a"), NewGroup(task("b").WithOnError(eb("eb_b")), task("c")).WithOnError(eb("eb_g"))).WithOnError(eb("eb_root")))
		cbs, err := p.Failed(node(t, p, "b"), info)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, ids(cbs), "wf.2.err=eb_b,wf.n2.err=eb_g,wf.n0.err=eb_root", "callbacks")
		eq(t, string(cbs[0].Args), `[{"id":"wf.2"}]`, "errback input is the error info")
	})
	t.Run("a header failure runs the body's errback, and its members'", func(t *testing.T) {
		body := NewGroup(task("m1").WithOnError(eb("eb_m1")), task("m2")).WithOnError(eb("eb_body"))
		p := mustCompile(t, NewChord(NewGroup(task("h1"), task("h2")), body).WithOnError(eb("eb_chord")))
		cbs, err := p.Failed(node(t, p, "h2"), info)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, ids(cbs), "wf.n4.err=eb_body,wf.3.err=eb_m1,wf.n0.err=eb_chord", "callbacks")
	})
	t.Run("a group followed by a step is a chord", func(t *testing.T) {
		p := mustCompile(t, NewChain(task("a"), NewGroup(task("h1"), task("h2")), task("body").WithOnError(eb("eb_body")), task("z").WithOnError(eb("eb_z"))))
		cbs, err := p.Failed(node(t, p, "h1"), info)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, ids(cbs), "wf.4.err=eb_body", "callbacks")
		cbs, err = p.Failed(node(t, p, "a"), info)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, ids(cbs), "", "a step that is not a group has no body")
	})
	t.Run("a body failure runs no header errback", func(t *testing.T) {
		p := mustCompile(t, NewChord(NewGroup(task("h").WithOnError(eb("eb_h"))), task("body").WithOnError(eb("eb_body"))))
		cbs, err := p.Failed(node(t, p, "body"), info)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, ids(cbs), "wf.2.err=eb_body", "callbacks")
	})
	t.Run("a failure before a chord runs none of the chord's", func(t *testing.T) {
		p := mustCompile(t, NewChain(task("a"), NewChord(NewGroup(task("h")), task("body").WithOnError(eb("eb_body")))))
		cbs, err := p.Failed(node(t, p, "a"), info)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, ids(cbs), "", "callbacks")
	})
}

func TestDownstream(t *testing.T) {
	p := mustCompile(t, NewChain(task("a"), NewGroup(task("b"), NewChain(task("c"), task("d"))), NewChord(NewGroup(task("e")), task("f"))))
	kinds := func(nodes []int) string {
		var out []string
		for _, n := range nodes {
			out = append(out, p.Nodes[n].Sig.Kind)
		}
		return strings.Join(out, ",")
	}
	eq(t, kinds(p.Downstream(node(t, p, "a"))), "b,c,d,e,f", "after a")
	eq(t, kinds(p.Downstream(node(t, p, "c"))), "d,e,f", "after c: d, then after the group; b is left to finish")
	eq(t, kinds(p.Downstream(node(t, p, "e"))), "f", "after a header task: the body")
	eq(t, kinds(p.Downstream(node(t, p, "f"))), "", "after the last")
}

func TestPosition(t *testing.T) {
	p := mustCompile(t, NewChain(task("a"), NewChord(NewGroup(task("h1"), task("h2")), NewGroup(task("m1"), task("m2"))), NewGroup(task("g1"))))
	for kind, want := range map[string]string{
		"a":  "step 1 of 3 of a chain",
		"h2": "header task 2 of 2 of a chord",
		"m1": "member 1 of 2 of a chord body",
		"g1": "member 1 of 1 of a group",
	} {
		eq(t, p.Position(node(t, p, kind)), want, "position of "+kind)
	}
	q := mustCompile(t, NewChord(NewGroup(task("h")), task("body")))
	eq(t, q.Position(node(t, q, "body")), "chord body", "a single body")
	eq(t, mustCompile(t, task("x")).Position(0), "the only step", "a lone task")
}

func TestIsFinal(t *testing.T) {
	p := mustCompile(t, NewChain(task("a"), NewChord(NewGroup(task("h")), NewChain(task("b"), task("c")))))
	eq(t, p.IsFinal(node(t, p, "c")), true, "c")
	eq(t, p.IsFinal(node(t, p, "b")), false, "b")
	eq(t, p.IsFinal(node(t, p, "h")), false, "h (in a group)")
	eq(t, p.LinksOnPath(node(t, p, "c")), false, "no links")
}

func TestCheckInputs(t *testing.T) {
	check := func(c Canvas, input json.RawMessage) error {
		p := mustCompile(t, c)
		a, err := p.Start(0, input, "")
		if err != nil {
			return err
		}
		if input != nil {
			a.Dispatch = nil
		}
		return p.CheckInputs(a.Dispatch)
	}
	if err := check(NewChain(args("a", "1"), args("b", "[1]"), args("c", `{"k":1}`), task("d")), nil); err != nil {
		t.Fatalf("array and object args take a result: %v", err)
	}
	err := check(NewChain(task("a"), args("b", `"s"`)), nil)
	if err == nil || !strings.Contains(err.Error(), "wf.2 (step 2 of 2 of a chain") {
		t.Fatalf("scalar args after a step: want an error naming the step, got %v", err)
	}
	err = check(task("a").WithLink(args("cb", "3")), nil)
	if err == nil || !strings.Contains(err.Error(), `link callback "cb" of task wf.1`) {
		t.Fatalf("a link with scalar args: want an error naming it, got %v", err)
	}
	err = check(NewGroup(task("a")).WithOnError(args("eb", "3")), nil)
	if err == nil || !strings.Contains(err.Error(), `on_error callback "eb" of the group at node 0`) {
		t.Fatalf("an errback with scalar args: want an error naming it, got %v", err)
	}
	if err := check(NewGroup(task("a")).WithOnError(&Signature{Kind: "eb", Args: json.RawMessage("3"), Immutable: true}), nil); err != nil {
		t.Fatalf("an immutable errback takes any args: %v", err)
	}
}

func TestCallbackIDs(t *testing.T) {
	p := mustCompile(t, NewChain(task("a").WithLink(task("l")), task("b")).WithOnError(task("e")))
	got := p.AllCallbacks()
	eq(t, len(got), 2, "callbacks")
	eq(t, got[0].ID+" "+got[0].Event, "wf.n0.err on_error", "chain errback")
	eq(t, got[1].ID+" "+got[1].Event, "wf.1.link link", "task link")
}
