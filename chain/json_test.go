package chain

import (
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
