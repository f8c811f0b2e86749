// Package bench is `make bench`: the workloads from the issues, run against a
// fresh throwaway redis-server each, with baton and a raw-asynq baseline
// measured back to back in the same process, printed as a table of figures,
// ratios and targets.
//
// Workloads:
//
//	W1  enqueue N no-op tasks, sequentially and from 8 goroutines
//	W2  process N pre-enqueued no-op tasks with results stored
//	W6  scale-out: 1, 2 and 4 `baton worker` processes draining N tasks
//	W3  N/10 two-step chains with ~1 KB payloads, enqueued at once
//	W4  N/100 chords of 10 header tasks and a body
//	W5  single-task idle round trip, then idle CPU of the process and Redis
//	W9  flow control: W2 under a rate limit that never binds vs none, and a
//	    limited run's achieved rate vs the configured one
//
// Every baton/baseline pair is measured Options.Repeats times, the order
// alternating, and the median kept: this runs on small, noisy machines.
package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/metrics"
)

// Defaults of Options.
const (
	// NDefault is the task count of W1 and W2 in a full run.
	NDefault = 20000
	// RepeatsDefault is how many times each pair is measured in a full run.
	RepeatsDefault = 3
	// ConcurrencyDefault is the worker concurrency of W2–W4, the same for
	// baton and asynq (the best of 10, 20 and 50 for both on a 2-core box).
	ConcurrencyDefault = 20
)

// Workloads lists the workload names in run order.
var Workloads = []string{"W1", "W2", "W3", "W4", "W5", "W6", "W9"}

// Options configure a run. The zero value is a full run of every workload.
type Options struct {
	// Workloads to run, by name ("W1" … "W5", case-insensitive). Defaults
	// to all of them.
	Workloads []string
	// N is the task count of W1 and W2; W3 runs N/10 chains and W4 N/100
	// chords. Defaults to NDefault (20,000), or a tenth of it with Quick.
	N int
	// Quick is a smoke run: N/10, one repeat, short W5 phases, no Celery
	// peer; under a minute for everything.
	Quick bool
	// Repeats is how many times each baton/baseline pair is measured (the
	// median is reported). Defaults to RepeatsDefault (3), 1 with Quick.
	Repeats int
	// Concurrency is the worker concurrency of W2–W4, the same for baton
	// and asynq. Defaults to ConcurrencyDefault.
	Concurrency int
	// JSONPath, when set, receives the raw figures (every repeat) as JSON.
	JSONPath string
	// CeleryScript is run after the workloads (not in a Quick run), when
	// it exists, and its figures are put beside baton's. Defaults to
	// ../shared/bench/celery/run.sh from the module root.
	CeleryScript string
	// NoCelery skips the Celery peer script.
	NoCelery bool
	// Metrics runs baton's workers with the Prometheus metrics observer
	// (package metrics), as `baton worker --metrics-addr` does; without it
	// they have no observer.
	Metrics bool
	// Progress receives one line per measurement while the run goes on.
	// Nil for none.
	Progress io.Writer
}

// Validate reports invalid options (an unknown workload, a negative or too
// small N) before anything runs.
func (o Options) Validate() error {
	_, err := o.withDefaults()
	return err
}

func (o Options) withDefaults() (Options, error) {
	if len(o.Workloads) == 0 {
		o.Workloads = Workloads
	}
	var ws []string
	for _, w := range o.Workloads {
		w = strings.ToUpper(strings.TrimSpace(w))
		if w == "" {
			continue
		}
		if !slices.Contains(Workloads, w) {
			return o, fmt.Errorf("bench: unknown workload %q: choose from %s", w, strings.Join(Workloads, ", "))
		}
		if !slices.Contains(ws, w) {
			ws = append(ws, w)
		}
	}
	slices.SortFunc(ws, func(a, b string) int { return cmp.Compare(slices.Index(Workloads, a), slices.Index(Workloads, b)) })
	o.Workloads = ws
	if o.N < 0 || o.Repeats < 0 || o.Concurrency < 0 {
		return o, errors.New("bench: N, Repeats and Concurrency must not be negative (0 picks the default)")
	}
	if o.N == 0 {
		o.N = NDefault
		if o.Quick {
			o.N = NDefault / 10
		}
	}
	if o.N < 100 {
		return o, fmt.Errorf("bench: N %d is too small: use at least 100 (W4 runs N/100 chords)", o.N)
	}
	if o.Repeats == 0 {
		o.Repeats = RepeatsDefault
		if o.Quick {
			o.Repeats = 1
		}
	}
	if o.Concurrency == 0 {
		o.Concurrency = ConcurrencyDefault
	}
	if o.CeleryScript == "" {
		o.CeleryScript = defaultCeleryScript()
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o, nil
}

// Target is what a row should reach; at most one field is set.
type Target struct {
	// MinRatio: baton ≥ MinRatio × baseline.
	MinRatio float64 `json:"min_ratio,omitempty"`
	// Min: baton ≥ Min (in the row's unit).
	Min float64 `json:"min,omitempty"`
	// Max: baton ≤ Max (in the row's unit).
	Max float64 `json:"max,omitempty"`
	// Within: baton within this fraction of the baseline (|ratio-1| ≤ Within).
	Within float64 `json:"within,omitempty"`
}

func (t Target) String(unit, baseline string) string {
	switch {
	case t.MinRatio > 0:
		return fmt.Sprintf("≥ %.2f× %s", t.MinRatio, baseline)
	case t.Min > 0:
		return "≥ " + fmtNum(t.Min) + " " + unit
	case t.Max > 0:
		return "≤ " + fmtNum(t.Max) + " " + unit
	case t.Within > 0:
		return fmt.Sprintf("±%.0f%% of %s", t.Within*100, baseline)
	}
	return ""
}

// Row is one figure of the report: baton's median, the baseline's, and
// every repeat.
type Row struct {
	Workload string `json:"workload"`
	Name     string `json:"name"`
	Unit     string `json:"unit"`
	// Baton and Baseline are medians over the repeats; Baseline is 0 when
	// the row has none.
	Baton        float64 `json:"baton"`
	Baseline     float64 `json:"baseline,omitempty"`
	BaselineName string  `json:"baseline_name,omitempty"`
	// Ratio is Baton / Baseline (0 without a baseline).
	Ratio  float64 `json:"ratio,omitempty"`
	Target *Target `json:"target,omitempty"`
	Met    *bool   `json:"met,omitempty"`
	// Celery is the Celery peer's figure, when run.sh ran; CeleryRatio is
	// Baton / Celery.
	Celery      float64   `json:"celery,omitempty"`
	CeleryRatio float64   `json:"celery_ratio,omitempty"`
	Samples     []float64 `json:"samples"`
	// BaselineSamples are the baseline's repeats.
	BaselineSamples []float64 `json:"baseline_samples,omitempty"`
	Note            string    `json:"note,omitempty"`
}

func newRow(workload, name, unit string, baton []float64, baselineName string, baseline []float64, t *Target) Row {
	r := Row{Workload: workload, Name: name, Unit: unit, Baton: median(baton), Samples: baton,
		BaselineName: baselineName, BaselineSamples: baseline, Target: t}
	if len(baseline) > 0 {
		r.Baseline = median(baseline)
		if r.Baseline > 0 {
			r.Ratio = r.Baton / r.Baseline
		}
	}
	if t != nil {
		var ok bool
		switch {
		case t.MinRatio > 0:
			ok = r.Ratio >= t.MinRatio
		case t.Min > 0:
			ok = r.Baton >= t.Min
		case t.Max > 0:
			ok = r.Baton <= t.Max
		case t.Within > 0:
			ok = r.Ratio > 0 && math.Abs(r.Ratio-1) <= t.Within
		}
		r.Met = &ok
	}
	return r
}

// Report is the outcome of a run; it is what --json writes.
type Report struct {
	Started     time.Time `json:"started"`
	Seconds     float64   `json:"seconds"`
	GoVersion   string    `json:"go_version"`
	CPUs        int       `json:"cpus"`
	Redis       string    `json:"redis_version,omitempty"`
	N           int       `json:"n"`
	Repeats     int       `json:"repeats"`
	Concurrency int       `json:"concurrency"`
	Quick       bool      `json:"quick"`
	Rows        []Row     `json:"rows"`
	Celery      *Celery   `json:"celery,omitempty"`
	Notes       []string  `json:"notes,omitempty"`
}

// Run runs the selected workloads, prints the table to w and, with
// Options.JSONPath, writes the raw figures. A workload that fails is
// reported in the table's notes; Run then returns an error naming it after
// the other workloads ran.
func Run(ctx context.Context, w io.Writer, opts Options) error {
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	rep := &Report{Started: time.Now(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
		N: o.N, Repeats: o.Repeats, Concurrency: o.Concurrency, Quick: o.Quick}
	if o.Metrics {
		rep.Notes = append(rep.Notes, "baton's workers ran with the Prometheus metrics observer (--metrics)")
	}
	var failed []error
	for _, name := range o.Workloads {
		if err := ctx.Err(); err != nil {
			return err
		}
		fmt.Fprintf(o.Progress, "bench: %s …\n", name)
		rows, note, err := runWorkload(ctx, name, o, rep)
		rep.Rows = append(rep.Rows, rows...)
		if note != "" {
			rep.Notes = append(rep.Notes, name+": "+note)
		}
		if err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", name, err))
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s FAILED: %v", name, err))
		}
	}
	rep.Celery = runCelery(ctx, o)
	rep.Celery.attach(rep.Rows)
	rep.Seconds = time.Since(rep.Started).Seconds()
	if err := rep.WriteTable(w); err != nil {
		return err
	}
	if o.JSONPath != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("bench: encode JSON: %w", err)
		}
		if err := os.WriteFile(o.JSONPath, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("bench: write --json file: %w", err)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench: %w", errors.Join(failed...))
	}
	return nil
}

// runWorkload runs one workload on its own fresh redis-server.
func runWorkload(ctx context.Context, name string, o Options, rep *Report) ([]Row, string, error) {
	env, err := startRedis(ctx)
	if err != nil {
		return nil, "", err
	}
	defer env.stop()
	if rep.Redis == "" {
		rep.Redis = env.version
	}
	if o.Metrics {
		obs, err := metrics.NewObserver(prometheus.NewRegistry())
		if err != nil {
			return nil, "", err
		}
		env.observers = []baton.Observer{obs}
	}
	switch name {
	case "W1":
		return runW1(ctx, env, o)
	case "W2":
		return runW2(ctx, env, o)
	case "W3":
		return runW3(ctx, env, o)
	case "W4":
		return runW4(ctx, env, o)
	case "W5":
		return runW5(ctx, env, o)
	case "W6":
		return runW6(ctx, env, o)
	case "W9":
		return runW9(ctx, env, o)
	}
	return nil, "", fmt.Errorf("unknown workload %q", name)
}

// WriteTable prints the report as an aligned table with notes below it.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "baton bench: N=%d, %d repeat(s) (median), concurrency %d, %s, %d CPUs, redis %s, %.0fs\n",
		r.N, r.Repeats, r.Concurrency, r.GoVersion, r.CPUs, r.Redis, r.Seconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	withCelery := slices.ContainsFunc(r.Rows, func(row Row) bool { return row.Celery > 0 })
	head := "workload\tbaton\tbaseline\tratio\ttarget\t"
	if withCelery {
		head += "celery (baton/celery)\t"
	}
	fmt.Fprintln(tw, head)
	for _, row := range r.Rows {
		base, ratio := "-", "-"
		if row.BaselineName != "" {
			base = fmtNum(row.Baseline) + " (" + row.BaselineName + ")"
			if row.Ratio > 0 {
				ratio = fmtRatio(row.Ratio)
			}
		}
		target := "-"
		if row.Target != nil {
			target = row.Target.String(row.Unit, row.BaselineName)
			if row.Met != nil && *row.Met {
				target += " ok"
			} else {
				target += " MISS"
			}
		}
		line := fmt.Sprintf("%s %s\t%s %s\t%s\t%s\t%s\t", row.Workload, row.Name, fmtNum(row.Baton), row.Unit, base, ratio, target)
		if withCelery {
			c := "-"
			if row.Celery > 0 {
				c = fmt.Sprintf("%s (%s)", fmtNum(row.Celery), fmtRatio(row.CeleryRatio))
			}
			line += c + "\t"
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note: "+n)
	}
	r.Celery.write(w)
	return nil
}

// fmtNum prints figures with 3 significant digits, thousands separated.
func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1000:
		s := fmt.Sprintf("%.0f", v)
		var b strings.Builder
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		return b.String()
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// fmtRatio prints a ratio with two decimals, or two significant digits
// below 0.1 (a 2 ms round trip against a 1 s poll).
func fmtRatio(r float64) string {
	if r < 0.1 {
		return fmt.Sprintf("%.2g×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}

func median(xs []float64) float64 { return percentile(xs, 50) }

// percentile is the nearest-rank percentile p (0–100) of xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if p == 50 && len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// figures is what one measured run of a workload yields.
type figures struct {
	rate     float64 // per second
	p50, p99 float64 // latency, ms
	perTask  float64 // script calls per task, when counted
}

// runPair measures baton and the baseline reps times each, alternating
// which goes first, and flushes Redis before every run.
func runPair(ctx context.Context, env *redisEnv, o Options, label string,
	batonRun, baseRun func(context.Context) (figures, error)) (b, a []figures, err error) {
	return runPairNamed(ctx, env, o, label, [2]string{"baton", "asynq"}, batonRun, baseRun)
}

// runPairNamed is runPair with the two sides' names for the progress lines.
func runPairNamed(ctx context.Context, env *redisEnv, o Options, label string, names [2]string,
	batonRun, baseRun func(context.Context) (figures, error)) (b, a []figures, err error) {
	for rep := range o.Repeats {
		order := []bool{true, false}
		if rep%2 == 1 {
			order = []bool{false, true}
		}
		for _, isBaton := range order {
			if err := env.flush(ctx); err != nil {
				return nil, nil, err
			}
			run, who := baseRun, names[1]
			if isBaton {
				run, who = batonRun, names[0]
			}
			f, err := run(ctx)
			if err != nil {
				return nil, nil, fmt.Errorf("%s (%s): %w", label, who, err)
			}
			line := fmt.Sprintf("  %-28s %-6s %10.0f/s", label, who, f.rate)
			if f.p50 > 0 {
				line += fmt.Sprintf("  p50 %6.1fms  p99 %6.1fms", f.p50, f.p99)
			}
			fmt.Fprintln(o.Progress, line)
			if isBaton {
				b = append(b, f)
			} else {
				a = append(a, f)
			}
		}
	}
	return b, a, nil
}

func rates(fs []figures) []float64 { return pick(fs, func(f figures) float64 { return f.rate }) }
func p50s(fs []figures) []float64  { return pick(fs, func(f figures) float64 { return f.p50 }) }
func p99s(fs []figures) []float64  { return pick(fs, func(f figures) float64 { return f.p99 }) }

func pick(fs []figures, f func(figures) float64) []float64 {
	out := make([]float64, len(fs))
	for i, x := range fs {
		out[i] = f(x)
	}
	return out
}

// latencyFigures turns per-item latencies into p50/p99 in ms.
func latencyFigures(ds []time.Duration) (p50, p99 float64) {
	ms := make([]float64, len(ds))
	for i, d := range ds {
		ms[i] = float64(d) / float64(time.Millisecond)
	}
	return percentile(ms, 50), percentile(ms, 99)
}
