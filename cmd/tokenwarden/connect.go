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

	"github.com/tokenwarden/tokenwarden/internal/codec"
	"github.com/tokenwarden/tokenwarden/internal/health"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/internal/telemetry"
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
	// tel traces requests across the process (OpenTelemetry, off unless
	// the OTEL_* variables ask for it); nil when off.
	tel *telemetry.Telemetry
}

func (d *deps) close() {
	if d.temporal != nil {
		d.temporal.Close()
	}
	if d.pool != nil {
		d.pool.Close()
	}
	// Last: spans of the shutdown itself are exported too.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.tel.Shutdown(ctx); err != nil && d.logger != nil {
		d.logger.Warn("opentelemetry: exporting the last spans failed", "error", err.Error())
	}
}

// connect reaches Temporal, Vault and Postgres, waiting (with a message
// naming whatever is missing) until all three answer, then opens the
// provider catalog.
func connect(ctx context.Context, cfg *config, logger *slog.Logger, stderr io.Writer) (*deps, error) {
	d := &deps{logger: logger, webhooksToInternal: os.Getenv("TOKENWARDEN_WEBHOOKS_TO_INTERNAL") == "1"}
	// A plain client to wait for Temporal with; the real one needs the
	// payload codec's keys, which are in Vault.
	popts, err := cfg.temporalOptions(slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	probe, err := client.NewLazyClient(popts)
	if err != nil {
		return nil, fmt.Errorf("temporal client: %w", err)
	}
	defer probe.Close()
	if d.tel, err = telemetry.FromEnv(ctx, cfg.traceServiceName()); err != nil {
		return nil, err
	}
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
		health.Temporal(probe, cfg.temporalTarget()),
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
	// again on the first 403 and retries (login methods only: nothing can
	// replace a static VAULT_TOKEN).
	d.secrets.Reauth = relogin

	copts, err := cfg.temporalOptions(logger)
	if err != nil {
		d.close()
		return nil, err
	}
	if d.keyring, err = loadKeyring(ctx, cfg, d.secrets); err != nil {
		d.close()
		return nil, err
	}
	if d.keyring != nil {
		copts.DataConverter = codec.DataConverter(d.keyring)
		copts.FailureConverter = codec.FailureConverter(d.keyring)
		logger.Info("payload codec on", "current_key", d.keyring.CurrentKeyID())
	}
	// Tracing first: the outermost interceptor sees every call.
	icpts, err := d.tel.TemporalInterceptors(telemetry.LinkUpdates)
	if err != nil {
		d.close()
		return nil, err
	}
	copts.Interceptors = append(icpts, copts.Interceptors...)
	if d.temporal, err = client.NewLazyClient(copts); err != nil {
		d.close()
		return nil, fmt.Errorf("temporal client: %w", err)
	}
	d.checks[0] = health.Temporal(d.temporal, cfg.temporalTarget())

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
	if d.registry, err = cat.Open(ctx, resolve, d.tel.HTTPClient(providers.DefaultHTTPTimeout)); err != nil {
		d.close()
		return nil, fmt.Errorf("provider catalog %s: %w", cfg.Catalog, err)
	}
	// A client secret changed in Vault is used without a restart.
	go d.registry.WatchSecrets(ctx, cfg.ClientSecretReload, logger)
	return d, nil
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
