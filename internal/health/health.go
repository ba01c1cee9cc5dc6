// Package health checks the three dependencies of Tokenwarden (Temporal,
// Vault, PostgreSQL) and says in plain words which one is missing, for
// /readyz and for start-up waits.
package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
)

// Check probes one dependency. Its error is a sentence an operator can act
// on ("Vault at http://127.0.0.1:8200 is sealed").
type Check struct {
	Name  string
	Probe func(ctx context.Context) error
}

// Result is the outcome of one Check.
type Result struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Run probes every check concurrently, each bounded by timeout.
func Run(ctx context.Context, timeout time.Duration, checks ...Check) []Result {
	out := make([]Result, len(checks))
	done := make(chan struct{}, len(checks))
	for i, c := range checks {
		go func() {
			defer func() { done <- struct{}{} }()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			out[i] = Result{Name: c.Name, OK: true}
			if err := c.Probe(cctx); err != nil {
				out[i] = Result{Name: c.Name, Error: err.Error()}
			}
		}()
	}
	for range checks {
		<-done
	}
	return out
}

// Healthy reports whether every result is OK.
func Healthy(rs []Result) bool {
	for _, r := range rs {
		if !r.OK {
			return false
		}
	}
	return true
}

// WaitFor probes until every check passes or ctx ends, printing one line
// per dependency that is still missing, and each time that changes.
func WaitFor(ctx context.Context, w io.Writer, checks ...Check) error {
	last := ""
	for {
		rs := Run(ctx, 3*time.Second, checks...)
		if Healthy(rs) {
			return nil
		}
		var missing []string
		for _, r := range rs {
			if !r.OK {
				missing = append(missing, r.Error)
			}
		}
		msg := strings.Join(missing, "; ")
		if msg != last {
			fmt.Fprintf(w, "waiting: %s\n", msg)
			last = msg
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up waiting: %s", msg)
		case <-time.After(time.Second):
		}
	}
}

// Vault checks that Vault answers and is initialized and unsealed.
func Vault(c *vault.Client) Check {
	return Check{Name: "vault", Probe: func(ctx context.Context) error {
		h, err := c.Sys().HealthWithContext(ctx)
		switch {
		case err != nil:
			return fmt.Errorf("Vault at %s is unreachable: %s", c.Address(), rootCause(err))
		case !h.Initialized:
			return fmt.Errorf("Vault at %s is not initialized", c.Address())
		case h.Sealed:
			return fmt.Errorf("Vault at %s is sealed", c.Address())
		}
		return nil
	}}
}

// Postgres checks that PostgreSQL accepts a query.
func Postgres(pool *pgxpool.Pool) Check {
	return Check{Name: "postgres", Probe: func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			cfg := pool.Config().ConnConfig
			return fmt.Errorf("PostgreSQL at %s:%d is unreachable: %s", cfg.Host, cfg.Port, rootCause(err))
		}
		return nil
	}}
}

// Temporal checks that the Temporal frontend answers.
func Temporal(c client.Client, address string) Check {
	return Check{Name: "temporal", Probe: func(ctx context.Context) error {
		if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			return fmt.Errorf("Temporal at %s is unreachable: %s", address, rootCause(err))
		}
		return nil
	}}
}

// rootCause keeps the innermost message: "connection refused" rather than
// three layers of wrapping.
func rootCause(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			s := err.Error()
			if i := strings.LastIndex(s, ": "); i >= 0 && i+2 < len(s) {
				return s[i+2:]
			}
			return s
		}
		err = u
	}
}
