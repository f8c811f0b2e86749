package dash

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/dustin/go-humanize"
	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/chain"
)

// ArgsExcerptBytes is how much of a task's arguments asynqmon shows; larger
// arguments are cut, with their full size noted.
const ArgsExcerptBytes = 1024

// envelope is the part of baton's task message (message.go in the root
// package) the dashboard shows.
type envelope struct {
	V        int             `json:"v"`
	ID       string          `json:"id"`
	Kind     string          `json:"kind"`
	Args     json.RawMessage `json:"args,omitempty"`
	Queue    string          `json:"q,omitempty"`
	Workflow string          `json:"wf,omitempty"`
	Node     int             `json:"n,omitempty"`
	Parent   string          `json:"p,omitempty"`
}

// formatted is what asynqmon shows for a baton payload (as indented JSON,
// which its viewer highlights).
type formatted struct {
	Kind     string `json:"kind"`
	ID       string `json:"id"`
	Workflow string `json:"workflow,omitempty"`
	Position string `json:"position,omitempty"`
	Parent   string `json:"parent,omitempty"`
	Args     any    `json:"args,omitempty"`
}

// formatter renders baton payloads and results for asynqmon. It looks up
// the position of workflow steps in their plans, caching a few plans.
type formatter struct {
	rdb redis.UniversalClient

	mu    sync.Mutex
	plans map[string]*chain.Plan
}

const planCacheSize = 256

func newFormatter(rdb redis.UniversalClient) *formatter {
	return &formatter{rdb: rdb, plans: map[string]*chain.Plan{}}
}

// FormatPayload implements asynqmon.PayloadFormatter.
func (f *formatter) FormatPayload(taskType string, payload []byte) string {
	var e envelope
	if err := json.Unmarshal(payload, &e); err != nil || e.ID == "" || e.Kind == "" {
		return asynqmon.DefaultPayloadFormatter.FormatPayload(taskType, payload)
	}
	out := formatted{Kind: e.Kind, ID: e.ID, Workflow: e.Workflow, Parent: e.Parent, Args: argsView(e.Args)}
	if e.Workflow != "" {
		out.Position = fmt.Sprintf("node %d", e.Node)
		if p := f.plan(e.Workflow); p != nil && e.Node >= 0 && e.Node < len(p.Nodes) {
			out.Position = p.Position(e.Node)
		}
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return asynqmon.DefaultPayloadFormatter.FormatPayload(taskType, payload)
	}
	return string(b)
}

// FormatResult implements asynqmon.ResultFormatter.
func (f *formatter) FormatResult(taskType string, result []byte) string {
	if !json.Valid(result) {
		return asynqmon.DefaultResultFormatter.FormatResult(taskType, result)
	}
	if len(result) > ArgsExcerptBytes {
		return excerpt(result, ArgsExcerptBytes)
	}
	var buf bytes.Buffer
	if json.Indent(&buf, result, "", "  ") != nil {
		return string(result)
	}
	return buf.String()
}

// argsView is the args as JSON when small, else a string excerpt.
func argsView(args json.RawMessage) any {
	if len(args) == 0 {
		return nil
	}
	if len(args) <= ArgsExcerptBytes && json.Valid(args) {
		return args
	}
	return excerpt(args, ArgsExcerptBytes)
}

func (f *formatter) plan(wfID string) *chain.Plan {
	f.mu.Lock()
	p, ok := f.plans[wfID]
	f.mu.Unlock()
	if ok {
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	raw, err := f.rdb.HGet(ctx, backend.WorkflowKey(wfID), "plan").Bytes()
	if err != nil {
		return nil
	}
	p = new(chain.Plan)
	if json.Unmarshal(raw, p) != nil || p.Verify() != nil {
		return nil // not a plan to walk: the node number is shown instead
	}
	f.mu.Lock()
	if len(f.plans) >= planCacheSize {
		clear(f.plans) // plans are immutable; a crude reset keeps memory bounded
	}
	f.plans[wfID] = p
	f.mu.Unlock()
	return p
}

// excerpt returns b as text, cut to about n bytes on a rune boundary, with
// the full size noted when cut.
func excerpt(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%s in all)", b[:cut], humanize.IBytes(uint64(len(b))))
}
