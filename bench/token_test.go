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
	"slices"
	"sync"
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

// readers is the parallelism of the read benchmarks: readers×GOMAXPROCS
// goroutines (32 on 2 cores), as many connections as a load generator
// such as wrk -c32 would hold.
const readers = 16

// parallelReads runs read with readers×GOMAXPROCS goroutines and reports
// the latency percentiles beside ns/op (the reciprocal of throughput).
func parallelReads(b *testing.B, read func() error) {
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(readers)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			start := time.Now()
			if err := read(); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / 1e6 }
		b.ReportMetric(at(0.5), "p50-ms")
		b.ReportMetric(at(0.99), "p99-ms")
	}
}

// BenchmarkVaultRead is the yardstick of BenchmarkTokenRead: a Vault KV v2
// read of the same link's access token, in parallel, through the Vault
// client the gateway uses when its cache cannot serve.
func BenchmarkVaultRead(b *testing.B) {
	s, id, _ := stack(b)
	ctx := context.Background()
	parallelReads(b, func() error {
		_, err := s.GatewaySecrets.ReadAccessToken(ctx, e2e.Tenant, id)
		return err
	})
}

// BenchmarkTokenRead is GET /v1/links/{id}/token over HTTP, in parallel:
// API key check (cached), the token from the gateway's cache (a Vault
// read when the link changed), JSON out.
func BenchmarkTokenRead(b *testing.B) {
	s, id, calls := stack(b)
	ctx := context.Background()
	before := calls.Load()
	parallelReads(b, func() error {
		_, err := s.Client.Token(ctx, id, 0)
		return err
	})
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
