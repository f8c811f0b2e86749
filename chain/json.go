package chain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// The JSON form of a canvas, for producers that are not Go programs. A node
// is an object with exactly one of these keys:
//
//	{"task": "fetch", "args": {...}, "options": {...}, "immutable": false,
//	 "result_field": "input", "continue_on_failure": false,
//	 "on_error": {node}, "compensate": {node}}
//	{"chain": [node, ...]}
//	{"group": [node, ...]}
//	{"chord": {"header": [node, ...], "body": node}}
//
// A JSON document is a tree, so a canvas cannot contain a cycle.

// Parse decodes a JSON canvas. Errors name the JSON path of the first
// problem, e.g. `$.chain[1].chord.body: missing task kind`.
func Parse(data []byte) (Canvas, error) {
	var raw json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("$: not a JSON document: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("$: trailing data after the canvas document")
	}
	c, err := parseNode(raw, "$", 0)
	if err != nil {
		return nil, err
	}
	if err := Validate(c); err != nil {
		return nil, err
	}
	return c, nil
}

var nodeKeys = []string{"task", "chain", "group", "chord"}

// MaxDepth bounds how deeply canvases nest (chains in groups in chords,
// callbacks in callbacks ...): every node is one level below the node that
// holds it.
const MaxDepth = 64

// depthError rejects a node below MaxDepth. Its path is cut short: at the
// limit it is hundreds of bytes long and says nothing more.
func depthError(path string) error {
	const keep = 60
	if len(path) > 2*keep {
		path = path[:keep] + "..." + path[len(path)-keep:]
	}
	return fmt.Errorf("%s: canvas nested more than %d levels deep: flatten it", path, MaxDepth)
}

func parseNode(raw json.RawMessage, path string, depth int) (Canvas, error) {
	if depth > MaxDepth {
		return nil, depthError(path)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%s: expected an object with one of %s", path, strings.Join(quoted(nodeKeys), ", "))
	}
	var found []string
	for _, k := range nodeKeys {
		if _, ok := obj[k]; ok {
			found = append(found, k)
		}
	}
	if len(found) != 1 {
		if len(found) == 0 {
			return nil, fmt.Errorf("%s: expected one of %s, got keys %s", path, strings.Join(quoted(nodeKeys), ", "), strings.Join(quoted(keysOf(obj)), ", "))
		}
		return nil, fmt.Errorf("%s: a node has exactly one of %s, got %s", path, strings.Join(quoted(nodeKeys), ", "), strings.Join(quoted(found), " and "))
	}
	switch found[0] {
	case "task":
		return parseSig(raw, obj, path, depth)
	case "chain", "group":
		if len(obj) != 1 {
			return nil, fmt.Errorf("%s: unexpected keys beside %q: %s", path, found[0], strings.Join(quoted(without(keysOf(obj), found[0])), ", "))
		}
		var items []json.RawMessage
		if err := json.Unmarshal(obj[found[0]], &items); err != nil {
			return nil, fmt.Errorf("%s.%s: expected an array of nodes", path, found[0])
		}
		nodes := make([]Canvas, len(items))
		for i, it := range items {
			n, err := parseNode(it, fmt.Sprintf("%s.%s[%d]", path, found[0], i), depth+1)
			if err != nil {
				return nil, err
			}
			nodes[i] = n
		}
		if found[0] == "chain" {
			return &Chain{Steps: nodes}, nil
		}
		return &Group{Members: nodes}, nil
	default: // chord
		if len(obj) != 1 {
			return nil, fmt.Errorf("%s: unexpected keys beside \"chord\": %s", path, strings.Join(quoted(without(keysOf(obj), "chord")), ", "))
		}
		var ch struct {
			Header []json.RawMessage `json:"header"`
			Body   json.RawMessage   `json:"body"`
		}
		d := json.NewDecoder(bytes.NewReader(obj["chord"]))
		d.DisallowUnknownFields()
		if err := d.Decode(&ch); err != nil {
			return nil, fmt.Errorf("%s.chord: expected {\"header\": [nodes], \"body\": node}: %w", path, err)
		}
		if len(ch.Header) == 0 {
			return nil, fmt.Errorf("%s.chord.header: a chord needs at least one header task", path)
		}
		if len(ch.Body) == 0 {
			return nil, fmt.Errorf("%s.chord.body: a chord needs a body", path)
		}
		g := &Group{}
		for i, it := range ch.Header {
			n, err := parseNode(it, fmt.Sprintf("%s.chord.header[%d]", path, i), depth+1)
			if err != nil {
				return nil, err
			}
			g.Members = append(g.Members, n)
		}
		body, err := parseNode(ch.Body, path+".chord.body", depth+1)
		if err != nil {
			return nil, err
		}
		return &Chord{Header: g, Body: body}, nil
	}
}

func parseSig(raw json.RawMessage, obj map[string]json.RawMessage, path string, depth int) (*Signature, error) {
	var s struct {
		Kind        *string         `json:"task"`
		Args        json.RawMessage `json:"args"`
		Options     json.RawMessage `json:"options"`
		Immutable   bool            `json:"immutable"`
		ResultField string          `json:"result_field"`
		Continue    bool            `json:"continue_on_failure"`
		OnError     json.RawMessage `json:"on_error"`
		Compensate  json.RawMessage `json:"compensate"`
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if s.Kind == nil || *s.Kind == "" {
		return nil, fmt.Errorf("%s.task: missing task kind", path)
	}
	sig := &Signature{Kind: *s.Kind, Args: s.Args, Options: s.Options, Immutable: s.Immutable, ResultField: s.ResultField, ContinueOnFailure: s.Continue}
	if len(s.Options) > 0 {
		var o map[string]json.RawMessage
		if err := json.Unmarshal(s.Options, &o); err != nil {
			return nil, fmt.Errorf("%s.options: expected an object", path)
		}
	}
	for _, cb := range []struct {
		key string
		raw json.RawMessage
		dst **Signature
	}{{"on_error", s.OnError, &sig.OnError}, {"compensate", s.Compensate, &sig.Compensate}} {
		if len(cb.raw) == 0 {
			continue
		}
		n, err := parseNode(cb.raw, path+"."+cb.key, depth+1)
		if err != nil {
			return nil, err
		}
		cs, ok := n.(*Signature)
		if !ok {
			return nil, fmt.Errorf("%s.%s: must be a single task, not a %T", path, cb.key, n)
		}
		*cb.dst = cs
	}
	return sig, nil
}

// Marshal encodes a canvas in its JSON form.
func Marshal(c Canvas) ([]byte, error) { return json.Marshal(toJSON(c)) }

func toJSON(c Canvas) any {
	switch n := c.(type) {
	case *Signature:
		return n
	case *Chain:
		out := make([]any, len(n.Steps))
		for i, s := range n.Steps {
			out[i] = toJSON(s)
		}
		return map[string]any{"chain": out}
	case *Group:
		out := make([]any, len(n.Members))
		for i, s := range n.Members {
			out[i] = toJSON(s)
		}
		return map[string]any{"group": out}
	case *Chord:
		h := make([]any, len(n.Header.Members))
		for i, s := range n.Header.Members {
			h[i] = toJSON(s)
		}
		return map[string]any{"chord": map[string]any{"header": h, "body": toJSON(n.Body)}}
	}
	return nil
}

func keysOf(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func without(ks []string, drop string) []string {
	var out []string
	for _, k := range ks {
		if k != drop {
			out = append(out, k)
		}
	}
	return out
}

func quoted(ks []string) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = fmt.Sprintf("%q", k)
	}
	return out
}

// Walk calls fn for every signature of c (callbacks included) with its path.
func Walk(c Canvas, fn func(path string, s *Signature) error) error { return walk(c, "$", fn) }

func walk(c Canvas, path string, fn func(string, *Signature) error) error {
	switch n := c.(type) {
	case *Signature:
		if err := fn(path, n); err != nil {
			return err
		}
		if n.OnError != nil {
			if err := walk(n.OnError, path+".on_error", fn); err != nil {
				return err
			}
		}
		if n.Compensate != nil {
			return walk(n.Compensate, path+".compensate", fn)
		}
	case *Chain:
		for i, s := range n.Steps {
			if err := walk(s, fmt.Sprintf("%s.chain[%d]", path, i), fn); err != nil {
				return err
			}
		}
	case *Group:
		for i, s := range n.Members {
			if err := walk(s, fmt.Sprintf("%s.group[%d]", path, i), fn); err != nil {
				return err
			}
		}
	case *Chord:
		for i, s := range n.Header.Members {
			if err := walk(s, fmt.Sprintf("%s.chord.header[%d]", path, i), fn); err != nil {
				return err
			}
		}
		return walk(n.Body, path+".chord.body", fn)
	}
	return nil
}
