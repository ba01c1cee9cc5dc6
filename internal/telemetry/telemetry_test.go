package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenwarden/tokenwarden/internal/telemetry"
)

func testLogger(*testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// clearOTelEnv unsets every variable FromEnv reads, for the test.
func clearOTelEnv(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		t.Setenv(k, "")
	}
}

func TestFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		enabled bool
		err     string
	}{
		{"off by default", nil, false, ""},
		{"an OTLP endpoint turns it on", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true, ""},
		{"a traces endpoint too", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true, ""},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, true, ""},
		{"console", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true, ""},
		{"none wins over an endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, false, ""},
		{"the SDK disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false, ""},
		{"an unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, false, "want otlp, console or none"},
		{"an unknown protocol", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, false, "want http/protobuf or grpc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			tel, err := telemetry.FromEnv(context.Background(), "tokenwarden-test")
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("FromEnv: %v, want an error naming %q", err, tc.err)
				}
				return
			case err != nil:
				t.Fatalf("FromEnv: %v", err)
			}
			defer func() { _ = tel.Shutdown(context.Background()) }()
			if tel.Enabled() != tc.enabled {
				t.Fatalf("enabled: %v, want %v", tel.Enabled(), tc.enabled)
			}
		})
	}
}

// TestOffChangesNothing: with tracing off, the HTTP layers are the ones
// given and the Temporal client gets no interceptor.
func TestOffChangesNothing(t *testing.T) {
	var tel *telemetry.Telemetry
	h := http.NewServeMux()
	if got := tel.Handler(h, nil); got != http.Handler(h) {
		t.Errorf("Handler off: %T, want the handler given", got)
	}
	if got := tel.Transport(http.DefaultTransport); got != http.DefaultTransport {
		t.Errorf("Transport off: %T, want the transport given", got)
	}
	if is, err := tel.TemporalInterceptors(telemetry.LinkUpdates); err != nil || len(is) != 0 {
		t.Errorf("TemporalInterceptors off: %d, %v", len(is), err)
	}
}

// TestSpansCarryNoURLSecrets: an OAuth callback's state (in the path) and
// code (in the query), and a provider URL's query and userinfo, never
// reach a span; the server span is named by its route.
func TestSpansCarryNoURLSecrets(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tel := telemetry.NewWithExporter(exp)
	const state, code, key, password = "st-PLANTED-1", "code-PLANTED-2", "key-PLANTED-3", "pw-PLANTED-4"
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer upstream.Close()
	client := &http.Client{Transport: tel.Transport(nil)}
	h := tel.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := strings.Replace(upstream.URL, "http://", "http://user:"+password+"@", 1) + "/token?api_key=" + key
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, u, nil)
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
		}
	}), []string{"/v1/oauth/callback/:state", "/v1/links/:id/proxy/*path", "/v1/links/:id"})
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, p := range []string{"/v1/oauth/callback/" + state + "?code=" + code, "/v1/links/lnk_1/proxy/a/b?x=" + code, "/nowhere/" + state,
		"/healthz", "/readyz", "/metrics"} { // probes: no span
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	// A server span ends after its answer is sent: wait for all three.
	var spans []sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		spans = exp.GetSpans().Snapshots()
		n := 0
		for _, sp := range spans {
			if sp.SpanKind() == trace.SpanKindServer {
				n++
			}
		}
		if n == 3 || time.Now().After(deadline) {
			break
		}
	}
	if hits := scanSpans(spans, []string{state, code, key, password}); len(hits) > 0 {
		t.Fatalf("secrets in spans:\n%s", strings.Join(hits, "\n"))
	}
	var servers, clients []string
	for _, sp := range spans {
		switch sp.SpanKind() {
		case trace.SpanKindServer:
			servers = append(servers, sp.Name()+" "+attr(sp, "url.path"))
		case trace.SpanKindClient:
			clients = append(clients, attr(sp, "url.full"))
		}
	}
	wantServers := "GET /v1/oauth/callback/:state /v1/oauth/callback/:state|GET /v1/links/:id/proxy/*path /v1/links/:id/proxy/*path|GET (unmatched route) (unmatched route)"
	if got := strings.Join(servers, "|"); got != wantServers {
		t.Errorf("server spans: %q\nwant %q", got, wantServers)
	}
	for _, c := range clients {
		if c != upstream.URL+"/token" {
			t.Errorf("client span url.full %q, want %q", c, upstream.URL+"/token")
		}
	}
	if len(clients) != 6 || len(servers) != 3 {
		t.Errorf("%d client and %d server spans, want 6 (each request's handler calls out) and 3 (probes are not traced)", len(clients), len(servers))
	}
}
