package secrets_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
)

// fakeVault answers every request with 403 until the token is "good",
// then reads of one token with a stored value.
func fakeVault(t *testing.T, good *atomic.Bool) *vault.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !good.Load() || r.Header.Get("X-Vault-Token") != "good" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"errors":["permission denied"]}`))
			return
		}
		_, _ = w.Write([]byte(`{"data":{"data":{"v":"{\"access_token\":\"at\"}"},` +
			`"metadata":{"version":3,"created_time":"2026-01-01T00:00:00Z","deletion_time":"","destroyed":false}}}`))
	}))
	t.Cleanup(srv.Close)
	cfg := vault.DefaultConfig()
	cfg.Address = srv.URL
	cfg.MaxRetries = 0
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken("revoked")
	return c
}

func TestDeniedIsClassifiedAndReauthRetriesOnce(t *testing.T) {
	ctx := context.Background()
	t.Run("without Reauth", func(t *testing.T) {
		var good atomic.Bool
		s := secrets.New(fakeVault(t, &good), "secret", "p")
		_, err := s.ReadToken(ctx, "t", "l")
		if !errors.Is(err, secrets.ErrDenied) || errors.Is(err, secrets.ErrUnavailable) {
			t.Fatalf("403: %v, want ErrDenied", err)
		}
	})
	t.Run("with Reauth", func(t *testing.T) {
		var good atomic.Bool
		c := fakeVault(t, &good)
		s := secrets.New(c, "secret", "p")
		logins := 0
		s.Reauth = func(ctx context.Context) error {
			logins++
			good.Store(true)
			c.SetToken("good")
			return nil
		}
		v, err := s.ReadToken(ctx, "t", "l")
		if err != nil || v.Version != 3 || v.Value.AccessToken != "at" {
			t.Fatalf("read after a 403: version %d, err %v", v.Version, err)
		}
		if logins != 1 {
			t.Fatalf("%d logins, want 1", logins)
		}
		// A login that does not help: one more try, then ErrDenied.
		good.Store(false)
		s.Reauth = func(ctx context.Context) error { logins++; return nil }
		if _, err := s.ReadToken(ctx, "t", "l"); !errors.Is(err, secrets.ErrDenied) {
			t.Fatalf("403 after a login: %v, want ErrDenied", err)
		}
		if logins != 2 {
			t.Fatalf("%d logins, want 2", logins)
		}
	})
}
