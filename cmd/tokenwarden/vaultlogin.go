package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/providers"
)

// vaultLogin is how a process logs in to Vault beyond VAULT_TOKEN and
// the AppRole IDs of config: the method, a secret ID in a file (possibly
// response-wrapped), and Kubernetes auth. None of these is a secret (a
// file's path is not its content), so each has a flag.
type vaultLogin struct {
	VaultAuth            string
	VaultSecretIDFile    string
	VaultSecretIDWrapped bool
	VaultK8sRole         string
	VaultK8sMount        string
	VaultK8sTokenFile    string
	// ClientSecretReload is how often the catalog's client secrets are
	// read again from Vault (providers.Registry.WatchSecrets).
	ClientSecretReload time.Duration
}

// registerVaultLogin adds the flags of the Vault login method.
func (c *config) registerVaultLogin(fs *flag.FlagSet) {
	fs.StringVar(&c.VaultAuth, "vault-auth", env("TOKENWARDEN_VAULT_AUTH", ""),
		"how to log in to Vault: approle, kubernetes or token (TOKENWARDEN_VAULT_AUTH); default approle with TOKENWARDEN_VAULT_ROLE_ID, else token with VAULT_TOKEN, else kubernetes with -vault-k8s-role")
	fs.StringVar(&c.VaultSecretIDFile, "vault-secret-id-file", env("TOKENWARDEN_VAULT_SECRET_ID_FILE", ""),
		"file holding the AppRole secret ID, read at every login, instead of TOKENWARDEN_VAULT_SECRET_ID (TOKENWARDEN_VAULT_SECRET_ID_FILE)")
	fs.BoolVar(&c.VaultSecretIDWrapped, "vault-secret-id-wrapped", c.envBool("TOKENWARDEN_VAULT_SECRET_ID_WRAPPED", false),
		"the AppRole secret ID given is a response-wrapping token: unwrap it once (TOKENWARDEN_VAULT_SECRET_ID_WRAPPED)")
	fs.StringVar(&c.VaultK8sRole, "vault-k8s-role", env("TOKENWARDEN_VAULT_K8S_ROLE", ""),
		"Vault Kubernetes auth role bound to this pod's service account (TOKENWARDEN_VAULT_K8S_ROLE)")
	fs.StringVar(&c.VaultK8sMount, "vault-k8s-mount", env("TOKENWARDEN_VAULT_K8S_MOUNT", "kubernetes"),
		"mount path of Vault's Kubernetes auth method (TOKENWARDEN_VAULT_K8S_MOUNT)")
	fs.StringVar(&c.VaultK8sTokenFile, "vault-k8s-token-file", env("TOKENWARDEN_VAULT_K8S_TOKEN_FILE", secrets.DefaultServiceAccountTokenFile),
		"service account token presented to Vault, read at every login (TOKENWARDEN_VAULT_K8S_TOKEN_FILE)")
	fs.DurationVar(&c.ClientSecretReload, "client-secret-reload", c.envDuration("TOKENWARDEN_CLIENT_SECRET_RELOAD", providers.DefaultSecretReloadInterval),
		"how often the catalog's client secrets are read again from Vault; a provider answering invalid_client has them read at once (TOKENWARDEN_CLIENT_SECRET_RELOAD)")
}

// vaultAuthConfig is the process's Vault login as internal/secrets takes it.
func (c *config) vaultAuthConfig() secrets.AuthConfig {
	return secrets.AuthConfig{
		Method:          c.VaultAuth,
		Token:           c.VaultToken,
		RoleID:          c.VaultRoleID,
		SecretID:        c.VaultSecretID,
		SecretIDFile:    c.VaultSecretIDFile,
		SecretIDWrapped: c.VaultSecretIDWrapped,
		K8sRole:         c.VaultK8sRole,
		K8sMount:        c.VaultK8sMount,
		K8sTokenFile:    c.VaultK8sTokenFile,
	}
}

// vaultAuth gives the Vault client a token (secrets.Login: a static
// VAULT_TOKEN, an AppRole or a Kubernetes login) and keeps it alive in
// the background for as long as ctx lives: renewed while Vault allows,
// logged in again when it ends. It returns relogin for the secrets
// store, which calls it when Vault refuses the current token (403, e.g.
// revoked); nil for a static token, which nothing can replace. The root
// token is never needed.
func vaultAuth(ctx context.Context, c *vault.Client, cfg *config, logger *slog.Logger) (relogin func(context.Context) error, err error) {
	sess, err := secrets.Login(ctx, c, cfg.vaultAuthConfig(), logger)
	if err != nil {
		return nil, err
	}
	logger.Info("vault: logged in", "method", sess.Method())
	go sess.Keep(ctx)
	return sess.Reauth(), nil
}
