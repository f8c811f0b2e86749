package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
)

// execution is one handler run, from the workers' execution logs.
type execution struct {
	id, kind string
	pid      int
	n        int    // the record's execution count at start
	seen     string // the record's state when the handler started
	start    time.Time
	end      time.Time // zero: the process died first
	ok       bool
}

type report struct {
	cfg        config
	wfs        []*workflow
	ev         *events
	start      time.Time
	faultsEnd  time.Time
	lastFinish time.Time
	queueEmpty time.Time // when asynq's queue held no task any more (zero: never)
	drained    bool
	unexpected []string
	llm        *llmServer

	execs     map[string][]*execution
	handOns   []handOn
	records   map[string]*baton.Record
	noTTL     []string
	keys      int
	queueInfo *asynq.QueueInfo
	missing   []string            // step records not SUCCESS
	order     map[string][]string // workflow id → its task ids in plan order
}

// collect reads the execution logs, every step's record, the key TTLs and
// asynq's queue, after waiting (within the drain timeout) for asynq to hand
// back every stranded task: their late redeliveries are the ones that must
// not run a finished step again.
func (r *report) collect(ctx context.Context, c *baton.Client, rdb *redis.Client, logDir string) error {
	insp := asynq.NewInspectorFromRedisClient(rdb)
	// The workers are stopped by now, so asynq's own recoverer no longer
	// runs: wait briefly for in-flight acknowledgements, no longer.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		qi, err := insp.GetQueueInfo(baton.QueueDefault)
		if err == nil && qi.Pending+qi.Active+qi.Scheduled+qi.Retry == 0 {
			r.queueEmpty = time.Now()
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	// The reads below get their own time: waiting for the queue above may
	// take most of the drain timeout (orphaned deliveries that a recovery
	// copy replaced stay active until asynq's own recoverer drops them).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	var err error
	if r.queueInfo, err = insp.GetQueueInfo(baton.QueueDefault); err != nil {
		return fmt.Errorf("asynq queue info: %w", err)
	}
	if r.execs, err = readExecLogs(logDir); err != nil {
		return err
	}
	if r.handOns, err = readHandOns(logDir); err != nil {
		return err
	}
	r.records = map[string]*baton.Record{}
	r.order = map[string][]string{}
	for _, w := range r.wfs {
		wf, err := c.Workflow(ctx, w.id)
		if err != nil {
			r.missing = append(r.missing, w.id+": "+err.Error())
			continue
		}
		steps, err := wf.Steps(ctx)
		if err != nil {
			err = fmt.Errorf("steps of %s: %w", w.id, err)
			return err
		}
		for _, s := range steps {
			if s.Record == nil {
				r.missing = append(r.missing, fmt.Sprintf("%s %s: no record", w.id, s.Position))
				continue
			}
			r.records[s.Record.ID] = s.Record
			r.order[w.id] = append(r.order[w.id], s.Record.ID)
			if s.Record.State != baton.Success {
				r.missing = append(r.missing, fmt.Sprintf("%s (%s): %s %s", s.Record.ID, s.Position, s.Record.State, s.Record.Error))
			}
		}
	}
	// Every key baton wrote must expire.
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		if strings.HasPrefix(k, "asynq:") {
			continue
		}
		r.keys++
		ttl, err := rdb.PTTL(ctx, k).Result()
		if err != nil {
			return err
		}
		if ttl == -1 { // go-redis: -1 no TTL, -2 key gone
			r.noTTL = append(r.noTTL, k)
		}
	}
	return iter.Err()
}

func readExecLogs(dir string) (map[string][]*execution, error) {
	files, err := filepath.Glob(filepath.Join(dir, "exec-*.log"))
	if err != nil {
		return nil, err
	}
	out := map[string][]*execution{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		open := map[string]*execution{} // pid|id → the run without an end yet
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 5 {
				continue
			}
			msec, _ := strconv.ParseInt(fs[1], 10, 64)
			at := time.UnixMilli(msec)
			pid, _ := strconv.Atoi(fs[2])
			id := fs[3]
			switch {
			case fs[0] == "S" && len(fs) >= 7:
				n, _ := strconv.Atoi(fs[5])
				e := &execution{id: id, kind: fs[4], pid: pid, n: n, seen: fs[6], start: at}
				out[id] = append(out[id], e)
				open[fs[2]+"|"+id] = e
			case fs[0] == "E":
				if e := open[fs[2]+"|"+id]; e != nil {
					e.end, e.ok = at, fs[4] == "ok"
					delete(open, fs[2]+"|"+id)
				}
			}
		}
		_ = f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	for _, es := range out {
		sort.Slice(es, func(i, j int) bool { return es[i].start.Before(es[j].start) })
	}
	return out, nil
}

// handOn is a redelivery of a task whose SUCCESS was recorded already: the
// worker skipped the handler and handed the stored result on. Workers log
// it at info level ("already succeeded; handing on stored result").
type handOn struct {
	id string
	at time.Time
}

func readHandOns(dir string) ([]handOn, error) {
	files, err := filepath.Glob(filepath.Join(dir, "w*.log"))
	if err != nil {
		return nil, err
	}
	var out []handOn
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, "already succeeded") {
				continue
			}
			var h handOn
			for _, fld := range strings.Fields(line) {
				k, v, _ := strings.Cut(fld, "=")
				switch k {
				case "time":
					h.at, _ = time.Parse(time.RFC3339Nano, v)
				case "task":
					h.id = v
				}
			}
			if h.id != "" && !h.at.IsZero() {
				out = append(out, h)
			}
		}
		_ = f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// inFlight reports whether e's delivery may still have been unacknowledged
// at t: the handler had started and had not returned, or returned less than
// 2 s before (recording its result and handing it on).
func inFlight(e *execution, t time.Time) bool {
	return !t.Before(e.start) && (e.end.IsZero() || t.Sub(e.end) < 2*time.Second)
}

// excuse says why execution b of a task followed execution a: the fault
// that interrupted a, or "" when nothing did (a duplicate).
func (r *report) excuse(a, b *execution) (string, time.Duration) {
	if !a.end.IsZero() && !a.ok {
		return "error", 0 // the handler failed: an ordinary retry
	}
	for _, k := range r.ev.kills {
		if k.pid == a.pid && inFlight(a, k.at) && !k.at.After(b.start) {
			return "kill", b.start.Sub(k.at)
		}
	}
	for _, t := range r.ev.terms {
		if t.pid == a.pid && !t.at.Before(a.start.Add(-time.Second)) && !t.at.After(b.start) && (a.end.IsZero() || !a.ok) {
			return "term", b.start.Sub(t.at)
		}
	}
	for _, rs := range r.ev.restarts {
		if !rs.at.Add(rs.took).Before(a.start.Add(-2*time.Second)) && !rs.at.After(b.start) {
			return "redis", 0
		}
	}
	return "", 0
}

type row struct{ name, value, verdict string }

// print writes the summary table and reports whether every check passed.
func (r *report) print(out io.Writer) bool {
	ok := true
	var rows []row
	check := func(name string, value any, pass bool) {
		v := "ok"
		if !pass {
			v, ok = "VIOLATION", false
		}
		rows = append(rows, row{name, fmt.Sprint(value), v})
	}
	info := func(name string, value any) { rows = append(rows, row{name, fmt.Sprint(value), ""}) }

	var succeeded, failed, wrong, unfinished, chains, chords, submitErrs, waitErrs int
	var bad []string
	for _, w := range r.wfs {
		if w.chord {
			chords++
		} else {
			chains++
		}
		submitErrs += w.submitErrs
		waitErrs += w.waitErrs
		switch {
		case w.state == baton.Success && w.result == w.expected:
			succeeded++
		case w.state == baton.Success:
			wrong++
			bad = append(bad, fmt.Sprintf("%s: result %d, want %d", w.id, w.result, w.expected))
		case w.state == "":
			unfinished++
			bad = append(bad, fmt.Sprintf("%s: %s", w.id, w.err))
		default:
			failed++
			bad = append(bad, fmt.Sprintf("%s: %s", w.id, w.err))
		}
	}
	// Executions.
	var total, redelivered, extra, afterSuccess, bodies, bodiesMulti, bodiesDup, dups int
	var notes []string
	firstAfterKill := map[string]time.Duration{} // task → kill → its first redelivery
	for id, es := range r.execs {
		total += len(es)
		rec := r.records[id]
		isBody := es[0].kind == kindSum
		if isBody {
			bodies++
			if len(es) > 1 {
				bodiesMulti++
			}
		}
		if len(es) > 1 {
			redelivered++
			extra += len(es) - 1
		}
		for i, e := range es {
			late := rec != nil && rec.State == baton.Success && !rec.FinishedAt.IsZero() && e.start.After(rec.FinishedAt)
			if e.seen == string(baton.Success) || late {
				afterSuccess++
				notes = append(notes, fmt.Sprintf("%s ran again after SUCCESS (execution %d, pid %d, state seen %s)", id, i+1, e.pid, e.seen))
			}
			if i == 0 {
				continue
			}
			why, d := r.excuse(es[i-1], e)
			if why == "kill" && firstAfterKill[id] == 0 {
				firstAfterKill[id] = d
			}
			switch why {
			case "":
				dups++
				if isBody {
					bodiesDup++
				}
				notes = append(notes, fmt.Sprintf("%s ran again with no fault to explain it (pid %d at %s, then pid %d at %s)",
					id, es[i-1].pid, es[i-1].start.Format("15:04:05.000"), e.pid, e.start.Format("15:04:05.000")))
			}
		}
	}
	// Hand-ons: the last run of the task was on a worker killed after the
	// handler returned (before asynq's ack); recovery is kill → hand-on.
	for _, h := range r.handOns {
		es := r.execs[h.id]
		if len(es) == 0 {
			continue
		}
		e := es[len(es)-1]
		for _, k := range r.ev.kills {
			if k.pid == e.pid && inFlight(e, k.at) && !k.at.After(h.at) {
				if d := h.at.Sub(k.at); firstAfterKill[h.id] == 0 || d < firstAfterKill[h.id] {
					firstAfterKill[h.id] = d
				}
				break
			}
		}
	}
	var recov []time.Duration
	for _, d := range firstAfterKill {
		recov = append(recov, d)
	}
	slices.Sort(recov)
	stalls := r.stalls()

	info("workflows submitted", fmt.Sprintf("%d (%d chains, %d chords)", len(r.wfs), chains, chords))
	check("workflows succeeded, right result", fmt.Sprintf("%d/%d", succeeded, len(r.wfs)), succeeded == len(r.wfs))
	check("workflows failed", failed, failed == 0)
	check("workflows with a wrong result", wrong, wrong == 0)
	check("workflows unfinished (lost or hanging)", unfinished, unfinished == 0)
	check("steps whose record is not SUCCESS", len(r.missing), len(r.missing) == 0)
	info("producer calls failed and retried (Redis down)", fmt.Sprintf("submit %d, wait %d", submitErrs, waitErrs))
	info("SIGKILLs of workers", len(r.ev.kills))
	info("SIGTERMs of workers (graceful)", describeFaults(r.ev.terms, "exit in"))
	info("Redis restarts (SIGKILL + AOF reload)", describeFaults(r.ev.restarts, "down"))
	check("worker processes that exited on their own", len(r.unexpected), len(r.unexpected) == 0)
	info("tasks executed / executions", fmt.Sprintf("%d / %d", len(r.execs), total))
	info("redeliveries (tasks run more than once)", fmt.Sprintf("%d tasks, %d extra runs", redelivered, extra))
	info("redeliveries after SUCCESS: handler skipped, result handed on", len(r.handOns))
	check("runs after the step's SUCCESS was recorded", afterSuccess, afterSuccess == 0)
	if r.llm != nil {
		calls, inputs, repeated, afterCached := r.llm.stats()
		info("analyze calls that reached the LLM server", fmt.Sprintf("%d calls for %d inputs (%d inputs sent again before their first response was cached: a kill mid-call, or two workflows asking at once)", calls, inputs, repeated))
		check("LLM calls for an input whose response was already cached", afterCached, afterCached == 0)
	}
	check("runs again with no kill/term/Redis restart to explain it", dups, dups == 0)
	info("chord bodies run / run more than once", fmt.Sprintf("%d / %d (each after a kill of the worker running it)", bodies, bodiesMulti-bodiesDup))
	check("chord bodies run more than once without a crash", bodiesDup, bodiesDup == 0)
	info("recovery after SIGKILL (kill → first redelivery)", describeDurations(recov, "no task was in flight at a kill"))
	stallDs := make([]time.Duration, len(stalls))
	var long []string
	for i, st := range stalls {
		stallDs[i] = st.d
		if st.d > 30*time.Second {
			long = append(long, fmt.Sprintf("%s started %v after its input was ready (at %s)", st.id, st.d.Round(100*time.Millisecond), st.from.Format("15:04:05.000")))
		}
	}
	info("workflow stalls > 1s (step ends → next step starts)", describeDurations(stallDs, "none"))
	drain := "never"
	if r.drained {
		drain = r.lastFinish.Sub(r.faultsEnd).Round(100 * time.Millisecond).String()
		if r.lastFinish.Before(r.faultsEnd) {
			drain = "0s (done before the faults stopped)"
		}
	}
	check("time to drain: faults stop → last workflow ends", drain, r.drained)
	qe := "no: deliveries replaced by recovery copies stay active until asynq's recoverer drops them (60–90 s, workers stopped first)"
	if !r.queueEmpty.IsZero() {
		qe = "yes"
	}
	info("asynq queue empty at the end", qe)
	qi := r.queueInfo
	info("asynq queue at the end", fmt.Sprintf("pending %d, active %d, retry %d, scheduled %d", qi.Pending, qi.Active, qi.Retry, qi.Scheduled))
	check("asynq archived (dead) tasks", qi.Archived, qi.Archived == 0)
	check("baton keys without a TTL", fmt.Sprintf("%d of %d", len(r.noTTL), r.keys), len(r.noTTL) == 0)
	info("total run time", time.Since(r.start).Round(time.Second))

	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tVALUE\t")
	for _, rw := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", rw.name, rw.value, rw.verdict)
	}
	_ = tw.Flush()
	show := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(out, "\n%s (%d):\n", title, len(items))
		for i, s := range items {
			if i == 20 {
				fmt.Fprintf(out, "  ... and %d more\n", len(items)-20)
				break
			}
			fmt.Fprintln(out, "  "+s)
		}
	}
	show("workflows that did not succeed", bad)
	show("steps not SUCCESS", r.missing)
	show("execution anomalies", notes)
	show("stalls over 30 s", long)
	show("keys without a TTL", r.noTTL)
	show("workers that exited on their own", r.unexpected)
	if ok {
		fmt.Fprintln(out, "\nPASS: every check held")
	} else {
		fmt.Fprintln(out, "\nFAIL")
	}
	return ok
}

// stalls are the pauses over a second inside workflows: from the end of a
// chain step to the start of the next one, or from the last header's end to
// the start of a chord's body. Each is some fault's recovery time, including
// the ones no redelivery of a started task shows (a task dequeued by a
// worker killed before it ran, a hand-off lost with its worker).
func (r *report) stalls() []stall {
	firstStart := func(id string) time.Time {
		if es := r.execs[id]; len(es) > 0 {
			return es[0].start
		}
		return time.Time{}
	}
	lastEnd := func(id string) time.Time {
		var t time.Time
		for _, e := range r.execs[id] {
			if e.ok && e.end.After(t) {
				t = e.end
			}
		}
		return t
	}
	var out []stall
	add := func(id string, from, to time.Time) {
		if !from.IsZero() && !to.IsZero() && to.Sub(from) > time.Second {
			out = append(out, stall{id: id, from: from, d: to.Sub(from)})
		}
	}
	for _, w := range r.wfs {
		ids := r.order[w.id]
		if len(ids) == 0 {
			continue
		}
		if w.chord {
			var last time.Time
			for _, id := range ids[:len(ids)-1] {
				if e := lastEnd(id); e.After(last) {
					last = e
				}
			}
			add(ids[len(ids)-1], last, firstStart(ids[len(ids)-1]))
			continue
		}
		for i := 1; i < len(ids); i++ {
			add(ids[i], lastEnd(ids[i-1]), firstStart(ids[i]))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].d < out[j].d })
	return out
}

// stall is a pause before task id started: its input was ready at from.
type stall struct {
	id   string
	from time.Time
	d    time.Duration
}

func describeFaults(fs []fault, what string) string {
	if len(fs) == 0 {
		return "0"
	}
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.took.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("%d (%s %s)", len(fs), what, strings.Join(parts, ", "))
}

func describeDurations(ds []time.Duration, none string) string {
	if len(ds) == 0 {
		return none
	}
	q := func(p float64) time.Duration { return ds[int(p*float64(len(ds)-1))].Round(100 * time.Millisecond) }
	return fmt.Sprintf("%d tasks: min %v, median %v, p90 %v, max %v", len(ds), q(0), q(0.5), q(0.9), q(1))
}
