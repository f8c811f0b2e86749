package tracing_test

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/otlptest"
	"github.com/batonhq/baton/tracing"
)

// clearOTEL unsets the variables FromEnv looks at, for the test.
func clearOTEL(t *testing.T) {
	for _, v := range []string{tracing.EnvEndpoint, tracing.EnvTracesEndpoint, tracing.EnvProtocol, tracing.EnvTracesProtocol,
		tracing.EnvTracesExporter, tracing.EnvSDKDisabled, tracing.EnvServiceName, "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(v, "")
		require.NoError(t, os.Unsetenv(v))
	}
}

// TestFromEnvOff: without an endpoint, or turned off, there is no tracing.
func TestFromEnvOff(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"no endpoint":   {},
		"sdk disabled":  {tracing.EnvEndpoint: "http://127.0.0.1:4318", tracing.EnvSDKDisabled: "true"},
		"exporter none": {tracing.EnvTracesEndpoint: "http://127.0.0.1:4318/v1/traces", tracing.EnvTracesExporter: "none"},
	} {
		t.Run(name, func(t *testing.T) {
			clearOTEL(t)
			for k, v := range env {
				t.Setenv(k, v)
			}
			require.False(t, tracing.Enabled())
			obs, tp, err := tracing.FromEnv(context.Background(), "baton-worker")
			require.NoError(t, err)
			require.Nil(t, obs)
			require.Nil(t, tp)
		})
	}
}

// TestFromEnvErrors: settings the exporter would ignore or misread are
// refused, naming the variable.
func TestFromEnvErrors(t *testing.T) {
	for _, tc := range []struct{ env, value, want string }{
		{tracing.EnvEndpoint, "localhost:4318", "OTEL_EXPORTER_OTLP_ENDPOINT=\"localhost:4318\": not an http:// or https:// URL"},
		{tracing.EnvProtocol, "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL=\"grpc\": baton exports traces over OTLP/HTTP"},
		{tracing.EnvTracesExporter, "zipkin", "OTEL_TRACES_EXPORTER=\"zipkin\": baton exports traces with otlp only"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			clearOTEL(t)
			t.Setenv(tracing.EnvEndpoint, "http://127.0.0.1:4318")
			t.Setenv(tc.env, tc.value)
			_, _, err := tracing.FromEnv(context.Background(), "baton-worker")
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestFromEnvExports: spans go to the OTLP/HTTP endpoint, decoded as the
// official protobuf, with the service named by the caller unless
// OTEL_SERVICE_NAME says otherwise.
func TestFromEnvExports(t *testing.T) {
	for _, tc := range []struct{ override, want string }{{"", "baton-worker"}, {"my-worker", "my-worker"}} {
		t.Run(tc.want, func(t *testing.T) {
			clearOTEL(t)
			recv := otlptest.Start(t)
			t.Setenv(tracing.EnvEndpoint, recv.URL)
			if tc.override != "" {
				t.Setenv(tracing.EnvServiceName, tc.override)
			}
			ctx := context.Background()
			obs, tp, err := tracing.FromEnv(ctx, "baton-worker")
			require.NoError(t, err)
			require.NotNil(t, obs)
			sctx := obs.Submitting(ctx, baton.SubmitInfo{ID: "wf-env", Kind: "chord"})
			obs.Submitted(sctx, baton.SubmitInfo{ID: "wf-env", Kind: "chord", Tasks: 3}, nil)
			require.NoError(t, tp.Shutdown(ctx)) // flushes
			spans := recv.Spans()
			require.Empty(t, recv.Errors())
			require.Len(t, spans, 1)
			require.Equal(t, "submit chord", spans[0].Name)
			require.Equal(t, "wf-env", spans[0].Attrs[string(tracing.WorkflowID)])
			require.Equal(t, "3", spans[0].Attrs[string(tracing.WorkflowTasks)])
			require.Equal(t, tc.want, spans[0].Resource["service.name"])
			require.Equal(t, strconv.Itoa(os.Getpid()), spans[0].Resource["process.pid"])
		})
	}
}
