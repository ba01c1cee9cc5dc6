package e2e

import (
	"context"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	vaultpolicy "github.com/tokenwarden/tokenwarden/deployments/vault"
	"github.com/tokenwarden/tokenwarden/internal/devstack"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

// gatewaySecrets is a secrets store on the stack's Vault prefix with the
// gateway's own identity: a token carrying the shipped gateway policy,
// rewritten for the prefix. Every end-to-end test thus runs the gateway
// with no more Vault access than a deployment gives it (no refresh token,
// no stored credential), and fails if it ever needs more.
func gatewaySecrets(t testing.TB, info devstack.Info, engine *vault.Client, prefix string) *secrets.Store {
	t.Helper()
	ctx := context.Background()
	root, err := engine.Clone()
	if err != nil {
		t.Fatalf("e2e: vault client: %v", err)
	}
	root.SetToken(info.VaultRootToken)
	name := "e2e-gateway-" + testenv.Name(t, 60)
	if err := root.Sys().PutPolicyWithContext(ctx, name, vaultpolicy.ForPrefix(vaultpolicy.GatewayPolicy, info.VaultMount, prefix)); err != nil {
		t.Fatalf("e2e: gateway policy: %v", err)
	}
	tok, err := root.Auth().Token().CreateWithContext(ctx, &vault.TokenCreateRequest{
		Policies: []string{name}, NoDefaultPolicy: true, TTL: "2h"})
	if err != nil {
		t.Fatalf("e2e: gateway token: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = root.Auth().Token().RevokeTreeWithContext(ctx, tok.Auth.ClientToken)
		_ = root.Sys().DeletePolicyWithContext(ctx, name)
	})
	c, err := engine.Clone()
	if err != nil {
		t.Fatalf("e2e: vault client: %v", err)
	}
	c.SetToken(tok.Auth.ClientToken)
	return secrets.New(c, info.VaultMount, prefix)
}
