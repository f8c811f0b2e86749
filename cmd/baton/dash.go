package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/batonhq/baton/config"
	"github.com/batonhq/baton/dash"
)

// Environment variables of the dashboard's basic auth. They are read here
// and nowhere else, and never printed.
const (
	envDashUser     = "BATON_DASH_USER"
	envDashPassword = "BATON_DASH_PASSWORD"
)

// Registered here so this file wires itself; drop the init and list newDashCmd
// in root.go's commands instead if preferred (not both).
func init() { commands = append(commands, newDashCmd) }

func newDashCmd(a *app) *cobra.Command {
	var (
		addr     string
		readOnly bool
	)
	cmd := &cobra.Command{
		Use:   "dash",
		Short: "Serve the web dashboard: queues (asynqmon), workflows as live graphs, /metrics",
		Long: `Serve the dashboard until SIGINT or SIGTERM:

  /workflows        recent workflows, newest first
  /workflows/ID     the canvas drawn as a graph, live while it runs, with a
                    Cancel button (unless --read-only)
  /monitoring/      asynqmon: queues, tasks, retries, archived failures
  /metrics          Prometheus metrics, queue sizes included
  /healthz          200 when Redis answers

Set BATON_DASH_USER and BATON_DASH_PASSWORD to require HTTP basic auth on
every page but /healthz. --read-only hides cancel buttons and puts asynqmon
in its read-only mode.`,
		Example: `  baton dash
  baton dash --addr 127.0.0.1:8080 --read-only
  BATON_DASH_USER=ops BATON_DASH_PASSWORD=... baton dash`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDash(cmd.Context(), a, addr, readOnly)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", ":8080", "Listen address of the dashboard")
	cmd.Flags().BoolVar(&readOnly, "read-only", false, "View only: no cancel buttons, asynqmon read-only")
	return cmd
}

func runDash(ctx context.Context, a *app, addr string, readOnly bool) error {
	user, pass := os.Getenv(envDashUser), os.Getenv(envDashPassword)
	if (user == "") != (pass == "") {
		return usageErrorf("basic auth needs both %s and %s set (or neither)", envDashUser, envDashPassword)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return usageErrorf("--addr %s: %w", addr, err)
	}
	defer ln.Close()
	rdb, err := a.Redis(ctx)
	if err != nil {
		return err
	}
	cl, err := a.Client(ctx)
	if err != nil {
		return err
	}
	log := a.Logger()
	h := dash.New(rdb, cl, dash.Options{ReadOnly: readOnly, BasicAuthUser: user, BasicAuthPass: pass, Logger: log})
	return serveHTTP(ctx, a, ln, h, "dashboard", "read_only", readOnly, "basic_auth", user != "",
		"redis", config.RedactRedisURL(a.cfg.RedisURL))
}

// serveHTTP serves h on ln until ctx ends, then shuts down gracefully.
func serveHTTP(ctx context.Context, a *app, ln net.Listener, h http.Handler, what string, logArgs ...any) error {
	log := a.Logger()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	url := "http://" + ln.Addr().String()
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		url = fmt.Sprintf("http://localhost:%d", tcp.Port)
	}
	log.Info("serving "+what, append([]any{"url", url}, logArgs...)...)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	log.Info(what + " stopped")
	return nil
}
