package beat

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // timezones work in minimal container images

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/chain"
)

// Schedule is a parsed, validated schedule file.
//
// The file is YAML or JSON (JSON is read as YAML too):
//
//	timezone: Europe/Paris        # default of every entry; defaults to UTC
//	entries:
//	  - name: heartbeat           # letters, digits, '-' and '_'; unique
//	    every: 30s                # an interval, aligned to the Unix epoch ...
//	    task: echo
//	    args: {"msg": "tick"}
//	    options: {"queue": "low", "expires_in": "30s"}
//	  - name: nightly-research
//	    cron: "0 3 * * *"         # ... or a cron spec (5 fields, or 6 with seconds, or @daily ...)
//	    timezone: America/New_York
//	    canvas: {"chord": {"header": [{"task": "fetch", "args": {"url": "https://example.com"}}],
//	                       "body": {"task": "analyze"}}}
//
// Each entry has exactly one of cron and every, and exactly one of task
// (with optional args and options, the JSON form of baton.EnqueueOpts) and
// canvas (the JSON canvas form of package chain).
type Schedule struct {
	Timezone string
	Entries  []*Entry
}

// Entry is one periodic job.
type Entry struct {
	Name     string
	Cron     string        // cron spec, or ""
	Every    time.Duration // interval, or 0
	Timezone string
	Task     string
	Args     json.RawMessage
	Options  *baton.EnqueueOpts
	Canvas   json.RawMessage

	loc   *time.Location
	sched cron.Schedule // nil for Every
}

// scheduleFile and entryFile are the schedule document as written, decoded
// by yaml with typed fields. Keys they do not know land in Unknown (a yaml
// inline map), so that the error names its entry. Every is a duration
// string or a number of seconds; args, options and canvas are any YAML,
// passed on as JSON.
type scheduleFile struct {
	Timezone string         `yaml:"timezone"`
	Entries  []yaml.Node    `yaml:"entries"` // decoded one by one, so errors name their entry
	Unknown  map[string]any `yaml:",inline"`
}

type entryFile struct {
	Name     string         `yaml:"name"`
	Cron     string         `yaml:"cron"`
	Every    any            `yaml:"every"`
	Timezone string         `yaml:"timezone"`
	Task     string         `yaml:"task"`
	Args     any            `yaml:"args"`
	Options  any            `yaml:"options"`
	Canvas   any            `yaml:"canvas"`
	Unknown  map[string]any `yaml:",inline"`
}

const entryFields = "name, cron, every, timezone, task, args, options, canvas"

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)

// Load reads and parses a schedule file.
func Load(path string) (*Schedule, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("schedule: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("schedule %s: %w", filepath.Base(path), err)
	}
	return s, nil
}

// Parse parses and validates a schedule document. Errors name the entry
// and the field at fault, e.g. `entries[2] "nightly": cron: ...`.
func Parse(data []byte) (*Schedule, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not valid YAML or JSON: %w", err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New(`expected a mapping with "entries" (and optionally "timezone") at the top`)
	}
	var f scheduleFile
	if err := doc.Decode(&f); err != nil {
		return nil, yamlError(err)
	}
	if k := firstKey(f.Unknown); k != "" {
		return nil, fmt.Errorf("unknown top-level field %q (known: timezone, entries)", k)
	}
	s := &Schedule{Timezone: f.Timezone}
	if s.Timezone != "" {
		if _, err := time.LoadLocation(s.Timezone); err != nil {
			return nil, fmt.Errorf("timezone: unknown time zone %q: use an IANA name such as UTC or Europe/Paris", s.Timezone)
		}
	}
	if len(f.Entries) == 0 {
		return nil, errors.New("entries: the list is empty: nothing to schedule")
	}
	seen := map[string]int{}
	for i := range f.Entries {
		var ef entryFile
		err := yamlError(f.Entries[i].Decode(&ef)) // decoding goes on past a bad field: the name is kept
		if err == nil {
			err = ef.check()
		}
		var e *Entry
		if err == nil {
			e, err = ef.entry(s.Timezone)
		}
		if err != nil {
			where := fmt.Sprintf("entries[%d]", i)
			if ef.Name != "" {
				where += fmt.Sprintf(" %q", ef.Name)
			}
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if j, dup := seen[e.Name]; dup {
			return nil, fmt.Errorf("entries[%d] %q: name: already used by entries[%d]; names must be unique", i, e.Name, j)
		}
		seen[e.Name] = i
		s.Entries = append(s.Entries, e)
	}
	return s, nil
}

// check reports an unknown field, and the fields given together that
// exclude each other.
func (f *entryFile) check() error {
	if k := firstKey(f.Unknown); k != "" {
		return fmt.Errorf("unknown field %q (known: %s)", k, entryFields)
	}
	switch {
	case f.Name == "":
		return errors.New("name: missing")
	case !nameRE.MatchString(f.Name):
		return fmt.Errorf("name: %q: use 1 to 100 letters, digits, '-' and '_' (it is part of every run's task id)", f.Name)
	}
	return nil
}

// entry validates the entry and builds it; defTZ is the file's timezone.
func (f *entryFile) entry(defTZ string) (*Entry, error) {
	e := &Entry{Name: f.Name, Cron: f.Cron, Task: f.Task, Timezone: cmp.Or(f.Timezone, defTZ, "UTC")}
	var err error
	if e.loc, err = time.LoadLocation(e.Timezone); err != nil {
		return nil, fmt.Errorf("timezone: unknown time zone %q: use an IANA name such as UTC or Europe/Paris", e.Timezone)
	}

	switch {
	case f.Cron != "" && f.Every != nil:
		return nil, errors.New("cron and every: give one of them, not both")
	case f.Cron == "" && f.Every == nil:
		return nil, errors.New(`cron or every: missing; e.g. cron: "*/5 * * * *" or every: 30s`)
	case f.Cron != "":
		if e.sched, err = parseCron(f.Cron, e.loc); err != nil {
			return nil, fmt.Errorf("cron: %q: %w", f.Cron, err)
		}
	default:
		if e.Every, err = parseEvery(f.Every); err != nil {
			return nil, fmt.Errorf("every: %w", err)
		}
	}

	switch {
	case f.Task != "" && f.Canvas != nil:
		return nil, errors.New("task and canvas: give one of them, not both")
	case f.Task == "" && f.Canvas == nil:
		return nil, errors.New("task or canvas: missing; give a task kind (with args) or a JSON canvas")
	case f.Canvas != nil:
		const notWithCanvas = "%s: not allowed with canvas; put args and options on the canvas's tasks"
		if f.Args != nil {
			return nil, fmt.Errorf(notWithCanvas, "args")
		}
		if f.Options != nil {
			return nil, fmt.Errorf(notWithCanvas, "options")
		}
		if e.Canvas, err = toJSON(f.Canvas); err != nil {
			return nil, fmt.Errorf("canvas: %w", err)
		}
		if _, err := chain.Parse(e.Canvas); err != nil {
			return nil, fmt.Errorf("canvas: %w", err)
		}
	default:
		if f.Args != nil {
			if e.Args, err = toJSON(f.Args); err != nil {
				return nil, fmt.Errorf("args: %w", err)
			}
		}
		if f.Options != nil {
			raw, err := toJSON(f.Options)
			if err != nil {
				return nil, fmt.Errorf("options: %w", err)
			}
			var o baton.EnqueueOpts
			if err := json.Unmarshal(raw, &o); err != nil {
				return nil, fmt.Errorf("options: %w", err)
			}
			if o.ID != "" {
				return nil, errors.New("options.id: not allowed: beat gives every run the id beat-<name>-<unix time of the tick>")
			}
			e.Options = &o
		}
	}
	return e, nil
}

// firstKey is the first of m's keys in sorted order, or "".
func firstKey(m map[string]any) string {
	if len(m) == 0 {
		return ""
	}
	return slices.Min(slices.Collect(maps.Keys(m)))
}

// yamlTypeWords put yaml's decoding errors in the schedule's words: "line
// 3: cannot unmarshal !!seq `[a]` into string" reads "line 3: cannot read
// !!seq `[a]` as a string".
var yamlTypeWords = strings.NewReplacer(
	"cannot unmarshal", "cannot read",
	" into string", " as a string",
	" into []yaml.Node", " as a list",
	" into beat.entryFile", " as a mapping",
	" into beat.scheduleFile", " as a mapping",
)

func yamlError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	return errors.New(yamlTypeWords.Replace(te.Errors[0]))
}

var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func parseCron(spec string, loc *time.Location) (cron.Schedule, error) {
	if strings.HasPrefix(spec, "@every") {
		return nil, errors.New("@every counts from when the process started, so two beats would disagree: use the every field instead")
	}
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		return nil, errors.New("put the time zone in the timezone field, not in the spec")
	}
	s, err := cronParser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("%w (use 5 fields: minute hour day-of-month month day-of-week, an optional leading seconds field, or @hourly, @daily ...)", err)
	}
	if ss, ok := s.(*cron.SpecSchedule); ok {
		ss.Location = loc
	}
	return s, nil
}

func parseEvery(v any) (time.Duration, error) {
	var d time.Duration
	switch x := v.(type) {
	case string:
		var err error
		if d, err = time.ParseDuration(x); err != nil {
			return 0, fmt.Errorf("%q is not a duration: use Go syntax such as 30s, 5m or 1h30m", x)
		}
	case int:
		d = time.Duration(x) * time.Second
	default:
		return 0, fmt.Errorf("%v: expected a duration such as 30s, 5m or 1h30m", v)
	}
	if d < time.Second {
		return 0, fmt.Errorf("%v is under 1s: the shortest interval is 1s", d)
	}
	if d%time.Second != 0 {
		return 0, fmt.Errorf("%v is not a whole number of seconds", d)
	}
	return d, nil
}

// toJSON turns a decoded YAML value into JSON.
func toJSON(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("cannot be written as JSON: %w", err)
	}
	return json.RawMessage(bytes.TrimSpace(buf.Bytes())), nil
}

// Next returns the first tick of the entry strictly after t. Intervals are
// aligned to the Unix epoch, so every beat process computes the same ticks.
func (e *Entry) Next(t time.Time) time.Time {
	if e.sched != nil {
		return e.sched.Next(t.In(e.loc))
	}
	n := t.UnixNano() / int64(e.Every)
	return time.Unix(0, (n+1)*int64(e.Every)).In(e.loc)
}

// RunID is the task (or workflow) id of the entry's run at tick: the same in
// every beat process, so a run is enqueued once however many beats run.
func (e *Entry) RunID(tick time.Time) string {
	return fmt.Sprintf("beat-%s-%d", e.Name, tick.Unix())
}

// Spec describes the entry's timing, for logs.
func (e *Entry) Spec() string {
	if e.Cron != "" {
		return "cron " + e.Cron + " " + e.Timezone
	}
	return "every " + e.Every.String()
}

// CheckKinds reports the first task kind, in a task or a canvas, that is not
// in known.
func (s *Schedule) CheckKinds(known []string) error {
	check := func(e *Entry, field, kind string) error {
		if slices.Contains(known, kind) {
			return nil
		}
		return fmt.Errorf("entries %q: %s: unknown task kind %q (known: %s)", e.Name, field, kind, strings.Join(known, ", "))
	}
	for _, e := range s.Entries {
		if e.Task != "" {
			if err := check(e, "task", e.Task); err != nil {
				return err
			}
			continue
		}
		cv, err := chain.Parse(e.Canvas)
		if err != nil {
			return fmt.Errorf("entries %q: canvas: %w", e.Name, err)
		}
		if err := chain.Walk(cv, func(path string, sig *chain.Signature) error {
			return check(e, "canvas "+path+".task", sig.Kind)
		}); err != nil {
			return err
		}
	}
	return nil
}
