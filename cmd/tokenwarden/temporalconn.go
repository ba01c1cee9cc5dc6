package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"google.golang.org/grpc"
)

// temporalConn is how the worker and the gateway reach Temporal beyond
// its address and namespace: TLS with a private CA, a client certificate
// (mTLS, self-hosted) or an API key (Temporal Cloud). Every field has a
// flag and an environment variable, but the API key, a secret, comes from
// the environment only.
type temporalConn struct {
	TemporalTLS        bool
	TemporalCAFile     string
	TemporalCertFile   string
	TemporalKeyFile    string
	TemporalServerName string
	TemporalAPIKey     string

	// Set in code, not by flags: the worker exports the SDK's metrics
	// (sdkmetrics.go) and watches its polls (opsserver.go).
	temporalMetrics     client.MetricsHandler
	temporalDialOptions []grpc.DialOption
}

// registerTemporalConn adds the flags of the Temporal connection's
// security. An API key turns TLS on by default: Temporal Cloud takes API
// keys over TLS only, and a key sent in clear text is a key given away.
func (c *config) registerTemporalConn(fs *flag.FlagSet) {
	c.TemporalAPIKey = os.Getenv("TOKENWARDEN_TEMPORAL_API_KEY")
	fs.BoolVar(&c.TemporalTLS, "temporal-tls", c.envBool("TOKENWARDEN_TEMPORAL_TLS", c.TemporalAPIKey != ""),
		"connect to Temporal with TLS (TOKENWARDEN_TEMPORAL_TLS); on by default with TOKENWARDEN_TEMPORAL_API_KEY")
	fs.StringVar(&c.TemporalCAFile, "temporal-ca-file", env("TOKENWARDEN_TEMPORAL_CA_FILE", ""),
		"PEM CA bundle that signed Temporal's server certificate, instead of the system's (TOKENWARDEN_TEMPORAL_CA_FILE)")
	fs.StringVar(&c.TemporalCertFile, "temporal-cert-file", env("TOKENWARDEN_TEMPORAL_CERT_FILE", ""),
		"PEM client certificate for mTLS to Temporal, with -temporal-key-file (TOKENWARDEN_TEMPORAL_CERT_FILE)")
	fs.StringVar(&c.TemporalKeyFile, "temporal-key-file", env("TOKENWARDEN_TEMPORAL_KEY_FILE", ""),
		"PEM private key of -temporal-cert-file (TOKENWARDEN_TEMPORAL_KEY_FILE)")
	fs.StringVar(&c.TemporalServerName, "temporal-server-name", env("TOKENWARDEN_TEMPORAL_SERVER_NAME", ""),
		"name to verify Temporal's certificate against, when it differs from the host of -temporal-address (TOKENWARDEN_TEMPORAL_SERVER_NAME)")
}

// temporalOptions are the client options of every Temporal connection the
// process opens.
func (c *config) temporalOptions(logger *slog.Logger) (client.Options, error) {
	o := client.Options{HostPort: c.TemporalAddress, Namespace: c.TemporalNamespace, Logger: tlog.NewStructuredLogger(logger)}
	tc, err := c.temporalTLSConfig()
	if err != nil {
		return o, err
	}
	o.ConnectionOptions.TLS = tc
	if c.TemporalAPIKey != "" {
		o.Credentials = client.NewAPIKeyStaticCredentials(c.TemporalAPIKey)
	}
	if c.temporalMetrics != nil {
		o.MetricsHandler = c.temporalMetrics
	}
	o.ConnectionOptions.DialOptions = append(o.ConnectionOptions.DialOptions, c.temporalDialOptions...)
	return o, nil
}

// temporalTarget names the Temporal connection in messages ("Temporal at
// ... is unreachable"): its address and how it is secured. A refused
// client certificate often reaches the client as a bare "broken pipe"
// (TLS 1.3 checks it after the client's handshake is done), so the
// message says what was presented.
func (c *config) temporalTarget() string {
	if !c.TemporalTLS {
		return c.TemporalAddress
	}
	var how []string
	if c.TemporalCAFile != "" {
		how = append(how, "CA "+c.TemporalCAFile)
	}
	if c.TemporalCertFile != "" {
		how = append(how, "client certificate "+c.TemporalCertFile)
	} else {
		how = append(how, "no client certificate")
	}
	if c.TemporalServerName != "" {
		how = append(how, "server name "+c.TemporalServerName)
	}
	if c.TemporalAPIKey != "" {
		how = append(how, "API key")
	}
	return c.TemporalAddress + " over TLS (" + strings.Join(how, ", ") + ")"
}

// temporalTLSConfig is the TLS configuration of the Temporal connection,
// or nil without -temporal-tls. Errors name the flag that fixes them.
func (c *config) temporalTLSConfig() (*tls.Config, error) {
	if !c.TemporalTLS {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TemporalServerName}
	if c.TemporalCAFile != "" {
		pool, err := loadCAFile(c.TemporalCAFile)
		if err != nil {
			return nil, fmt.Errorf("-temporal-ca-file (TOKENWARDEN_TEMPORAL_CA_FILE): %w", err)
		}
		tc.RootCAs = pool
	}
	if c.TemporalCertFile != "" || c.TemporalKeyFile != "" {
		if _, err := c.loadClientCert(); err != nil {
			return nil, err
		}
		// Read again for every new connection: a certificate rotated on
		// disk (cert-manager renewing a mounted Secret) is presented at
		// the next reconnect without a restart.
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.loadClientCert()
		}
	}
	return tc, nil
}

// loadClientCert reads the mTLS client certificate and its key.
func (c *config) loadClientCert() (*tls.Certificate, error) {
	if c.TemporalCertFile == "" || c.TemporalKeyFile == "" {
		return nil, errors.New("-temporal-cert-file and -temporal-key-file (TOKENWARDEN_TEMPORAL_CERT_FILE, TOKENWARDEN_TEMPORAL_KEY_FILE) go together: set both or neither")
	}
	for _, f := range []struct{ flag, env, path string }{
		{"-temporal-cert-file", "TOKENWARDEN_TEMPORAL_CERT_FILE", c.TemporalCertFile},
		{"-temporal-key-file", "TOKENWARDEN_TEMPORAL_KEY_FILE", c.TemporalKeyFile},
	} {
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("%s (%s): %w", f.flag, f.env, unwrapPath(err))
		}
	}
	cert, err := tls.LoadX509KeyPair(c.TemporalCertFile, c.TemporalKeyFile)
	if err != nil {
		// The error names what is wrong (no PEM data, a key that does not
		// match), never the key itself.
		return nil, fmt.Errorf("-temporal-cert-file and -temporal-key-file (TOKENWARDEN_TEMPORAL_CERT_FILE, TOKENWARDEN_TEMPORAL_KEY_FILE): %s and %s are not a certificate and its key: %w",
			c.TemporalCertFile, c.TemporalKeyFile, err)
	}
	return &cert, nil
}

// loadCAFile reads a PEM bundle of CA certificates.
func loadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// unwrapPath keeps "open /x: permission denied" readable: the path and
// the reason, without Go's operation prefix twice.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// temporalProblems lists what is wrong with the Temporal connection's
// settings, each naming the flag and variable that fix it.
func (c *config) temporalProblems() []error {
	var ps []error
	if !c.TemporalTLS {
		for _, f := range []struct{ flag, env, v string }{
			{"-temporal-ca-file", "TOKENWARDEN_TEMPORAL_CA_FILE", c.TemporalCAFile},
			{"-temporal-cert-file", "TOKENWARDEN_TEMPORAL_CERT_FILE", c.TemporalCertFile},
			{"-temporal-key-file", "TOKENWARDEN_TEMPORAL_KEY_FILE", c.TemporalKeyFile},
			{"-temporal-server-name", "TOKENWARDEN_TEMPORAL_SERVER_NAME", c.TemporalServerName},
		} {
			if f.v != "" {
				ps = append(ps, fmt.Errorf("%s (%s) is set but TLS to Temporal is off: set -temporal-tls (TOKENWARDEN_TEMPORAL_TLS=1), or unset it", f.flag, f.env))
			}
		}
		if c.TemporalAPIKey != "" {
			ps = append(ps, errors.New("TOKENWARDEN_TEMPORAL_API_KEY is set but TLS to Temporal is off (TOKENWARDEN_TEMPORAL_TLS=0): the key would travel in clear text; drop TOKENWARDEN_TEMPORAL_TLS=0"))
		}
		return ps
	}
	// Each file on its own, so that every unreadable one is named.
	if c.TemporalCAFile != "" {
		if _, err := loadCAFile(c.TemporalCAFile); err != nil {
			ps = append(ps, fmt.Errorf("-temporal-ca-file (TOKENWARDEN_TEMPORAL_CA_FILE): %w", err))
		}
	}
	if c.TemporalCertFile != "" || c.TemporalKeyFile != "" {
		if _, err := c.loadClientCert(); err != nil {
			ps = append(ps, err)
		}
	}
	return ps
}
