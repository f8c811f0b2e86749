package main

import (
	"bytes"
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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- runWithInput(ctx, []string{"dash", "--addr", addr, "--read-only", "--redis-url", b.url},
			strings.NewReader(""), io.Discard, &stderr)
	}()
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	redistest.WaitFor(t, 10*time.Second, "dashboard answers /healthz", func() bool {
		resp, err := cl.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
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

	cancel()
	select {
	case code := <-done:
		require.Equal(t, 0, code, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("dash did not stop")
	}
	require.Contains(t, stderr.String(), "serving dashboard")
	require.Contains(t, stderr.String(), "read_only=true basic_auth=true")
	require.NotContains(t, stderr.String(), "pw-not-in-logs")
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
