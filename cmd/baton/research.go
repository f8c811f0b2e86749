package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/config"
	"github.com/batonhq/baton/internal/research"
	"github.com/batonhq/baton/tasks"
)

// researchDefinitions are the fetch and analyze tasks built from the
// configuration (the worker's BATON_FETCH_* and LLM settings).
func researchDefinitions(cfg config.Config, rdb redis.UniversalClient) []baton.Definition {
	f := tasks.NewFetcher(fetchConfig(cfg))
	a := tasks.NewAnalyzer(llmConfig(cfg), rdb)
	return []baton.Definition{tasks.FetchTask(f, cfg.FetchRetryDelay), tasks.AnalyzeTask(a)}
}

func fetchConfig(cfg config.Config) tasks.FetchConfig {
	return tasks.FetchConfig{
		Timeout:       cfg.FetchTimeout,
		MaxBody:       cfg.FetchMaxBody,
		AllowPrivate:  cfg.FetchAllowPrivate,
		UserAgent:     cfg.FetchUserAgent,
		RetryAfterCap: cfg.FetchRetryAfterCap,
		PerHost:       rateLimit(cfg.FetchPerHost),
	}
}

func llmConfig(cfg config.Config) tasks.LLMConfig {
	return tasks.LLMConfig{
		APIKey:          cfg.OpenAIAPIKey,
		BaseURL:         cfg.OpenAIBaseURL,
		Model:           cfg.Model,
		Timeout:         cfg.LLMTimeout,
		SystemPrompt:    cfg.SystemPrompt,
		MaxInputChars:   cfg.MaxInputChars,
		CacheTTL:        cfg.LLMCacheTTL,
		TokensPerMinute: cfg.LLMTokensPerMinute,
	}
}

func newResearchCmd(a *app) *cobra.Command {
	var (
		wait, asJSON, allowPartial bool
		prompt, id                 string
	)
	cmd := &cobra.Command{
		Use:   "research [flags] URL...",
		Short: "Fetch URLs and analyze them with an LLM: chord(fetch(url)..., analyze)",
		Long: `research enqueues the research pipeline, chord(fetch(url) for each url,
analyze), and prints the workflow id alone on stdout. With --wait it shows
live progress on stderr and prints the analysis (or, with --json, the final
record). A failed source fails the run with that source's error; with
--allow-partial the sources that were fetched are analysed and the failed
ones listed. Workers must serve the default and llm queues.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, urls []string) error {
			ctx := cmd.Context()
			cv, err := tasks.Research(urls, tasks.ResearchOptions{Prompt: prompt, AllowPartial: allowPartial})
			if err != nil {
				return &usageError{err}
			}
			c, err := a.Client(ctx)
			if err != nil {
				return err
			}
			wf, err := c.Submit(ctx, cv, &baton.SubmitOpts{ID: id})
			if err != nil {
				return err
			}
			if !wait {
				fmt.Fprintln(a.stdout, wf.ID)
				return nil
			}
			fmt.Fprintf(a.stderr, "workflow %s: fetching %d sources, then analyze\n", wf.ID, len(urls))
			rec, werr := research.Watch(ctx, c, wf, a.stderr, isTerminal(a.stderr))
			var te *baton.TaskError
			if werr != nil && !errors.As(werr, &te) {
				return werr
			}
			if asJSON {
				full, err := c.Get(ctx, wf.ID)
				if err != nil {
					return err
				}
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(full); err != nil {
					return err
				}
				return stateExit(full.State)
			}
			if werr != nil {
				if steps, err := wf.Steps(ctx); err == nil {
					research.PrintSteps(a.stderr, steps, wf.Plan)
				}
				return werr
			}
			return research.PrintAnalysis(a.stdout, rec)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the analysis, showing progress on stderr")
	cmd.Flags().BoolVar(&asJSON, "json", false, "with --wait, print the workflow's final record as JSON")
	cmd.Flags().StringVar(&prompt, "prompt", "", "system prompt for the analysis (default BATON_SYSTEM_PROMPT)")
	cmd.Flags().BoolVar(&allowPartial, "allow-partial", false, "analyze the sources that were fetched; list the failed ones")
	cmd.Flags().StringVar(&id, "id", "", "Workflow id, "+backend.IDRule+" (default: a new random id)")
	return cmd
}

func newDemoCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the research pipeline end to end on sample sources (embedded Redis unless REDIS_URL is set)",
		Long: `demo runs the research pipeline with nothing to set up: with no REDIS_URL it
starts an embedded in-memory Redis, serves sample sources over local HTTP
(one fails its first request, so a retry shows), starts a worker in this
process and prints live progress, the analysis and a table of every step.
With REDIS_URL set it uses that Redis on its own queues (baton-demo,
baton-demo-llm) and removes its keys afterwards, except the LLM response
cache (baton:llm:*). Set OPENAI_API_KEY or OPENAI_BASE_URL to analyze with a
model; otherwise an offline analyzer runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			opts := demoOptions(a, a.stdout)
			_, fromEnv := os.LookupEnv("REDIS_URL")
			if fromEnv || cmd.Flags().Changed("redis-url") {
				rdb, err := a.Redis(ctx)
				if err != nil {
					return err
				}
				opts.Redis = rdb
			}
			return demoRun(ctx, opts)
		},
	}
	return cmd
}

// isTerminal reports whether w is a terminal (golang.org/x/term), where
// progress redraws its lines in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
