package chain

import (
	"bytes"
	"testing"
)

// FuzzParseCanvas: Parse never panics; what it accepts is valid, compiles
// into a plan, and survives Marshal → Parse unchanged.
func FuzzParseCanvas(f *testing.F) {
	for _, s := range []string{
		`{"task":"fetch","args":{"url":"https://example.com"}}`,
		`{"chain":[{"task":"a","args":1},{"task":"b"},{"task":"c","args":{"k":1},"result_field":"prev"}]}`,
		`{"group":[{"task":"a"},{"chain":[{"task":"b"},{"task":"c","immutable":true,"args":[1]}]}]}`,
		`{"chord":{"header":[{"task":"fetch","args":"u1"},{"task":"fetch","args":"u2"}],"body":{"task":"analyze"}}}`,
		`{"task":"charge","options":{"queue":"pay","max_retries":3,"retry_delay":"2s"},"on_error":{"task":"alert"},"compensate":{"task":"refund"}}`,
		`{"chain":[{"chord":{"header":[{"group":[{"task":"a"}]}],"body":{"chain":[{"task":"b"},{"task":"c"}]}}},{"task":"d"}]}`,
		`{"chain":[{"task":"a","args":[1],"link":{"task":"l"}},{"group":[]}],"on_error":{"task":"e"},"link":{"task":"l2","args":[]}}`,
		`{"chord":{"header":[{"group":[{"task":"a"},{"group":[]}]}],"body":{"task":"b"}},"link":{"task":"l"}}`,
		`{"task":"a","chain":[]}`, `{"chain":[]}`, `{"chord":{"header":[],"body":{"task":"x"}}}`,
		`{"task":""}`, `{"task":"a","args":null,"options":null}`, `{"task":"a","on_error":{"chain":[{"task":"b"}]}}`,
		`{"task":"a","Args":[1]}`, `{"task":"a"} {}`, `[]`, `null`, `"task"`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Fatalf("error %v with a canvas", err)
			}
			return
		}
		if err := Validate(c); err != nil {
			t.Fatalf("Parse accepted a canvas Validate rejects: %v", err)
		}
		if p, err := Compile("wf", c); err != nil {
			t.Logf("accepted but does not compile: %v", err) // not every accepted canvas need compile
		} else if err := p.Verify(); err != nil {
			t.Fatalf("a compiled plan fails Verify: %v", err)
		}
		_ = Walk(c, func(string, *Signature) error { return nil })

		b1, err := Marshal(c)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		c2, err := Parse(b1)
		if err != nil {
			t.Fatalf("Parse(Marshal(c)) failed: %v\ninput:  %s\nmarshal: %s", err, data, b1)
		}
		b2, err := Marshal(c2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b1, b2) {
			t.Fatalf("round trip changed the canvas:\n%s\n%s", b1, b2)
		}
	})
}
