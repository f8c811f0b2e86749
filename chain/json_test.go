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
