package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/tokenwarden/tokenwarden/internal/codec"
	"github.com/tokenwarden/tokenwarden/internal/health"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/builtin"
)

// deps are the live connections of a worker or gateway process.
type deps struct {
	temporal client.Client
	vault    *vault.Client
	pool     *pgxpool.Pool
	store    *store.Store
	secrets  *secrets.Store
	registry *providers.Registry
	checks   []health.Check
	logger   *slog.Logger
	// keyring encrypts every Temporal payload; nil when no codec key is
	// configured.
	keyring *codec.Keyring
	// webhooksToInternal lets webhooks reach loopback and private
	// addresses (TOKENWARDEN_WEBHOOKS_TO_INTERNAL=1; make dev sets it).
	webhooksToInternal bool
}

func (d *deps) close() {
	if d.temporal != nil {
		d.temporal.Close()
	}
	if d.pool != nil {
		d.pool.Close()
	}
}

// connect reaches Temporal, Vault and Postgres, waiting (with a message
// naming whatever is missing) until all three answer, then opens the
// provider catalog.
func connect(ctx context.Context, cfg *config, logger *slog.Logger, stderr io.Writer) (*deps, error) {
	d := &deps{logger: logger, webhooksToInternal: os.Getenv("TOKENWARDEN_WEBHOOKS_TO_INTERNAL") == "1"}
	// A plain client to wait for Temporal with; the real one needs the
	// payload codec's keys, which are in Vault.
	probe, err := client.NewLazyClient(client.Options{HostPort: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace,
		Logger: tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		return nil, fmt.Errorf("temporal client: %w", err)
	}
	defer probe.Close()
	vcfg := vault.DefaultConfig()
	vcfg.Address = cfg.VaultAddress
	vcfg.MaxRetries = 0 // the activities retry; a hidden retry loop only hides outages
	if d.vault, err = vault.NewClient(vcfg); err != nil {
		d.close()
		return nil, fmt.Errorf("vault client: %w", err)
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		d.close()
		return nil, fmt.Errorf("database URL: %w (set TOKENWARDEN_DATABASE_URL to postgres://user@host:port/db)", err)
	}
	if d.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		d.close()
		return nil, fmt.Errorf("postgres pool: %w", err)
	}
	d.checks = []health.Check{
		health.Temporal(probe, cfg.TemporalAddress),
		health.Vault(d.vault),
		health.Postgres(d.pool),
	}
	if err := health.WaitFor(ctx, stderr, d.checks...); err != nil {
		d.close()
		return nil, err
	}
	relogin, err := vaultAuth(ctx, d.vault, cfg, logger)
	if err != nil {
		d.close()
		return nil, err
	}
	d.store = store.New(d.pool)
	d.secrets = secrets.New(d.vault, cfg.VaultMount, cfg.VaultPrefix)
	// A token revoked or expired before its renewal: the store logs in
	// again on the first 403 and retries (AppRole only; a VAULT_TOKEN
	// cannot be renewed by us).
	d.secrets.Reauth = relogin

	copts := client.Options{HostPort: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace, Logger: tlog.NewStructuredLogger(logger)}
	if d.keyring, err = loadKeyring(ctx, cfg, d.secrets); err != nil {
		d.close()
		return nil, err
	}
	if d.keyring != nil {
		copts.DataConverter = codec.DataConverter(d.keyring)
		copts.FailureConverter = codec.FailureConverter(d.keyring)
		logger.Info("payload codec on", "current_key", d.keyring.CurrentKeyID())
	}
	if d.temporal, err = client.NewLazyClient(copts); err != nil {
		d.close()
		return nil, fmt.Errorf("temporal client: %w", err)
	}
	d.checks[0] = health.Temporal(d.temporal, cfg.TemporalAddress)

	cat, err := providers.LoadFile(cfg.Catalog, builtin.Kinds)
	if err != nil {
		d.close()
		return nil, fmt.Errorf("provider catalog %s: %w", cfg.Catalog, err)
	}
	for _, w := range cat.Warnings {
		logger.Warn("provider catalog", "warning", w)
	}
	resolve := func(ctx context.Context, ref providers.SecretRef) (string, error) {
		return d.secrets.Resolve(ctx, ref.Vault)
	}
	if d.registry, err = cat.Open(ctx, resolve, nil); err != nil {
		d.close()
		return nil, fmt.Errorf("provider catalog %s: %w", cfg.Catalog, err)
	}
	return d, nil
}

// vaultAuth gives the Vault client a token: VAULT_TOKEN as is, or an
// AppRole login (TOKENWARDEN_VAULT_ROLE_ID/SECRET_ID) renewed in the
// background for as long as ctx lives. The root token is never needed.
// For AppRole it returns relogin, which logs in again at once: the secrets
// store calls it when Vault refuses the current token (403), e.g. after
// the token was revoked. It is nil for VAULT_TOKEN.
func vaultAuth(ctx context.Context, c *vault.Client, cfg *config, logger *slog.Logger) (relogin func(context.Context) error, err error) {
	if cfg.VaultRoleID == "" {
		if cfg.VaultToken == "" {
			return nil, errors.New("no Vault credentials: set TOKENWARDEN_VAULT_ROLE_ID and TOKENWARDEN_VAULT_SECRET_ID (AppRole) or VAULT_TOKEN")
		}
		c.SetToken(cfg.VaultToken)
		return nil, nil
	}
	ttl, err := approleLogin(ctx, c, cfg.VaultRoleID, cfg.VaultSecretID)
	if err != nil {
		return nil, err
	}
	relogin = func(ctx context.Context) error {
		if _, err := approleLogin(ctx, c, cfg.VaultRoleID, cfg.VaultSecretID); err != nil {
			logger.Error("vault refused the token and the AppRole login failed", "error", err)
			return err
		}
		logger.Warn("vault refused the token (revoked or expired); logged in again with AppRole")
		return nil
	}
	go func() {
		for {
			// Log in again at two thirds of the token's life.
			wait := ttl * 2 / 3
			if wait < 10*time.Second {
				wait = 10 * time.Second
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if ttl, err = approleLogin(ctx, c, cfg.VaultRoleID, cfg.VaultSecretID); err != nil {
				logger.Error("vault AppRole login failed; retrying", "error", err)
				ttl = 15 * time.Second
			}
		}
	}()
	return relogin, nil
}

func approleLogin(ctx context.Context, c *vault.Client, roleID, secretID string) (time.Duration, error) {
	// Log in on a token-less copy: the current token may have expired.
	lc, err := c.Clone()
	if err != nil {
		return 0, err
	}
	lc.ClearToken()
	sec, err := lc.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{
		"role_id": roleID, "secret_id": secretID,
	})
	if err != nil {
		return 0, fmt.Errorf("vault AppRole login at %s: %w", c.Address(), err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return 0, fmt.Errorf("vault AppRole login at %s: no token in reply", c.Address())
	}
	c.SetToken(sec.Auth.ClientToken)
	return time.Duration(sec.Auth.LeaseDuration) * time.Second, nil
}

// codecKeysRef is where the payload codec's keyring lives in Vault, as a
// spec "k1:<base64>,k0:<base64>" (first key current).
const codecKeysRef = "codec#keys"

// loadKeyring reads the payload codec keys: TOKENWARDEN_CODEC_KEYS, else
// Vault. No keys means no codec: payloads hold no secrets either way, the
// codec is defence in depth.
func loadKeyring(ctx context.Context, cfg *config, sec *secrets.Store) (*codec.Keyring, error) {
	spec := cfg.CodecKeys
	if spec == "" {
		v, err := sec.Resolve(ctx, codecKeysRef)
		switch {
		case errors.Is(err, secrets.ErrNotFound):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("payload codec keys: %w", err)
		}
		spec = v
	}
	k, err := codec.ParseKeyring(spec)
	if err != nil {
		return nil, fmt.Errorf("payload codec keys (TOKENWARDEN_CODEC_KEYS or Vault %s): %w", codecKeysRef, err)
	}
	return k, nil
}
