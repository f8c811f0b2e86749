package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/redistest"
)

func TestDashCommand(t *testing.T) {
	b := setup(t)
	addr := "127.0.0.1:" + closedPort(t)
	t.Setenv(envDashUser, "ops")
	t.Setenv(envDashPassword, "pw-not-in-logs")
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	stop := startDash(t, addr, "dash", "--addr", addr, "--read-only", "--redis-url", b.url)
	resp, err := cl.Get("http://" + addr + "/workflows")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/workflows", nil)
	req.SetBasicAuth("ops", "pw-not-in-logs")
	resp, err = cl.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	stderr := stop()
	require.Contains(t, stderr, "serving dashboard")
	require.Contains(t, stderr, "read_only=true basic_auth=true")
	require.NotContains(t, stderr, "pw-not-in-logs")
}

// startDash runs the CLI with args in the background until the dashboard
// answers /healthz on reach (host:port); stop interrupts it, checks that it
// exited 0 and returns its stderr.
func startDash(t *testing.T, reach string, args ...string) (stop func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- runWithInput(ctx, args, strings.NewReader(""), io.Discard, &stderr) }()
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	redistest.WaitFor(t, 10*time.Second, "dashboard answers /healthz", func() bool {
		resp, err := cl.Get("http://" + reach + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return func() string {
		t.Helper()
		cancel()
		select {
		case code := <-done:
			require.Equal(t, 0, code, stderr.String())
		case <-time.After(10 * time.Second):
			t.Fatal("dash did not stop")
		}
		return stderr.String()
	}
}

func TestDashCommandUsage(t *testing.T) {
	b := setup(t)
	t.Setenv(envDashUser, "ops")
	o := b.run(t, "dash", "--addr", "127.0.0.1:"+closedPort(t)).requireCode(t, 2)
	require.Contains(t, o.stderr, envDashPassword)
	t.Setenv(envDashUser, "")
	o = b.run(t, "dash", "--addr", "256.0.0.1:99999").requireCode(t, 2)
	require.Contains(t, o.stderr, "--addr")
}

// TestDashDefaults: the dashboard listens on loopback unless told
// otherwise, and will not serve a non-loopback address without basic auth
// unless --insecure-no-auth (or BATON_DASH_INSECURE_NO_AUTH=true) says so.
func TestDashDefaults(t *testing.T) {
	b := setup(t)
	t.Setenv(envDashUser, "")
	t.Setenv(envDashPassword, "")
	t.Setenv(envDashInsecureNoAuth, "")

	cmd := newDashCmd(newApp(strings.NewReader(""), io.Discard, io.Discard))
	require.Equal(t, "127.0.0.1:8080", cmd.Flags().Lookup("addr").DefValue)

	t.Run("all interfaces without auth is refused", func(t *testing.T) {
		o := b.run(t, "dash", "--addr", "0.0.0.0:"+closedPort(t)).requireCode(t, exitUsage)
		for _, want := range []string{"not a loopback address", envDashUser, envDashPassword, "--insecure-no-auth", envDashInsecureNoAuth + "=true"} {
			require.Contains(t, o.stderr, want)
		}
	})
	t.Run("an invalid BATON_DASH_INSECURE_NO_AUTH is refused", func(t *testing.T) {
		t.Setenv(envDashInsecureNoAuth, "perhaps")
		o := b.run(t, "dash", "--addr", "127.0.0.1:"+closedPort(t)).requireCode(t, exitUsage)
		require.Contains(t, o.stderr, envDashInsecureNoAuth)
	})
	serves := func(t *testing.T, args ...string) string {
		t.Helper()
		port := closedPort(t)
		return startDash(t, "127.0.0.1:"+port, append([]string{"dash", "--addr", "0.0.0.0:" + port, "--redis-url", b.url}, args...)...)()
	}
	t.Run("--insecure-no-auth serves it, with a warning", func(t *testing.T) {
		require.Contains(t, serves(t, "--insecure-no-auth"), "without authentication")
	})
	t.Run("BATON_DASH_INSECURE_NO_AUTH=true serves it", func(t *testing.T) {
		t.Setenv(envDashInsecureNoAuth, "true")
		require.Contains(t, serves(t), "without authentication")
	})
	t.Run("BATON_DASH_INSECURE_NO_AUTH reads booleans as every variable does", func(t *testing.T) {
		t.Setenv(envDashInsecureNoAuth, "yes")
		require.Contains(t, serves(t), "without authentication")
	})
	t.Run("basic auth serves it", func(t *testing.T) {
		t.Setenv(envDashUser, "ops")
		t.Setenv(envDashPassword, "pw")
		require.NotContains(t, serves(t), "without authentication")
	})
}
