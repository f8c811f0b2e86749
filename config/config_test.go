package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/config"
)

// clearEnv unsets every variable config reads, so the host environment does
// not leak into a test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, v := range config.Vars {
		t.Setenv(v.Name, "")
	}
	t.Setenv("FETCH_DENY_PRIVATE", "") // replaced, still read to be refused
}

func TestDefault(t *testing.T) {
	c := config.Default()
	require.Equal(t, config.RedisURLDefault, c.RedisURL)
	require.Equal(t, 5*time.Second, c.RedisDialTimeout)
	require.Equal(t, 24*time.Hour, c.ResultTTL)
	require.Equal(t, 10, c.Concurrency)
	require.Equal(t, map[string]int{"default": 6, "llm": 3, "low": 1}, c.Queues)
	require.False(t, c.StrictPriority)
	require.Equal(t, 30*time.Second, c.ShutdownTimeout)
	require.Equal(t, "info", c.LogLevel)
	require.Equal(t, "text", c.LogFormat)
	require.Equal(t, 30*time.Second, c.FetchTimeout)
	require.Equal(t, int64(10<<20), c.FetchMaxBody)
	require.False(t, c.FetchAllowPrivate, "private and loopback addresses are refused by default")
	require.Equal(t, "baton/0.1 (+https://github.com/batonhq/baton)", c.FetchUserAgent)
	require.Equal(t, 60*time.Second, c.FetchRetryDelay)
	require.Equal(t, 10*time.Minute, c.FetchRetryAfterCap)
	require.Empty(t, c.OpenAIAPIKey)
	require.Empty(t, c.OpenAIBaseURL)
	require.Equal(t, "gpt-4o-mini", c.Model)
	require.Equal(t, 5*time.Minute, c.LLMTimeout)
	require.Equal(t, "Analyze the following data.", c.SystemPrompt)
	require.Equal(t, 60000, c.MaxInputChars)
	require.Equal(t, 168*time.Hour, c.LLMCacheTTL)
	require.Empty(t, c.MetricsAddr)
	require.Equal(t, 100000, c.MaxCanvasTasks)
	require.Equal(t, int64(64<<20), c.MaxCanvasBytes)
	require.NoError(t, c.Validate())

	clearEnv(t)
	fromEnv, err := config.FromEnv()
	require.NoError(t, err)
	require.Equal(t, c, fromEnv, "an empty environment gives the defaults")
}

func TestVars(t *testing.T) {
	want := []string{
		"REDIS_URL", "BATON_REDIS_TIMEOUT", "BATON_RESULT_TTL", "BATON_CONCURRENCY",
		"BATON_QUEUES", "BATON_STRICT_PRIORITY", "BATON_SHUTDOWN_TIMEOUT", "BATON_LOG_LEVEL",
		"BATON_LOG_FORMAT", "BATON_FETCH_TIMEOUT", "BATON_FETCH_MAX_BYTES", "BATON_FETCH_ALLOW_PRIVATE",
		"BATON_FETCH_USER_AGENT", "BATON_FETCH_RETRY_DELAY", "BATON_FETCH_RETRY_AFTER_CAP",
		"OPENAI_API_KEY", "OPENAI_BASE_URL", "BATON_MODEL", "BATON_LLM_TIMEOUT",
		"BATON_SYSTEM_PROMPT", "BATON_LLM_MAX_INPUT_CHARS", "BATON_LLM_CACHE_TTL", "BATON_METRICS_ADDR",
		"BATON_RATE_LIMITS", "BATON_CONCURRENCY_LIMITS", "BATON_LLM_TOKENS_PER_MINUTE", "BATON_FETCH_PER_HOST",
		"BATON_MAX_CANVAS_TASKS", "BATON_MAX_CANVAS_BYTES",
	}
	var got []string
	byName := map[string]config.Var{}
	for _, v := range config.Vars {
		got = append(got, v.Name)
		byName[v.Name] = v
		require.NotEmpty(t, v.Doc, v.Name)
	}
	require.Equal(t, want, got)
	require.Equal(t, "24h", byName["BATON_RESULT_TTL"].Default)
	require.Equal(t, "10MiB", byName["BATON_FETCH_MAX_BYTES"].Default)
	require.Equal(t, "--result-ttl", byName["BATON_RESULT_TTL"].Flag)
	require.Empty(t, byName["OPENAI_API_KEY"].Flag, "the API key must not be a flag")

	// Every default in Vars, fed back through the environment, gives Default().
	clearEnv(t)
	for _, v := range config.Vars {
		t.Setenv(v.Name, v.Default)
	}
	c, err := config.FromEnv()
	require.NoError(t, err)
	require.Equal(t, config.Default(), c)
}

func TestFromEnv(t *testing.T) {
	clearEnv(t)
	env := map[string]string{
		"REDIS_URL":                   "redis://10.0.0.5:6380/2",
		"BATON_REDIS_TIMEOUT":         "2s",
		"BATON_RESULT_TTL":            "1h",
		"BATON_CONCURRENCY":           " 32 ",
		"BATON_QUEUES":                "default=6, llm=3,low",
		"BATON_STRICT_PRIORITY":       "yes",
		"BATON_SHUTDOWN_TIMEOUT":      "1m",
		"BATON_LOG_LEVEL":             "debug",
		"BATON_LOG_FORMAT":            "json",
		"BATON_FETCH_TIMEOUT":         "10s",
		"BATON_FETCH_MAX_BYTES":       "1048576",
		"BATON_FETCH_ALLOW_PRIVATE":   "true",
		"BATON_FETCH_USER_AGENT":      "test-agent",
		"BATON_FETCH_RETRY_DELAY":     "5s",
		"BATON_FETCH_RETRY_AFTER_CAP": "1h",
		"OPENAI_API_KEY":              "sk-test",
		"OPENAI_BASE_URL":             "http://localhost:11434/v1",
		"BATON_MODEL":                 "llama3",
		"BATON_LLM_TIMEOUT":           "90s",
		"BATON_SYSTEM_PROMPT":         "Summarize.",
		"BATON_LLM_MAX_INPUT_CHARS":   "1000",
		"BATON_LLM_CACHE_TTL":         "1h",
		"BATON_METRICS_ADDR":          ":9090",
		"BATON_MAX_CANVAS_TASKS":      "500",
		"BATON_MAX_CANVAS_BYTES":      "1MiB",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	c, err := config.FromEnv()
	require.NoError(t, err)
	require.Equal(t, config.Config{
		RedisURL:           "redis://10.0.0.5:6380/2",
		RedisDialTimeout:   2 * time.Second,
		ResultTTL:          time.Hour,
		Concurrency:        32,
		Queues:             map[string]int{"default": 6, "llm": 3, "low": 1},
		StrictPriority:     true,
		ShutdownTimeout:    time.Minute,
		LogLevel:           "debug",
		LogFormat:          "json",
		FetchTimeout:       10 * time.Second,
		FetchMaxBody:       1 << 20,
		FetchAllowPrivate:  true,
		FetchUserAgent:     "test-agent",
		FetchRetryDelay:    5 * time.Second,
		FetchRetryAfterCap: time.Hour,
		OpenAIAPIKey:       "sk-test",
		OpenAIBaseURL:      "http://localhost:11434/v1",
		Model:              "llama3",
		LLMTimeout:         90 * time.Second,
		SystemPrompt:       "Summarize.",
		MaxInputChars:      1000,
		LLMCacheTTL:        time.Hour,
		MetricsAddr:        ":9090",
		MaxCanvasTasks:     500,
		MaxCanvasBytes:     1 << 20,
	}, c)
	require.NoError(t, c.Validate())
}

func TestFromEnvErrors(t *testing.T) {
	tests := []struct {
		name, env, value string
		want             string
	}{
		{"duration", "BATON_RESULT_TTL", "1 day", `BATON_RESULT_TTL="1 day": not a duration; use e.g. 30s, 5m or 24h`},
		{"bare number is not a duration", "BATON_FETCH_TIMEOUT", "30", `BATON_FETCH_TIMEOUT="30": not a duration`},
		{"int", "BATON_CONCURRENCY", "ten", `BATON_CONCURRENCY="ten": not an integer; use e.g. 10`},
		{"bool", "BATON_STRICT_PRIORITY", "maybe", `BATON_STRICT_PRIORITY="maybe": not a boolean; use true or false`},
		{"bytes", "BATON_FETCH_MAX_BYTES", "10 parsecs", `BATON_FETCH_MAX_BYTES="10 parsecs": not a byte size`},
		{"queue weight", "BATON_QUEUES", "default=x", `BATON_QUEUES="default=x": queue "default": weight "x" is not a whole number >= 1`},
		{"queue zero weight", "BATON_QUEUES", "default=0", `weight "0" is not a whole number >= 1`},
		{"queue twice", "BATON_QUEUES", "a,a=2", `queue "a" is listed twice`},
		{"queue no name", "BATON_QUEUES", "=3", `"=3" has no queue name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv(tt.env, tt.value)
			c, err := config.FromEnv()
			require.ErrorContains(t, err, tt.want)
			require.Equal(t, config.Default(), c, "a bad variable leaves its default")
		})
	}

	t.Run("every error is reported", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("BATON_RESULT_TTL", "x")
		t.Setenv("BATON_CONCURRENCY", "y")
		t.Setenv("BATON_MODEL", "llama3")
		c, err := config.FromEnv()
		require.ErrorContains(t, err, "BATON_RESULT_TTL")
		require.ErrorContains(t, err, "BATON_CONCURRENCY")
		require.Equal(t, "llama3", c.Model, "valid variables still apply")
	})
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"1024", 1024}, {"10MiB", 10 << 20}, {"10mib", 10 << 20}, {"10 MiB", 10 << 20},
		{"512KiB", 512 << 10}, {"1GiB", 1 << 30}, {"1MB", 1000000}, {"2kb", 2000},
		{"4k", 4096}, {"3M", 3 << 20}, {"100B", 100},
		{"1TiB", 1 << 40}, {"2 TB", 2e12}, {"4Ki", 4096}, {"7EiB", 7 << 60}, {"9223372036854775807", 1<<63 - 1},
	}
	for _, tt := range tests {
		got, err := config.ParseBytes(tt.in)
		require.NoError(t, err, tt.in)
		require.Equal(t, tt.want, got, tt.in)
	}
	for _, bad := range []string{"", "MiB", "1.5MiB", "ten", "1,000", "-5", "1e3", "10 parsecs"} {
		_, err := config.ParseBytes(bad)
		require.ErrorContains(t, err, "not a byte size", bad)
	}
	for _, big := range []string{"99999999999GiB", "8EiB", "9223372036854775808"} {
		_, err := config.ParseBytes(big)
		require.ErrorContains(t, err, "byte size too large", big)
	}
	require.Equal(t, "10MiB", config.FormatBytes(10<<20))
	require.Equal(t, "1000", config.FormatBytes(1000))
}

func TestQueues(t *testing.T) {
	q, err := config.ParseQueues("low=1,default=6,llm=3")
	require.NoError(t, err)
	require.Equal(t, "default=6,llm=3,low=1", config.FormatQueues(q))
	q, err = config.ParseQueues("default,llm")
	require.NoError(t, err)
	require.Equal(t, map[string]int{"default": 1, "llm": 1}, q)
	_, err = config.ParseQueues("my queue=1")
	require.ErrorContains(t, err, "contains a space")
}

func TestBindFlags(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, c config.Config)
	}{
		{
			name: "default when neither is set",
			check: func(t *testing.T, c config.Config) {
				require.Equal(t, config.Default(), c)
			},
		},
		{
			name: "env when no flag is given",
			env:  map[string]string{"BATON_CONCURRENCY": "4", "BATON_QUEUES": "a=2,b", "BATON_STRICT_PRIORITY": "true"},
			check: func(t *testing.T, c config.Config) {
				require.Equal(t, 4, c.Concurrency)
				require.Equal(t, map[string]int{"a": 2, "b": 1}, c.Queues)
				require.True(t, c.StrictPriority)
			},
		},
		{
			name: "flag beats env",
			env: map[string]string{
				"BATON_CONCURRENCY": "4", "REDIS_URL": "redis://env:6379/0", "BATON_RESULT_TTL": "1h",
				"BATON_QUEUES": "a", "BATON_STRICT_PRIORITY": "true", "BATON_FETCH_MAX_BYTES": "1KiB",
			},
			args: []string{
				"--concurrency=8", "--redis-url", "redis://flag:6379/1", "--result-ttl=2h",
				"--queues=x=3,y", "--strict-priority=false", "--fetch-max-bytes=2MiB",
				"--shutdown-timeout=5s", "--log-level=warn",
			},
			check: func(t *testing.T, c config.Config) {
				require.Equal(t, 8, c.Concurrency)
				require.Equal(t, "redis://flag:6379/1", c.RedisURL)
				require.Equal(t, 2*time.Hour, c.ResultTTL)
				require.Equal(t, map[string]int{"x": 3, "y": 1}, c.Queues)
				require.False(t, c.StrictPriority)
				require.Equal(t, int64(2<<20), c.FetchMaxBody)
				require.Equal(t, 5*time.Second, c.ShutdownTimeout)
				require.Equal(t, "warn", c.LogLevel)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c, err := config.FromEnv()
			require.NoError(t, err)
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			c.BindFlags(fs)
			require.NoError(t, fs.Parse(tt.args))
			tt.check(t, c)
		})
	}

	t.Run("bad flag value", func(t *testing.T) {
		c := config.Default()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		fs.SetOutput(&bytes.Buffer{})
		c.BindFlags(fs)
		require.ErrorContains(t, fs.Parse([]string{"--queues=a=x"}), `weight "x"`)
	})

	t.Run("no API key flag, no password in help", func(t *testing.T) {
		c := config.Default()
		c.RedisURL = "redis://:hunter2@redis:6379/0"
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		c.BindFlags(fs)
		require.Nil(t, fs.Lookup("openai-api-key"))
		require.NotContains(t, fs.FlagUsages(), "hunter2")
		require.Contains(t, fs.FlagUsages(), "env REDIS_URL")
	})
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *config.Config)
		want   string
	}{
		{"result ttl zero", func(c *config.Config) { c.ResultTTL = 0 },
			"BATON_RESULT_TTL=0 (--result-ttl): must be > 0 (results cannot expire immediately); use e.g. 24h"},
		{"result ttl negative", func(c *config.Config) { c.ResultTTL = -time.Hour },
			"BATON_RESULT_TTL=-1h (--result-ttl): must be > 0"},
		{"redis timeout", func(c *config.Config) { c.RedisDialTimeout = 0 },
			"BATON_REDIS_TIMEOUT=0 (--redis-timeout): must be > 0"},
		{"redis url", func(c *config.Config) { c.RedisURL = "http://localhost" },
			`REDIS_URL=http://localhost (--redis-url): invalid Redis URL: unknown scheme "http"`},
		{"concurrency", func(c *config.Config) { c.Concurrency = 0 },
			"BATON_CONCURRENCY=0 (--concurrency): must be at least 1"},
		{"no queues", func(c *config.Config) { c.Queues = nil },
			`BATON_QUEUES="" (--queues): must name at least one queue; use e.g. default=6,llm=3,low=1`},
		{"queue weight", func(c *config.Config) { c.Queues = map[string]int{"a": 0} },
			`queue "a" has weight 0`},
		{"shutdown", func(c *config.Config) { c.ShutdownTimeout = 0 },
			"BATON_SHUTDOWN_TIMEOUT=0 (--shutdown-timeout): must be > 0"},
		{"log level", func(c *config.Config) { c.LogLevel = "verbose" },
			"BATON_LOG_LEVEL=verbose (--log-level): must be one of debug, info, warn, error"},
		{"log format", func(c *config.Config) { c.LogFormat = "xml" },
			"BATON_LOG_FORMAT=xml (--log-format): must be text or json"},
		{"fetch timeout", func(c *config.Config) { c.FetchTimeout = 0 }, "BATON_FETCH_TIMEOUT=0"},
		{"fetch max body", func(c *config.Config) { c.FetchMaxBody = 0 },
			"BATON_FETCH_MAX_BYTES=0 (--fetch-max-bytes): must be > 0"},
		{"fetch retry delay", func(c *config.Config) { c.FetchRetryDelay = 0 }, "BATON_FETCH_RETRY_DELAY=0"},
		{"retry after cap", func(c *config.Config) { c.FetchRetryAfterCap = -1 }, "BATON_FETCH_RETRY_AFTER_CAP=-1ns"},
		{"base url", func(c *config.Config) { c.OpenAIBaseURL = "localhost:11434" },
			"OPENAI_BASE_URL=localhost:11434 (--openai-base-url): must be an http(s) URL"},
		{"model", func(c *config.Config) { c.Model = "" }, `BATON_MODEL="" (--model): must name a chat model`},
		{"llm timeout", func(c *config.Config) { c.LLMTimeout = 0 }, "BATON_LLM_TIMEOUT=0"},
		{"max input", func(c *config.Config) { c.MaxInputChars = -5 }, "BATON_LLM_MAX_INPUT_CHARS=-5"},
		{"cache ttl", func(c *config.Config) { c.LLMCacheTTL = 0 }, "BATON_LLM_CACHE_TTL=0 (--llm-cache-ttl): must be > 0"},
		{"metrics addr", func(c *config.Config) { c.MetricsAddr = "9090" },
			"BATON_METRICS_ADDR=9090 (--metrics-addr): must be host:port or :port"},
		{"max canvas tasks", func(c *config.Config) { c.MaxCanvasTasks = 0 },
			"BATON_MAX_CANVAS_TASKS=0 (--max-canvas-tasks): must be at least 1"},
		{"max canvas bytes", func(c *config.Config) { c.MaxCanvasBytes = -1 },
			"BATON_MAX_CANVAS_BYTES=-1 (--max-canvas-bytes): must be > 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			tt.modify(&c)
			require.ErrorContains(t, c.Validate(), tt.want)
		})
	}

	t.Run("every problem is reported", func(t *testing.T) {
		c := config.Default()
		c.ResultTTL, c.Concurrency, c.LogFormat = 0, 0, "xml"
		err := c.Validate()
		require.Len(t, strings.Split(err.Error(), "\n"), 3)
	})

	t.Run("no secrets in messages", func(t *testing.T) {
		c := config.Default()
		c.RedisURL = "redis-sentinel://:hunter2@a:1,b:2/0"
		c.OpenAIAPIKey = "sk-secret"
		err := c.Validate()
		require.ErrorContains(t, err, "REDIS_URL=redis-sentinel://:xxxxx@a:1,b:2/0 (--redis-url)")
		require.ErrorContains(t, err, "add ?master=NAME")
		require.NotContains(t, err.Error(), "hunter2")
	})
}

func TestRedaction(t *testing.T) {
	c := config.Default()
	c.OpenAIAPIKey = "sk-very-secret"
	c.RedisURL = "redis://user:hunter2@redis:6379/0"

	var jsonBuf, textBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&jsonBuf, nil)).Info("starting", "config", c)
	slog.New(slog.NewTextHandler(&textBuf, nil)).Info("starting", "config", c)

	outputs := map[string]string{
		"String":     c.String(),
		"%v":         fmt.Sprintf("%v", c),
		"%+v":        fmt.Sprintf("%+v", c),
		"%#v":        fmt.Sprintf("%#v", c),
		"pointer %v": fmt.Sprintf("%v", &c),
		"slog json":  jsonBuf.String(),
		"slog text":  textBuf.String(),
	}
	for name, out := range outputs {
		require.NotContains(t, out, "sk-very-secret", name)
		require.NotContains(t, out, "hunter2", name)
		require.Contains(t, out, "redis://user:xxxxx@redis:6379/0", name)
	}

	var rec struct {
		Config map[string]string `json:"config"`
	}
	require.NoError(t, json.Unmarshal(jsonBuf.Bytes(), &rec))
	require.Equal(t, "[redacted]", rec.Config["OpenAIAPIKey"])
	require.Equal(t, "gpt-4o-mini", rec.Config["Model"])

	c.OpenAIAPIKey = ""
	require.Contains(t, c.String(), `OpenAIAPIKey:""`, "an unset key shows as empty")
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	c := config.Default()
	c.LogLevel, c.LogFormat = "warn", "json"
	log := c.Logger(&buf)
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	require.NotContains(t, buf.String(), "hidden")
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
	require.Equal(t, "shown", rec["msg"])

	buf.Reset()
	c.LogLevel, c.LogFormat = "debug", "text"
	c.Logger(&buf).Debug("dbg")
	require.Contains(t, buf.String(), "level=DEBUG msg=dbg")
}

// TestFetchDenyPrivateReplaced: the old FETCH_DENY_PRIVATE (whatever its
// value) fails validation with a message naming its replacement, so nobody
// who set it silently gets other behaviour than they asked for.
func TestFetchDenyPrivateReplaced(t *testing.T) {
	for _, v := range []string{"true", "false"} {
		clearEnv(t)
		t.Setenv("FETCH_DENY_PRIVATE", v)
		c, err := config.FromEnv()
		require.NoError(t, err)
		err = c.Validate()
		require.ErrorContains(t, err, "FETCH_DENY_PRIVATE="+v+": replaced by BATON_FETCH_ALLOW_PRIVATE (--fetch-allow-private)")
		require.ErrorContains(t, err, "private and loopback addresses are now refused unless BATON_FETCH_ALLOW_PRIVATE=true")
		require.ErrorContains(t, err, "unset FETCH_DENY_PRIVATE")
	}

	clearEnv(t)
	c, err := config.FromEnv()
	require.NoError(t, err)
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c.BindFlags(fs)
	require.NoError(t, fs.Parse([]string{"--fetch-deny-private"}))
	require.ErrorContains(t, c.Validate(), "--fetch-deny-private: replaced by BATON_FETCH_ALLOW_PRIVATE (--fetch-allow-private)")
	require.True(t, fs.Lookup("fetch-deny-private").Hidden, "the old flag is not advertised")

	require.NoError(t, fs.Parse([]string{"--fetch-allow-private"}))
	require.True(t, c.FetchAllowPrivate)
}
