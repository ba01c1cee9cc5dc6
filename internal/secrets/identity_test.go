package secrets_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	vaultpolicy "github.com/tokenwarden/tokenwarden/deployments/vault"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/providers"
)

// gatewayPolicy is the policy the gateway's identity gets in these tests:
// the shipped one. With the single policy both processes shared before
// (tokenwarden-policy.hcl of earlier commits) in its place, every refusal
// checked below fails.
var gatewayPolicy = vaultpolicy.GatewayPolicy

// identity is one Vault identity of the engine: its secrets store, and
// its KV client for reads straight at Vault.
type identity struct {
	*secrets.Store
	kv *vault.KVv2
}

// identities returns the worker's and the gateway's identity on a fresh
// private prefix of the shared test stack: Vault tokens carrying the
// shipped policies, rewritten for the prefix. raw holds the stack's
// engine token, for arranging what a test needs.
func identities(t *testing.T) (worker, gateway identity, raw *vault.KVv2, prefix string) {
	t.Helper()
	info := testenv.StackInfo(t)
	engine, prefix := testenv.Vault(t)
	root, err := engine.Clone()
	if err != nil {
		t.Fatal(err)
	}
	root.SetToken(info.VaultRootToken)
	login := func(role, policy string) identity {
		name := "test-" + role + "-" + testenv.Name(t, 60)
		ctx := context.Background()
		if err := root.Sys().PutPolicyWithContext(ctx, name, vaultpolicy.ForPrefix(policy, info.VaultMount, prefix)); err != nil {
			t.Fatalf("write policy %s: %v", name, err)
		}
		tok, err := root.Auth().Token().CreateWithContext(ctx, &vault.TokenCreateRequest{
			Policies: []string{name}, NoDefaultPolicy: true, TTL: "10m"})
		if err != nil {
			t.Fatalf("token for %s: %v", name, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = root.Auth().Token().RevokeTreeWithContext(ctx, tok.Auth.ClientToken)
			_ = root.Sys().DeletePolicyWithContext(ctx, name)
		})
		c, err := engine.Clone()
		if err != nil {
			t.Fatal(err)
		}
		c.SetToken(tok.Auth.ClientToken)
		return identity{Store: secrets.New(c, info.VaultMount, prefix), kv: c.KVv2(info.VaultMount)}
	}
	return login("worker", vaultpolicy.WorkerPolicy), login("gateway", gatewayPolicy), engine.KVv2(info.VaultMount), prefix
}

// putLegacy stores v at path the way the earlier layout did.
func putLegacy(t *testing.T, kv *vault.KVv2, path string, v any, notes map[string]any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]any{"v": string(b)}
	for k, n := range notes {
		data[k] = n
	}
	if _, err := kv.Put(context.Background(), path, data); err != nil {
		t.Fatalf("put %s: %v", path, err)
	}
}

func denied(err error) bool {
	var re *vault.ResponseError
	return errors.Is(err, secrets.ErrDenied) || errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

// TestGatewayIdentityReadsAccessTokensOnly is issue 12, point 4: with the
// gateway's Vault identity, reading a refresh token or a stored password
// is refused, while what the gateway's requests need works; with the
// worker's identity everything works.
func TestGatewayIdentityReadsAccessTokensOnly(t *testing.T) {
	worker, gateway, raw, prefix := identities(t)
	ctx := context.Background()
	const tenant, link = "acme", "lnk_split"
	grant := providers.Grant{Type: providers.GrantPassword, Username: "alice", Password: "pw-secret-1", Scopes: []string{"read"}}
	if _, err := worker.WriteGrant(ctx, tenant, link, grant, -1); err != nil {
		t.Fatal(err)
	}
	tok := providers.Token{AccessToken: "at-secret-1", RefreshToken: "rt-secret-1", IDToken: "id-secret-1",
		TokenType: "Bearer", Expiry: time.Now().Add(time.Hour).UTC().Round(time.Second), Scopes: []string{"read"}}
	ver, err := worker.WriteToken(ctx, tenant, link, tok, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A link of the earlier layout, not moved yet.
	putLegacy(t, raw, prefix+"/tokens/"+tenant+"/lnk_old", tok, nil)
	putLegacy(t, raw, prefix+"/grants/"+tenant+"/lnk_old", grant, nil)
	steps := []struct {
		name string
		// gatewayRefused: the gateway's identity must get 403.
		gatewayRefused bool
		do             func(s *secrets.Store) error
	}{
		{"read the access token", false, func(s *secrets.Store) error {
			v, err := s.ReadAccessToken(ctx, tenant, link)
			if err == nil && (v.Value.AccessToken != tok.AccessToken || v.Value.RefreshToken != "" || v.Value.IDToken != "" || v.Version != ver) {
				t.Errorf("access token read: version %d (want %d), refresh or ID token present: %v", v.Version, ver,
					v.Value.RefreshToken != "" || v.Value.IDToken != "")
			}
			return err
		}},
		{"read the refresh token", true, func(s *secrets.Store) error {
			v, err := s.ReadToken(ctx, tenant, link)
			if err == nil && v.Value.RefreshToken != tok.RefreshToken {
				t.Error("the worker read another refresh token")
			}
			return err
		}},
		{"read the stored password", true, func(s *secrets.Store) error {
			g, err := s.ReadGrant(ctx, tenant, link)
			if err == nil && g.Value.Password != grant.Password {
				t.Error("the worker read another password")
			}
			return err
		}},
		{"read the grant's request part", false, func(s *secrets.Store) error {
			g, err := s.ReadGrantRequest(ctx, tenant, link)
			if err == nil && (g.Value.Password != "" || g.Value.Username != "" || g.Value.Scopes[0] != "read") {
				t.Error("the request part holds credentials or lost the scopes")
			}
			return err
		}},
		{"write new grant material", false, func(s *secrets.Store) error {
			_, err := s.WriteGrant(ctx, tenant, link, grant, -1)
			return err
		}},
		{"read the earlier layout's token", true, func(s *secrets.Store) error {
			// The worker moves the link on this read; the gateway may not
			// even look.
			_, err := s.ReadToken(ctx, tenant, "lnk_old")
			return err
		}},
	}
	for _, id := range []struct {
		name string
		id   identity
	}{{"gateway", gateway}, {"worker", worker}} {
		for _, st := range steps {
			t.Run(id.name+"/"+st.name, func(t *testing.T) {
				err := st.do(id.id.Store)
				switch {
				case id.name == "gateway" && st.gatewayRefused:
					if !denied(err) {
						t.Fatalf("the gateway's identity could %s: err %v, want a 403", st.name, err)
					}
				case err != nil:
					t.Fatalf("%s: %v", st.name, err)
				}
			})
		}
	}
	// Straight at Vault, too: the secrets the worker alone reads answer
	// 403 to the gateway's token, whatever the client.
	for _, p := range []string{"/links/" + tenant + "/" + link + "/refresh", "/links/" + tenant + "/" + link + "/grant"} {
		if _, err := gateway.kv.Get(ctx, prefix+p); !denied(err) {
			t.Errorf("raw read of %s with the gateway's token: %v, want 403", p, err)
		}
		if _, err := worker.kv.Get(ctx, prefix+p); err != nil {
			t.Errorf("raw read of %s with the worker's token: %v", p, err)
		}
	}
	// Wiping a link (revoke of an ended workflow) is the gateway's too.
	if err := gateway.DeleteLink(ctx, tenant, link); err != nil {
		t.Fatalf("gateway wipes a link: %v", err)
	}
	if _, err := worker.ReadToken(ctx, tenant, link); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("token after the gateway wiped the link: %v, want ErrNotFound", err)
	}
}
