// Package config holds baton's settings: one Config struct read from the
// environment, overridable by command-line flags, with documented defaults
// and a Validate method whose errors say which variable is wrong and how to
// fix it.
//
// The usual order is environment, then flags, then validation:
//
//	cfg, err := config.FromEnv()          // defaults, overridden by BATON_* etc.
//	if err != nil { ... }
//	cfg.BindFlags(fs)                     // flags default to the env values
//	_ = fs.Parse(os.Args[1:])             // so a flag beats its variable
//	if err := cfg.Validate(); err != nil { ... }
//
// An environment variable that is set but empty counts as unset. Durations
// use Go syntax (30s, 5m, 24h); byte sizes accept a plain number of bytes or
// a unit (512KiB, 10MiB, 1GB). Vars lists every variable with its default.
//
// Config never prints OPENAI_API_KEY or a Redis password: String, GoString
// and LogValue redact them.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"

	"github.com/batonhq/baton/internal/defaults"
)

// Defaults of the Config fields that are not zero. Those a library user
// meets too (baton.WorkerOptions, tasks.FetchConfig, tasks.LLMConfig) come
// from one place, so that `baton worker` and NewWorker agree.
const (
	RedisURLDefault           = "redis://127.0.0.1:6379/0"
	RedisDialTimeoutDefault   = 5 * time.Second
	ResultTTLDefault          = defaults.ResultTTL
	ConcurrencyDefault        = defaults.Concurrency
	ShutdownTimeoutDefault    = defaults.ShutdownTimeout
	LogLevelDefault           = "info"
	LogFormatDefault          = "text"
	FetchTimeoutDefault       = defaults.FetchTimeout
	FetchMaxBodyDefault       = int64(defaults.FetchMaxBody)
	FetchUserAgentDefault     = defaults.FetchUserAgent
	FetchRetryDelayDefault    = defaults.FetchRetryDelay
	FetchRetryAfterCapDefault = defaults.FetchRetryAfterCap
	ModelDefault              = defaults.LLMModel
	LLMTimeoutDefault         = defaults.LLMTimeout
	SystemPromptDefault       = defaults.SystemPrompt
	MaxInputCharsDefault      = defaults.MaxInputChars
	LLMCacheTTLDefault        = defaults.LLMCacheTTL
	MaxCanvasTasksDefault     = defaults.MaxCanvasTasks
	MaxCanvasBytesDefault     = int64(defaults.MaxCanvasBytes)
)

// QueuesDefault is the default of BATON_QUEUES, "default=6,llm=3,low=1",
// the queues a baton.Worker serves when none are given.
var QueuesDefault = FormatQueues(defaults.Queues())

// Config is every setting baton reads. Build it with Default or FromEnv.
type Config struct {
	// RedisURL selects the Redis (REDIS_URL): redis://, rediss://,
	// redis-sentinel://...?master=NAME, redis-cluster:// or a host:port
	// list; see ParseRedisURL. Defaults to RedisURLDefault.
	RedisURL string
	// RedisDialTimeout bounds dialing, reading and writing to Redis, and
	// each whole call made through NewRedisClient (go-redis's retries and
	// the wait for a pooled connection included), so a producer learns
	// quickly that Redis is down or hung (BATON_REDIS_TIMEOUT). Defaults to
	// 5s.
	RedisDialTimeout time.Duration
	// ResultTTL is how long task results stay in the backend
	// (BATON_RESULT_TTL). Defaults to 24h.
	ResultTTL time.Duration

	// Concurrency is how many tasks a worker process runs at once
	// (BATON_CONCURRENCY). Defaults to 10.
	Concurrency int
	// Queues maps the queues a worker serves to their weights
	// (BATON_QUEUES, "default=6,llm=3,low=1"; a bare name has weight 1).
	// Defaults to {"default": 6, "llm": 3, "low": 1}: research fetches run on default, LLM calls on llm.
	Queues map[string]int
	// StrictPriority makes a worker drain higher-weight queues first instead
	// of sampling by weight (BATON_STRICT_PRIORITY). Defaults to false.
	StrictPriority bool
	// ShutdownTimeout is how long in-flight tasks get to finish after
	// SIGTERM before they go back to the queue (BATON_SHUTDOWN_TIMEOUT).
	// Defaults to 30s.
	ShutdownTimeout time.Duration
	// LogLevel is debug, info, warn or error (BATON_LOG_LEVEL). Defaults to
	// info.
	LogLevel string
	// LogFormat is text or json (BATON_LOG_FORMAT). Defaults to text.
	LogFormat string

	// FetchTimeout bounds one HTTP fetch (BATON_FETCH_TIMEOUT). Defaults to
	// 30s.
	FetchTimeout time.Duration
	// FetchMaxBody caps a fetched body, in bytes (BATON_FETCH_MAX_BYTES).
	// Defaults to 10 MiB.
	FetchMaxBody int64
	// FetchAllowPrivate lets fetches reach private (RFC 1918, ULA, CGNAT)
	// and loopback addresses, refused by default so that whoever can
	// enqueue a fetch cannot reach Redis or internal services
	// (BATON_FETCH_ALLOW_PRIVATE). Link-local and metadata addresses are
	// refused always. Defaults to false.
	FetchAllowPrivate bool
	// FetchUserAgent is the User-Agent of fetches (BATON_FETCH_USER_AGENT).
	// Defaults to FetchUserAgentDefault.
	FetchUserAgent string
	// FetchRetryDelay is the wait before retrying a failed fetch that gave
	// no Retry-After (BATON_FETCH_RETRY_DELAY). Defaults to 60s.
	FetchRetryDelay time.Duration
	// FetchRetryAfterCap caps how long an upstream Retry-After can delay a
	// retry (BATON_FETCH_RETRY_AFTER_CAP). Defaults to 10m.
	FetchRetryAfterCap time.Duration

	// OpenAIAPIKey authenticates to the chat-completion endpoint
	// (OPENAI_API_KEY; environment only, never a flag, never printed).
	// Defaults to "".
	OpenAIAPIKey string
	// OpenAIBaseURL is an OpenAI-compatible endpoint such as
	// http://localhost:11434/v1 (OPENAI_BASE_URL). Defaults to "" (the
	// OpenAI API).
	OpenAIBaseURL string
	// Model is the chat model (BATON_MODEL). Defaults to gpt-4o-mini.
	Model string
	// LLMTimeout bounds one model call (BATON_LLM_TIMEOUT). Defaults to 5m.
	LLMTimeout time.Duration
	// SystemPrompt is the analyze task's system prompt
	// (BATON_SYSTEM_PROMPT). Defaults to SystemPromptDefault.
	SystemPrompt string
	// MaxInputChars caps the characters of data sent to the model
	// (BATON_LLM_MAX_INPUT_CHARS). Defaults to 60000.
	MaxInputChars int
	// LLMCacheTTL is how long model responses are cached, so a re-run does
	// not pay twice (BATON_LLM_CACHE_TTL). Defaults to 168h.
	LLMCacheTTL time.Duration

	// MetricsAddr is the listen address of the metrics endpoint, e.g. :9090
	// (BATON_METRICS_ADDR). Defaults to "" (off).
	MetricsAddr string

	// RateLimits are fleet-wide rate limits per task kind, enforced by
	// workers through Redis (BATON_RATE_LIMITS, "fetch=10/s,analyze=60/m";
	// ":N" sets a burst). Defaults to none.
	RateLimits RateLimits
	// ConcurrencyLimits cap how many tasks of a kind run at once across the
	// fleet (BATON_CONCURRENCY_LIMITS, "analyze=4"). Defaults to none.
	ConcurrencyLimits ConcurrencyLimits
	// LLMTokensPerMinute is the analyze task's token budget per model per
	// minute, fleet-wide: estimated before each call, corrected with the
	// usage the provider reports (BATON_LLM_TOKENS_PER_MINUTE). Defaults to
	// 0 (none).
	LLMTokensPerMinute int
	// FetchPerHost is a fleet-wide rate limit of fetches per URL host
	// (BATON_FETCH_PER_HOST, e.g. "2/s"). Defaults to off.
	FetchPerHost Rate

	// MaxCanvasTasks caps the tasks of one submitted canvas
	// (BATON_MAX_CANVAS_TASKS). Defaults to 100000.
	MaxCanvasTasks int
	// MaxCanvasBytes caps the encoded plan of one submitted canvas, in
	// bytes (BATON_MAX_CANVAS_BYTES). Defaults to 64 MiB.
	MaxCanvasBytes int64

	// legacyDenyPrivate is where FETCH_DENY_PRIVATE (or the hidden
	// --fetch-deny-private) was set, e.g. "FETCH_DENY_PRIVATE=true":
	// replaced by BATON_FETCH_ALLOW_PRIVATE, it fails Validate.
	legacyDenyPrivate string
}

// Replaced settings: still read, so that Validate can say what took their
// place instead of silently ignoring them.
const (
	legacyDenyPrivateEnv  = "FETCH_DENY_PRIVATE"
	legacyDenyPrivateFlag = "fetch-deny-private"
)

// Var documents one environment variable.
type Var struct {
	Name    string // e.g. "BATON_RESULT_TTL"
	Flag    string // e.g. "--result-ttl"; "" when the variable has no flag
	Default string // the default as it would be written in the variable
	Doc     string // one sentence
}

// Vars lists every environment variable Config reads, in a stable order.
var Vars = buildVars()

// field ties a Config field to its variable, flag and doc. ptr points into
// one Config; its type says how the value is parsed.
type field struct {
	name   string // Go field name
	env    string
	flag   string
	doc    string
	ptr    any
	secret bool
}

func (c *Config) fields() []field {
	return []field{
		{"RedisURL", "REDIS_URL", "redis-url", "Redis to use: redis://, rediss://, redis-sentinel://h1:p1,h2:p2/0?master=NAME, redis-cluster://h1:p1,h2:p2 or h1:p1,h2:p2.", &c.RedisURL, false},
		{"RedisDialTimeout", "BATON_REDIS_TIMEOUT", "redis-timeout", "Dial, read and write timeout for Redis; bounds each whole call (retries and the wait for a connection included) when Redis is down or hung.", &c.RedisDialTimeout, false},
		{"ResultTTL", "BATON_RESULT_TTL", "result-ttl", "How long task results are kept.", &c.ResultTTL, false},
		{"Concurrency", "BATON_CONCURRENCY", "concurrency", "Tasks a worker process runs at once.", &c.Concurrency, false},
		{"Queues", "BATON_QUEUES", "queues", "Queues a worker serves with their weights, e.g. default=6,llm=3,low=1 (a bare name has weight 1).", &c.Queues, false},
		{"StrictPriority", "BATON_STRICT_PRIORITY", "strict-priority", "Drain higher-weight queues first instead of sampling by weight.", &c.StrictPriority, false},
		{"ShutdownTimeout", "BATON_SHUTDOWN_TIMEOUT", "shutdown-timeout", "Time in-flight tasks get to finish after SIGTERM before they go back to the queue.", &c.ShutdownTimeout, false},
		{"LogLevel", "BATON_LOG_LEVEL", "log-level", "Log level: debug, info, warn or error.", &c.LogLevel, false},
		{"LogFormat", "BATON_LOG_FORMAT", "log-format", "Log format: text or json.", &c.LogFormat, false},
		{"FetchTimeout", "BATON_FETCH_TIMEOUT", "fetch-timeout", "Timeout of one HTTP fetch.", &c.FetchTimeout, false},
		{"FetchMaxBody", "BATON_FETCH_MAX_BYTES", "fetch-max-bytes", "Largest body a fetch reads, in bytes or with a unit (10MiB).", &c.FetchMaxBody, false},
		{"FetchAllowPrivate", "BATON_FETCH_ALLOW_PRIVATE", "fetch-allow-private", "Let fetches reach private and loopback addresses, refused by default (link-local and metadata addresses are always refused).", &c.FetchAllowPrivate, false},
		{"FetchUserAgent", "BATON_FETCH_USER_AGENT", "fetch-user-agent", "User-Agent header of fetches.", &c.FetchUserAgent, false},
		{"FetchRetryDelay", "BATON_FETCH_RETRY_DELAY", "fetch-retry-delay", "Wait before retrying a failed fetch that gave no Retry-After.", &c.FetchRetryDelay, false},
		{"FetchRetryAfterCap", "BATON_FETCH_RETRY_AFTER_CAP", "fetch-retry-after-cap", "Longest upstream Retry-After honoured.", &c.FetchRetryAfterCap, false},
		{"OpenAIAPIKey", "OPENAI_API_KEY", "", "API key of the chat-completion endpoint (environment only; never printed).", &c.OpenAIAPIKey, true},
		{"OpenAIBaseURL", "OPENAI_BASE_URL", "openai-base-url", "OpenAI-compatible endpoint, e.g. http://localhost:11434/v1; empty means the OpenAI API.", &c.OpenAIBaseURL, false},
		{"Model", "BATON_MODEL", "model", "Chat model used by the analyze task.", &c.Model, false},
		{"LLMTimeout", "BATON_LLM_TIMEOUT", "llm-timeout", "Timeout of one model call.", &c.LLMTimeout, false},
		{"SystemPrompt", "BATON_SYSTEM_PROMPT", "system-prompt", "System prompt of the analyze task.", &c.SystemPrompt, false},
		{"MaxInputChars", "BATON_LLM_MAX_INPUT_CHARS", "llm-max-input-chars", "Most characters of collected data sent to the model.", &c.MaxInputChars, false},
		{"LLMCacheTTL", "BATON_LLM_CACHE_TTL", "llm-cache-ttl", "How long model responses are cached so a re-run does not pay twice.", &c.LLMCacheTTL, false},
		{"MetricsAddr", "BATON_METRICS_ADDR", "metrics-addr", "Listen address of the metrics endpoint, e.g. :9090; empty turns it off.", &c.MetricsAddr, false},
		{"RateLimits", "BATON_RATE_LIMITS", "rate-limits", "Fleet-wide rate limits per task kind, e.g. fetch=10/s,analyze=60/m (':N' sets a burst: fetch=10/s:20); empty for none.", &c.RateLimits, false},
		{"ConcurrencyLimits", "BATON_CONCURRENCY_LIMITS", "concurrency-limits", "Fleet-wide limits on tasks of a kind running at once, e.g. analyze=4; empty for none.", &c.ConcurrencyLimits, false},
		{"LLMTokensPerMinute", "BATON_LLM_TOKENS_PER_MINUTE", "llm-tokens-per-minute", "Fleet-wide token budget of the analyze task per model per minute (estimated before each call, corrected with the reported usage); 0 for none.", &c.LLMTokensPerMinute, false},
		{"FetchPerHost", "BATON_FETCH_PER_HOST", "fetch-per-host", "Fleet-wide rate limit of fetches per URL host, e.g. 2/s; empty for none.", &c.FetchPerHost, false},
		{"MaxCanvasTasks", "BATON_MAX_CANVAS_TASKS", "max-canvas-tasks", "Most tasks one submitted canvas may hold; a larger one is refused before anything is written.", &c.MaxCanvasTasks, false},
		{"MaxCanvasBytes", "BATON_MAX_CANVAS_BYTES", "max-canvas-bytes", "Largest encoded plan of one submitted canvas, in bytes or with a unit; a larger one is refused before anything is written.", &c.MaxCanvasBytes, false},
	}
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		RedisURL:           RedisURLDefault,
		RedisDialTimeout:   RedisDialTimeoutDefault,
		ResultTTL:          ResultTTLDefault,
		Concurrency:        ConcurrencyDefault,
		Queues:             defaults.Queues(),
		ShutdownTimeout:    ShutdownTimeoutDefault,
		LogLevel:           LogLevelDefault,
		LogFormat:          LogFormatDefault,
		FetchTimeout:       FetchTimeoutDefault,
		FetchMaxBody:       FetchMaxBodyDefault,
		FetchUserAgent:     FetchUserAgentDefault,
		FetchRetryDelay:    FetchRetryDelayDefault,
		FetchRetryAfterCap: FetchRetryAfterCapDefault,
		Model:              ModelDefault,
		LLMTimeout:         LLMTimeoutDefault,
		SystemPrompt:       SystemPromptDefault,
		MaxInputChars:      MaxInputCharsDefault,
		LLMCacheTTL:        LLMCacheTTLDefault,
		MaxCanvasTasks:     MaxCanvasTasksDefault,
		MaxCanvasBytes:     MaxCanvasBytesDefault,
	}
}

// FromEnv returns Default overridden by the environment variables in Vars.
// A variable that does not parse is reported by name, with an example of a
// valid value; the errors of all variables are joined, and the other
// variables still apply. FromEnv does not validate: call Validate after
// applying flags.
func FromEnv() (Config, error) {
	return fromLookup(os.LookupEnv)
}

func fromLookup(lookup func(string) (string, bool)) (Config, error) {
	c := Default()
	if v, ok := lookup(legacyDenyPrivateEnv); ok && strings.TrimSpace(v) != "" {
		c.legacyDenyPrivate = legacyDenyPrivateEnv + "=" + strings.TrimSpace(v)
	}
	var errs []error
	for _, f := range c.fields() {
		raw, ok := lookup(f.env)
		if !ok || strings.TrimSpace(raw) == "" {
			continue
		}
		if err := setField(f.ptr, raw); err != nil {
			shown := strconv.Quote(raw)
			if f.secret {
				shown = "(redacted)"
			} else if f.env == "REDIS_URL" {
				shown = strconv.Quote(RedactRedisURL(raw))
			}
			errs = append(errs, fmt.Errorf("%s=%s: %w", f.env, shown, err))
		}
	}
	return c, errors.Join(errs...)
}

// setField parses raw into *ptr, or says what a valid value looks like.
func setField(ptr any, raw string) error {
	s := strings.TrimSpace(raw)
	switch p := ptr.(type) {
	case *string:
		*p = raw // keep spaces: they may matter in a prompt or a key
	case *int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return errors.New("not an integer; use e.g. 10")
		}
		*p = n
	case *int64:
		n, err := ParseBytes(s)
		if err != nil {
			return err
		}
		*p = n
	case *bool:
		b, err := ParseBool(s)
		if err != nil {
			return err
		}
		*p = b
	case *time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("not a duration; use e.g. 30s, 5m or 24h")
		}
		*p = d
	case *map[string]int:
		q, err := ParseQueues(s)
		if err != nil {
			return err
		}
		*p = q
	case pflag.Value:
		return p.Set(s)
	default:
		panic(fmt.Sprintf("config: no parser for %T", ptr))
	}
	return nil
}

// ParseBool reads a boolean setting: true, t, yes, y, on or 1, and false,
// f, no, n, off or 0, in any case. Every boolean variable baton reads takes
// these forms.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "t", "true", "yes", "y", "on":
		return true, nil
	case "0", "f", "false", "no", "n", "off":
		return false, nil
	}
	return false, errors.New("not a boolean; use true or false")
}

// BindFlags registers a flag for every setting except OPENAI_API_KEY (flags
// show up in ps). Each flag writes into c and defaults to c's current value,
// so calling it after FromEnv makes a flag override its variable.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	for _, f := range c.fields() {
		if f.flag == "" {
			continue
		}
		usage := strings.TrimSuffix(f.doc, ".") + " (env " + f.env + ")"
		switch p := f.ptr.(type) {
		case *string:
			fs.StringVar(p, f.flag, *p, usage)
		case *int:
			fs.IntVar(p, f.flag, *p, usage)
		case *bool:
			fs.BoolVar(p, f.flag, *p, usage)
		case *time.Duration:
			fs.DurationVar(p, f.flag, *p, usage)
		case *int64:
			fs.Var((*bytesValue)(p), f.flag, usage)
		case *map[string]int:
			fs.Var((*queuesValue)(p), f.flag, usage)
		case pflag.Value:
			fs.Var(p, f.flag, usage)
		}
		if f.env == "REDIS_URL" {
			// --help prints defaults; the env value may hold a password.
			fs.Lookup(f.flag).DefValue = RedactRedisURL(c.RedisURL)
		}
	}
	fs.Var(&legacyFlag{dst: &c.legacyDenyPrivate, name: legacyDenyPrivateFlag}, legacyDenyPrivateFlag,
		"Replaced by --fetch-allow-private")
	fs.Lookup(legacyDenyPrivateFlag).NoOptDefVal = "true"
	fs.Lookup(legacyDenyPrivateFlag).Hidden = true
}

// legacyFlag records that a replaced flag was given, for Validate to report.
type legacyFlag struct {
	dst  *string
	name string
}

func (l *legacyFlag) String() string { return "" }
func (l *legacyFlag) Type() string   { return "bool" }
func (l *legacyFlag) Set(v string) error {
	*l.dst = "--" + l.name
	return nil
}

// bytesValue is a pflag.Value for a byte count.
type bytesValue int64

func (b *bytesValue) String() string { return FormatBytes(int64(*b)) }
func (b *bytesValue) Type() string   { return "bytes" }
func (b *bytesValue) Set(s string) error {
	n, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = bytesValue(n)
	return nil
}

// queuesValue is a pflag.Value for BATON_QUEUES.
type queuesValue map[string]int

func (q *queuesValue) String() string { return FormatQueues(*q) }
func (q *queuesValue) Type() string   { return "queues" }
func (q *queuesValue) Set(s string) error {
	m, err := ParseQueues(s)
	if err != nil {
		return err
	}
	*q = m
	return nil
}

// ParseQueues parses "default=6,llm=3,low=1" into queue weights; a name
// without "=weight" has weight 1 ("default,llm").
func ParseQueues(s string) (map[string]int, error) {
	const example = "use e.g. default=6,llm=3,low=1 or default,llm"
	m := map[string]int{}
	err := parseList(s, "queue", example, true, func(name, weight string, hasWeight bool) error {
		if err := defaults.CheckQueue(name); err != nil {
			return err
		}
		m[name] = 1
		if hasWeight {
			n, err := strconv.Atoi(weight)
			if err != nil || n < 1 {
				return fmt.Errorf("queue %q: weight %q is not a whole number >= 1; %s", name, weight, example)
			}
			m[name] = n
		}
		return nil
	})
	return m, err
}

// FormatQueues writes queue weights as ParseQueues reads them, heaviest
// first.
func FormatQueues(m map[string]int) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if m[names[i]] != m[names[j]] {
			return m[names[i]] > m[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + strconv.Itoa(m[n])
	}
	return strings.Join(parts, ",")
}

// ParseBytes reads a byte count: a plain integer ("10485760") or an integer
// with a unit: B, KiB, MiB, GiB, TiB ... (powers of 1024), KB, MB, GB, TB
// ... (powers of 1000), or a bare K, M, G, T ... (powers of 1024). Units are
// case-insensitive and may follow a space. github.com/dustin/go-humanize
// reads the units; fractions ("1.5MiB") and digit grouping ("1,000") are
// refused, so a limit is always a whole number of bytes.
func ParseBytes(s string) (int64, error) {
	const example = "use a whole number of bytes or a unit, e.g. 10485760 or 10MiB"
	t := strings.TrimSpace(s)
	if strings.ContainsAny(t, ".,") {
		return 0, errors.New("not a byte size; " + example)
	}
	if t != "" && strings.ContainsRune("kmgtpeKMGTPE", rune(t[len(t)-1])) {
		t += "i" // humanize reads a bare K as 1000, we as 1024
	}
	n, err := humanize.ParseBigBytes(t)
	if err != nil {
		return 0, errors.New("not a byte size; " + example)
	}
	if !n.IsInt64() {
		return 0, errors.New("byte size too large; " + example)
	}
	return n.Int64(), nil
}

// FormatBytes writes n with the largest binary unit that divides it exactly.
func FormatBytes(n int64) string {
	for _, u := range []struct {
		s string
		m int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.m == 0 {
			return strconv.FormatInt(n/u.m, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10)
}

// formatDuration drops Go's zero minute and second suffixes: 24h, not 24h0m0s.
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// formatValue writes a field's value as it would appear in its variable.
func formatValue(ptr any) string {
	switch p := ptr.(type) {
	case *string:
		return *p
	case *int:
		return strconv.Itoa(*p)
	case *int64:
		return FormatBytes(*p)
	case *bool:
		return strconv.FormatBool(*p)
	case *time.Duration:
		return formatDuration(*p)
	case *map[string]int:
		return FormatQueues(*p)
	case fmt.Stringer:
		return p.String()
	}
	return fmt.Sprint(ptr)
}

func buildVars() []Var {
	c := Default()
	fs := c.fields()
	vars := make([]Var, len(fs))
	for i, f := range fs {
		vars[i] = Var{Name: f.env, Default: formatValue(f.ptr), Doc: f.doc}
		if f.flag != "" {
			vars[i].Flag = "--" + f.flag
		}
	}
	return vars
}

// Validate reports every invalid setting at once (errors.Join). Each message
// names the variable and its flag, shows the value and says how to fix it.
func (c Config) Validate() error {
	var errs []error
	bad := func(ptr any, why string) {
		for _, f := range c.fields() {
			if f.ptr != ptr {
				continue
			}
			v := formatValue(f.ptr)
			switch {
			case f.secret:
				v = "(redacted)"
			case f.env == "REDIS_URL":
				v = RedactRedisURL(v)
			}
			if strings.ContainsAny(v, " \t\n\"") || v == "" {
				v = strconv.Quote(v)
			}
			where := f.env + "=" + v
			if f.flag != "" {
				where += " (--" + f.flag + ")"
			}
			errs = append(errs, fmt.Errorf("%s: %s", where, why))
			return
		}
		panic("config: Validate: unknown field")
	}
	positive := func(d *time.Duration, why, example string) {
		if *d <= 0 {
			bad(d, "must be > 0 ("+why+"); use e.g. "+example)
		}
	}

	if c.legacyDenyPrivate != "" {
		remove := "unset " + legacyDenyPrivateEnv
		if strings.HasPrefix(c.legacyDenyPrivate, "--") {
			remove = "drop " + c.legacyDenyPrivate
		}
		errs = append(errs, fmt.Errorf("%s: replaced by BATON_FETCH_ALLOW_PRIVATE (--fetch-allow-private): "+
			"private and loopback addresses are now refused unless BATON_FETCH_ALLOW_PRIVATE=true; %s (and set BATON_FETCH_ALLOW_PRIVATE=true only if fetches must reach them)",
			c.legacyDenyPrivate, remove))
	}
	if _, err := ParseRedisURL(c.RedisURL, c.RedisDialTimeout); err != nil {
		bad(&c.RedisURL, err.Error())
	}
	positive(&c.RedisDialTimeout, "a call must give up on an unreachable Redis", "5s")
	positive(&c.ResultTTL, "results cannot expire immediately", "24h")
	if c.ResultTTL > 0 && c.ResultTTL < defaults.MinResultTTL {
		bad(&c.ResultTTL, fmt.Sprintf("must be at least %v (results would vanish before anyone reads them); use e.g. 24h", defaults.MinResultTTL))
	}
	if c.Concurrency < 1 {
		bad(&c.Concurrency, "must be at least 1 (tasks a worker runs at once); use e.g. 10")
	}
	if len(c.Queues) == 0 {
		bad(&c.Queues, "must name at least one queue; use e.g. default=6,llm=3,low=1")
	}
	if err := defaults.CheckQueues(c.Queues); err != nil {
		bad(&c.Queues, err.Error()+"; use e.g. "+QueuesDefault)
	}
	positive(&c.ShutdownTimeout, "in-flight tasks need time to finish on SIGTERM", "30s")
	if _, ok := logLevels[strings.ToLower(c.LogLevel)]; !ok {
		bad(&c.LogLevel, "must be one of debug, info, warn, error")
	}
	if f := strings.ToLower(c.LogFormat); f != "text" && f != "json" {
		bad(&c.LogFormat, "must be text or json")
	}

	positive(&c.FetchTimeout, "a fetch must give up on a silent server", "30s")
	if c.FetchMaxBody <= 0 {
		bad(&c.FetchMaxBody, "must be > 0 (bodies are read up to this size); use e.g. 10MiB or 10485760")
	}
	positive(&c.FetchRetryDelay, "retrying at once hammers a failing server", "60s")
	positive(&c.FetchRetryAfterCap, "it caps how long a server's Retry-After can delay a retry", "10m")

	if c.OpenAIBaseURL != "" {
		u, err := url.Parse(c.OpenAIBaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(&c.OpenAIBaseURL, "must be an http(s) URL such as https://api.openai.com/v1 or http://localhost:11434/v1; leave it empty for the OpenAI API")
		}
	}
	if strings.TrimSpace(c.Model) == "" {
		bad(&c.Model, "must name a chat model; use e.g. "+ModelDefault)
	}
	positive(&c.LLMTimeout, "a model call must give up eventually", "5m")
	if c.MaxInputChars < 1 {
		bad(&c.MaxInputChars, "must be at least 1 (characters of data sent to the model); use e.g. 60000")
	}
	positive(&c.LLMCacheTTL, "cached responses make a re-run free", "168h")

	if c.MaxCanvasTasks < 1 {
		bad(&c.MaxCanvasTasks, fmt.Sprintf("must be at least 1 (tasks in one canvas); use e.g. %d", MaxCanvasTasksDefault))
	}
	if c.MaxCanvasBytes <= 0 {
		bad(&c.MaxCanvasBytes, "must be > 0 (bytes of one canvas's plan); use e.g. 64MiB")
	}
	if c.MetricsAddr != "" {
		if _, port, err := net.SplitHostPort(c.MetricsAddr); err != nil || port == "" {
			bad(&c.MetricsAddr, "must be host:port or :port, e.g. :9090; leave it empty to turn metrics off")
		}
	}
	c.validateLimits(bad)
	return errors.Join(errs...)
}

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// Logger returns a slog.Logger writing to w (os.Stderr if nil) at LogLevel
// in LogFormat. Invalid values fall back to info and text; Validate reports
// them.
func (c Config) Logger(w io.Writer) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	level, ok := logLevels[strings.ToLower(c.LogLevel)]
	if !ok {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(c.LogFormat, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// redacted returns a field's printable value, with secrets hidden.
func (f field) redacted() string {
	v := formatValue(f.ptr)
	switch {
	case f.secret && v != "":
		return "[redacted]"
	case f.env == "REDIS_URL":
		return RedactRedisURL(v)
	}
	return v
}

// String prints every field, with OPENAI_API_KEY and any Redis password
// redacted.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString("config.Config{")
	for i, f := range c.fields() {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f.name + ":" + strconv.Quote(f.redacted()))
	}
	b.WriteString("}")
	return b.String()
}

// GoString makes %#v as safe as %v.
func (c Config) GoString() string { return c.String() }

// LogValue implements slog.LogValuer: every field as an attribute, with
// secrets redacted.
func (c Config) LogValue() slog.Value {
	fs := c.fields()
	attrs := make([]slog.Attr, len(fs))
	for i, f := range fs {
		attrs[i] = slog.String(f.name, f.redacted())
	}
	return slog.GroupValue(attrs...)
}
