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
	// envDashInsecureNoAuth=true is --insecure-no-auth.
	envDashInsecureNoAuth = "BATON_DASH_INSECURE_NO_AUTH"
)

// dashAddrDefault keeps the dashboard on this machine unless --addr says
// otherwise.
const dashAddrDefault = "127.0.0.1:8080"

func newDashCmd(a *app) *cobra.Command {
	var (
		addr       string
		readOnly   bool
		insecureNA bool
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
in its read-only mode.

The dashboard listens on 127.0.0.1:8080 by default. It refuses to listen on
any other than a loopback address without basic auth, unless told so with
--insecure-no-auth (or BATON_DASH_INSECURE_NO_AUTH=true). Cross-site writes
are refused on every route whatever the settings.`,
		Example: `  baton dash
  baton dash --addr 127.0.0.1:9000 --read-only
  BATON_DASH_USER=ops BATON_DASH_PASSWORD=... baton dash --addr :8080`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("insecure-no-auth") {
				if v := os.Getenv(envDashInsecureNoAuth); v != "" {
					b, err := config.ParseBool(v)
					if err != nil {
						return usageErrorf("%s=%q: %w", envDashInsecureNoAuth, v, err)
					}
					insecureNA = b
				}
			}
			return runDash(cmd.Context(), a, addr, readOnly, insecureNA)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", dashAddrDefault, "Listen address of the dashboard; a non-loopback address needs basic auth or --insecure-no-auth")
	cmd.Flags().BoolVar(&readOnly, "read-only", false, "View only: no cancel buttons, asynqmon read-only")
	cmd.Flags().BoolVar(&insecureNA, "insecure-no-auth", false, "Serve a non-loopback address without basic auth (env "+envDashInsecureNoAuth+")")
	return cmd
}

func runDash(ctx context.Context, a *app, addr string, readOnly, insecureNoAuth bool) error {
	user, pass := os.Getenv(envDashUser), os.Getenv(envDashPassword)
	if (user == "") != (pass == "") {
		return usageErrorf("basic auth needs both %s and %s set (or neither)", envDashUser, envDashPassword)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return usageErrorf("--addr %s: %w", addr, err)
	}
	defer ln.Close()
	// Judged on the address actually bound, so a host name counts as what it
	// resolved to.
	loopback := false
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok {
		loopback = tcp.IP.IsLoopback()
	}
	if !loopback && user == "" {
		if !insecureNoAuth {
			return usageErrorf("refusing to serve the dashboard on %s, which is not a loopback address, without authentication: "+
				"set %s and %s, or pass --insecure-no-auth (%s=true) to serve it without a password, or listen on 127.0.0.1",
				ln.Addr(), envDashUser, envDashPassword, envDashInsecureNoAuth)
		}
		a.Logger().Warn("serving the dashboard without authentication on a non-loopback address (--insecure-no-auth): anyone who reaches it can cancel workflows and delete tasks",
			"addr", ln.Addr().String())
	}
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
