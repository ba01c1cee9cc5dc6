package testenv

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenwarden/tokenwarden/internal/devstack"
)

// The helpers below are for tests that start a stack of their own (to
// stop Vault, restart Temporal, run `tokenwarden dev`) instead of sharing
// the one `make test` runs.

// ToolBinDir finds the temporal and vault binaries of
// deployments/dev/tools.sh, or skips the test (fails it under
// TOKENWARDEN_REQUIRE_STACK=1).
func ToolBinDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("TOKENWARDEN_BIN")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "tokenwarden", "bin")
	}
	for _, name := range []string{"temporal", "vault"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			if os.Getenv(RequireEnv) == "1" {
				t.Fatalf("%s binary missing in %s: run deployments/dev/tools.sh", name, dir)
			}
			t.Skipf("integration test: %s binary missing in %s (run `make test`)", name, dir)
		}
	}
	return dir
}

// StartPrivate starts a stack on ports free right now. Another process
// (another test's stack, whose Temporal dev server picks its internal ports
// itself) may take one before the stack binds it; the stack then fails
// with devstack.ErrPortTaken and is started again on other ports.
func StartPrivate(t testing.TB, ctx context.Context, o devstack.Options) (*devstack.Stack, error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		o.Ports = FreePorts(t)
		st, err := devstack.Start(ctx, o)
		if err == nil || !errors.Is(err, devstack.ErrPortTaken) || attempt == 4 {
			return st, err
		}
		t.Logf("private stack, attempt %d: %v; trying other ports", attempt, firstLine(err))
	}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// FreePorts picks four ports free right now. Another process may take one
// before the stack binds it: StartPrivate retries.
func FreePorts(t testing.TB) devstack.Ports {
	t.Helper()
	var ports [4]int
	var held []net.Listener
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range held {
		l.Close()
	}
	return devstack.Ports{Temporal: ports[0], TemporalUI: ports[1], Vault: ports[2], Postgres: ports[3]}
}

// StateDir is a temporary state folder that the unprivileged user
// PostgreSQL runs as (when tests run as root) can enter: t.TempDir's
// folders are 0700.
func StateDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "stack")
}
