package baton

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// The JSON form of EnqueueOpts (in JSON canvases, schedules and the CLI)
// writes durations as Go duration strings ("200ms", "1h") and times as
// RFC 3339:
//
//	{"queue": "llm", "max_retries": 3, "retry_delay": "2s",
//	 "timeout": "5m", "countdown": "10s", "eta": "2026-01-02T15:04:05Z",
//	 "expires": "2026-01-02T16:00:00Z", "expires_in": "1h", "limit_key": "tenant-7"}
//
// retry_delay is a duration (a fixed delay) or an object
// {"delay": "1s", "max": "10m", "fixed": false, "no_jitter": false}.

type optsJSON struct {
	ID         string          `json:"id,omitempty"`
	Queue      string          `json:"queue,omitempty"`
	MaxRetries *int            `json:"max_retries,omitempty"`
	RetryDelay json.RawMessage `json:"retry_delay,omitempty"`
	Timeout    string          `json:"timeout,omitempty"`
	Countdown  string          `json:"countdown,omitempty"`
	ETA        *time.Time      `json:"eta,omitempty"`
	Expires    *time.Time      `json:"expires,omitempty"`
	ExpiresIn  string          `json:"expires_in,omitempty"`
	LimitKey   string          `json:"limit_key,omitempty"`
}

type policyJSON struct {
	Delay    string `json:"delay,omitempty"`
	Max      string `json:"max,omitempty"`
	Fixed    bool   `json:"fixed,omitempty"`
	NoJitter bool   `json:"no_jitter,omitempty"`
}

func durStr(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// MarshalJSON writes the JSON form described above.
func (o EnqueueOpts) MarshalJSON() ([]byte, error) {
	j := optsJSON{ID: o.ID, Queue: o.Queue, MaxRetries: o.MaxRetries, Timeout: durStr(o.Timeout),
		Countdown: durStr(o.Countdown), ExpiresIn: durStr(o.ExpiresIn), LimitKey: o.LimitKey}
	if !o.ETA.IsZero() {
		j.ETA = &o.ETA
	}
	if !o.Expires.IsZero() {
		j.Expires = &o.Expires
	}
	if o.RetryDelay != nil {
		b, err := json.Marshal(o.RetryDelay)
		if err != nil {
			return nil, err
		}
		j.RetryDelay = b
	}
	return json.Marshal(j)
}

// MarshalJSON writes a policy with duration strings.
func (p RetryPolicy) MarshalJSON() ([]byte, error) {
	return json.Marshal(policyJSON{Delay: durStr(p.Delay), Max: durStr(p.Max), Fixed: p.Fixed, NoJitter: p.NoJitter})
}

// UnmarshalJSON reads a duration string (a fixed delay) or a policy object.
func (p *RetryPolicy) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		d, err := parseDur("retry_delay", s)
		if err != nil {
			return err
		}
		*p = RetryPolicy{Delay: d, Fixed: true}
		return nil
	}
	var j policyJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("retry_delay: expected a duration such as \"2s\" or {\"delay\": \"1s\", \"max\": \"10m\"}: %w", err)
	}
	d, err := parseDur("retry_delay.delay", j.Delay)
	if err != nil {
		return err
	}
	m, err := parseDur("retry_delay.max", j.Max)
	if err != nil {
		return err
	}
	*p = RetryPolicy{Delay: d, Max: m, Fixed: j.Fixed, NoJitter: j.NoJitter}
	return nil
}

// UnmarshalJSON reads the JSON form described above; unknown fields are errors.
func (o *EnqueueOpts) UnmarshalJSON(b []byte) error {
	var j optsJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("options: %w (known: id, queue, max_retries, retry_delay, timeout, countdown, eta, expires, expires_in, limit_key)", err)
	}
	out := EnqueueOpts{ID: j.ID, Queue: j.Queue, MaxRetries: j.MaxRetries, LimitKey: j.LimitKey}
	var err error
	if out.Timeout, err = parseDur("timeout", j.Timeout); err != nil {
		return err
	}
	if out.Countdown, err = parseDur("countdown", j.Countdown); err != nil {
		return err
	}
	if out.ExpiresIn, err = parseDur("expires_in", j.ExpiresIn); err != nil {
		return err
	}
	if j.ETA != nil {
		out.ETA = *j.ETA
	}
	if j.Expires != nil {
		out.Expires = *j.Expires
	}
	if len(j.RetryDelay) > 0 {
		var p RetryPolicy
		if err := json.Unmarshal(j.RetryDelay, &p); err != nil {
			return err
		}
		out.RetryDelay = &p
	}
	*o = out
	return nil
}

func parseDur(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a duration: write it like \"500ms\", \"30s\" or \"5m\"", field, s)
	}
	if d > 0 && d < time.Millisecond {
		return 0, fmt.Errorf("%s: %q is under 1ms: durations count in whole milliseconds; write at least \"1ms\", or leave it out for the default", field, s)
	}
	return d, nil
}
