package main

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/batonhq/baton/internal/demo"
)

// demoOptions: the demo's worker logs only warnings unless BATON_LOG_LEVEL
// asks for more, so its own output stays readable.
func demoOptions(a *app, out io.Writer) demo.Options {
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if _, set := os.LookupEnv("BATON_LOG_LEVEL"); set {
		log = a.Logger()
	}
	return demo.Options{LLM: llmConfig(a.cfg), Out: out, TTY: isTerminal(out), Logger: log}
}

func demoRun(ctx context.Context, o demo.Options) error { return demo.Run(ctx, o) }
