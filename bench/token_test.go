// Package bench measures the hot paths on the real stack: a token read
// through the gateway (one Vault read) and a refresh (one provider call plus
// one Vault write). Run with `make bench`; the numbers in README.md came
// from it.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// oauthServer is the cheapest possible token endpoint (client credentials,
// one-hour tokens), so that the numbers are Tokenwarden's own.
func oauthServer(b *testing.B) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"access_token": fmt.Sprintf("bench-access-%d", i), "token_type": "Bearer", "expires_in": 3600,
		})
	}))
	b.Cleanup(srv.Close)
	return srv, &n
}

func stack(b *testing.B) (*e2e.Stack, string, *atomic.Int64) {
	srv, calls := oauthServer(b)
	s := e2e.Start(b, e2e.Options{
		VaultSecrets: map[string]map[string]string{"providers/bench": {"client_secret": "bench-client-secret"}},
		Catalog: fmt.Sprintf(`providers:
  - name: bench
    kind: oauth2
    endpoint: {token_url: %q}
    auth_style: body
    client_id: bench
    client_secret: {vault: "providers/bench#client_secret"}
    grants: [client_credentials]
    forced_refresh_interval: 0s
`, srv.URL+"/token"),
		Gateway: gateway.Config{RateLimit: 1e9, RateBurst: 1 << 30},
	})
	ctx := context.Background()
	l, err := s.Client.CreateLink(ctx, tokenwarden.CreateLinkRequest{Provider: "bench", UserID: "bench", Grant: "client_credentials"}, "")
	if err != nil {
		b.Fatal(err)
	}
	s.WaitFor(ctx, l.ID, "active", e2e.Status(workflows.StatusActive))
	return s, l.ID, calls
}

// BenchmarkTokenRead is GET /v1/links/{id}/token over HTTP, in parallel:
// API key check (cached), one Vault read, JSON out.
func BenchmarkTokenRead(b *testing.B) {
	s, id, calls := stack(b)
	ctx := context.Background()
	before := calls.Load()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Client.Token(ctx, id, 0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if extra := calls.Load() - before; extra != 0 {
		b.Fatalf("token reads caused %d provider calls", extra)
	}
}

// BenchmarkForcedRefresh is POST /v1/links/{id}/refresh through the
// gateway, one at a time: a workflow Update, the refresh activity (Vault
// read, provider call, Vault write with check-and-set), and the audit
// record. The workflow answers before the audit record is written (a
// PostgreSQL outage must never delay a refresh), so each iteration also
// waits until the links table shows the refresh: ns/op includes the audit
// record; answer-ms/op is what the caller waits.
func BenchmarkForcedRefresh(b *testing.B) {
	s, id, calls := stack(b)
	ctx := context.Background()
	before := calls.Load()
	link, err := s.Store.GetLink(ctx, e2e.Tenant, id)
	if err != nil {
		b.Fatal(err)
	}
	recorded := link.RefreshCount
	var answered time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := s.Client.Refresh(ctx, id); err != nil {
			b.Fatal(err)
		}
		answered += time.Since(start)
		recorded++
		for {
			l, err := s.Store.GetLink(ctx, e2e.Tenant, id)
			if err != nil {
				b.Fatal(err)
			}
			if l.RefreshCount >= recorded {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(answered.Seconds()*1000/float64(b.N), "answer-ms/op")
	if got := calls.Load() - before; got != int64(b.N) {
		b.Fatalf("%d refreshes made %d provider calls, want one each", b.N, got)
	}
}
