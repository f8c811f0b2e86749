package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/batonhq/baton/internal/bench"
)

func newBenchCmd(a *app) *cobra.Command {
	var (
		opts bench.Options
		only string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark baton against raw asynq on throwaway redis-servers",
		Long: `Run the benchmark workloads, each on a fresh throwaway redis-server
(redis-server must be on PATH; REDIS_URL is not used), with baton and a
raw-asynq baseline measured back to back in this process, and print a table
of figures, ratios and targets:

  W1  enqueue N no-op tasks, sequentially and from 8 goroutines
  W2  process N pre-enqueued no-op tasks with results stored
  W3  N/10 chains of 2 steps with ~1 KB payloads
  W4  N/100 chords of 10 header tasks and a body
  W5  single-task idle round trip, then idle CPU (this process + Redis)
  W6  scale-out: 1, 2 and 4 baton worker processes
  W9  flow control: W2 under a never-binding rate limit vs none, and a
      limited run's achieved rate vs the configured one

Each baton/baseline pair runs --repeats times, alternating which goes first,
and the median is printed. When ../shared/bench/celery/run.sh exists (from
the module root) it runs afterwards and Celery's figures are printed beside
baton's (about two more minutes). A full run takes about five minutes;
--quick (N/10, one repeat, no Celery) under a minute.`,
		Example: `  baton bench
  baton bench --quick
  baton bench --only W1,W2 --json bench.json
  make bench BENCH_ARGS="--only W3,W4"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if only != "" {
				opts.Workloads = strings.Split(only, ",")
			}
			if err := opts.Validate(); err != nil {
				return &usageError{err}
			}
			opts.Progress = cmd.ErrOrStderr()
			return bench.Run(cmd.Context(), cmd.OutOrStdout(), opts)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.Quick, "quick", false, "Smoke run: N/10, one repeat, short W5 phases, no Celery (under a minute)")
	f.StringVar(&only, "only", "", "Comma-separated workloads to run, e.g. W1,W3 (default all: "+strings.Join(bench.Workloads, ",")+")")
	f.StringVar(&opts.JSONPath, "json", "", "Write the raw figures (every repeat) as JSON to this file")
	f.IntVar(&opts.N, "n", 0, "Tasks in W1 and W2; W3 runs N/10 chains, W4 N/100 chords (default 20000, 2000 with --quick)")
	f.IntVar(&opts.Repeats, "repeats", 0, "Measurements per baton/baseline pair; the median is printed (default 3, 1 with --quick)")
	f.IntVar(&opts.Concurrency, "concurrency", 0, "Worker concurrency of W2-W4, the same for baton and asynq (default 20)")
	f.BoolVar(&opts.NoCelery, "no-celery", false, "Do not run the Celery peer script even when it exists")
	f.BoolVar(&opts.Metrics, "metrics", false, "Run baton's workers with the Prometheus metrics observer, as `baton worker --metrics-addr` does")
	return cmd
}
