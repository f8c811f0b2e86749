package config

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Flow-control settings: fleet-wide limits that workers enforce through
// Redis (see the README's "Flow control"). Their types are pflag.Values, so
// they work as variables and as flags alike.

// Rate is a rate limit as written in a setting: "10/s", "60/m", "5/10s" or
// "1000/h", optionally with a burst: "10/s:20". The zero Rate is off.
type Rate struct {
	N     int           // tasks per Per
	Per   time.Duration // the period
	Burst int           // how many may start at once; 0 means 1
}

const rateExample = `use e.g. 10/s, 60/m, 5/10s or 1000/h (":N" adds a burst: 10/s:20)`

// ParseRate reads "N/unit[:burst]"; unit is s, m, h or a Go duration ("10s").
// An empty string is the zero Rate (off).
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Rate{}, nil
	}
	spec, burst, hasBurst := strings.Cut(s, ":")
	n, per, ok := strings.Cut(spec, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q has no '/': %s", s, rateExample)
	}
	var r Rate
	var err error
	if r.N, err = strconv.Atoi(strings.TrimSpace(n)); err != nil || r.N < 1 {
		return Rate{}, fmt.Errorf("rate %q: %q is not a whole number >= 1: %s", s, n, rateExample)
	}
	switch per = strings.TrimSpace(per); per {
	case "s", "sec", "second":
		r.Per = time.Second
	case "m", "min", "minute":
		r.Per = time.Minute
	case "h", "hour":
		r.Per = time.Hour
	default:
		if r.Per, err = time.ParseDuration(per); err != nil || r.Per <= 0 {
			return Rate{}, fmt.Errorf("rate %q: period %q is not s, m, h or a positive duration: %s", s, per, rateExample)
		}
	}
	if hasBurst {
		if r.Burst, err = strconv.Atoi(strings.TrimSpace(burst)); err != nil || r.Burst < 1 {
			return Rate{}, fmt.Errorf("rate %q: burst %q is not a whole number >= 1: %s", s, burst, rateExample)
		}
	}
	return r, nil
}

// String writes the rate as ParseRate reads it ("" when off).
func (r Rate) String() string {
	if r.N == 0 {
		return ""
	}
	var per string
	switch r.Per {
	case time.Second:
		per = "s"
	case time.Minute:
		per = "m"
	case time.Hour:
		per = "h"
	default:
		per = formatDuration(r.Per)
	}
	s := strconv.Itoa(r.N) + "/" + per
	if r.Burst > 0 {
		s += ":" + strconv.Itoa(r.Burst)
	}
	return s
}

// Set implements pflag.Value.
func (r *Rate) Set(s string) error { return setParsed(r, ParseRate, s) }

// Type implements pflag.Value.
func (r *Rate) Type() string { return "rate" }

// RateLimits maps task kinds to their fleet-wide rate limit:
// "fetch=10/s,analyze=60/m:5".
type RateLimits map[string]Rate

// ParseRateLimits reads "kind=rate,kind=rate".
func ParseRateLimits(s string) (RateLimits, error) {
	const example = "use e.g. fetch=10/s,analyze=60/m (\":N\" adds a burst: fetch=10/s:20)"
	m := RateLimits{}
	err := parseList(s, "kind", example, false, func(kind, v string, _ bool) error {
		r, err := ParseRate(v)
		if err == nil && r.N == 0 {
			err = fmt.Errorf("kind %q has no rate; %s", kind, example)
		}
		m[kind] = r
		return err
	})
	return m, err
}

// parseList reads "name=value,name=value" (BATON_QUEUES, the limits),
// calling set for each entry with its value trimmed; noun ("queue", "kind")
// names the entries in errors. With bare, a name alone ("default,llm") is
// an entry without a value. Empty entries ("a,b,") are skipped.
func parseList(s, noun, example string, bare bool, set func(name, value string, hasValue bool) error) error {
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, v, ok := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		switch {
		case !ok && !bare:
			return fmt.Errorf("%q is not %s=value; %s", part, noun, example)
		case name == "":
			return fmt.Errorf("%q has no %s name; %s", part, noun, example)
		case seen[name]:
			return fmt.Errorf("%s %q is listed twice; %s", noun, name, example)
		}
		seen[name] = true
		if err := set(name, strings.TrimSpace(v), ok); err != nil {
			return err
		}
	}
	return nil
}

func (m RateLimits) String() string { return formatKindList(m, Rate.String) }

// Set implements pflag.Value.
func (m *RateLimits) Set(s string) error { return setParsed(m, ParseRateLimits, s) }

// formatKindList writes "kind=value,..." sorted by kind.
func formatKindList[V any](m map[string]V, format func(V) string) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+format(m[k]))
	}
	return strings.Join(parts, ",")
}

// setParsed stores parse(s) in *dst, or leaves it and returns the error.
func setParsed[T any](dst *T, parse func(string) (T, error), s string) error {
	v, err := parse(s)
	if err != nil {
		return err
	}
	*dst = v
	return nil
}

// Type implements pflag.Value.
func (m *RateLimits) Type() string { return "limits" }

// ConcurrencyLimits maps task kinds to how many may run at once across the
// fleet: "analyze=4".
type ConcurrencyLimits map[string]int

// ParseConcurrencyLimits reads "kind=N,kind=N".
func ParseConcurrencyLimits(s string) (ConcurrencyLimits, error) {
	const example = "use e.g. analyze=4,fetch=20"
	m := ConcurrencyLimits{}
	err := parseList(s, "kind", example, false, func(kind, v string, _ bool) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("kind %q: %q is not a whole number >= 1; %s", kind, v, example)
		}
		m[kind] = n
		return nil
	})
	return m, err
}

func (m ConcurrencyLimits) String() string { return formatKindList(m, strconv.Itoa) }

// Set implements pflag.Value.
func (m *ConcurrencyLimits) Set(s string) error { return setParsed(m, ParseConcurrencyLimits, s) }

// Type implements pflag.Value.
func (m *ConcurrencyLimits) Type() string { return "limits" }

// validateLimits checks the flow-control settings (values set in code
// rather than parsed).
func (c *Config) validateLimits(bad func(ptr any, why string)) {
	for _, k := range slices.Sorted(maps.Keys(c.RateLimits)) {
		if err := c.RateLimits[k].check(); err != nil || k == "" {
			bad(&c.RateLimits, fmt.Sprintf("kind %q: every kind needs a name and a rate; %s", k, rateExample))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.ConcurrencyLimits)) {
		if n := c.ConcurrencyLimits[k]; n < 1 || k == "" {
			bad(&c.ConcurrencyLimits, fmt.Sprintf("kind %q: at most %d running: every kind needs a name and a limit >= 1; use e.g. analyze=4", k, n))
		}
	}
	if c.FetchPerHost.N != 0 {
		if err := c.FetchPerHost.check(); err != nil {
			bad(&c.FetchPerHost, err.Error()+"; "+rateExample+", or leave it empty for no limit")
		}
	}
	if c.LLMTokensPerMinute < 0 {
		bad(&c.LLMTokensPerMinute, "must be >= 0 (tokens per minute per model; 0 for no budget); use e.g. 200000")
	}
}

func (r Rate) check() error {
	if r.N < 1 || r.Per <= 0 || r.Burst < 0 {
		return errors.New("a rate needs N >= 1, a positive period and a burst >= 0")
	}
	return nil
}
