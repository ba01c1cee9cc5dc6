package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// configError is every problem of a process's configuration, found at
// start before anything is dialled, each naming the flag and the
// environment variable that fix it. main exits with status 2 on it.
type configError struct{ problems []string }

func (e *configError) Error() string {
	if len(e.problems) == 1 {
		return "configuration: " + e.problems[0]
	}
	return fmt.Sprintf("configuration has %d problems:\n  - %s", len(e.problems), strings.Join(e.problems, "\n  - "))
}

// Roles of validate.
const (
	roleWorker  = "worker"
	roleGateway = "gateway"
)

// validate checks the configuration of a worker or gateway and lists
// every problem at once, so that a deployment is fixed in one round
// rather than one restart per mistake.
func (c *config) validate(role string) error {
	var ps []error
	ps = append(ps, unjoin(c.envErr)...)
	switch role {
	case roleWorker:
		ps = append(ps, unjoin(c.check())...)
		ps = append(ps, c.opsProblems()...)
	case roleGateway:
		ps = append(ps, unjoin(c.checkGateway())...)
		ps = append(ps, c.publicURLProblems()...)
	}
	if err := c.vaultAuthConfig().Check(); err != nil {
		ps = append(ps, err)
	}
	ps = append(ps, c.temporalAddressProblems()...)
	ps = append(ps, c.temporalProblems()...)
	ps = append(ps, c.databaseProblems()...)
	if c.LogFormat != "text" && c.LogFormat != "json" {
		ps = append(ps, fmt.Errorf("-log-format (TOKENWARDEN_LOG_FORMAT) %q is neither text nor json", c.LogFormat))
	}
	if len(ps) == 0 {
		return nil
	}
	e := &configError{}
	for _, p := range ps {
		e.problems = append(e.problems, p.Error())
	}
	return e
}

// unjoin splits an errors.Join into its errors.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// isLoopback: an address only this machine reaches (a Unix socket's
// path counts).
func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || strings.HasPrefix(host, "/") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// publicURLProblems: browsers send OAuth codes and the connect page's
// cookies to the public URL, so it must be https unless it is loopback
// (a laptop's dev stack).
func (c *config) publicURLProblems() []error {
	const fix = "-public-url (TOKENWARDEN_PUBLIC_URL)"
	if c.PublicURL == "" {
		host, _, err := net.SplitHostPort(c.Listen)
		if err == nil && host != "" && isLoopback(host) {
			return nil
		}
		return []error{fmt.Errorf("%s is not set and -listen (TOKENWARDEN_LISTEN) %q is not a loopback address: set it to the https URL browsers reach the gateway at (the OAuth callback is built from it)", fix, c.Listen)}
	}
	u, err := url.Parse(c.PublicURL)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return []error{fmt.Errorf("%s %q is not an absolute http(s) URL such as https://tokens.example.com", fix, c.PublicURL)}
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return []error{fmt.Errorf("%s %q is not https: browsers would carry OAuth codes and session cookies to it in clear text; use https:// (plain http only on loopback)", fix, c.PublicURL)}
	}
	return nil
}

// temporalAddressProblems: a host:port (a URL-style target such as
// dns:///host:port is passed to gRPC as it is).
func (c *config) temporalAddressProblems() []error {
	if strings.Contains(c.TemporalAddress, "://") {
		return nil
	}
	if _, port, err := net.SplitHostPort(c.TemporalAddress); err != nil || port == "" {
		return []error{fmt.Errorf("-temporal-address (TOKENWARDEN_TEMPORAL_ADDRESS) %q is not host:port, such as temporal-frontend:7233", c.TemporalAddress)}
	}
	return nil
}

// databaseProblems: the URL parses (its password never printed: pgx
// masks it), and the connection cannot fall back to clear text towards
// a host other than loopback unless -database-allow-plaintext says the
// network is trusted. sslmode disable, allow and prefer (the default
// when unset) all may send the password and the audit trail unencrypted.
func (c *config) databaseProblems() []error {
	const fix = "-database-url (TOKENWARDEN_DATABASE_URL)"
	pc, err := pgxpool.ParseConfig(c.DatabaseURL)
	if err != nil {
		return []error{fmt.Errorf("%s does not parse: %w (the form is postgres://user@host:port/db?sslmode=verify-full)", fix, err)}
	}
	if c.DatabaseAllowPlaintext {
		return nil
	}
	cc := pc.ConnConfig
	targets := append([]*pgconn.FallbackConfig{{Host: cc.Host, Port: cc.Port, TLSConfig: cc.TLSConfig}}, cc.Fallbacks...)
	var clear []string
	for _, t := range targets {
		if t.TLSConfig == nil && !isLoopback(t.Host) && !slices.Contains(clear, t.Host) {
			clear = append(clear, t.Host)
		}
	}
	if len(clear) == 0 {
		return nil
	}
	return []error{fmt.Errorf("%s may reach PostgreSQL at %s without TLS (sslmode disable, allow or prefer, or none given): "+
		"add sslmode=verify-full (or require) to the URL, or set -database-allow-plaintext (TOKENWARDEN_DATABASE_ALLOW_PLAINTEXT=1) if the network is private and trusted",
		fix, strings.Join(clear, ", "))}
}

// opsProblems: the worker's ops address is host:port (or empty).
func (c *config) opsProblems() []error {
	if c.OpsListen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.OpsListen); err != nil {
		return []error{fmt.Errorf("-ops-listen (TOKENWARDEN_WORKER_OPS_LISTEN) %q is not host:port such as :9090 (empty turns the ops port off)", c.OpsListen)}
	}
	return nil
}

// exitCode is the process's exit status for err: 2 for configuration
// problems, 1 for anything else.
func exitCode(err error) int {
	var ce *configError
	if errors.As(err, &ce) {
		return 2
	}
	return 1
}
