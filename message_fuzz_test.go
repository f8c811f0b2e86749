package baton

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// FuzzDecodeMessage: decodeMessage never panics, rejects what a worker could
// not run, and what it accepts survives an encode/decode round trip (a
// message re-sent by a worker, e.g. a chain's next step, means the same).
func FuzzDecodeMessage(f *testing.F) {
	mr := 3
	seeds := []*message{
		{V: messageVersion, ID: "a", Kind: "add", Args: json.RawMessage(`{"A":1,"B":2}`)},
		{V: messageVersion, ID: "wf.1", Kind: "fetch", Args: json.RawMessage(`"https://example.com"`), Queue: "io",
			MaxRetries: &mr, Retry: &RetryPolicy{Delay: time.Second, Max: time.Minute}, TimeoutMS: 5000,
			ExpiresMS: 1700000000000, EnqueuedMS: 1690000000000, RunAtMS: 1690000001000, Workflow: "wf", Node: 2, Parent: "wf.0"},
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
