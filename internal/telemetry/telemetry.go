// Package telemetry traces a request across the engine with OpenTelemetry:
// the gateway's HTTP handler, the Temporal client, workflow and activities
// (the Temporal SDK's tracing interceptor) and the providers' HTTP calls,
// one trace from a caller's request to the provider's token endpoint.
//
// It is off unless the standard OpenTelemetry environment asks for it
// (FromEnv): then every method here hands back what it was given, and
// nothing is exported or even recorded.
//
// No secret may reach a span: spans carry no headers and no bodies, and
// the redactor (redact.go) drops query strings from URLs and replaces
// the gateway's request paths (which carry OAuth state values) by their
// route templates.
package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Telemetry is a process's tracing. A nil *Telemetry is valid and off.
type Telemetry struct {
	tp       trace.TracerProvider
	prop     propagation.TextMapPropagator
	shutdown func(context.Context) error
}

// Exporters FromEnv knows, as OTEL_TRACES_EXPORTER names them.
const (
	exporterOTLP    = "otlp"
	exporterConsole = "console"
	exporterNone    = "none"
)

// FromEnv sets tracing up from the standard OpenTelemetry variables. It
// is on when OTEL_TRACES_EXPORTER is otlp or console, or, with that unset,
// when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// is; OTEL_SDK_DISABLED=true turns it off. OTLP goes over
// OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL, http/protobuf (the default) or
// grpc; the exporters read endpoint, headers, TLS and timeouts from their
// own variables, the SDK OTEL_TRACES_SAMPLER, and OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES override service, the default service name.
// Off, it returns nil.
func FromEnv(ctx context.Context, service string) (*Telemetry, error) {
	name, err := exporterName()
	if err != nil || name == exporterNone {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	switch name {
	case exporterConsole:
		exp, err = stdouttrace.New()
	default:
		exp, err = otlpExporter(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("opentelemetry %s exporter: %w", name, err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithFromEnv(), // after the default: OTEL_SERVICE_NAME wins
		resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("opentelemetry resource (OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	tp := newProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t := &Telemetry{tp: tp, prop: propagator(), shutdown: tp.Shutdown}
	// Globals too, for any library that traces on its own.
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(t.prop)
	return t, nil
}

// NewWithExporter traces into exp, synchronously and with the same
// redaction as FromEnv: for tests (sdk/trace/tracetest's in-memory
// exporter).
func NewWithExporter(exp sdktrace.SpanExporter) *Telemetry {
	tp := newProvider(sdktrace.WithSyncer(exp))
	return &Telemetry{tp: tp, prop: propagator(), shutdown: tp.Shutdown}
}

// newProvider is a tracer provider whose spans pass the redactor first.
func newProvider(opts ...sdktrace.TracerProviderOption) *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{sdktrace.WithSpanProcessor(redactor{})}, opts...)...)
}

func propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// exporterName is the exporter the environment asks for, exporterNone
// when tracing is off.
func exporterName() (string, error) {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return exporterNone, nil
	}
	v := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")))
	switch v {
	case exporterOTLP, exporterConsole, exporterNone:
		return v, nil
	case "":
		if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
			return exporterOTLP, nil
		}
		return exporterNone, nil
	}
	return "", fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want otlp, console or none", v)
}

func otlpExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch strings.ToLower(strings.TrimSpace(proto)) {
	case "", "http/protobuf":
		return otlptracehttp.New(ctx)
	case "grpc":
		return otlptracegrpc.New(ctx)
	}
	return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want http/protobuf or grpc", proto)
}

// Enabled reports whether spans are recorded.
func (t *Telemetry) Enabled() bool { return t != nil && t.tp != nil }

// Shutdown exports what is still buffered, within ctx.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if !t.Enabled() || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// Tracer is a tracer of the process's provider (a no-op one when off).
func (t *Telemetry) Tracer(name string) trace.Tracer {
	if !t.Enabled() {
		return noop.NewTracerProvider().Tracer(name)
	}
	return t.tp.Tracer(name)
}

// Transport traces the requests sent through base (nil: the default
// transport): a client span per request, its trace context in the
// request's headers.
func (t *Telemetry) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if !t.Enabled() {
		return base
	}
	return otelhttp.NewTransport(urlScrubber{next: base}, otelhttp.WithTracerProvider(t.tp), otelhttp.WithPropagators(t.prop),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "HTTP " + r.Method }))
}

// HTTPClient is a client with timeout whose requests are traced.
func (t *Telemetry) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: t.Transport(nil)}
}

// Handler traces the requests h serves: a server span per request,
// continuing the caller's trace (W3C traceparent). routes are h's route
// templates ("/v1/links/:id/token", gin's syntax): the span is named and
// its path recorded by the template, never the path as sent.
func (t *Telemetry) Handler(h http.Handler, routes []string) http.Handler {
	if !t.Enabled() {
		return h
	}
	m := newRouteMatcher(routes)
	return otelhttp.NewHandler(routeTagger{next: h, routes: m}, "gateway",
		otelhttp.WithTracerProvider(t.tp), otelhttp.WithPropagators(t.prop), otelhttp.WithFilter(notProbe),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + m.match(r.URL.Path) }))
}

// notProbe leaves out the probes and scrapes an orchestrator sends every
// few seconds: a trace each would bury the requests worth looking at.
func notProbe(r *http.Request) bool {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return false
	}
	return true
}
