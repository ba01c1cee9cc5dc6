package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"

	vaultpolicy "github.com/tokenwarden/tokenwarden/deployments/vault"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/providers"
)

// legacyLinks is a test stack corner holding two links in the earlier
// Vault layout (one secret per link): lnk_live, active, and lnk_gone,
// revoked by a gateway that could wipe only the new layout.
type legacyLinks struct {
	store  *store.Store
	sec    *secrets.Store
	vault  *vault.Client
	prefix string
	dsn    string
}

func newLegacyLinks(t *testing.T) legacyLinks {
	t.Helper()
	info := testenv.StackInfo(t)
	pool, schema := testenv.Postgres(t)
	vc, prefix := testenv.Vault(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	l := legacyLinks{store: store.New(pool), sec: secrets.New(vc, info.VaultMount, prefix), vault: vc, prefix: prefix}
	for id, status := range map[string]string{"lnk_live": "active", "lnk_gone": "revoked"} {
		if _, _, err := l.store.CreateLink(ctx, store.Link{ID: id, TenantID: store.DefaultTenantID, Provider: "p", UserID: "u",
			GrantType: "password", Status: status, VaultPath: "x"}); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(providers.Token{AccessToken: "at-" + id, RefreshToken: "rt-" + id})
		if _, err := vc.KVv2(info.VaultMount).Put(ctx, prefix+"/tokens/default/"+id, map[string]any{"v": string(b)}); err != nil {
			t.Fatal(err)
		}
	}
	u, err := url.Parse(info.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	l.dsn = u.String()
	return l
}

// check fails t unless lnk_live moved and lnk_gone's secrets are gone.
func (l legacyLinks) check(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if at, err := l.sec.ReadAccessToken(ctx, store.DefaultTenantID, "lnk_live"); err != nil || at.Value.AccessToken != "at-lnk_live" {
		t.Fatalf("moved link's access token: err %v", err)
	}
	if _, err := l.sec.ReadToken(ctx, store.DefaultTenantID, "lnk_gone"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("revoked link's token: %v, want ErrNotFound", err)
	}
}

// TestMigrateVault is `tokenwarden migrate -vault` against the test stack.
func TestMigrateVault(t *testing.T) {
	l := newLegacyLinks(t)
	info := testenv.StackInfo(t)
	t.Setenv("VAULT_ADDR", info.VaultAddress)
	t.Setenv("VAULT_TOKEN", l.vault.Token())
	t.Setenv("TOKENWARDEN_VAULT_ROLE_ID", "")
	t.Setenv("TOKENWARDEN_VAULT_MOUNT", info.VaultMount)
	t.Setenv("TOKENWARDEN_VAULT_PREFIX", l.prefix)
	ctx := context.Background()

	var out, errOut bytes.Buffer
	if err := runMigrate(ctx, []string{"-vault", "-database-url", l.dsn}, &out, &errOut); err != nil {
		t.Fatalf("migrate -vault: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "vault: 1 links moved to the per-link layout, 1 revoked links' secrets destroyed") {
		t.Fatalf("migrate -vault said:\n%s", out.String())
	}
	l.check(t)
	if err := runMigrate(ctx, []string{"-vault", "-down-to", "0", "-database-url", l.dsn}, &out, &errOut); err == nil ||
		!strings.Contains(err.Error(), "without -down-to") {
		t.Fatalf("migrate -vault -down-to 0: %v, want a refusal naming the fix", err)
	}
}

// TestWorkerMovesTheEarlierLayoutAtStart is the same move as every worker
// makes at its start (serveWorkerStopping), logged.
func TestWorkerMovesTheEarlierLayoutAtStart(t *testing.T) {
	l := newLegacyLinks(t)
	var logs bytes.Buffer
	migrateVaultLayout(context.Background(), &deps{secrets: l.sec, store: l.store}, slog.New(slog.NewTextHandler(&logs, nil)))
	if !strings.Contains(logs.String(), "moved=1 dropped_revoked=1") {
		t.Fatalf("worker's log:\n%s", logs.String())
	}
	l.check(t)
}

// TestGatewayWarnsOfAWideVaultIdentity: a gateway started with the
// worker's Vault identity says so; with its own it is quiet.
func TestGatewayWarnsOfAWideVaultIdentity(t *testing.T) {
	info := testenv.StackInfo(t)
	engine, prefix := testenv.Vault(t)
	root, err := engine.Clone()
	if err != nil {
		t.Fatal(err)
	}
	root.SetToken(info.VaultRootToken)
	ctx := context.Background()
	name := "test-gateway-" + testenv.Name(t, 50)
	if err := root.Sys().PutPolicyWithContext(ctx, name, vaultpolicy.ForPrefix(vaultpolicy.GatewayPolicy, info.VaultMount, prefix)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = root.Sys().DeletePolicyWithContext(context.Background(), name) })
	// The default policy lets a token ask Vault about its own capabilities.
	tok, err := root.Auth().Token().CreateWithContext(ctx, &vault.TokenCreateRequest{Policies: []string{name}, TTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	gateway, err := engine.Clone()
	if err != nil {
		t.Fatal(err)
	}
	gateway.SetToken(tok.Auth.ClientToken)
	cfg := &config{VaultMount: info.VaultMount, VaultPrefix: prefix}
	for _, c := range []struct {
		name  string
		vault *vault.Client
		warns bool
	}{{"the worker's identity", engine, true}, {"the gateway's own", gateway, false}} {
		var logs bytes.Buffer
		warnWideVaultIdentity(ctx, &deps{vault: c.vault}, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		if got := strings.Contains(logs.String(), "may read refresh tokens"); got != c.warns {
			t.Errorf("gateway with %s: warned %v, want %v:\n%s", c.name, got, c.warns, logs.String())
		}
	}
}
