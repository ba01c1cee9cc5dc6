package telemetry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/activities"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/internal/telemetry"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/builtin"
	"github.com/tokenwarden/tokenwarden/worker"
)

// tracedProvider is a client-credentials token endpoint that checks the
// client secret and remembers every token it issues.
type tracedProvider struct {
	*httptest.Server
	secret string
	mu     sync.Mutex
	issued []string
	calls  int
}

func newTracedProvider(t *testing.T, secret string) *tracedProvider {
	t.Helper()
	p := &tracedProvider{secret: secret}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if _, s, _ := r.BasicAuth(); s != p.secret {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		p.mu.Lock()
		p.calls++
		tok := fmt.Sprintf("at-traced-%d-%d", time.Now().UnixNano(), p.calls)
		p.issued = append(p.issued, tok)
		p.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *tracedProvider) tokens() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.issued...)
}

// tracedStack is a worker and a gateway on the shared test stack, traced
// as cmd/tokenwarden wires them.
type tracedStack struct {
	exp      *tracetest.InMemoryExporter
	client   *tokenwarden.Client
	apiKey   string
	provider *tracedProvider
	planted  []string
}

func startTraced(t *testing.T) *tracedStack {
	t.Helper()
	ctx := context.Background()
	info := testenv.StackInfo(t)
	exp := tracetest.NewInMemoryExporter()
	tel := telemetry.NewWithExporter(exp)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })

	_, ns := testenv.Temporal(t)
	icpts, err := tel.TemporalInterceptors(telemetry.LinkUpdates)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := client.Dial(client.Options{HostPort: info.TemporalAddress, Namespace: ns, Interceptors: icpts,
		Logger: tlog.NewStructuredLogger(testLogger(t))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	vc, prefix := testenv.Vault(t)
	sec := secrets.New(vc, info.VaultMount, prefix)
	pool, _ := testenv.Postgres(t)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	st := store.New(pool)

	const clientSecret = "cs-traced-PLANTED-1"
	const querySecret = "qs-traced-PLANTED-2"
	prov := newTracedProvider(t, clientSecret)
	if err := sec.PutValue(ctx, "providers/traced", map[string]string{"client_secret": clientSecret}); err != nil {
		t.Fatal(err)
	}
	catalog := fmt.Sprintf(`
providers:
  - name: traced
    kind: oauth2
    client_id: tokenwarden
    client_secret: {vault: "providers/traced#client_secret"}
    auth_style: header
    grants: [client_credentials]
    forced_refresh_interval: 0s
    endpoint: {token_url: "%s/token?sig=%s"}
`, prov.URL, querySecret)
	path := filepath.Join(t.TempDir(), "catalog.yaml")
	if err := os.WriteFile(path, []byte(catalog), 0o600); err != nil {
		t.Fatal(err)
	}
	cat, err := providers.LoadFile(path, builtin.Kinds)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := cat.Open(ctx, func(ctx context.Context, ref providers.SecretRef) (string, error) {
		return sec.Resolve(ctx, ref.Vault)
	}, tel.HTTPClient(providers.DefaultHTTPTimeout))
	if err != nil {
		t.Fatal(err)
	}

	w := worker.New(tc, &activities.Activities{Providers: reg, Secrets: sec, Store: st}, sdkworker.Options{})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)

	srv := httptest.NewUnstartedServer(nil)
	srv.Start()
	t.Cleanup(srv.Close)
	gw := gateway.New(gateway.Deps{Temporal: tc, Store: st, Secrets: sec, Providers: reg, Logger: testLogger(t)},
		gateway.Config{PublicURL: srv.URL})
	t.Cleanup(gw.Close)
	srv.Config.Handler = tel.Handler(gw.Handler(), ginRoutes(t, gw.Handler()))

	key, _, err := st.CreateAPIKey(ctx, store.DefaultTenantID, "traced")
	if err != nil {
		t.Fatal(err)
	}
	return &tracedStack{exp: exp, client: tokenwarden.NewClient(srv.URL, key), apiKey: key, provider: prov,
		planted: []string{clientSecret, querySecret, key}}
}

// ginRoutes are the gateway's route templates, as cmd/tokenwarden reads them.
func ginRoutes(t *testing.T, h http.Handler) []string {
	t.Helper()
	e, ok := h.(*gin.Engine)
	if !ok {
		t.Fatalf("the gateway's handler is a %T, not a gin engine", h)
	}
	var out []string
	for _, r := range e.Routes() {
		out = append(out, r.Path)
	}
	return out
}

// TestRefreshIsOneTrace is issue 14 point 5: a forced refresh through the
// gateway is one trace, from the gateway's server span through the
// Temporal update, workflow and activity spans to the provider HTTP call;
// and no span of the whole test carries a secret.
func TestRefreshIsOneTrace(t *testing.T) {
	s := startTraced(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	link, err := s.client.CreateLink(ctx, tokenwarden.CreateLinkRequest{Provider: "traced", UserID: "alice", Grant: "client_credentials"}, "")
	if err != nil {
		t.Fatalf("create link: %v", err)
	}
	for {
		l, err := s.client.GetLink(ctx, link.ID)
		if err == nil && l.Status == "active" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("link never active: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	before := s.exp.GetSpans().Snapshots()
	s.exp.Reset()

	calls := len(s.provider.tokens())
	if _, err := s.client.Refresh(ctx, link.ID); err != nil {
		t.Fatalf("forced refresh: %v", err)
	}
	if len(s.provider.tokens()) != calls+1 {
		t.Fatalf("the forced refresh made %d provider calls, want 1", len(s.provider.tokens())-calls)
	}
	// The gateway's span ends after its answer is written: poll for it.
	var spans []sdktrace.ReadOnlySpan
	var server sdktrace.ReadOnlySpan
	for server == nil {
		spans = s.exp.GetSpans().Snapshots()
		server = find(spans, func(sp sdktrace.ReadOnlySpan) bool {
			return sp.SpanKind() == trace.SpanKindServer && sp.Name() == "POST /v1/links/:id/refresh"
		})
		if server == nil && ctx.Err() != nil {
			t.Fatalf("no gateway span for the refresh; spans: %v", names(spans))
		}
		time.Sleep(20 * time.Millisecond)
	}
	tid := server.SpanContext().TraceID()
	want := []struct {
		what string
		is   func(sdktrace.ReadOnlySpan) bool
	}{
		{"the Temporal client's update", named("UpdateWorkflow:refresh")},
		{"the workflow's update handler", named("HandleUpdate:refresh")},
		{"the workflow's activity start", named("StartActivity:Refresh")},
		{"the activity", named("RunActivity:Refresh")},
		{"the provider HTTP call", func(sp sdktrace.ReadOnlySpan) bool {
			return sp.SpanKind() == trace.SpanKindClient && attr(sp, "server.address") == "127.0.0.1" &&
				strings.HasPrefix(attr(sp, "url.full"), s.provider.URL+"/token")
		}},
	}
	for _, w := range want {
		sp := find(spans, w.is)
		switch {
		case sp == nil:
			t.Errorf("no span for %s; spans: %v", w.what, names(spans))
		case sp.SpanContext().TraceID() != tid:
			t.Errorf("%s (%s) is in trace %s, not the gateway request's %s", w.what, sp.Name(), sp.SpanContext().TraceID(), tid)
		}
	}

	all := append(before, s.exp.GetSpans().Snapshots()...)
	planted := append(append([]string(nil), s.planted...), s.provider.tokens()...)
	if len(s.provider.tokens()) < 2 {
		t.Fatalf("the provider issued %d tokens, want the enrollment's and the refresh's", len(s.provider.tokens()))
	}
	if hits := scanSpans(all, planted); len(hits) > 0 {
		t.Fatalf("secrets in spans:\n%s", strings.Join(hits, "\n"))
	}
}

// scanSpans lists every span field (name, attributes, events, status,
// links, resource) holding one of secrets.
func scanSpans(spans []sdktrace.ReadOnlySpan, secrets []string) []string {
	var hits []string
	check := func(sp sdktrace.ReadOnlySpan, where, v string) {
		for _, s := range secrets {
			if s != "" && strings.Contains(v, s) {
				hits = append(hits, fmt.Sprintf("span %q %s: a planted secret", sp.Name(), where))
			}
		}
	}
	attrs := func(sp sdktrace.ReadOnlySpan, where string, kvs []attribute.KeyValue) {
		for _, kv := range kvs {
			check(sp, where+" "+string(kv.Key), kv.Value.String())
		}
	}
	for _, sp := range spans {
		check(sp, "name", sp.Name())
		check(sp, "status", sp.Status().Description)
		attrs(sp, "attribute", sp.Attributes())
		for _, ev := range sp.Events() {
			check(sp, "event", ev.Name)
			attrs(sp, "event "+ev.Name, ev.Attributes)
		}
		for _, l := range sp.Links() {
			attrs(sp, "link", l.Attributes)
		}
		if r := sp.Resource(); r != nil {
			attrs(sp, "resource", r.Attributes())
		}
	}
	return hits
}

func find(spans []sdktrace.ReadOnlySpan, is func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
	for _, sp := range spans {
		if is(sp) {
			return sp
		}
	}
	return nil
}

func named(name string) func(sdktrace.ReadOnlySpan) bool {
	return func(sp sdktrace.ReadOnlySpan) bool { return sp.Name() == name }
}

func attr(sp sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range sp.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, sp := range spans {
		out = append(out, sp.Name()+"@"+sp.SpanContext().TraceID().String()[:8])
	}
	return out
}
