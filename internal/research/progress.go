// Package research holds what `baton research` and `baton demo` share: live
// progress of a research workflow and the printing of its outcome.
package research

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/tasks"
)

// Counts summarises the fetch steps of a research workflow.
type Counts struct {
	Sources, Fetched, Failed, Retrying, Running int
	Analyze                                     baton.State
}

func count(steps []baton.Step) Counts {
	var c Counts
	for i, s := range steps {
		st := baton.Pending
		if s.Record != nil {
			st = s.Record.State
		}
		if i == len(steps)-1 {
			c.Analyze = st
			continue
		}
		c.Sources++
		switch st {
		case baton.Success:
			c.Fetched++
		case baton.Failure, baton.Revoked:
			c.Failed++
		case baton.Retry:
			c.Retrying++
		case baton.Started:
			c.Running++
		}
	}
	return c
}

func (c Counts) String() string {
	return fmt.Sprintf("sources %d/%d fetched, %d failed, %d retrying, %d running · analyze %s",
		c.Fetched, c.Sources, c.Failed, c.Retrying, c.Running, strings.ToLower(string(c.Analyze)))
}

// Watch follows a workflow until it ends, printing progress to out: one
// line rewritten in place on a terminal, a plain line per change otherwise.
// It is driven by the backend's state notifications (no polling).
func Watch(ctx context.Context, c *baton.Client, wf *baton.Workflow, out io.Writer, tty bool) (*baton.Record, error) {
	ids := []string{wf.ID}
	for _, n := range wf.Plan.Tasks() {
		ids = append(ids, wf.Plan.Nodes[n].TaskID)
	}
	ch, stop, err := c.Backend().Watch(ctx, ids)
	if err != nil {
		return nil, err
	}
	defer stop()
	last := ""
	for {
		steps, err := wf.Steps(ctx)
		if err != nil {
			return nil, err
		}
		line := count(steps).String()
		if line != last {
			if tty {
				fmt.Fprintf(out, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(out, line)
			}
			last = line
		}
		rec, err := wf.Record(ctx)
		if err == nil && rec.State.Terminal() {
			if tty {
				fmt.Fprintln(out)
			}
			return wf.Wait(ctx)
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(out)
			}
			return nil, ctx.Err()
		case <-ch:
		case <-time.After(2 * time.Second):
			// Belt and braces: a notification lost while Redis restarts.
		}
	}
}

// PrintAnalysis prints the analyze result.
func PrintAnalysis(out io.Writer, rec *baton.Record) error {
	var res tasks.AnalyzeResult
	if err := json.Unmarshal(rec.Result, &res); err != nil {
		return fmt.Errorf("research: result is not an analysis: %w", err)
	}
	mode := "model " + res.Model
	if res.Offline {
		mode = "offline analyzer (set OPENAI_API_KEY or OPENAI_BASE_URL for an LLM)"
	}
	if res.Cached {
		mode += ", cached response"
	}
	fmt.Fprintf(out, "\n── Analysis (%s) ──\n\n%s\n", mode, strings.TrimSpace(res.Text))
	if !res.Offline {
		fmt.Fprintf(out, "\ntokens: %d prompt + %d completion = %d\n", res.PromptTokens, res.CompletionTokens, res.TotalTokens)
	}
	return nil
}

// PrintSteps prints a table of every step: task, state, retries, duration.
func PrintSteps(out io.Writer, steps []baton.Step, plan interface{ Position(int) string }) {
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tTASK\tSTATE\tRETRIES\tDURATION\tDETAIL")
	for _, s := range steps {
		r := s.Record
		if r == nil {
			fmt.Fprintf(tw, "%s\t?\t(expired)\t\t\t\n", s.Position)
			continue
		}
		detail := ""
		if r.Error != "" {
			detail = oneLine(r.Error, 70)
		} else if r.Kind == tasks.FetchKind && len(r.Result) > 0 {
			var fr tasks.FetchResult
			if json.Unmarshal(r.Result, &fr) == nil {
				detail = fmt.Sprintf("%s (%d bytes)", fr.URL, fr.Bytes)
			}
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%d\t%s\t%s\n", s.Position, r.Kind, r.ID, r.State, r.Retries, dur(r.Duration()), detail)
	}
	_ = tw.Flush()
}

func dur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	if d < time.Second {
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len([]rune(s)) > n {
		return string([]rune(s)[:n-1]) + "…"
	}
	return s
}

// ErrFailed wraps the error of a research run that did not succeed.
var ErrFailed = errors.New("research failed")
