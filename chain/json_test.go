package chain

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseDepthLimit(t *testing.T) {
	doc := strings.Repeat(`{"chain":[`, MaxDepth+1) + `{"task":"x"}` + strings.Repeat(`]}`, MaxDepth+1)
	_, err := Parse([]byte(doc))
	if err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Fatalf("want a depth error, got %v", err)
	}
	ok := strings.Repeat(`{"chain":[`, 10) + `{"task":"x"}` + strings.Repeat(`]}`, 10)
	if _, err := Parse([]byte(ok)); err != nil {
		t.Fatalf("10 levels must parse: %v", err)
	}
}

func TestParseCallbacksOnEveryNode(t *testing.T) {
	doc := `{"chain": [
	  {"task": "a", "args": [1], "link": {"task": "la"}},
	  {"group": [{"task": "b"}], "on_error": {"task": "eg", "immutable": true, "args": "x"}},
	  {"chord": {"header": [], "body": {"task": "c"}}, "link": {"task": "lc"}}
	], "on_error": {"task": "eroot"}, "link": {"task": "lroot", "args": []}}`
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	ch := c.(*Chain)
	eq(t, ch.OnError.Kind, "eroot", "chain on_error")
	eq(t, ch.Link.Kind, "lroot", "chain link")
	eq(t, ch.Steps[0].(*Signature).Link.Kind, "la", "task link")
	eq(t, ch.Steps[1].(*Group).OnError.Kind, "eg", "group on_error")
	cd := ch.Steps[2].(*Chord)
	eq(t, cd.Link.Kind, "lc", "chord link")
	eq(t, len(cd.Header.Members), 0, "empty header")

	// Marshal keeps every callback
	b, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(Marshal): %v\n%s", err, b)
	}
	b2, _ := Marshal(c2)
	eq(t, string(b2), string(b), "round trip")
	for _, k := range []string{`"la"`, `"eg"`, `"lc"`, `"eroot"`, `"lroot"`} {
		if !strings.Contains(string(b), k) {
			t.Fatalf("Marshal lost %s: %s", k, b)
		}
	}
}

func TestParseCallbackErrors(t *testing.T) {
	for doc, want := range map[string]string{
		`{"group": [], "link": {"chain": [{"task": "x"}]}}`:             "$.link: must be a single task",
		`{"chain": [{"task": "a"}], "compensate": {"task": "x"}}`:       `unexpected keys beside "chain": "compensate"`,
		`{"chord": {"header": [], "body": {"task": "b"}}, "links": {}}`: `unexpected keys beside "chord": "links"`,
		`{"group": [], "on_error": {"task": ""}}`:                       "$.on_error.task: missing task kind",
		`{"chain": []}`: "a chain needs at least one step",
	} {
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: want an error containing %q, got %v", doc, want, err)
		}
	}
	err := Validate(NewChord(NewGroup(&Signature{Kind: "a"}).WithLink(&Signature{Kind: "l"}), &Signature{Kind: "b"}))
	if err == nil || !strings.Contains(err.Error(), "header takes no callbacks") {
		t.Fatalf("callbacks on a chord's header: got %v", err)
	}
}

// nest wraps leaf in n levels of open...close.
func nest(n int, open, leaf, closing string) []byte {
	return []byte(strings.Repeat(open, n) + leaf + strings.Repeat(closing, n))
}

// TestDeepCanvasShortError: a canvas nested thousands of levels deep, by
// any route (chains, groups, chord headers and bodies, callbacks), is
// rejected early with a short error naming the limit, not one carrying its
// whole JSON path (30 KB at 3,000 levels).
func TestDeepCanvasShortError(t *testing.T) {
	const depth = 3000
	docs := map[string][]byte{
		"chain":        nest(depth, `{"chain":[`, `{"task":"x"}`, `]}`),
		"group":        nest(depth, `{"group":[`, `{"task":"x"}`, `]}`),
		"chord body":   nest(depth, `{"chord":{"header":[{"task":"h"}],"body":`, `{"task":"x"}`, `}}`),
		"chord header": nest(depth, `{"chord":{"body":{"task":"b"},"header":[`, `{"task":"x"}`, `]}}`),
		"on_error":     nest(depth, `{"task":"a","on_error":`, `{"task":"x"}`, `}`),
		"compensate":   nest(depth, `{"task":"a","compensate":`, `{"task":"x"}`, `}`),
	}
	want := "nested more than " + strconv.Itoa(MaxDepth) + " levels"
	for name, doc := range docs {
		_, err := Parse(doc)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: want a depth error, got %.300v", name, err)
		}
		if len(err.Error()) > 300 {
			t.Fatalf("%s: the error is %d bytes long: %.300s...", name, len(err.Error()), err)
		}
	}

	// The same canvases built in Go.
	var chainC, bodyC Canvas = &Signature{Kind: "x"}, &Signature{Kind: "x"}
	cb := &Signature{Kind: "x"}
	for range depth {
		chainC = NewChain(chainC)
		bodyC = NewChord(NewGroup(&Signature{Kind: "h"}), bodyC)
		cb = &Signature{Kind: "a", OnError: cb}
	}
	for name, c := range map[string]Canvas{"chain": chainC, "chord body": bodyC, "on_error": cb} {
		err := Validate(c)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Go %s: want a depth error, got %.300v", name, err)
		}
		if len(err.Error()) > 300 {
			t.Fatalf("Go %s: the error is %d bytes long", name, len(err.Error()))
		}
		if _, err := Compile("wf", c); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Go %s: Compile must refuse it too, got %.300v", name, err)
		}
	}

	// MaxDepth levels are fine, one more is not.
	if _, err := Parse(nest(MaxDepth, `{"chord":{"header":[{"task":"h"}],"body":`, `{"task":"x"}`, `}}`)); err != nil {
		t.Fatalf("%d levels must parse: %v", MaxDepth, err)
	}
	if _, err := Parse(nest(MaxDepth+1, `{"chord":{"header":[{"task":"h"}],"body":`, `{"task":"x"}`, `}}`)); err == nil {
		t.Fatalf("%d levels must not parse", MaxDepth+1)
	}
}

// TestPlanVerify: compiled plans verify, at the deepest nesting too; plans
// that could make a worker panic or loop do not.
func TestPlanVerify(t *testing.T) {
	var deep Canvas = &Signature{Kind: "x"}
	for range MaxDepth {
		deep = NewChord(NewGroup(&Signature{Kind: "h"}), deep)
	}
	for _, c := range []Canvas{
		&Signature{Kind: "a"},
		NewChain(&Signature{Kind: "a"}, NewGroup(&Signature{Kind: "b"}, NewChain(&Signature{Kind: "c"}))),
		NewChord(NewGroup(&Signature{Kind: "a"}, &Signature{Kind: "b"}), NewChain(&Signature{Kind: "c"}, &Signature{Kind: "d"})),
		deep,
	} {
		p, err := Compile("wf", c)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Verify(); err != nil {
			t.Fatalf("compiled plan: %v", err)
		}
	}
	task := func(p, i int, id string) Node {
		return Node{Type: TypeTask, Parent: p, Index: i, TaskID: id, Sig: &Signature{Kind: "k"}}
	}
	for name, nodes := range map[string][]Node{
		"no nodes":              nil,
		"root with a parent":    {{Type: TypeTask, Parent: 0, TaskID: "wf.1", Sig: &Signature{Kind: "k"}}},
		"self parent":           {{Type: TypeChain, Parent: -1, Children: []int{1}}, {Type: TypeChain, Parent: 1, Children: []int{1}}},
		"child out of range":    {{Type: TypeChain, Parent: -1, Children: []int{5}}},
		"child before":          {{Type: TypeChain, Parent: -1, Children: []int{1}}, {Type: TypeChain, Parent: 0, Children: []int{0}}},
		"wrong index":           {{Type: TypeChain, Parent: -1, Children: []int{1}}, task(0, 3, "wf.1")},
		"twice a child":         {{Type: TypeGroup, Parent: -1, Children: []int{1, 1}}, task(0, 0, "wf.1")},
		"task without sig":      {{Type: TypeTask, Parent: -1, TaskID: "wf.1"}},
		"task without id":       {{Type: TypeTask, Parent: -1, Sig: &Signature{Kind: "k"}}},
		"empty chain":           {{Type: TypeChain, Parent: -1}},
		"chord of one":          {{Type: TypeChord, Parent: -1, Children: []int{1}}, task(0, 0, "wf.1")},
		"chord without a group": {{Type: TypeChord, Parent: -1, Children: []int{1, 2}}, task(0, 0, "wf.1"), task(0, 1, "wf.2")},
		"unknown type":          {{Type: "loop", Parent: -1}},
	} {
		p := &Plan{Workflow: "wf", Nodes: nodes}
		if err := p.Verify(); err == nil {
			t.Fatalf("%s: Verify accepted %+v", name, nodes)
		}
	}
}
