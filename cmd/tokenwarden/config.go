package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/codec"
)

// config is everything the worker and gateway need to reach their
// dependencies. Every field has a flag and an environment variable; flags
// win. Defaults match `make dev`.
type config struct {
	TemporalAddress   string
	TemporalNamespace string
	VaultAddress      string
	VaultToken        string
	VaultRoleID       string
	VaultSecretID     string
	VaultMount        string
	VaultPrefix       string
	// vaultLogin: the Vault login method, secret ID file, Kubernetes auth
	// (vaultlogin.go).
	vaultLogin
	// tracing: OpenTelemetry's service name (tracing.go).
	tracing
	DatabaseURL       string
	Catalog           string
	Listen            string
	PublicURL         string
	ReturnOrigins     string
	BootstrapAPIKey   string
	CodecKeys         string
	CodecOrigins      string
	ShutdownTimeout   time.Duration
	WorkerStopTimeout time.Duration
	// WorkflowCache is how many link workflows a worker keeps in memory
	// (the SDK's sticky cache); Pollers, how many requests per task
	// kind it keeps open to Temporal (0: the SDK's default).
	WorkflowCache, Pollers int64

	// CodecKeylessLoopback lets the Temporal UI call /codec without a
	// key from CodecOrigins when the connection comes from loopback and
	// carries no proxy header. Off unless asked for; `tokenwarden dev`
	// turns it on.
	CodecKeylessLoopback bool
	// CodecToken, when set, is the only credential /codec accepts (API
	// keys are then refused there). Environment only.
	CodecToken string
	// CodecMaxBodyBytes is the codec's own body limit.
	CodecMaxBodyBytes int64

	// MetricsListen, when set, serves /metrics there instead of on
	// Listen. MetricsToken (environment only), when set, is the bearer
	// token /metrics requires. StatsInterval is how often the database
	// counts behind /metrics are read.
	MetricsListen string
	MetricsToken  string
	StatsInterval time.Duration
	// TokenCacheLease: see gateway.Config; 0 turns the token cache off.
	TokenCacheLease time.Duration

	// HTTP server limits of the gateway.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxConnections    int
	RateLimit         int
	RateBurst         int

	// temporalConn: TLS, mTLS and API key of the Temporal connection
	// (temporalconn.go); opsConfig: log format, the worker's ops port
	// (opsserver.go).
	temporalConn
	opsConfig

	// envErr is every environment variable that did not parse
	// (errors.Join; validate lists them one by one).
	envErr error
}

// defaultWorkerStopTimeout is how long a stopping worker lets running
// activities finish. The longest a provider-calling activity can run is
// its start-to-close timeout, 2 minutes, which includes the 90-second
// budget for storing a token the provider has already rotated; 2m30s
// covers that plus reporting the result. Kubernetes must wait longer
// before its SIGKILL: terminationGracePeriodSeconds > 150 (say 180).
const defaultWorkerStopTimeout = 150 * time.Second

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// register adds the flags of the dependency connections to fs.
func (c *config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.TemporalAddress, "temporal-address", env("TOKENWARDEN_TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port (TOKENWARDEN_TEMPORAL_ADDRESS)")
	fs.StringVar(&c.TemporalNamespace, "temporal-namespace", env("TOKENWARDEN_TEMPORAL_NAMESPACE", "tokenwarden"), "Temporal namespace (TOKENWARDEN_TEMPORAL_NAMESPACE)")
	c.registerTemporalConn(fs)
	c.registerOps(fs)
	c.registerVault(fs)
	fs.StringVar(&c.DatabaseURL, "database-url", env("TOKENWARDEN_DATABASE_URL", "postgres://tokenwarden@127.0.0.1:5433/tokenwarden?sslmode=disable"), "PostgreSQL URL (TOKENWARDEN_DATABASE_URL)")
	fs.StringVar(&c.Catalog, "catalog", env("TOKENWARDEN_CATALOG", "deployments/dev/catalog.yaml"), "provider catalog YAML (TOKENWARDEN_CATALOG)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long to drain on SIGTERM")
	// Secrets come from the environment only: a flag would show in ps.
	c.BootstrapAPIKey = os.Getenv("TOKENWARDEN_BOOTSTRAP_API_KEY")
	c.CodecKeys = os.Getenv("TOKENWARDEN_CODEC_KEYS")
}

// registerVault adds the flags of the Vault connection to fs and reads
// the process's Vault credentials. Each process brings its own: the
// worker's identity (AppRole tokenwarden-worker) reads every secret of
// the engine, the gateway's (tokenwarden-gateway) access tokens and never
// a refresh token or a stored credential (deployments/vault).
func (c *config) registerVault(fs *flag.FlagSet) {
	fs.StringVar(&c.VaultAddress, "vault-address", env("VAULT_ADDR", "http://127.0.0.1:8200"), "Vault address (VAULT_ADDR)")
	fs.StringVar(&c.VaultMount, "vault-mount", env("TOKENWARDEN_VAULT_MOUNT", "secret"), "KV v2 mount (TOKENWARDEN_VAULT_MOUNT)")
	fs.StringVar(&c.VaultPrefix, "vault-prefix", env("TOKENWARDEN_VAULT_PREFIX", "tokenwarden"), "path prefix inside the mount (TOKENWARDEN_VAULT_PREFIX)")
	// Secrets come from the environment only: a flag would show in ps.
	c.VaultToken = os.Getenv("VAULT_TOKEN")
	c.VaultRoleID = os.Getenv("TOKENWARDEN_VAULT_ROLE_ID")
	c.VaultSecretID = os.Getenv("TOKENWARDEN_VAULT_SECRET_ID")
	c.registerVaultLogin(fs)
}

// registerWorker adds the worker's own flags.
func (c *config) registerWorker(fs *flag.FlagSet) {
	def := defaultWorkerStopTimeout
	if v := os.Getenv("TOKENWARDEN_WORKER_STOP_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			c.envErr = errors.Join(c.envErr, fmt.Errorf("TOKENWARDEN_WORKER_STOP_TIMEOUT=%q is not a positive duration such as 150s", v))
		} else {
			def = d
		}
	}
	fs.DurationVar(&c.WorkerStopTimeout, "stop-timeout", def,
		"on SIGTERM, how long running activities may take to finish before they are cancelled (TOKENWARDEN_WORKER_STOP_TIMEOUT); keep the orchestrator's grace period above it")
	fs.Int64Var(&c.WorkflowCache, "workflow-cache", c.envInt("TOKENWARDEN_WORKER_WORKFLOW_CACHE", defaultWorkflowCache),
		"link workflows kept in memory (TOKENWARDEN_WORKER_WORKFLOW_CACHE): memory grows with it; a workflow not cached replays its history at its next task")
	fs.Int64Var(&c.Pollers, "pollers", c.envInt("TOKENWARDEN_WORKER_POLLERS", 0),
		"concurrent polls to Temporal per task kind (TOKENWARDEN_WORKER_POLLERS; default: the SDK's); more drain a backlog of tasks faster")
}

// defaultWorkflowCache is the SDK's own default sticky cache size.
const defaultWorkflowCache = 10000

// check reports worker settings that cannot work; validate adds the
// rest (the environment's, the connections').
func (c *config) check() error {
	if c.WorkerStopTimeout < 0 {
		return fmt.Errorf("-stop-timeout (TOKENWARDEN_WORKER_STOP_TIMEOUT) must not be negative")
	}
	if c.WorkflowCache < 1 || c.Pollers < 0 {
		return fmt.Errorf("-workflow-cache (TOKENWARDEN_WORKER_WORKFLOW_CACHE) must be at least 1 and -pollers (TOKENWARDEN_WORKER_POLLERS) not negative")
	}
	return nil
}

// Defaults of the gateway's HTTP server limits.
const (
	defaultReadHeaderTimeout = 10 * time.Second
	// defaultReadTimeout bounds reading a whole request, body included:
	// a body trickled a byte at a time is cut off after it.
	defaultReadTimeout = 30 * time.Second
	// defaultWriteTimeout bounds a request from the end of its headers to
	// the end of its answer. It must exceed the longest wait of a handler
	// (a forced refresh or a revoke, 30s; a token read waiting for a
	// synchronous refresh, RefreshWait, 15s): check refuses less than
	// that plus writeTimeoutSlack.
	defaultWriteTimeout = 60 * time.Second
	writeTimeoutSlack   = 10 * time.Second
	// defaultIdleTimeout closes keep-alive connections idle this long.
	defaultIdleTimeout = 60 * time.Second
	// defaultMaxConnections caps concurrent connections (each holds a
	// goroutine and a file descriptor); more wait in the listen backlog.
	defaultMaxConnections = 1024
)

// envDuration is the duration in the environment variable name, or def.
// A value that does not parse is kept in c.envErr for check.
func (c *config) envDuration(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		c.envErr = errors.Join(c.envErr, fmt.Errorf("%s=%q is not a positive duration such as 30s", name, v))
		return def
	}
	return d
}

// envInt is the positive integer in the environment variable name, or def.
func (c *config) envInt(name string, def int64) int64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		c.envErr = errors.Join(c.envErr, fmt.Errorf("%s=%q is not a positive integer", name, v))
		return def
	}
	return n
}

// envBool is the boolean in the environment variable name (1, true, 0,
// false), or def.
func (c *config) envBool(name string, def bool) bool {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		c.envErr = errors.Join(c.envErr, fmt.Errorf("%s=%q is not 1, true, 0 or false", name, v))
		return def
	}
	return b
}

// gatewayDefaults fills the gateway settings a config built in code (the
// dev stack's) leaves zero.
func (c *config) gatewayDefaults() {
	set := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	set(&c.ReadHeaderTimeout, defaultReadHeaderTimeout)
	set(&c.ReadTimeout, defaultReadTimeout)
	set(&c.WriteTimeout, defaultWriteTimeout)
	set(&c.IdleTimeout, defaultIdleTimeout)
	set(&c.StatsInterval, gateway.DefaultStatsInterval)
	if c.MaxConnections <= 0 {
		c.MaxConnections = defaultMaxConnections
	}
	if c.CodecMaxBodyBytes <= 0 {
		c.CodecMaxBodyBytes = codec.DefaultMaxBodyBytes
	}
}

// checkGateway reports every gateway setting that cannot work (joined);
// validate adds the rest.
func (c *config) checkGateway() error {
	var errs []error
	longest := gateway.Config{}.LongestWait()
	if c.ReadHeaderTimeout <= 0 || c.ReadTimeout <= 0 || c.IdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("-read-header-timeout, -read-timeout and -idle-timeout (TOKENWARDEN_READ_HEADER_TIMEOUT, TOKENWARDEN_READ_TIMEOUT, TOKENWARDEN_IDLE_TIMEOUT) must be positive"))
	}
	if c.WriteTimeout < longest+writeTimeoutSlack {
		errs = append(errs, fmt.Errorf("-write-timeout (TOKENWARDEN_WRITE_TIMEOUT) %s is too short: a forced refresh or a revoke may wait %s for the link's workflow; use at least %s",
			c.WriteTimeout, longest, longest+writeTimeoutSlack))
	}
	if c.MaxConnections <= 0 {
		errs = append(errs, fmt.Errorf("-max-connections (TOKENWARDEN_MAX_CONNECTIONS) must be positive"))
	}
	if c.CodecMaxBodyBytes <= 0 {
		errs = append(errs, fmt.Errorf("-codec-max-body-bytes (TOKENWARDEN_CODEC_MAX_BODY_BYTES) must be positive"))
	}
	if c.StatsInterval < time.Second {
		errs = append(errs, fmt.Errorf("-stats-interval (TOKENWARDEN_STATS_INTERVAL) must be at least 1s"))
	}
	return errors.Join(errs...)
}

// registerGateway adds the gateway's own flags.
func (c *config) registerGateway(fs *flag.FlagSet) {
	c.CodecToken = os.Getenv("TOKENWARDEN_CODEC_TOKEN")
	c.MetricsToken = os.Getenv("TOKENWARDEN_METRICS_TOKEN")
	fs.BoolVar(&c.CodecKeylessLoopback, "codec-keyless-loopback", c.envBool("TOKENWARDEN_CODEC_KEYLESS_LOOPBACK", false),
		"let the Temporal UI call /codec without a key from -codec-origins on loopback, never through a proxy; for development (TOKENWARDEN_CODEC_KEYLESS_LOOPBACK)")
	fs.Int64Var(&c.CodecMaxBodyBytes, "codec-max-body-bytes", c.envInt("TOKENWARDEN_CODEC_MAX_BODY_BYTES", codec.DefaultMaxBodyBytes),
		"body limit of /codec, which takes batches of payloads (TOKENWARDEN_CODEC_MAX_BODY_BYTES)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", env("TOKENWARDEN_METRICS_LISTEN", ""),
		"serve /metrics on this address only, not on -listen (TOKENWARDEN_METRICS_LISTEN); TOKENWARDEN_METRICS_TOKEN sets a bearer token for it")
	fs.IntVar(&c.RateLimit, "rate-limit", int(c.envInt("TOKENWARDEN_RATE_LIMIT", int64(gateway.DefaultRateLimit))),
		"requests per second per API key, unless the key has its own (apikey create --rate) (TOKENWARDEN_RATE_LIMIT)")
	fs.IntVar(&c.RateBurst, "rate-burst", int(c.envInt("TOKENWARDEN_RATE_BURST", gateway.DefaultRateBurst)),
		"requests an API key may send at once above its rate (TOKENWARDEN_RATE_BURST)")
	fs.DurationVar(&c.StatsInterval, "stats-interval", c.envDuration("TOKENWARDEN_STATS_INTERVAL", gateway.DefaultStatsInterval),
		"how often the link and refresh counts of /metrics are read from PostgreSQL (TOKENWARDEN_STATS_INTERVAL)")
	cacheLease := gateway.DefaultTokenCacheLease
	if v := os.Getenv("TOKENWARDEN_TOKEN_CACHE_LEASE"); v == "0" || v == "off" {
		cacheLease = 0
	} else {
		cacheLease = c.envDuration("TOKENWARDEN_TOKEN_CACHE_LEASE", cacheLease)
	}
	fs.DurationVar(&c.TokenCacheLease, "token-cache-lease", cacheLease,
		"token cache: how long it serves without word from PostgreSQL, and how long a revoke waits before it answers; 0 turns it off (TOKENWARDEN_TOKEN_CACHE_LEASE)")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", c.envDuration("TOKENWARDEN_READ_HEADER_TIMEOUT", defaultReadHeaderTimeout),
		"time to read a request's headers (TOKENWARDEN_READ_HEADER_TIMEOUT)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", c.envDuration("TOKENWARDEN_READ_TIMEOUT", defaultReadTimeout),
		"time to read a whole request, body included (TOKENWARDEN_READ_TIMEOUT)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.envDuration("TOKENWARDEN_WRITE_TIMEOUT", defaultWriteTimeout),
		"time from a request's headers to the end of its answer; above the 30s a forced refresh may wait (TOKENWARDEN_WRITE_TIMEOUT)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.envDuration("TOKENWARDEN_IDLE_TIMEOUT", defaultIdleTimeout),
		"close keep-alive connections idle this long (TOKENWARDEN_IDLE_TIMEOUT)")
	fs.IntVar(&c.MaxConnections, "max-connections", int(c.envInt("TOKENWARDEN_MAX_CONNECTIONS", defaultMaxConnections)),
		"concurrent connections the gateway serves; more wait to be accepted (TOKENWARDEN_MAX_CONNECTIONS)")
	fs.StringVar(&c.Listen, "listen", env("TOKENWARDEN_LISTEN", "127.0.0.1:8080"), "gateway listen address (TOKENWARDEN_LISTEN)")
	fs.StringVar(&c.PublicURL, "public-url", env("TOKENWARDEN_PUBLIC_URL", ""), "URL the browser reaches the gateway at, for the OAuth callback (TOKENWARDEN_PUBLIC_URL; default http://<listen>)")
	fs.StringVar(&c.CodecOrigins, "codec-origins", env("TOKENWARDEN_CODEC_ORIGINS", "http://127.0.0.1:8233,http://localhost:8233"), "comma-separated Temporal UI origins allowed to call /codec (TOKENWARDEN_CODEC_ORIGINS)")
	fs.StringVar(&c.ReturnOrigins, "return-origins", env("TOKENWARDEN_RETURN_ORIGINS", ""), "comma-separated origins allowed as return_url after consent (TOKENWARDEN_RETURN_ORIGINS)")
}

func (c *config) publicURL() string {
	if c.PublicURL != "" {
		return strings.TrimRight(c.PublicURL, "/")
	}
	return "http://" + c.Listen
}

func (c *config) returnOrigins() []string { return splitList(c.ReturnOrigins) }

func (c *config) codecOrigins() []string { return splitList(c.CodecOrigins) }

func splitList(s string) []string {
	var out []string
	for _, o := range strings.Split(s, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}
