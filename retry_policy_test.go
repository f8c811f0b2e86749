package baton_test

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
)

func TestRetryPolicyDelayFor(t *testing.T) {
	t.Run("fixed", func(t *testing.T) {
		p := baton.FixedDelay(3 * time.Second)
		for n := range 10 {
			require.Equal(t, 3*time.Second, p.DelayFor(n), "retry %d", n)
		}
	})

	t.Run("fixed zero delay defaults to 1s", func(t *testing.T) {
		require.Equal(t, time.Second, baton.RetryPolicy{Fixed: true}.DelayFor(4))
	})

	t.Run("backoff doubles", func(t *testing.T) {
		p := baton.RetryPolicy{Delay: 100 * time.Millisecond, Max: time.Hour, NoJitter: true}
		want := 100 * time.Millisecond
		for n := range 12 {
			require.Equal(t, want, p.DelayFor(n), "retry %d", n)
			want *= 2
		}
	})

	t.Run("backoff caps at Max", func(t *testing.T) {
		p := baton.RetryPolicy{Delay: time.Second, Max: 5 * time.Second, NoJitter: true}
		got := make([]time.Duration, 6)
		for n := range got {
			got[n] = p.DelayFor(n)
		}
		require.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second}, got)
		require.Equal(t, 5*time.Second, p.DelayFor(1000), "a huge retry count stays capped")
	})

	t.Run("zero value is 1s backoff capped at 10m", func(t *testing.T) {
		p := baton.RetryPolicy{NoJitter: true}
		require.Equal(t, time.Second, p.DelayFor(0))
		require.Equal(t, 2*time.Second, p.DelayFor(1))
		require.Equal(t, 10*time.Minute, p.DelayFor(30))
	})

	t.Run("jitter stays in [0.8d, 1.2d] and below Max", func(t *testing.T) {
		p := baton.Backoff(time.Second, 10*time.Second)
		for n := range 6 {
			base := min(time.Second<<n, 10*time.Second)
			lo, hi := time.Duration(float64(base)*0.8), min(time.Duration(float64(base)*1.2), 10*time.Second)
			seen := map[time.Duration]bool{}
			for range 500 {
				d := p.DelayFor(n)
				require.GreaterOrEqual(t, d, lo, "retry %d", n)
				require.LessOrEqual(t, d, hi, "retry %d", n)
				seen[d] = true
			}
			require.Greater(t, len(seen), 100, "retry %d: jitter spreads the delays", n)
		}
	})

	t.Run("never negative, never above Max", func(t *testing.T) {
		// A Max of MaxInt64 ("no cap") must not overflow into a negative delay.
		for _, p := range []baton.RetryPolicy{
			{Delay: time.Hour, Max: math.MaxInt64},
			{Delay: time.Hour, Max: math.MaxInt64, NoJitter: true},
			{Delay: math.MaxInt64 / 2, Max: math.MaxInt64},
		} {
			for _, n := range []int{0, 1, 20, 21, 22, 23, 40, 63, 64, 1000} {
				d := p.DelayFor(n)
				require.GreaterOrEqual(t, d, time.Duration(0), "%+v DelayFor(%d)", p, n)
				require.LessOrEqual(t, d, p.Max, "%+v DelayFor(%d)", p, n)
			}
		}
	})
}

func TestRetryPolicyJSON(t *testing.T) {
	cases := []struct {
		in   string
		want baton.RetryPolicy
	}{
		{`"2s"`, baton.RetryPolicy{Delay: 2 * time.Second, Fixed: true}},
		{`{"delay":"1s","max":"10m"}`, baton.RetryPolicy{Delay: time.Second, Max: 10 * time.Minute}},
		{`{"delay":"500ms","fixed":true,"no_jitter":true}`, baton.RetryPolicy{Delay: 500 * time.Millisecond, Fixed: true, NoJitter: true}},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			var p baton.RetryPolicy
			require.NoError(t, json.Unmarshal([]byte(tc.in), &p))
			require.Equal(t, tc.want, p)
			b, err := json.Marshal(p)
			require.NoError(t, err)
			var back baton.RetryPolicy
			require.NoError(t, json.Unmarshal(b, &back))
			require.Equal(t, p, back)
		})
	}
	for _, bad := range []string{`"soon"`, `{"delay":"1s","jitter":true}`, `{"max":"forever"}`, `42`} {
		t.Run(fmt.Sprintf("rejects %s", bad), func(t *testing.T) {
			var p baton.RetryPolicy
			require.Error(t, json.Unmarshal([]byte(bad), &p))
		})
	}
}
