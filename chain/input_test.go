package chain

import (
	"encoding/json"
	"testing"
)

func TestSignatureInput(t *testing.T) {
	in := json.RawMessage(`[1,2]`)
	for _, tc := range []struct {
		sig  *Signature
		want string
	}{
		{&Signature{Kind: "a"}, `[1,2]`},
		{&Signature{Kind: "a", Args: json.RawMessage("null")}, `[1,2]`},
		{&Signature{Kind: "a", Args: json.RawMessage("[]")}, `[[1,2]]`},
		{&Signature{Kind: "a", Args: json.RawMessage(`["x",{"k":1}]`)}, `[[1,2],"x",{"k":1}]`},
		{&Signature{Kind: "a", Args: json.RawMessage(`{"n":1}`)}, `{"input":[1,2],"n":1}`},
		{&Signature{Kind: "a", Args: json.RawMessage(`{"n":1}`), ResultField: "prev"}, `{"n":1,"prev":[1,2]}`},
		{&Signature{Kind: "a", Args: json.RawMessage(`3`), Immutable: true}, `3`},
	} {
		got, err := tc.sig.Input(in)
		if err != nil {
			t.Fatalf("%s: %v", tc.sig.Args, err)
		}
		if string(got) != tc.want {
			t.Fatalf("input with args %s: got %s, want %s", tc.sig.Args, got, tc.want)
		}
	}
	if _, err := (&Signature{Kind: "a", Args: json.RawMessage(`"s"`)}).Input(in); err == nil {
		t.Fatal("scalar static args cannot take a result")
	}
}
