package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	vaultpolicy "github.com/tokenwarden/tokenwarden/deployments/vault"
)

// vaultInit is what `vault operator init` returns and a restart needs: the
// one unseal key and the root token. Kept in <Dir>/vault/init.json, 0600.
type vaultInit struct {
	UnsealKey string `json:"unseal_key"`
	RootToken string `json:"root_token"`
}

// vaultAppRole holds the secret IDs of the engine's two AppRoles, kept
// across restarts so every start does not mint more.
type vaultAppRole struct {
	// SecretID is the worker's (role tokenwarden-worker).
	SecretID string `json:"secret_id"`
	// GatewaySecretID is the gateway's (role tokenwarden-gateway).
	GatewaySecretID string `json:"gateway_secret_id"`
}

// StartVault starts Vault (initialising it on first use), unseals it with
// the saved key and bootstraps the KV v2 mount and the engine's two
// identities (the worker's and the gateway's policy and AppRole), then
// logs both in.
func (s *Stack) StartVault(ctx context.Context) error {
	s.mu.Lock()
	running := s.vault != nil
	s.mu.Unlock()
	if running {
		return errors.New("devstack: vault is already running")
	}
	if err := s.startVault(ctx); err != nil {
		return fmt.Errorf("devstack: vault: %w", err)
	}
	return nil
}

func (s *Stack) startVault(ctx context.Context) error {
	bin, err := s.binary("vault")
	if err != nil {
		return err
	}
	root := filepath.Join(s.dir, "vault")
	if err := os.MkdirAll(filepath.Join(root, "data"), 0o700); err != nil {
		return err
	}
	port := s.opts.Ports.Vault
	config := fmt.Sprintf(`# Written by devstack on every start.
storage "file" {
  path = %q
}

listener "tcp" {
  address     = %q
  tls_disable = true
}

api_addr      = "http://%s"
disable_mlock = true
ui            = false
`, filepath.Join(root, "data"), hostPort(port), hostPort(port))
	configPath := filepath.Join(root, "config.hcl")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return err
	}

	fmt.Fprintf(s.log, "vault: starting on %s (log: %s)\n", hostPort(port), filepath.Join(s.dir, "logs", "vault.log"))
	p, err := s.spawn(spawnSpec{
		name: "vault",
		path: bin,
		args: []string{"server", "-config=" + configPath},
		env:  childEnv(),
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.vault = p
	s.mu.Unlock()

	fail := func(err error) error {
		_ = s.StopVault()
		return err
	}
	c, err := s.vaultClient("")
	if err != nil {
		return fail(err)
	}
	if err := p.waitReady(ctx, 60*time.Second, func(ctx context.Context) error {
		_, err := c.Sys().SealStatusWithContext(ctx)
		return err
	}); err != nil {
		return fail(err)
	}
	keys, err := s.vaultInitAndUnseal(ctx, c)
	if err != nil {
		return fail(err)
	}
	c.SetToken(keys.RootToken)
	// Unsealed is not yet active: wait until requests are served.
	if err := p.waitReady(ctx, 60*time.Second, func(ctx context.Context) error {
		h, err := c.Sys().HealthWithContext(ctx)
		if err != nil {
			return err
		}
		if !h.Initialized || h.Sealed || h.Standby {
			return fmt.Errorf("not active yet (initialized=%t sealed=%t standby=%t)", h.Initialized, h.Sealed, h.Standby)
		}
		return nil
	}); err != nil {
		return fail(err)
	}
	if err := s.vaultBootstrap(ctx, p, c, keys.RootToken); err != nil {
		return fail(err)
	}
	fmt.Fprintf(s.log, "vault: ready (%s, KV v2 at secret/, AppRoles %s and %s)\n", s.Info().VaultAddress,
		vaultpolicy.WorkerPolicyName, vaultpolicy.GatewayPolicyName)
	return nil
}

func (s *Stack) vaultClient(token string) (*vaultapi.Client, error) {
	cfg := vaultapi.DefaultConfig()
	cfg.Address = "http://" + hostPort(s.opts.Ports.Vault)
	cfg.MaxRetries = 0
	cfg.Timeout = 10 * time.Second
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	// NewClient reads VAULT_TOKEN and VAULT_NAMESPACE: never talk to the
	// dev Vault with a token meant for another one.
	c.ClearToken()
	c.ClearNamespace()
	if token != "" {
		c.SetToken(token)
	}
	return c, nil
}

func (s *Stack) vaultInitAndUnseal(ctx context.Context, c *vaultapi.Client) (vaultInit, error) {
	var keys vaultInit
	initPath := filepath.Join(s.dir, "vault", "init.json")
	saved, readErr := os.ReadFile(initPath)
	initialized, err := c.Sys().InitStatusWithContext(ctx)
	if err != nil {
		return keys, fmt.Errorf("init status: %w", err)
	}
	switch {
	case !initialized && readErr == nil:
		return keys, fmt.Errorf("%s exists but Vault's storage is empty: the two belong together; remove %s to start afresh", initPath, s.dir)
	case !initialized:
		fmt.Fprintln(s.log, "vault: initialising (1 key share)")
		resp, err := c.Sys().InitWithContext(ctx, &vaultapi.InitRequest{SecretShares: 1, SecretThreshold: 1})
		if err != nil {
			return keys, fmt.Errorf("init: %w", err)
		}
		if len(resp.KeysB64) != 1 {
			return keys, fmt.Errorf("init returned %d unseal keys, want 1", len(resp.KeysB64))
		}
		keys = vaultInit{UnsealKey: resp.KeysB64[0], RootToken: resp.RootToken}
		b, _ := json.MarshalIndent(keys, "", "  ")
		if err := writeFileAtomic(initPath, append(b, '\n'), 0o600); err != nil {
			return keys, err
		}
	case readErr != nil:
		return keys, fmt.Errorf("the unseal key of the initialised Vault cannot be read (%v): remove %s to start afresh", readErr, s.dir)
	default:
		if err := json.Unmarshal(saved, &keys); err != nil || keys.UnsealKey == "" || keys.RootToken == "" {
			return keys, fmt.Errorf("%s is damaged: remove %s to start afresh", initPath, s.dir)
		}
	}
	st, err := c.Sys().SealStatusWithContext(ctx)
	if err != nil {
		return keys, fmt.Errorf("seal status: %w", err)
	}
	if st.Sealed {
		st, err = c.Sys().UnsealWithContext(ctx, keys.UnsealKey)
		if err != nil {
			return keys, fmt.Errorf("unseal with the key in %s: %w", initPath, err)
		}
		if st.Sealed {
			return keys, fmt.Errorf("still sealed after unsealing with the key in %s", initPath)
		}
	}
	return keys, nil
}

// vaultBootstrap makes the mount and the engine's two identities exist
// (every start, so a changed policy file takes effect) and logs both in.
func (s *Stack) vaultBootstrap(ctx context.Context, p *process, c *vaultapi.Client, rootToken string) error {
	sys := c.Sys()
	mounts, err := sys.ListMountsWithContext(ctx)
	if err != nil {
		return fmt.Errorf("list mounts: %w", err)
	}
	if m, ok := mounts["secret/"]; !ok {
		if err := sys.MountWithContext(ctx, "secret", &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
			return fmt.Errorf("mount KV v2 at secret/: %w", err)
		}
	} else if m.Type != "kv" || m.Options["version"] != "2" {
		return fmt.Errorf("secret/ is mounted as %s %v, want kv version 2", m.Type, m.Options)
	}
	// A new KV v2 mount answers "upgrading" for a moment; callers get the
	// stack only once it serves reads.
	if err := p.waitReady(ctx, 30*time.Second, func(ctx context.Context) error {
		_, err := c.Logical().ReadWithContext(ctx, "secret/metadata/tokenwarden")
		return err
	}); err != nil {
		return fmt.Errorf("KV v2 mount not serving: %w", err)
	}

	auths, err := sys.ListAuthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("list auth methods: %w", err)
	}
	if _, ok := auths["approle/"]; !ok {
		if err := sys.EnableAuthWithOptionsWithContext(ctx, "approle", &vaultapi.EnableAuthOptions{Type: "approle"}); err != nil {
			return fmt.Errorf("enable approle: %w", err)
		}
	}
	// The one identity both processes shared before the split: gone, so
	// that nothing of this stack logs in with its wider policy.
	if _, err := c.Logical().DeleteWithContext(ctx, "auth/approle/role/"+legacyRole); err != nil {
		return fmt.Errorf("delete AppRole %s: %w", legacyRole, err)
	}
	if err := sys.DeletePolicyWithContext(ctx, legacyRole); err != nil {
		return fmt.Errorf("delete policy %s: %w", legacyRole, err)
	}

	approlePath := filepath.Join(s.dir, "vault", "approle.json")
	var saved vaultAppRole
	if b, err := os.ReadFile(approlePath); err == nil {
		_ = json.Unmarshal(b, &saved)
	}
	worker, err := s.vaultIdentity(ctx, c, vaultpolicy.WorkerPolicyName, vaultpolicy.WorkerPolicy, &saved.SecretID)
	if err != nil {
		return err
	}
	gateway, err := s.vaultIdentity(ctx, c, vaultpolicy.GatewayPolicyName, vaultpolicy.GatewayPolicy, &saved.GatewaySecretID)
	if err != nil {
		return err
	}
	if worker.minted || gateway.minted {
		b, _ := json.MarshalIndent(saved, "", "  ")
		if err := writeFileAtomic(approlePath, append(b, '\n'), 0o600); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.info.VaultRootToken = rootToken
	s.info.VaultRoleID, s.info.VaultSecretID = worker.roleID, saved.SecretID
	s.info.VaultGatewayRoleID, s.info.VaultGatewaySecretID = gateway.roleID, saved.GatewaySecretID
	// Tokens from before a restart of Vault alone are still valid (the
	// token store is persisted): keep them so callers holding them are
	// not disturbed.
	if s.info.VaultToken == "" {
		s.info.VaultToken = worker.token
	}
	if s.info.VaultGatewayToken == "" {
		s.info.VaultGatewayToken = gateway.token
	}
	s.mu.Unlock()
	return nil
}

// legacyRole names the AppRole and policy of the single identity the
// worker and the gateway shared before each had its own.
const legacyRole = "tokenwarden"

// vaultLogin is one of the engine's identities, logged in.
type vaultLogin struct {
	roleID, token string
	// minted: the saved secret ID did not work and a new one was made.
	minted bool
}

// vaultIdentity writes the policy and the AppRole named name (every start,
// so a changed policy file takes effect) and logs in with the saved
// secret ID, minting a new one into *secretID when it does not work.
func (s *Stack) vaultIdentity(ctx context.Context, c *vaultapi.Client, name, policy string, secretID *string) (vaultLogin, error) {
	var l vaultLogin
	if err := c.Sys().PutPolicyWithContext(ctx, name, policy); err != nil {
		return l, fmt.Errorf("write policy %s: %w", name, err)
	}
	role := "auth/approle/role/" + name
	if _, err := c.Logical().WriteWithContext(ctx, role, map[string]any{
		"token_policies": []string{name},
		"token_type":     "service",
		"token_ttl":      "24h",
		"token_max_ttl":  "768h",
		"secret_id_ttl":  "0",
	}); err != nil {
		return l, fmt.Errorf("write AppRole %s: %w", name, err)
	}
	sec, err := c.Logical().ReadWithContext(ctx, role+"/role-id")
	if err != nil || sec == nil {
		return l, fmt.Errorf("read AppRole %s role_id: %v", name, err)
	}
	l.roleID, _ = sec.Data["role_id"].(string)
	if *secretID != "" {
		if l.token, err = s.approleLogin(ctx, name, l.roleID, *secretID); err == nil {
			return l, nil
		}
	}
	sec, err = c.Logical().WriteWithContext(ctx, role+"/secret-id", nil)
	if err != nil || sec == nil {
		return l, fmt.Errorf("generate AppRole %s secret_id: %v", name, err)
	}
	*secretID, _ = sec.Data["secret_id"].(string)
	l.minted = true
	if l.token, err = s.approleLogin(ctx, name, l.roleID, *secretID); err != nil {
		return l, err
	}
	return l, nil
}

func (s *Stack) approleLogin(ctx context.Context, name, roleID, secretID string) (string, error) {
	if roleID == "" || secretID == "" {
		return "", errors.New("AppRole login: no credentials")
	}
	c, err := s.vaultClient("")
	if err != nil {
		return "", err
	}
	sec, err := c.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil {
		// The error text can echo the request; say only which step failed.
		return "", fmt.Errorf("AppRole login as %s failed", name)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return "", errors.New("AppRole login returned no token")
	}
	return sec.Auth.ClientToken, nil
}

// StopVault stops Vault gracefully (SIGTERM seals it and flushes storage).
func (s *Stack) StopVault() error {
	s.mu.Lock()
	p := s.vault
	s.vault = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	fmt.Fprintln(s.log, "vault: stopping")
	if err := p.stop(syscall.SIGTERM, true, 30*time.Second); err != nil {
		return fmt.Errorf("devstack: vault: %w", err)
	}
	_ = os.Remove(filepath.Join(s.dir, "run", "vault.pid"))
	return nil
}
