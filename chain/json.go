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
//	{"task": "fetch", "args": {...} or [...], "options": {...}, "immutable": false,
//	 "result_field": "input", "continue_on_failure": false,
//	 "link": {task}, "on_error": {task}, "compensate": {task}}
//	{"chain": [node, ...], "link": {task}, "on_error": {task}}
//	{"group": [node, ...], "link": {task}, "on_error": {task}}
//	{"chord": {"header": [node, ...], "body": node}, "link": {task}, "on_error": {task}}
//
// "link" and "on_error" are optional on every node; a group and a chord
// header may be empty ([]). A JSON document is a tree, so a canvas cannot
// contain a cycle.

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
		if err := onlyKeys(obj, path, found[0]); err != nil {
			return nil, err
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
		cb, err := parseCallbacks(obj, path, depth)
		if err != nil {
			return nil, err
		}
		if found[0] == "chain" {
			return &Chain{Steps: nodes, Callbacks: cb}, nil
		}
		return &Group{Members: nodes, Callbacks: cb}, nil
	default: // chord
		if err := onlyKeys(obj, path, "chord"); err != nil {
			return nil, err
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
		if len(ch.Body) == 0 {
			return nil, fmt.Errorf("%s.chord.body: a chord needs a body", path)
		}
		g := &Group{Members: []Canvas{}}
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
		cb, err := parseCallbacks(obj, path, depth)
		if err != nil {
			return nil, err
		}
		return &Chord{Header: g, Body: body, Callbacks: cb}, nil
	}
}

// onlyKeys refuses keys beside a chain, group or chord other than its
// callbacks.
func onlyKeys(obj map[string]json.RawMessage, path, node string) error {
	var extra []string
	for _, k := range keysOf(obj) {
		if k != node && k != "link" && k != "on_error" {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		return fmt.Errorf("%s: unexpected keys beside %q: %s (a %s node takes only \"link\" and \"on_error\" besides)", path, node, strings.Join(quoted(extra), ", "), node)
	}
	return nil
}

// parseCallbacks reads the "link" and "on_error" of a chain, group or chord.
func parseCallbacks(obj map[string]json.RawMessage, path string, depth int) (Callbacks, error) {
	var cb Callbacks
	for _, c := range []struct {
		key string
		dst **Signature
	}{{"link", &cb.Link}, {"on_error", &cb.OnError}} {
		if raw, ok := obj[c.key]; ok {
			s, err := parseCallback(raw, path+"."+c.key, depth+1)
			if err != nil {
				return Callbacks{}, err
			}
			*c.dst = s
		}
	}
	return cb, nil
}

// parseCallback reads a callback, which must be a single task.
func parseCallback(raw json.RawMessage, path string, depth int) (*Signature, error) {
	n, err := parseNode(raw, path, depth)
	if err != nil {
		return nil, err
	}
	cs, ok := n.(*Signature)
	if !ok {
		return nil, fmt.Errorf("%s: must be a single task, not a %T", path, n)
	}
	return cs, nil
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
		Link        json.RawMessage `json:"link"`
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
	}{{"on_error", s.OnError, &sig.OnError}, {"link", s.Link, &sig.Link}, {"compensate", s.Compensate, &sig.Compensate}} {
		if len(cb.raw) == 0 {
			continue
		}
		cs, err := parseCallback(cb.raw, path+"."+cb.key, depth+1)
		if err != nil {
			return nil, err
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
		return withCallbacks(map[string]any{"chain": listJSON(n.Steps)}, n.Callbacks)
	case *Group:
		return withCallbacks(map[string]any{"group": listJSON(n.Members)}, n.Callbacks)
	case *Chord:
		ch := map[string]any{"header": listJSON(n.headerMembers()), "body": toJSON(n.Body)}
		return withCallbacks(map[string]any{"chord": ch}, n.Callbacks)
	}
	return nil
}

func listJSON(cs []Canvas) []any {
	out := make([]any, len(cs))
	for i, c := range cs {
		out[i] = toJSON(c)
	}
	return out
}

func withCallbacks(m map[string]any, cb Callbacks) map[string]any {
	if cb.Link != nil {
		m["link"] = cb.Link
	}
	if cb.OnError != nil {
		m["on_error"] = cb.OnError
	}
	return m
}

func keysOf(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
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
		for _, cb := range []struct {
			name string
			sig  *Signature
		}{{"on_error", n.OnError}, {"link", n.Link}, {"compensate", n.Compensate}} {
			if cb.sig != nil {
				if err := walk(cb.sig, path+"."+cb.name, fn); err != nil {
					return err
				}
			}
		}
	case *Chain:
		for i, s := range n.Steps {
			if err := walk(s, fmt.Sprintf("%s.chain[%d]", path, i), fn); err != nil {
				return err
			}
		}
		return walkCallbacks(n.Callbacks, path, fn)
	case *Group:
		for i, s := range n.Members {
			if err := walk(s, fmt.Sprintf("%s.group[%d]", path, i), fn); err != nil {
				return err
			}
		}
		return walkCallbacks(n.Callbacks, path, fn)
	case *Chord:
		for i, s := range n.headerMembers() {
			if err := walk(s, fmt.Sprintf("%s.chord.header[%d]", path, i), fn); err != nil {
				return err
			}
		}
		if err := walk(n.Body, path+".chord.body", fn); err != nil {
			return err
		}
		return walkCallbacks(n.Callbacks, path, fn)
	}
	return nil
}

func walkCallbacks(cb Callbacks, path string, fn func(string, *Signature) error) error {
	if cb.Link != nil {
		if err := walk(cb.Link, path+".link", fn); err != nil {
			return err
		}
	}
	if cb.OnError != nil {
		return walk(cb.OnError, path+".on_error", fn)
	}
	return nil
}
