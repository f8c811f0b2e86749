package config_test

import (
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/config"
)

func TestLimitsFromEnv(t *testing.T) {
	clearEnv(t)
	c, err := config.FromEnv()
	require.NoError(t, err)
	require.Empty(t, c.RateLimits, "no limit by default")
	require.Empty(t, c.ConcurrencyLimits)
	require.Zero(t, c.LLMTokensPerMinute)
	require.Zero(t, c.FetchPerHost, "per-host politeness is off by default")

	t.Setenv("BATON_RATE_LIMITS", "fetch=10/s, analyze=60/m:5,echo=5/10s,beat=1000/h")
	t.Setenv("BATON_CONCURRENCY_LIMITS", "analyze=4")
	t.Setenv("BATON_LLM_TOKENS_PER_MINUTE", "200000")
	t.Setenv("BATON_FETCH_PER_HOST", "2/s")
	c, err = config.FromEnv()
	require.NoError(t, err)
	require.Equal(t, config.RateLimits{
		"fetch":   {N: 10, Per: time.Second},
		"analyze": {N: 60, Per: time.Minute, Burst: 5},
		"echo":    {N: 5, Per: 10 * time.Second},
		"beat":    {N: 1000, Per: time.Hour},
	}, c.RateLimits)
	require.Equal(t, config.ConcurrencyLimits{"analyze": 4}, c.ConcurrencyLimits)
	require.Equal(t, 200000, c.LLMTokensPerMinute)
	require.Equal(t, config.Rate{N: 2, Per: time.Second}, c.FetchPerHost)
	require.NoError(t, c.Validate())
	require.Contains(t, c.String(), `RateLimits:"analyze=60/m:5,beat=1000/h,echo=5/10s,fetch=10/s"`)
	require.Contains(t, c.String(), `FetchPerHost:"2/s"`)
}

func TestLimitsFromEnvErrors(t *testing.T) {
	for _, tt := range []struct{ name, env, value, want string }{
		{"no slash", "BATON_RATE_LIMITS", "fetch=10", `BATON_RATE_LIMITS="fetch=10": rate "10" has no '/': use e.g. 10/s, 60/m, 5/10s or 1000/h`},
		{"bad unit", "BATON_RATE_LIMITS", "fetch=10/x", `rate "10/x": period "x" is not s, m, h or a positive duration`},
		{"zero rate", "BATON_RATE_LIMITS", "fetch=0/s", `rate "0/s": "0" is not a whole number >= 1`},
		{"bad burst", "BATON_RATE_LIMITS", "fetch=10/s:0", `rate "10/s:0": burst "0" is not a whole number >= 1`},
		{"no kind", "BATON_RATE_LIMITS", "10/s", `"10/s" is not kind=value; use e.g. fetch=10/s,analyze=60/m`},
		{"empty rate", "BATON_RATE_LIMITS", "fetch=", `kind "fetch" has no rate`},
		{"twice", "BATON_RATE_LIMITS", "fetch=1/s,fetch=2/s", `kind "fetch" is listed twice`},
		{"concurrency", "BATON_CONCURRENCY_LIMITS", "analyze=four", `BATON_CONCURRENCY_LIMITS="analyze=four": kind "analyze": "four" is not a whole number >= 1; use e.g. analyze=4`},
		{"concurrency zero", "BATON_CONCURRENCY_LIMITS", "analyze=0", `"0" is not a whole number >= 1`},
		{"tokens", "BATON_LLM_TOKENS_PER_MINUTE", "lots", `BATON_LLM_TOKENS_PER_MINUTE="lots": not an integer`},
		{"per host", "BATON_FETCH_PER_HOST", "2 per second", `BATON_FETCH_PER_HOST="2 per second": rate "2 per second" has no '/'`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv(tt.env, tt.value)
			c, err := config.FromEnv()
			require.ErrorContains(t, err, tt.want)
			require.Equal(t, config.Default(), c, "a bad variable leaves its default")
		})
	}
}

func TestLimitsValidate(t *testing.T) {
	c := config.Default()
	c.LLMTokensPerMinute = -1
	require.ErrorContains(t, c.Validate(), "BATON_LLM_TOKENS_PER_MINUTE=-1 (--llm-tokens-per-minute): must be >= 0")
	c = config.Default()
	c.ConcurrencyLimits = config.ConcurrencyLimits{"analyze": 0}
	require.ErrorContains(t, c.Validate(), `BATON_CONCURRENCY_LIMITS=analyze=0 (--concurrency-limits): kind "analyze": at most 0 running`)
	c = config.Default()
	c.FetchPerHost = config.Rate{N: 2}
	require.ErrorContains(t, c.Validate(), "BATON_FETCH_PER_HOST=2/0 (--fetch-per-host): a rate needs N >= 1, a positive period")
	c = config.Default()
	c.RateLimits = config.RateLimits{"": {N: 1, Per: time.Second}}
	require.ErrorContains(t, c.Validate(), `(--rate-limits): kind "": every kind needs a name and a rate`)
}

func TestLimitsFlags(t *testing.T) {
	clearEnv(t)
	t.Setenv("BATON_RATE_LIMITS", "fetch=10/s")
	c, err := config.FromEnv()
	require.NoError(t, err)
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c.BindFlags(fs)
	require.Equal(t, "fetch=10/s", fs.Lookup("rate-limits").DefValue, "the flag defaults to the variable")
	require.NoError(t, fs.Parse([]string{"--rate-limits", "fetch=2/s:4", "--fetch-per-host", "1/s", "--concurrency-limits", "analyze=2",
		"--llm-tokens-per-minute", "1000"}))
	require.Equal(t, config.RateLimits{"fetch": {N: 2, Per: time.Second, Burst: 4}}, c.RateLimits)
	require.Equal(t, config.Rate{N: 1, Per: time.Second}, c.FetchPerHost)
	require.Equal(t, config.ConcurrencyLimits{"analyze": 2}, c.ConcurrencyLimits)
	require.Equal(t, 1000, c.LLMTokensPerMinute)
	err = fs.Parse([]string{"--fetch-per-host", "fast"})
	require.ErrorContains(t, err, `invalid argument "fast" for "--fetch-per-host" flag: rate "fast" has no '/'`)
}

func TestRateString(t *testing.T) {
	for _, s := range []string{"10/s", "60/m:5", "1000/h", "5/10s", "3/1m30s", ""} {
		r, err := config.ParseRate(s)
		require.NoError(t, err, s)
		require.Equal(t, s, r.String())
	}
}
