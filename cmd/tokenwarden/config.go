package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
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

	// envErr is an environment variable that did not parse.
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
	fs.StringVar(&c.VaultAddress, "vault-address", env("VAULT_ADDR", "http://127.0.0.1:8200"), "Vault address (VAULT_ADDR)")
	fs.StringVar(&c.VaultMount, "vault-mount", env("TOKENWARDEN_VAULT_MOUNT", "secret"), "KV v2 mount (TOKENWARDEN_VAULT_MOUNT)")
	fs.StringVar(&c.VaultPrefix, "vault-prefix", env("TOKENWARDEN_VAULT_PREFIX", "tokenwarden"), "path prefix inside the mount (TOKENWARDEN_VAULT_PREFIX)")
	fs.StringVar(&c.DatabaseURL, "database-url", env("TOKENWARDEN_DATABASE_URL", "postgres://tokenwarden@127.0.0.1:5433/tokenwarden?sslmode=disable"), "PostgreSQL URL (TOKENWARDEN_DATABASE_URL)")
	fs.StringVar(&c.Catalog, "catalog", env("TOKENWARDEN_CATALOG", "deployments/dev/catalog.yaml"), "provider catalog YAML (TOKENWARDEN_CATALOG)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long to drain on SIGTERM")
	// Secrets come from the environment only: a flag would show in ps.
	c.VaultToken = os.Getenv("VAULT_TOKEN")
	c.VaultRoleID = os.Getenv("TOKENWARDEN_VAULT_ROLE_ID")
	c.VaultSecretID = os.Getenv("TOKENWARDEN_VAULT_SECRET_ID")
	c.BootstrapAPIKey = os.Getenv("TOKENWARDEN_BOOTSTRAP_API_KEY")
	c.CodecKeys = os.Getenv("TOKENWARDEN_CODEC_KEYS")
}

// registerWorker adds the worker's own flags.
func (c *config) registerWorker(fs *flag.FlagSet) {
	def := defaultWorkerStopTimeout
	if v := os.Getenv("TOKENWARDEN_WORKER_STOP_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			c.envErr = fmt.Errorf("TOKENWARDEN_WORKER_STOP_TIMEOUT=%q is not a positive duration such as 150s", v)
		} else {
			def = d
		}
	}
	fs.DurationVar(&c.WorkerStopTimeout, "stop-timeout", def,
		"on SIGTERM, how long running activities may take to finish before they are cancelled (TOKENWARDEN_WORKER_STOP_TIMEOUT); keep the orchestrator's grace period above it")
}

// check reports configuration errors the flag package cannot see.
func (c *config) check() error {
	if c.envErr != nil {
		return c.envErr
	}
	if c.WorkerStopTimeout < 0 {
		return fmt.Errorf("-stop-timeout must not be negative")
	}
	return nil
}

// registerGateway adds the gateway's own flags.
func (c *config) registerGateway(fs *flag.FlagSet) {
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
