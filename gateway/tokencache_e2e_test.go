package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// cacheGateway is one more gateway on the test's stack, with its own token
// cache.
type cacheGateway struct {
	t      *testing.T
	url    string
	client *tokenwarden.Client
}

func newCacheGateway(t *testing.T, s *e2e.Stack) *cacheGateway {
	t.Helper()
	hs := httptest.NewServer(nil)
	t.Cleanup(hs.Close)
	srv := gateway.New(gateway.Deps{Temporal: s.Temporal, Store: s.Store, Secrets: s.GatewaySecrets, Providers: s.Registry, Logger: s.Logger},
		gateway.Config{PublicURL: hs.URL, RateLimit: 1e9, RateBurst: 1 << 30})
	t.Cleanup(srv.Close)
	hs.Config.Handler = srv.Handler()
	return &cacheGateway{t: t, url: hs.URL, client: tokenwarden.NewClient(hs.URL, s.APIKey)}
}

// vaultReads is how many token reads of this gateway went to Vault, from
// its /metrics.
func (g *cacheGateway) vaultReads() int {
	g.t.Helper()
	resp, err := http.Get(g.url + "/metrics")
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^tokenwarden_token_reads_total\{source="vault"\} (\d+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// cached waits until the gateway serves id from its cache: a read that
// costs no Vault read.
func (g *cacheGateway) cached(ctx context.Context, t *testing.T, id string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := g.vaultReads()
		tok, err := g.client.Token(ctx, id, 0)
		if err != nil {
			t.Fatalf("token read: %v", err)
		}
		if g.vaultReads() == before {
			return tok.AccessToken
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway still reads Vault on every token read after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cacheStack(t *testing.T) *e2e.Stack {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("cache-access-%d", n.Add(1)),
			"token_type": "Bearer", "expires_in": 3600})
	}))
	t.Cleanup(srv.Close)
	return e2e.Start(t, e2e.Options{
		VaultSecrets: map[string]map[string]string{"providers/cc": {"client_secret": "cache-client-secret"}},
		Catalog: fmt.Sprintf(`providers:
  - name: cc
    kind: oauth2
    endpoint: {token_url: %q}
    auth_style: body
    client_id: cc
    client_secret: {vault: "providers/cc#client_secret"}
    grants: [client_credentials]
    forced_refresh_interval: 0s
`, srv.URL+"/token"),
	})
}

func activeLink(ctx context.Context, t *testing.T, s *e2e.Stack, user string) string {
	t.Helper()
	l, err := s.Client.CreateLink(ctx, tokenwarden.CreateLinkRequest{Provider: "cc", UserID: user, Grant: "client_credentials"}, "")
	if err != nil {
		t.Fatal(err)
	}
	s.WaitFor(ctx, l.ID, "active", e2e.Status(workflows.StatusActive))
	return l.ID
}

// TestTokenCacheAcrossGateways: two gateways serve a link's token from
// memory (no Vault read); a refresh made through one reaches the other; a
// revoke through one is final at the other the moment it returns; a
// gateway whose PostgreSQL listener drops reads Vault again.
func TestTokenCacheAcrossGateways(t *testing.T) {
	s := cacheStack(t)
	ctx := context.Background()
	a, b := newCacheGateway(t, s), newCacheGateway(t, s)
	id := activeLink(ctx, t, s, "u1")

	old := a.cached(ctx, t, id)
	if got := b.cached(ctx, t, id); got != old {
		t.Fatalf("the gateways serve different tokens")
	}
	before := a.vaultReads() + b.vaultReads()
	for range 200 {
		for _, g := range []*cacheGateway{a, b} {
			if _, err := g.client.Token(ctx, id, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	if extra := a.vaultReads() + b.vaultReads() - before; extra != 0 {
		t.Fatalf("400 cached token reads made %d Vault reads", extra)
	}

	t.Run("a refresh through one gateway reaches the other", func(t *testing.T) {
		if _, err := a.client.Refresh(ctx, id); err != nil {
			t.Fatal(err)
		}
		// At once through the gateway that refreshed (a client forcing a
		// refresh after a 401 reads right after)...
		if tok, err := a.client.Token(ctx, id, 0); err != nil || tok.AccessToken == old {
			t.Fatalf("the read right after a forced refresh through the same gateway: %v, same token %v", err, err == nil)
		}
		// ...and soon through the other.
		deadline := time.Now().Add(10 * time.Second)
		for {
			tok, err := b.client.Token(ctx, id, 0)
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken != old {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("gateway b still serves the token from before the refresh 10 s later")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("a revoke is final at the other gateway when it returns", func(t *testing.T) {
		for i := range 5 {
			revokeRace(ctx, t, s, a, b, fmt.Sprintf("race-%d", i))
		}
	})

	t.Run("a gateway whose listener drops reads Vault", func(t *testing.T) {
		id := activeLink(ctx, t, s, "u2")
		b.cached(ctx, t, id)
		// Every gateway's listener on this database goes (other tests'
		// too: theirs turn off and come back, as here).
		if _, err := s.Pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE query LIKE 'LISTEN %tokenwarden_links%' AND pid <> pg_backend_pid()`); err != nil {
			t.Fatal(err)
		}
		// Within a lease (no word from PostgreSQL), reads go to Vault...
		deadline := time.Now().Add(gateway.DefaultTokenCacheLease + 2*time.Second)
		for {
			before := b.vaultReads()
			if _, err := b.client.Token(ctx, id, 0); err != nil {
				t.Fatal(err)
			}
			if b.vaultReads() > before {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("reads still come from the cache a lease after the listener dropped")
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.cached(ctx, t, id) // ...and the cache comes back
	})
}

// revokeRace reads a link's token through b without pause while a revokes
// it: no read that began after the revoke returned may get a token.
// (TestTokenCacheLease shows the rule that makes this hold when b's
// listener lags.)
func revokeRace(ctx context.Context, t *testing.T, s *e2e.Stack, a, b *cacheGateway, user string) {
	t.Helper()
	id := activeLink(ctx, t, s, user)
	a.cached(ctx, t, id)
	b.cached(ctx, t, id)
	var returned atomic.Pointer[time.Time]
	var bad atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				began := time.Now()
				_, err := b.client.Token(ctx, id, 0)
				var ae *tokenwarden.APIError
				switch {
				case err == nil:
					if r := returned.Load(); r != nil && began.After(*r) {
						bad.Add(1)
					}
				case errors.As(err, &ae):
				default:
					t.Error(err)
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if err := a.client.Revoke(ctx, id, "cache test"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	returned.Store(&now)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Fatalf("gateway b served the token of %s %d times after the revoke through a returned", id, n)
	}
}
