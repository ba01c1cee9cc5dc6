// Package devstack runs the services Tokenwarden depends on — the Temporal
// dev server, HashiCorp Vault and PostgreSQL — as child processes bound to
// 127.0.0.1, with all their state under one folder. `make dev` and `make test`
// use it; a second Start on the same folder reuses the data: Postgres keeps
// its cluster, Temporal its SQLite file, and Vault is unsealed with the key
// saved at its first initialisation.
package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/tokenwarden/tokenwarden/workflows"
)

// Ports are the TCP ports of one stack, all on 127.0.0.1.
type Ports struct {
	Temporal   int // frontend gRPC
	TemporalUI int
	Vault      int
	Postgres   int
}

// DevPorts are the well-known ports of `make dev`; TestPorts those of the
// throwaway stack of `make test`, so both can run side by side.
var (
	DevPorts  = Ports{Temporal: 7233, TemporalUI: 8233, Vault: 8200, Postgres: 5433}
	TestPorts = Ports{Temporal: 17233, TemporalUI: 18233, Vault: 18200, Postgres: 15433}
	// ScalePorts are those of `make scale`'s stack, beside the others.
	ScalePorts = Ports{Temporal: 27233, TemporalUI: 28233, Vault: 28200, Postgres: 25433}
)

// SearchAttribute is a custom search attribute registered at server start.
type SearchAttribute = workflows.SearchAttribute

// Options configure Start.
type Options struct {
	Dir       string // state folder, e.g. ".dev" or ".test-stack"; created if missing
	BinDir    string // holds the temporal and vault binaries (deployments/dev/tools.sh)
	Ports     Ports
	Namespace string // Temporal namespace created at launch; "tokenwarden" if empty
	// ExtraNamespaces are also created at launch (the test harness's pool).
	ExtraNamespaces []string
	// SearchAttributes are registered in every namespace created at launch;
	// workflows.SearchAttributes if nil.
	SearchAttributes []SearchAttribute
	UICodecEndpoint  string    // optional: Temporal UI remote codec endpoint
	Log              io.Writer // progress lines; discarded if nil
	// TemporalServer runs the real Temporal server on the stack's
	// PostgreSQL instead of the CLI's dev server (temporalserver.go).
	TemporalServer bool
	// Postgres binaries (initdb, postgres) are looked up in PostgresBinDir,
	// else on PATH, else in /usr/lib/postgresql/*/bin.
	PostgresBinDir string
}

// Info is how to reach a running stack. Start writes it to <Dir>/stack.json
// (mode 0600: it holds tokens) for tests and tools in other processes.
type Info struct {
	TemporalAddress   string `json:"temporal_address"`
	TemporalNamespace string `json:"temporal_namespace"`
	TemporalUIURL     string `json:"temporal_ui_url"`

	VaultAddress string `json:"vault_address"`
	VaultMount   string `json:"vault_mount"` // KV v2 mount, "secret"
	// VaultToken is the worker's token (policy "tokenwarden-worker", from
	// an AppRole login with VaultRoleID and VaultSecretID): a service token
	// with a 24h TTL, renewable up to 768h. A long-running engine renews it
	// or logs in again with the AppRole. The worker may read every secret
	// of the engine.
	VaultToken    string `json:"vault_token"`
	VaultRoleID   string `json:"vault_role_id"`
	VaultSecretID string `json:"vault_secret_id"`
	// VaultGatewayToken, VaultGatewayRoleID and VaultGatewaySecretID are
	// the gateway's identity (policy "tokenwarden-gateway"): access
	// tokens, never a refresh token or a stored credential.
	VaultGatewayToken    string `json:"vault_gateway_token"`
	VaultGatewayRoleID   string `json:"vault_gateway_role_id"`
	VaultGatewaySecretID string `json:"vault_gateway_secret_id"`
	VaultRootToken       string `json:"vault_root_token"` // dev bootstrap and test cleanup only

	PostgresURL string `json:"postgres_url"` // role and database "tokenwarden"
	// PostgresAdminURL connects as the superuser "postgres" (trust auth on
	// 127.0.0.1): for tests that create databases.
	PostgresAdminURL string `json:"postgres_admin_url"`

	Dir string `json:"dir"`
}

// ReadInfo reads the stack.json a Start wrote.
func ReadInfo(path string) (Info, error) {
	var info Info
	b, err := os.ReadFile(path)
	if err != nil {
		return info, fmt.Errorf("devstack: read stack info: %w", err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("devstack: parse stack info %s: %w", path, err)
	}
	return info, nil
}

// Stack is a running set of services. Its methods are safe for concurrent use.
type Stack struct {
	opts Options
	dir  string
	log  io.Writer

	mu       sync.Mutex
	info     Info
	temporal *process
	vault    *process
	postgres *process

	died     chan error
	stopped  chan struct{}
	stopOnce sync.Once
}

// Start starts Postgres, Vault and Temporal (in parallel), waits until each
// answers and is bootstrapped, writes <Dir>/stack.json and returns. On error
// whatever was started is stopped again.
func Start(ctx context.Context, o Options) (*Stack, error) {
	if o.Dir == "" {
		return nil, errors.New("devstack: Options.Dir is required")
	}
	if o.Namespace == "" {
		o.Namespace = "tokenwarden"
	}
	if o.SearchAttributes == nil {
		o.SearchAttributes = workflows.SearchAttributes
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	for _, sub := range []string{"", "logs", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("devstack: create %s: %w", filepath.Join(dir, sub), err)
		}
	}
	s := &Stack{
		opts:    o,
		dir:     dir,
		log:     &lineWriter{w: o.Log},
		died:    make(chan error, 8),
		stopped: make(chan struct{}),
	}
	s.info = Info{
		TemporalAddress:   hostPort(o.Ports.Temporal),
		TemporalNamespace: o.Namespace,
		TemporalUIURL:     "http://" + hostPort(o.Ports.TemporalUI),
		VaultAddress:      "http://" + hostPort(o.Ports.Vault),
		VaultMount:        "secret",
		PostgresURL:       fmt.Sprintf("postgres://tokenwarden@%s/tokenwarden?sslmode=disable", hostPort(o.Ports.Postgres)),
		PostgresAdminURL:  fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", hostPort(o.Ports.Postgres)),
		Dir:               dir,
	}
	for name, port := range map[string]int{"temporal": o.Ports.Temporal, "temporal UI": o.Ports.TemporalUI, "vault": o.Ports.Vault, "postgres": o.Ports.Postgres} {
		if err := portFree(port); err != nil {
			return nil, fmt.Errorf("devstack: %s port %d: %w (another stack running? `make stop`): %w", name, port, ErrPortTaken, err)
		}
	}
	s.writeOwnerPID()

	start := time.Now()
	errs := make(chan error, 3)
	go func() { errs <- s.StartPostgres(ctx) }()
	go func() { errs <- s.StartVault(ctx) }()
	go func() { errs <- s.StartTemporal(ctx) }()
	var all []error
	for range 3 {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	if err := errors.Join(all...); err != nil {
		_ = s.Stop()
		return nil, err
	}
	if err := s.writeInfo(); err != nil {
		_ = s.Stop()
		return nil, err
	}
	fmt.Fprintf(s.log, "stack: ready in %s (state in %s)\n", time.Since(start).Round(100*time.Millisecond), dir)
	return s, nil
}

// Info returns how to reach the stack.
func (s *Stack) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info
}

// Dir is the absolute state folder.
func (s *Stack) Dir() string { return s.dir }

// Ports are the ports the stack was started on.
func (s *Stack) Ports() Ports { return s.opts.Ports }

// Wait blocks until a service dies without being asked to (returning why)
// or the stack is stopped (returning nil).
func (s *Stack) Wait() error {
	select {
	case err := <-s.died:
		return err
	case <-s.stopped:
		return nil
	}
}

// Stop stops all services gracefully, Temporal first (it holds no data the
// others need), and is safe to call more than once.
func (s *Stack) Stop() error {
	var err error
	s.stopOnce.Do(func() {
		err = errors.Join(s.StopTemporal(), s.StopVault(), s.StopPostgres())
		_ = os.Remove(filepath.Join(s.dir, "run", "owner.pid"))
		close(s.stopped)
	})
	return err
}

func (s *Stack) writeInfo() error {
	b, err := json.MarshalIndent(s.Info(), "", "  ")
	if err != nil {
		return fmt.Errorf("devstack: encode stack info: %w", err)
	}
	return writeFileAtomic(filepath.Join(s.dir, "stack.json"), append(b, '\n'), 0o600)
}

// writeFileAtomic replaces path in one rename, so a reader polling for the
// file never sees it half written.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("devstack: write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fmt.Errorf("devstack: chmod %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("devstack: write %s: %w", path, err)
	}
	return nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// ErrPortTaken is a port that another process holds, found before the
// stack starts or from a child that could not bind it.
var ErrPortTaken = errors.New("port is taken")

func portFree(port int) error {
	if port <= 0 {
		return errors.New("port not set")
	}
	l, err := net.Listen("tcp", hostPort(port))
	if err != nil {
		return err
	}
	return l.Close()
}

// lineWriter serialises progress lines of services starting in parallel.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// binary finds a tool binary in BinDir, falling back to PATH.
func (s *Stack) binary(name string) (string, error) {
	if s.opts.BinDir != "" {
		p := filepath.Join(s.opts.BinDir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		return "", fmt.Errorf("%s binary not found in %s (run deployments/dev/tools.sh)", name, s.opts.BinDir)
	}
	p, err := lookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s binary not found on PATH and no BinDir given (run deployments/dev/tools.sh)", name)
	}
	return p, nil
}
