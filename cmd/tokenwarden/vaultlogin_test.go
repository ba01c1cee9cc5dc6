package main

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
)

func TestVaultLoginConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		want   secrets.AuthConfig
		reload time.Duration
		err    string
	}{
		{name: "defaults", want: secrets.AuthConfig{K8sMount: "kubernetes", K8sTokenFile: secrets.DefaultServiceAccountTokenFile},
			reload: time.Minute},
		{name: "kubernetes from the environment", env: map[string]string{
			"TOKENWARDEN_VAULT_AUTH": "kubernetes", "TOKENWARDEN_VAULT_K8S_ROLE": "tokenwarden-gateway",
			"TOKENWARDEN_VAULT_K8S_MOUNT": "k8s-prod", "TOKENWARDEN_VAULT_K8S_TOKEN_FILE": "/var/run/secrets/vault/token",
			"TOKENWARDEN_CLIENT_SECRET_RELOAD": "15s"},
			want: secrets.AuthConfig{Method: "kubernetes", K8sRole: "tokenwarden-gateway", K8sMount: "k8s-prod",
				K8sTokenFile: "/var/run/secrets/vault/token"}, reload: 15 * time.Second},
		{name: "wrapped secret ID file, flags win", env: map[string]string{
			"TOKENWARDEN_VAULT_ROLE_ID": "role", "TOKENWARDEN_VAULT_SECRET_ID_FILE": "/env/path", "TOKENWARDEN_VAULT_SECRET_ID_WRAPPED": "1"},
			args: []string{"-vault-secret-id-file", "/flag/path"},
			want: secrets.AuthConfig{RoleID: "role", SecretIDFile: "/flag/path", SecretIDWrapped: true,
				K8sMount: "kubernetes", K8sTokenFile: secrets.DefaultServiceAccountTokenFile}, reload: time.Minute},
		{name: "a wrapped flag that does not parse", env: map[string]string{"TOKENWARDEN_VAULT_SECRET_ID_WRAPPED": "yes please"},
			err: "TOKENWARDEN_VAULT_SECRET_ID_WRAPPED"},
		{name: "a reload interval that does not parse", env: map[string]string{"TOKENWARDEN_CLIENT_SECRET_RELOAD": "soon"},
			err: "TOKENWARDEN_CLIENT_SECRET_RELOAD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"VAULT_TOKEN", "TOKENWARDEN_VAULT_ROLE_ID", "TOKENWARDEN_VAULT_SECRET_ID", "TOKENWARDEN_VAULT_AUTH",
				"TOKENWARDEN_VAULT_SECRET_ID_FILE", "TOKENWARDEN_VAULT_SECRET_ID_WRAPPED", "TOKENWARDEN_VAULT_K8S_ROLE",
				"TOKENWARDEN_VAULT_K8S_MOUNT", "TOKENWARDEN_VAULT_K8S_TOKEN_FILE", "TOKENWARDEN_CLIENT_SECRET_RELOAD"} {
				t.Setenv(k, tc.env[k])
			}
			var cfg config
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg.registerVault(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if tc.err != "" {
				if cfg.envErr == nil || !strings.Contains(cfg.envErr.Error(), tc.err) {
					t.Fatalf("envErr %v, want one naming %s", cfg.envErr, tc.err)
				}
				return
			}
			if cfg.envErr != nil {
				t.Fatal(cfg.envErr)
			}
			if got := cfg.vaultAuthConfig(); got != tc.want {
				t.Errorf("auth config %+v\nwant %+v", got, tc.want)
			}
			if cfg.ClientSecretReload != tc.reload {
				t.Errorf("reload %s, want %s", cfg.ClientSecretReload, tc.reload)
			}
		})
	}
}
