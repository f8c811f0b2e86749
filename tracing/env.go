package tracing

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Environment variables FromEnv reads itself; the exporter, the sampler and
// the batch processor read the other OTEL_* variables.
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvTracesExporter = "OTEL_TRACES_EXPORTER"
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
	EnvServiceName    = "OTEL_SERVICE_NAME"
)

// Enabled reports whether the environment asks for tracing: an OTLP
// endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), OTEL_SDK_DISABLED is not true and
// OTEL_TRACES_EXPORTER is not none.
func Enabled() bool {
	if os.Getenv(EnvEndpoint) == "" && os.Getenv(EnvTracesEndpoint) == "" {
		return false
	}
	if b, err := strconv.ParseBool(os.Getenv(EnvSDKDisabled)); err == nil && b {
		return false
	}
	return strings.TrimSpace(os.Getenv(EnvTracesExporter)) != "none"
}

// FromEnv builds tracing from the standard OpenTelemetry environment: an
// OTLP/HTTP exporter (OTEL_EXPORTER_OTLP_* variables), the sampler of
// OTEL_TRACES_SAMPLER, a batch span processor (OTEL_BSP_*), and a resource
// naming the service (service, unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES say otherwise) with the process and host. When
// Enabled is false it returns nil, nil, nil. The caller shuts the provider
// down (it flushes what is buffered) before exiting. Errors name the
// variable that is wrong.
func FromEnv(ctx context.Context, service string) (*Observer, *sdktrace.TracerProvider, error) {
	if !Enabled() {
		return nil, nil, nil
	}
	if err := checkEnv(); err != nil {
		return nil, nil, err
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: OTLP/HTTP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(), resource.WithProcessPID(), resource.WithHost())
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, nil, fmt.Errorf("tracing: resource (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME): %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return New(tp, nil), tp, nil
}

// checkEnv rejects what the exporter would silently ignore or misuse: an
// endpoint that is not an http(s) URL (it would fall back to
// localhost:4318), a gRPC protocol (this exporter speaks HTTP), another
// exporter.
func checkEnv() error {
	for _, v := range []string{EnvEndpoint, EnvTracesEndpoint} {
		raw := os.Getenv(v)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s=%q: not an http:// or https:// URL of an OTLP/HTTP collector; use e.g. http://localhost:4318", v, raw)
		}
	}
	for _, v := range []string{EnvProtocol, EnvTracesProtocol} {
		switch p := os.Getenv(v); p {
		case "", "http/protobuf", "http/json":
		default:
			return fmt.Errorf("%s=%q: baton exports traces over OTLP/HTTP; use http/protobuf (the default) or http/json, and the collector's HTTP port (4318)", v, p)
		}
	}
	switch e := strings.TrimSpace(os.Getenv(EnvTracesExporter)); e {
	case "", "otlp":
	default:
		return fmt.Errorf("%s=%q: baton exports traces with otlp only; use otlp, or none to turn tracing off", EnvTracesExporter, e)
	}
	return nil
}
