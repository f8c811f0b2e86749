package beat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
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

var entryFields = []string{"name", "cron", "every", "timezone", "task", "args", "options", "canvas"}

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
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not valid YAML or JSON: %w", err)
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, errors.New(`expected a mapping with "entries" (and optionally "timezone") at the top`)
	}
	for k := range top {
		if k != "entries" && k != "timezone" {
			return nil, fmt.Errorf("unknown top-level field %q (known: timezone, entries)", k)
		}
	}
	s := &Schedule{}
	if v, ok := top["timezone"]; ok {
		tz, ok := v.(string)
		if !ok {
			return nil, errors.New("timezone: expected a string such as UTC or Europe/Paris")
		}
		if _, err := time.LoadLocation(tz); err != nil {
			return nil, fmt.Errorf("timezone: unknown time zone %q: use an IANA name such as UTC or Europe/Paris", tz)
		}
		s.Timezone = tz
	}
	list, ok := top["entries"].([]any)
	if !ok {
		return nil, errors.New(`entries: expected a list of entries`)
	}
	if len(list) == 0 {
		return nil, errors.New("entries: the list is empty: nothing to schedule")
	}
	seen := map[string]int{}
	for i, raw := range list {
		e, err := parseEntry(raw, s.Timezone)
		if err != nil {
			where := fmt.Sprintf("entries[%d]", i)
			if m, ok := raw.(map[string]any); ok {
				if n, ok := m["name"].(string); ok && n != "" {
					where += fmt.Sprintf(" %q", n)
				}
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

func parseEntry(raw any, defTZ string) (*Entry, error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, errors.New("expected a mapping with name, cron or every, and task or canvas")
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(entryFields, k) {
			return nil, fmt.Errorf("unknown field %q (known: %s)", k, strings.Join(entryFields, ", "))
		}
	}
	e := &Entry{}
	str := func(field string) (string, error) {
		v, ok := m[field]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%s: expected a string, got %v", field, v)
		}
		return s, nil
	}
	var err error
	if e.Name, err = str("name"); err != nil {
		return nil, err
	}
	if e.Name == "" {
		return nil, errors.New("name: missing")
	}
	if !nameRE.MatchString(e.Name) {
		return nil, fmt.Errorf("name: %q: use 1 to 100 letters, digits, '-' and '_' (it is part of every run's task id)", e.Name)
	}

	if e.Timezone, err = str("timezone"); err != nil {
		return nil, err
	}
	if e.Timezone == "" {
		e.Timezone = defTZ
	}
	if e.Timezone == "" {
		e.Timezone = "UTC"
	}
	if e.loc, err = time.LoadLocation(e.Timezone); err != nil {
		return nil, fmt.Errorf("timezone: unknown time zone %q: use an IANA name such as UTC or Europe/Paris", e.Timezone)
	}

	if e.Cron, err = str("cron"); err != nil {
		return nil, err
	}
	every, hasEvery := m["every"]
	switch {
	case e.Cron != "" && hasEvery:
		return nil, errors.New("cron and every: give one of them, not both")
	case e.Cron == "" && !hasEvery:
		return nil, errors.New(`cron or every: missing; e.g. cron: "*/5 * * * *" or every: 30s`)
	case e.Cron != "":
		if e.sched, err = parseCron(e.Cron, e.loc); err != nil {
			return nil, fmt.Errorf("cron: %q: %w", e.Cron, err)
		}
	default:
		if e.Every, err = parseEvery(every); err != nil {
			return nil, fmt.Errorf("every: %w", err)
		}
	}

	if e.Task, err = str("task"); err != nil {
		return nil, err
	}
	_, hasCanvas := m["canvas"]
	switch {
	case e.Task != "" && hasCanvas:
		return nil, errors.New("task and canvas: give one of them, not both")
	case e.Task == "" && !hasCanvas:
		return nil, errors.New("task or canvas: missing; give a task kind (with args) or a JSON canvas")
	case hasCanvas:
		for _, f := range []string{"args", "options"} {
			if _, ok := m[f]; ok {
				return nil, fmt.Errorf("%s: not allowed with canvas; put args and options on the canvas's tasks", f)
			}
		}
		if e.Canvas, err = toJSON(m["canvas"]); err != nil {
			return nil, fmt.Errorf("canvas: %w", err)
		}
		if _, err := chain.Parse(e.Canvas); err != nil {
			return nil, fmt.Errorf("canvas: %w", err)
		}
	default:
		if v, ok := m["args"]; ok {
			if e.Args, err = toJSON(v); err != nil {
				return nil, fmt.Errorf("args: %w", err)
			}
		}
		if v, ok := m["options"]; ok {
			raw, err := toJSON(v)
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
