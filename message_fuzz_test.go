package baton

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/batonhq/baton/chain"
)

// FuzzDecodeMessage: decodeMessage never panics, rejects what a worker could
// not run, and what it accepts survives an encode/decode round trip (a
// message re-sent by a worker, e.g. a chain's next step, means the same).
// It then drives the worker's own checks (decodePlan, checkMessage): they
// never panic, and on a message they accept, nothing the worker does with
// its plan node panics or loops.
func FuzzDecodeMessage(f *testing.F) {
	mr := 3
	plan, err := chain.Compile("wf", chain.NewChain(&chain.Signature{Kind: "fetch", Args: json.RawMessage(`{"u":1}`)},
		chain.NewChord(chain.NewGroup(&chain.Signature{Kind: "fetch"}, &chain.Signature{Kind: "fetch"}), &chain.Signature{Kind: "sum",
			OnError: &chain.Signature{Kind: "alert"}, Compensate: &chain.Signature{Kind: "undo"}})))
	if err != nil {
		f.Fatal(err)
	}
	pl, err := json.Marshal(plan)
	if err != nil {
		f.Fatal(err)
	}
	seeds := []*message{
		{V: messageVersion, ID: "a", Kind: "add", Args: json.RawMessage(`{"A":1,"B":2}`)},
		{V: messageVersion, ID: "wf.1", Kind: "fetch", Args: json.RawMessage(`"https://example.com"`), Queue: "io",
			MaxRetries: &mr, Retry: &RetryPolicy{Delay: time.Second, Max: time.Minute}, TimeoutMS: 5000,
			ExpiresMS: 1700000000000, EnqueuedMS: 1690000000000, RunAtMS: 1690000001000, Workflow: "wf", Node: 2, Parent: "wf.0"},
		{V: messageVersion, ID: "wf.1", Kind: "fetch", Workflow: "wf", Node: 1, Plan: pl},
		{V: messageVersion, ID: "wf.3", Kind: "fetch", Workflow: "wf", Node: 5, Plan: pl},
		{V: messageVersion, ID: "wf.4", Kind: "sum", Workflow: "wf", Node: 6, Plan: pl, Parent: "wf.3"},
		{V: messageVersion, ID: "wf.9", Kind: "fetch", Workflow: "wf", Node: 99, Plan: pl},
		{V: messageVersion, ID: "wf.1", Kind: "fetch", Workflow: "wf", Node: -1, Plan: pl},
		{V: messageVersion, ID: "t", Kind: "add", Trace: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
		{V: messageVersion, ID: "wf.1", Kind: "fetch", Workflow: "wf", Node: 1, Plan: pl, Trace: map[string]string{"traceparent": "garbage", "tracestate": "k=v"}},
	}
	for _, m := range seeds {
		b, err := json.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, `null`, `{}`, `[]`, `"x"`, `{"v":1}`, `{"v":2,"id":"a","kind":"k"}`,
		`{"v":1,"id":"a","kind":"k","args":nul}`, `{"v":1,"id":"a","kind":"k","rp":"2s"}`,
		`{"v":1,"id":"a","kind":"k","rp":{"delay":"1s","max":"1ms"}}`, `{"v":1,"id":"a","kind":"k","rp":"forever"}`,
		`{"v":1,"id":"a","kind":"k","mr":-1,"to":-5,"at":9223372036854775807}`,
		`{"v":1,"id":"a","kind":"k","args":{"deep":[[[[[[1]]]]]]}}`,
		`{"v":1,"id":"a","kind":"k","tc":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`,
		`{"v":1,"id":"a","kind":"k","tc":{"traceparent":1}}`, `{"v":1,"id":"a","kind":"k","tc":{}}`, `{"v":1,"id":"a","kind":"k","tc":null}`,
		`{"v":1,"id":"w.1","kind":"k","wf":"w","n":1,"pl":{"wf":"w","nodes":[{"t":"chain","p":-1,"i":0,"c":[1]},{"t":"chain","p":0,"i":0,"c":[1]}]}}`,
		`{"v":1,"id":"w.1","kind":"k","wf":"w","n":1,"pl":{"wf":"w","nodes":[{"t":"chord","p":-1,"i":0,"c":[1,2]},{"t":"task","p":0,"i":0,"id":"w.1","s":{"task":"k"}},{"t":"task","p":0,"i":1,"id":"w.2","s":{"task":"k"}}]}}`,
		`{"v":1,"id":"w.1","kind":"k","wf":"w","n":1,"pl":{"wf":"w","nodes":[{"t":"group","p":-1,"i":0,"c":[1]},{"t":"task","p":5,"i":0,"id":"w.1","s":{"task":"k"}}]}}`,
		`{"v":1,"id":"w.1","kind":"k","wf":"w","n":1,"pl":{"wf":"w","nodes":[{"t":"task","p":-1,"i":0,"id":"w.1"}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := decodeMessage(payload)
		if err != nil {
			if m != nil {
				t.Fatalf("error %v with a message", err)
			}
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		if m.V != messageVersion || m.ID == "" || m.Kind == "" {
			t.Fatalf("accepted an unrunnable message: %+v", m)
		}
		if len(m.Args) > 0 && !json.Valid(m.Args) {
			t.Fatalf("accepted args that are not JSON: %q", m.Args)
		}
		// Nothing the worker derives from a message may panic.
		_ = m.timeout()
		_ = m.expires()
		if m.Retry != nil {
			for n := range 70 {
				if d := m.Retry.DelayFor(n); d < 0 {
					t.Fatalf("retry %d: negative delay %v from %+v", n, d, m.Retry)
				}
			}
		}
		_ = m.meta()
		checkLikeAWorker(t, m)

		b1, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", m, err)
		}
		m2, err := decodeMessage(b1)
		if err != nil {
			t.Fatalf("re-decode %s: %v", b1, err)
		}
		b2, err := json.Marshal(m2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b1, b2) {
			t.Fatalf("round trip changed the message:\n%s\n%s", b1, b2)
		}
	})
}

// checkLikeAWorker runs the worker's checks on m and, when they accept it,
// walks its plan node the ways the worker does.
func checkLikeAWorker(t *testing.T, m *message) {
	var plan *chain.Plan
	if m.Workflow != "" {
		if len(m.Plan) == 0 {
			return // the worker would read the plan from Redis
		}
		p, err := decodePlan(m.Workflow, m.Plan)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return // refused as corrupt
		}
		plan = p
	}
	if err := checkMessage(m, plan); err != nil {
		if err.Error() == "" {
			t.Fatal("empty error text")
		}
		return
	}
	if plan == nil {
		return
	}
	n := m.Node
	_ = plan.Kind()
	_ = plan.Tasks()
	_ = plan.Position(n)
	_ = plan.IsFinal(n)
	_ = plan.Downstream(n)
	_ = plan.GroupID(n)
	_ = plan.NodeOf(m.ID)
	_ = plan.CheckInputs(nil)
	_, _ = plan.Start(0, nil, "")
	_, _ = plan.Complete(n, json.RawMessage(`{"r":1}`), m.ID)
	sig := plan.Nodes[n].Sig
	_, _ = sig.Input(json.RawMessage(`[1]`))
	if sig.OnError != nil {
		_, _ = sig.OnError.Input(json.RawMessage(`{}`))
	}
}
