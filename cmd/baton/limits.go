package main

import (
	"maps"
	"slices"
	"strings"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/config"
)

// configLimits gives the worker's tasks the fleet-wide limits of the
// configuration: BATON_RATE_LIMITS and BATON_CONCURRENCY_LIMITS, per kind.
// (BATON_FETCH_PER_HOST and BATON_LLM_TOKENS_PER_MINUTE are built into the
// fetch and analyze tasks.) A kind no task registers is an error naming the
// variable and the known kinds.
func configLimits(cfg config.Config, defs []baton.Definition) ([]baton.Definition, error) {
	known := map[string]int{}
	for i, d := range defs {
		known[d.Kind()] = i
	}
	check := func(variable string, kinds []string) error {
		for _, k := range kinds {
			if _, ok := known[k]; !ok {
				return usageErrorf("%s names the task kind %q, which this worker does not run (known: %s): fix the kind or remove it",
					variable, k, strings.Join(slices.Sorted(maps.Keys(known)), ", "))
			}
		}
		return nil
	}
	if err := check("BATON_RATE_LIMITS", slices.Sorted(maps.Keys(cfg.RateLimits))); err != nil {
		return nil, err
	}
	if err := check("BATON_CONCURRENCY_LIMITS", slices.Sorted(maps.Keys(cfg.ConcurrencyLimits))); err != nil {
		return nil, err
	}
	out := slices.Clone(defs)
	for kind, i := range known {
		var rates []baton.RateLimit
		var concs []baton.ConcurrencyLimit
		if r, ok := cfg.RateLimits[kind]; ok {
			rates = append(rates, rateLimit(r))
		}
		if n, ok := cfg.ConcurrencyLimits[kind]; ok {
			concs = append(concs, baton.ConcurrencyLimit{Max: n})
		}
		if rates == nil && concs == nil {
			continue
		}
		d, err := baton.WithLimits(out[i], rates, concs)
		if err != nil {
			return nil, usageErrorf("limits of %q: %w", kind, err)
		}
		out[i] = d
	}
	return out, nil
}

// rateLimit is a configured rate as a baton.RateLimit (named after the kind
// it is given to).
func rateLimit(r config.Rate) baton.RateLimit {
	return baton.RateLimit{Rate: r.N, Per: r.Per, Burst: r.Burst}
}
