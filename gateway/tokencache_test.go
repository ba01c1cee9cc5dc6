package gateway

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/providers"
)

func cachedToken(v string) secrets.Versioned[providers.Token] {
	return secrets.Versioned[providers.Token]{Value: providers.Token{AccessToken: v}, Version: 1}
}

// A Vault read that began before an invalidation never lands in the cache,
// and a cache without word from PostgreSQL serves nothing.
func TestTokenCacheEntries(t *testing.T) {
	c := newTokenCache(nil, time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, ok := c.get("t/l"); ok {
		t.Fatal("an empty cache served a token")
	}
	c.put(c.begin("t/l"), cachedToken("a"))
	if _, ok := c.get("t/l"); ok {
		t.Fatal("a cache that never heard its own ping served a token")
	}
	c.sentAt[7] = time.Now()
	c.handle("ping:someone-else:7")
	if _, ok := c.get("t/l"); ok {
		t.Fatal("another gateway's ping renewed this cache's lease")
	}
	c.handle("ping:" + c.id + ":7")
	if tok, ok := c.get("t/l"); !ok || tok.Value.AccessToken != "a" {
		t.Fatalf("get = %v, %v after the lease was renewed", tok, ok)
	}

	ticket := c.begin("t/l") // a Vault read begins...
	c.handle("t/l")          // ...the link changes...
	c.put(ticket, cachedToken("stale"))
	if _, ok := c.get("t/l"); ok {
		t.Fatal("a token read before an invalidation was cached after it")
	}
	c.put(c.begin("t/l"), cachedToken("b"))
	if tok, _ := c.get("t/l"); tok.Value.AccessToken != "b" {
		t.Fatalf("got %q, want the token read after the change", tok.Value.AccessToken)
	}
}

// TestTokenCacheLease: a gateway whose listener falls behind stops serving
// from its cache within the lease, so a revoke that waits out the lease
// before it answers is final everywhere, even before the lagging gateway
// has seen the notification.
func TestTokenCacheLease(t *testing.T) {
	pool, _ := testenv.Postgres(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const lease = 400 * time.Millisecond
	a, b := newTokenCache(pool, lease, log), newTokenCache(pool, lease, log)
	a.start()
	b.start()
	t.Cleanup(a.close)
	t.Cleanup(b.close)
	key := "acme/lnk_lease"
	for _, c := range []*tokenCache{a, b} {
		c.put(c.begin(key), cachedToken("secret"))
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, ok := c.get(key); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the cache never became usable")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	b.mu.Lock()
	b.lag = 2 * lease // b now handles each notification late
	b.mu.Unlock()
	time.Sleep(2 * tokenCachePing) // b starts to fall behind
	a.forget(context.Background(), key)
	if _, ok := a.get(key); ok {
		t.Fatal("the revoking gateway still serves the token")
	}
	if _, ok := b.get(key); ok {
		t.Fatal("a lagging gateway served a token whose revoke had returned")
	}
}

// TestStatusNotificationStopsServing: a status change announced on the
// token cache's channel (migration 012) reaches the link status set at
// once, without waiting for its poll; a link serving again leaves it.
func TestStatusNotificationStopsServing(t *testing.T) {
	c := newTokenCache(nil, time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w := newStatusWatch(fixedStatusSource{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.onStatus = w.learn
	notServingNow := func(key string) bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		_, ok := w.links[key]
		return ok
	}
	c.handle("status:reauth_required:acme/lnk_1")
	if !notServingNow("acme/lnk_1") {
		t.Fatal("a link announced reauth_required is not in the set of links that must not serve")
	}
	c.handle("status:active:acme/lnk_1")
	if notServingNow("acme/lnk_1") {
		t.Fatal("a link announced active again stays in the set")
	}
	c.handle("status:revoked:tenant:with:colons/lnk_2")
	if notServingNow("tenant:with:colons/lnk_2") == notServingNow("with:colons/lnk_2") {
		t.Fatal("the key after the status was not taken whole")
	}
}

// fixedStatusSource answers every poll with nothing.
type fixedStatusSource struct{}

func (fixedStatusSource) changedSince(context.Context, time.Time, time.Duration) ([]store.LinkStatusChange, time.Time, error) {
	return nil, time.Now(), nil
}
