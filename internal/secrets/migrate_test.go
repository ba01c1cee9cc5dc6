package secrets_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/providers"
)

// gone reports that nothing is stored at path any more.
func gone(t *testing.T, kv *vault.KVv2, path string) bool {
	t.Helper()
	_, err := kv.GetMetadata(context.Background(), path)
	return errors.Is(err, vault.ErrSecretNotFound)
}

// TestLinkOfTheEarlierLayoutMovesOnTheWorkersRead: a link stored as one
// token secret and one grant secret keeps working. Until the worker moves
// it, the gateway finds no token (not a refusal: a retryable "none right
// now"); the worker's first read moves it, note and all, and destroys the
// old secrets.
func TestLinkOfTheEarlierLayoutMovesOnTheWorkersRead(t *testing.T) {
	worker, gateway, raw, prefix := identities(t)
	ctx := context.Background()
	tok := providers.Token{AccessToken: "at-old-1", RefreshToken: "rt-old-1", TokenType: "Bearer",
		Expiry: time.Now().Add(time.Hour).UTC().Round(time.Second)}
	grant := providers.Grant{Type: providers.GrantPassword, Username: "bob", Password: "pw-old-1"}
	putLegacy(t, raw, prefix+"/tokens/acme/lnk_old", tok, map[string]any{"enrollment": "grant-v3"})
	putLegacy(t, raw, prefix+"/grants/acme/lnk_old", grant, nil)

	if _, err := gateway.ReadAccessToken(ctx, "acme", "lnk_old"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("gateway before the move: %v, want ErrNotFound", err)
	}
	got, err := worker.ReadToken(ctx, "acme", "lnk_old")
	if err != nil || got.Value.RefreshToken != tok.RefreshToken || got.Enrollment != "grant-v3" || got.Version != 1 {
		t.Fatalf("worker's read: version %d, enrollment %q, err %v", got.Version, got.Enrollment, err)
	}
	for _, p := range []string{"/tokens/acme/lnk_old", "/grants/acme/lnk_old"} {
		if !gone(t, raw, prefix+p) {
			t.Errorf("%s survived the move", p)
		}
	}
	if at, err := gateway.ReadAccessToken(ctx, "acme", "lnk_old"); err != nil || at.Value.AccessToken != tok.AccessToken || at.Version != got.Version {
		t.Fatalf("gateway after the move: version %d, err %v", at.Version, err)
	}
	if g, err := worker.ReadGrant(ctx, "acme", "lnk_old"); err != nil || g.Value.Password != grant.Password {
		t.Fatalf("grant after the move: err %v", err)
	}
	if g, err := gateway.ReadGrantRequest(ctx, "acme", "lnk_old"); err != nil || g.Value.Type != grant.Type || g.Value.Password != "" {
		t.Fatalf("request part after the move: err %v", err)
	}
}

// TestMigrateLegacyMovesEveryLinkAndDropsRefusedOnes is `tokenwarden
// migrate -vault`: every link of the earlier layout moves, except those
// keep refuses (revoked), whose secrets are destroyed; a second run finds
// nothing; a link written anew meanwhile is never overwritten.
func TestMigrateLegacyMovesEveryLinkAndDropsRefusedOnes(t *testing.T) {
	worker, _, raw, prefix := identities(t)
	ctx := context.Background()
	tok := func(n string) providers.Token {
		return providers.Token{AccessToken: "at-" + n, RefreshToken: "rt-" + n}
	}
	putLegacy(t, raw, prefix+"/tokens/acme/lnk_a", tok("a"), nil)
	putLegacy(t, raw, prefix+"/grants/acme/lnk_a", providers.Grant{Type: "client_credentials"}, nil)
	putLegacy(t, raw, prefix+"/grants/beta/lnk_pending", providers.Grant{Type: "password", Password: "pw-pending"}, nil)
	putLegacy(t, raw, prefix+"/tokens/acme/lnk_revoked", tok("revoked"), nil)
	// Already in the new layout with a newer token: the old copy must not win.
	putLegacy(t, raw, prefix+"/tokens/acme/lnk_new", tok("stale"), nil)
	if _, err := worker.WriteToken(ctx, "acme", "lnk_new", tok("fresh"), 0); err != nil {
		t.Fatal(err)
	}

	keep := func(ctx context.Context, tenant, link string) (bool, error) { return link != "lnk_revoked", nil }
	m, err := worker.MigrateLegacy(ctx, keep)
	if err != nil || m != (secrets.Migration{Moved: 3, Dropped: 1}) {
		t.Fatalf("migrate: %+v, err %v; want 3 moved, 1 dropped", m, err)
	}
	for link, want := range map[string]string{"lnk_a": "rt-a", "lnk_new": "rt-fresh"} {
		if v, err := worker.ReadToken(ctx, "acme", link); err != nil || v.Value.RefreshToken != want {
			t.Errorf("%s after the migration: err %v (right token: %v)", link, err, v.Value.RefreshToken == want)
		}
	}
	if g, err := worker.ReadGrant(ctx, "beta", "lnk_pending"); err != nil || g.Value.Password != "pw-pending" {
		t.Errorf("pending link's grant after the migration: err %v", err)
	}
	if _, err := worker.ReadToken(ctx, "acme", "lnk_revoked"); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("revoked link after the migration: %v, want ErrNotFound", err)
	}
	for _, p := range []string{"/tokens/acme/lnk_a", "/grants/acme/lnk_a", "/grants/beta/lnk_pending", "/tokens/acme/lnk_revoked", "/tokens/acme/lnk_new"} {
		if !gone(t, raw, prefix+p) {
			t.Errorf("%s survived the migration", p)
		}
	}
	if m, err := worker.MigrateLegacy(ctx, keep); err != nil || m != (secrets.Migration{}) {
		t.Fatalf("second run: %+v, err %v; want nothing to do", m, err)
	}
}

// TestAccessTokenCatchesUpAfterACrashBetweenTheTwoWrites: WriteToken
// stores the refresh secret, then the access secret. A worker that dies
// between the two leaves the gateway the previous access token (still
// valid), and the next read by any worker brings it up to date, so an
// attempt that adopts the stored token rather than write again does not
// leave the gateway behind.
func TestAccessTokenCatchesUpAfterACrashBetweenTheTwoWrites(t *testing.T) {
	worker, gateway, raw, prefix := identities(t)
	ctx := context.Background()
	v1, err := worker.WriteToken(ctx, "acme", "lnk_c", providers.Token{AccessToken: "at-c1", RefreshToken: "rt-c1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The first of WriteToken's two writes, and nothing more.
	b, _ := json.Marshal(providers.Token{AccessToken: "at-c2", RefreshToken: "rt-c2"})
	if _, err := raw.Put(ctx, prefix+"/links/acme/lnk_c/refresh", map[string]any{"v": string(b)}, vault.WithCheckAndSet(v1)); err != nil {
		t.Fatal(err)
	}
	if at, err := gateway.ReadAccessToken(ctx, "acme", "lnk_c"); err != nil || at.Value.AccessToken != "at-c1" || at.Version != v1 {
		t.Fatalf("gateway after the crash: version %d (want %d), err %v", at.Version, v1, err)
	}
	cur, err := worker.ReadToken(ctx, "acme", "lnk_c")
	if err != nil || cur.Value.RefreshToken != "rt-c2" || cur.Version != v1+1 {
		t.Fatalf("worker's read: version %d, err %v", cur.Version, err)
	}
	if at, err := gateway.ReadAccessToken(ctx, "acme", "lnk_c"); err != nil || at.Value.AccessToken != "at-c2" || at.Version != cur.Version {
		t.Fatalf("gateway after the worker's read: version %d (want %d), err %v", at.Version, cur.Version, err)
	}
}
