package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"golang.org/x/time/rate"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5/pgxpool"
	sdkworker "go.temporal.io/sdk/worker"
	"golang.org/x/net/netutil"

	"github.com/tokenwarden/tokenwarden/activities"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/codec"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/worker"
	"github.com/tokenwarden/tokenwarden/workflows"
)

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.register(fs)
	cfg.registerWorker(fs)
	cfg.registerWorkerOps(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.validate(roleWorker); err != nil {
		return err
	}
	cfg.traceService = "tokenwarden-worker"
	logger := cfg.logger(stderr)
	// Before connecting: /healthz answers while the worker waits for its
	// dependencies, and the Temporal client reports to /metrics.
	ops, err := startWorkerOps(&cfg, logger)
	if err != nil {
		return err
	}
	defer ops.close()
	d, err := connect(ctx, &cfg, logger, cfg.waitOutput(logger, stderr))
	if err != nil {
		return err
	}
	// Closed only after the worker has stopped: activities finishing
	// during the stop still need Temporal, Vault and PostgreSQL.
	defer d.close()
	ops.connected(d, &cfg)
	// Process-wide, and before the worker starts (the SDK reads it once).
	sdkworker.SetStickyWorkflowCacheSize(int(cfg.WorkflowCache))
	return serveWorkerStopping(ctx, d, logger, cfg.WorkerStopTimeout, ops, func(o *sdkworker.Options) {
		o.MaxConcurrentWorkflowTaskPollers = int(cfg.Pollers)
		o.MaxConcurrentActivityTaskPollers = int(cfg.Pollers)
	})
}

// serveWorker runs the link worker until ctx ends, then stops it
// gracefully within defaultWorkerStopTimeout.
func serveWorker(ctx context.Context, d *deps, logger *slog.Logger) error {
	return serveWorkerStopping(ctx, d, logger, defaultWorkerStopTimeout, nil, nil)
}

// serveWorkerStopping runs the link worker until ctx ends (SIGTERM), then
// stops it gracefully: it stops polling at once, so another worker takes
// new tasks, and lets running activities finish for up to stopTimeout.
// Only then are their contexts cancelled (the SDK's WorkerStopTimeout):
// a refresh whose provider call has rotated the refresh token gets to
// store the new one in Vault and report it, rather than drop it. ops
// (nil in the dev stack) measures the activities and reports the
// worker's state on /readyz.
func serveWorkerStopping(ctx context.Context, d *deps, logger *slog.Logger, stopTimeout time.Duration, ops *workerOps, tune func(*sdkworker.Options)) error {
	acts := &activities.Activities{Providers: d.registry, Secrets: d.secrets, Store: d.store,
		WebhooksToInternal: d.webhooksToInternal, Metrics: ops.activityMetrics()}
	opts := sdkworker.Options{WorkerStopTimeout: stopTimeout, Interceptors: ops.interceptors()}
	if tune != nil {
		tune(&opts)
	}
	w := worker.New(d.temporal, acts, opts)
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	ops.setState(workerRunning)
	logger.Info("worker started", "task_queue", "tokenwarden-links", "stop_timeout", stopTimeout.String(),
		"pollers", opts.MaxConcurrentWorkflowTaskPollers)
	moved := make(chan struct{})
	go func() {
		defer close(moved)
		migrateVaultLayout(ctx, d, logger)
	}()
	<-ctx.Done()
	ops.setState(workerStopping)
	logger.Info("worker stopping: no new tasks; running activities may finish", "stop_timeout", stopTimeout.String())
	start := time.Now()
	w.Stop()
	<-moved
	logger.Info("worker stopped", "took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// migrateVaultLayout moves every link's secrets still in the earlier Vault
// layout (one secret for the token, one for the grant, both readable by
// the gateway) to the per-link layout whose refresh tokens and credentials
// only the worker reads. Every worker does it at its start, beside its
// work: a link an activity touches is moved by that read anyway, and the
// gateway, which cannot read the earlier layout, answers "no token right
// now, retry" for a link not yet moved.
func migrateVaultLayout(ctx context.Context, d *deps, logger *slog.Logger) {
	m, err := d.secrets.MigrateLegacy(ctx, keepLinkSecrets(d.store))
	switch {
	case err != nil && ctx.Err() == nil:
		logger.Error("vault: moving link secrets to the per-link layout failed; the next start or `tokenwarden migrate -vault` tries again", "error", err.Error())
	case m.Moved+m.Dropped > 0:
		logger.Info("vault: link secrets moved to the per-link layout", "moved", m.Moved, "dropped_revoked", m.Dropped)
	}
}

// keepLinkSecrets decides, for the Vault migration, whether a link's
// secrets are moved or destroyed: a link its row says is revoked had its
// secrets wiped in the new layout only (the gateway cannot reach the
// earlier one), so what is left of it goes. A link without a row keeps
// its secrets: nothing is destroyed on a guess.
func keepLinkSecrets(st *store.Store) func(ctx context.Context, tenant, link string) (bool, error) {
	return func(ctx context.Context, tenant, link string) (bool, error) {
		l, err := st.GetLink(ctx, tenant, link)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return true, nil
		case err != nil:
			return false, err
		}
		return l.Status != string(workflows.StatusRevoked), nil
	}
}

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.register(fs)
	cfg.registerGateway(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.validate(roleGateway); err != nil {
		return err
	}
	cfg.traceService = "tokenwarden-gateway"
	logger := cfg.logger(stderr)
	d, err := connect(ctx, &cfg, logger, cfg.waitOutput(logger, stderr))
	if err != nil {
		return err
	}
	defer d.close()
	if err := bootstrapKey(ctx, d.store, cfg.BootstrapAPIKey); err != nil {
		return err
	}
	return serveGateway(ctx, d, &cfg, logger)
}

// bootstrapKey registers TOKENWARDEN_BOOTSTRAP_API_KEY for tenant
// "default", so a fresh install has one working key.
func bootstrapKey(ctx context.Context, st *store.Store, key string) error {
	if key == "" {
		return nil
	}
	if _, err := st.EnsureTenant(ctx, store.DefaultTenantID, "Default tenant"); err != nil {
		return fmt.Errorf("bootstrap tenant: %w", err)
	}
	if _, err := st.InsertAPIKeyHash(ctx, store.DefaultTenantID, "bootstrap", key); err != nil {
		return fmt.Errorf("bootstrap API key (TOKENWARDEN_BOOTSTRAP_API_KEY): %w", err)
	}
	return nil
}

// serveGateway serves the REST API until ctx ends, then drains.
func serveGateway(ctx context.Context, d *deps, cfg *config, logger *slog.Logger) error {
	ln, err := listenGateway(cfg)
	if err != nil {
		return err
	}
	return serveGatewayOn(ctx, ln, d, cfg, logger)
}

func listenGateway(cfg *config) (net.Listener, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("gateway: listen on %s: %w (set TOKENWARDEN_LISTEN to a free address)", cfg.Listen, err)
	}
	return ln, nil
}

// serveGatewayOn serves on a listener the caller opened (so that it can
// say "ready" only once the port is taken).
func serveGatewayOn(ctx context.Context, ln net.Listener, d *deps, cfg *config, logger *slog.Logger) error {
	cfg.gatewayDefaults()
	warnWideVaultIdentity(ctx, d, cfg, logger)
	// The codec authenticates API keys through the gateway (its cache,
	// negative cache and failure limit); srv is set before any request.
	var srv *gateway.Server
	checkKey := func(r *http.Request) bool { return srv.CheckAPIKey(r) }
	srv = gateway.New(gateway.Deps{
		Temporal:  d.temporal,
		Store:     d.store,
		Secrets:   d.secrets,
		Providers: d.registry,
		Checks:    d.checks,
		Logger:    logger,
		Codec:     codecHandler(d, cfg, checkKey),
	}, gateway.Config{
		PublicURL:            cfg.publicURL(),
		AllowedReturnOrigins: cfg.returnOrigins(),
		StatsInterval:        cfg.StatsInterval,
		RateLimit:            rate.Limit(cfg.RateLimit),
		RateBurst:            cfg.RateBurst,
		MetricsToken:         cfg.MetricsToken,
		MetricsSeparate:      cfg.MetricsListen != "",
		TokenCacheLease:      tokenCacheLease(cfg.TokenCacheLease),
	})
	defer srv.Close()
	servers := []*http.Server{newHTTPServer(cfg, d.tel.Handler(srv.Handler(), ginRoutes(srv.Handler())))}
	listeners := []net.Listener{limitListener(ln, cfg.MaxConnections)}
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("gateway: metrics: listen on %s: %w (set TOKENWARDEN_METRICS_LISTEN to a free address)", cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", srv.MetricsHandler())
		servers = append(servers, newHTTPServer(cfg, mux))
		listeners = append(listeners, limitListener(mln, 64))
		logger.Info("metrics listening", "address", mln.Addr().String())
	}
	errc := make(chan error, len(servers))
	for i, hs := range servers {
		go func() { errc <- hs.Serve(listeners[i]) }()
	}
	logger.Info("gateway listening", "address", ln.Addr().String(), "max_connections", cfg.MaxConnections,
		"read_timeout", cfg.ReadTimeout.String(), "write_timeout", cfg.WriteTimeout.String(), "idle_timeout", cfg.IdleTimeout.String())
	var serveErr error
	select {
	case err := <-errc:
		serveErr = fmt.Errorf("gateway: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	for _, hs := range servers {
		if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) && serveErr == nil {
			serveErr = fmt.Errorf("gateway shutdown: %w", err)
		}
	}
	return serveErr
}

// warnWideVaultIdentity warns when the gateway's Vault identity may read
// refresh tokens: it was given the worker's identity, or a wider one,
// instead of its own (AppRole tokenwarden-gateway). A warning, not a
// refusal, so that a deployment can move to two identities at its pace; a
// token that may not ask Vault about itself says nothing either way.
func warnWideVaultIdentity(ctx context.Context, d *deps, cfg *config, logger *slog.Logger) {
	if d.vault == nil {
		return
	}
	probe := cfg.VaultMount + "/data/" + cfg.VaultPrefix + "/links/any-tenant/any-link/refresh"
	caps, err := d.vault.Sys().CapabilitiesSelfWithContext(ctx, probe)
	if err == nil && (slices.Contains(caps, "read") || slices.Contains(caps, "root")) {
		logger.Warn("the gateway's Vault identity may read refresh tokens: give the gateway its own " +
			"(AppRole tokenwarden-gateway with deployments/vault/tokenwarden-gateway-policy.hcl; docs/deploy.md, 2.3)")
	}
}

// newHTTPServer is the gateway's http.Server with its timeouts: a request
// must arrive whole within ReadTimeout (a body trickled in is cut off),
// be answered within WriteTimeout (above the longest wait for a workflow),
// and a keep-alive connection may idle IdleTimeout.
func newHTTPServer(cfg *config, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
}

// limitListener accepts at most n connections at a time; the rest wait in
// the kernel's backlog until one closes.
func limitListener(ln net.Listener, n int) net.Listener { return netutil.LimitListener(ln, n) }

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dsn := fs.String("database-url", env("TOKENWARDEN_DATABASE_URL", "postgres://tokenwarden@127.0.0.1:5433/tokenwarden?sslmode=disable"), "PostgreSQL URL (TOKENWARDEN_DATABASE_URL)")
	down := fs.Int("down-to", -1, "migrate down to this version instead of up (0 removes everything)")
	var cfg config
	withVault := fs.Bool("vault", false, "also move link secrets of the earlier Vault layout to the per-link one, with the worker's Vault identity "+
		"(TOKENWARDEN_VAULT_ROLE_ID and TOKENWARDEN_VAULT_SECRET_ID, or VAULT_TOKEN); workers also do it at their start")
	cfg.registerVault(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *withVault && *down >= 0 {
		return errors.New("-vault moves secrets forward only: run it without -down-to")
	}
	if err := migrate(ctx, *dsn, *down, stdout); err != nil || !*withVault {
		return err
	}
	return migrateVault(ctx, &cfg, *dsn, stdout)
}

// migrateVault is `tokenwarden migrate -vault`: the Vault migration of
// migrateVaultLayout, run once, reporting what it did.
func migrateVault(ctx context.Context, cfg *config, dsn string, stdout io.Writer) error {
	vcfg := vault.DefaultConfig()
	vcfg.Address = cfg.VaultAddress
	vc, err := vault.NewClient(vcfg)
	if err != nil {
		return fmt.Errorf("vault client: %w", err)
	}
	logger := newLogger(io.Discard)
	if _, err := vaultAuth(ctx, vc, cfg, logger); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return fmt.Errorf("database URL: %w", err)
	}
	defer pool.Close()
	sec := secrets.New(vc, cfg.VaultMount, cfg.VaultPrefix)
	m, err := sec.MigrateLegacy(ctx, keepLinkSecrets(store.New(pool)))
	if err != nil {
		if errors.Is(err, secrets.ErrDenied) {
			return fmt.Errorf("vault: %w: run it with the worker's identity (the gateway's may not read the secrets it moves)", err)
		}
		return fmt.Errorf("vault: %w", err)
	}
	fmt.Fprintf(stdout, "vault: %d links moved to the per-link layout, %d revoked links' secrets destroyed\n", m.Moved, m.Dropped)
	return nil
}

func migrate(ctx context.Context, dsn string, downTo int, stdout io.Writer) error {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return fmt.Errorf("database URL: %w", err)
	}
	defer pool.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(cctx); err != nil {
		return fmt.Errorf("PostgreSQL at %s is unreachable: %w (is it running? `make dev` starts one)", pool.Config().ConnConfig.Host, err)
	}
	if downTo >= 0 {
		if err := store.MigrateDown(ctx, pool, downTo); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "migrated down to version %d\n", downTo)
		return nil
	}
	if err := store.Migrate(ctx, pool); err != nil {
		return err
	}
	ms, _ := store.Migrations()
	fmt.Fprintf(stdout, "database is at version %d\n", len(ms))
	return nil
}

// codecHandler serves the payload codec to the Temporal UI, or nil when no
// codec is configured. See codecAuthorize for who may use it.
func codecHandler(d *deps, cfg *config, checkKey func(*http.Request) bool) http.Handler {
	if d.keyring == nil {
		return nil
	}
	return codec.Handler(d.keyring, codec.HandlerOptions{
		AllowedOrigins: cfg.codecOrigins(),
		Authorize:      codecAuthorize(cfg, checkKey),
		MaxBodyBytes:   cfg.CodecMaxBodyBytes,
	})
}

// codecAuthorize decides who may encode and decode. The codec key is one
// for all tenants, so whoever may use /codec may decode every tenant's
// payloads (which carry link metadata, never tokens or secrets) and
// encrypt new ones:
//
//   - with TOKENWARDEN_CODEC_TOKEN set, that bearer token only;
//   - otherwise any valid API key, of any tenant (give tenants' keys to
//     nobody who must not see other tenants' link metadata, or set the
//     token);
//   - without a key, only with -codec-keyless-loopback (the dev stack): a
//     request from a -codec-origins Origin, on a loopback connection that
//     carries no proxy header (Forwarded, X-Forwarded-*, X-Real-IP, Via),
//     since a reverse proxy on the same host makes every remote caller
//     look local.
func codecAuthorize(cfg *config, checkKey func(*http.Request) bool) func(*http.Request) bool {
	origins := cfg.codecOrigins()
	want := sha256.Sum256([]byte(cfg.CodecToken))
	return func(r *http.Request) bool {
		if r.Header.Get("Authorization") != "" {
			if cfg.CodecToken != "" {
				scheme, tok, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
				got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
				return ok && strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare(got[:], want[:]) == 1
			}
			return checkKey(r)
		}
		if !cfg.CodecKeylessLoopback || proxied(r) {
			return false
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		ip := net.ParseIP(host)
		return ip != nil && ip.IsLoopback() && slices.Contains(origins, r.Header.Get("Origin"))
	}
}

// proxied reports a request that says it passed a proxy.
func proxied(r *http.Request) bool {
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "Via"} {
		if _, ok := r.Header[h]; ok {
			return true
		}
	}
	return false
}

// tokenCacheLease maps the flag (0: off) onto gateway.Config (negative:
// off, 0: the default).
func tokenCacheLease(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
