package secrets_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/providers"
)

func newStore(t *testing.T) *secrets.Store {
	vc, prefix := testenv.Vault(t)
	return secrets.New(vc, testenv.StackInfo(t).VaultMount, prefix)
}

func TestTokenRoundTripAndCheckAndSet(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.ReadToken(ctx, "acme", "lnk_1"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("read of a missing token: %v, want ErrNotFound", err)
	}
	v1, err := s.WriteToken(ctx, "acme", "lnk_1", providers.Token{AccessToken: "at-1", RefreshToken: "rt-1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadToken(ctx, "acme", "lnk_1")
	if err != nil || got.Value.RefreshToken != "rt-1" || got.Version != v1 {
		t.Fatalf("read back: version %d (want %d), err %v", got.Version, v1, err)
	}
	// A writer that read version v1 wins once; a second writer holding v1
	// loses instead of overwriting the rotated token.
	v2, err := s.WriteToken(ctx, "acme", "lnk_1", providers.Token{AccessToken: "at-2", RefreshToken: "rt-2"}, v1)
	if err != nil || v2 != v1+1 {
		t.Fatalf("CAS write: version %d, err %v", v2, err)
	}
	if _, err := s.WriteToken(ctx, "acme", "lnk_1", providers.Token{AccessToken: "at-x", RefreshToken: "rt-x"}, v1); !errors.Is(err, secrets.ErrVersionConflict) {
		t.Fatalf("stale CAS write: %v, want ErrVersionConflict", err)
	}
	got, _ = s.ReadToken(ctx, "acme", "lnk_1")
	if got.Value.RefreshToken != "rt-2" {
		t.Fatal("a stale writer overwrote the rotated refresh token")
	}
	// The gateway's read sees the same token, by the same version, without
	// its refresh token.
	at, err := s.ReadAccessToken(ctx, "acme", "lnk_1")
	if err != nil || at.Value.AccessToken != "at-2" || at.Value.RefreshToken != "" || at.Version != v2 {
		t.Fatalf("access token read: version %d (want %d), err %v", at.Version, v2, err)
	}
	// Another tenant's path holds nothing.
	if _, err := s.ReadToken(ctx, "other", "lnk_1"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("other tenant: %v, want ErrNotFound", err)
	}
}

func TestDeleteLinkDestroysEverythingAndIsIdempotent(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.WriteToken(ctx, "acme", "lnk_2", providers.Token{AccessToken: "at"}, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteGrant(ctx, "acme", "lnk_2", providers.Grant{Type: "password", Password: "pw-secret"}, -1); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := s.DeleteLink(ctx, "acme", "lnk_2"); err != nil {
			t.Fatalf("delete %d: %v", i, err)
		}
	}
	if _, err := s.ReadToken(ctx, "acme", "lnk_2"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("token after delete: %v", err)
	}
	if _, err := s.ReadGrant(ctx, "acme", "lnk_2"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("grant after delete: %v", err)
	}
	if _, err := s.ReadAccessToken(ctx, "acme", "lnk_2"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("access token after delete: %v", err)
	}
	if _, err := s.ReadGrantRequest(ctx, "acme", "lnk_2"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("grant request after delete: %v", err)
	}
}

func TestResolve(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.Resolve(ctx, "providers/none#client_secret"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("missing secret: %v, want ErrNotFound", err)
	}
	if err := s.PutValue(ctx, "providers/p", map[string]string{"client_secret": "cs-value"}); err != nil {
		t.Fatal(err)
	}
	v, err := s.Resolve(ctx, "providers/p#client_secret")
	if err != nil || v != "cs-value" {
		t.Fatalf("resolve: err %v", err)
	}
	if _, err := s.Resolve(ctx, "providers/p#other"); err == nil {
		t.Fatal("missing field resolved")
	}
	if _, err := s.Resolve(ctx, "no-field"); err == nil {
		t.Fatal("reference without #field accepted")
	}
}

func TestUnavailableVault(t *testing.T) {
	vc, _ := testenv.Vault(t)
	c, err := vc.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetAddress("http://127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	c.SetMaxRetries(0)
	s := secrets.New(c, "secret", "tokenwarden/x")
	_, err = s.ReadToken(context.Background(), "acme", "lnk")
	if !errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("unreachable Vault: %v, want ErrUnavailable", err)
	}
}
