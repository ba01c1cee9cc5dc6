package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// StartPostgres starts PostgreSQL (creating the cluster on first use) and
// makes sure the role and database "tokenwarden" exist.
func (s *Stack) StartPostgres(ctx context.Context) error {
	s.mu.Lock()
	running := s.postgres != nil
	s.mu.Unlock()
	if running {
		return errors.New("devstack: postgres is already running")
	}
	if err := s.startPostgres(ctx); err != nil {
		return fmt.Errorf("devstack: postgres: %w", err)
	}
	return nil
}

func (s *Stack) startPostgres(ctx context.Context) error {
	initdb, err := s.pgBinary("initdb")
	if err != nil {
		return err
	}
	postgres, err := s.pgBinary("postgres")
	if err != nil {
		return err
	}
	root := filepath.Join(s.dir, "postgres")
	data := filepath.Join(root, "data")
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	cred, err := s.postgresCredential(root)
	if err != nil {
		return err
	}
	env := childEnv("LC_ALL=C", "LANG=C", "TZ=UTC")
	port := s.opts.Ports.Postgres

	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(s.log, "postgres: creating cluster in %s\n", data)
		if err := os.RemoveAll(data); err != nil {
			return err
		}
		logPath := filepath.Join(s.dir, "logs", "postgres-initdb.log")
		logFile, err := os.Create(logPath)
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, initdb, "-D", data, "-U", "postgres", "--auth=trust",
			"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
		cmd.Dir = root
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = sysProcAttr(cred)
		err = cmd.Run()
		logFile.Close()
		if err != nil {
			return fmt.Errorf("initdb failed (%v); see %s%s", err, logPath, logTail(logPath, 15))
		}
	}

	fmt.Fprintf(s.log, "postgres: starting on %s (log: %s)\n", hostPort(port), filepath.Join(s.dir, "logs", "postgres.log"))
	p, err := s.spawn(spawnSpec{
		name: "postgres",
		path: postgres,
		args: []string{"-D", data, "-p", strconv.Itoa(port),
			"-c", "listen_addresses=127.0.0.1",
			// No Unix socket: its default folder may not exist or be
			// writable, and nothing here connects through one.
			"-c", "unix_socket_directories=",
			"-c", "max_connections=200",
		},
		env:  env,
		cred: cred,
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.postgres = p
	s.mu.Unlock()

	admin := s.Info().PostgresAdminURL
	err = p.waitReady(ctx, 60*time.Second, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		return conn.Ping(ctx)
	})
	if err == nil {
		err = bootstrapPostgres(ctx, admin)
	}
	if err != nil {
		_ = s.StopPostgres()
		return err
	}
	fmt.Fprintf(s.log, "postgres: ready (%s)\n", s.Info().PostgresURL)
	return nil
}

// bootstrapPostgres creates the engine's role and database if missing.
func bootstrapPostgres(ctx context.Context, adminURL string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect as postgres: %w", err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tokenwarden')`).Scan(&exists); err != nil {
		return fmt.Errorf("look up role tokenwarden: %w", err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, `CREATE ROLE tokenwarden LOGIN`); err != nil {
			return fmt.Errorf("create role tokenwarden: %w", err)
		}
	}
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'tokenwarden')`).Scan(&exists); err != nil {
		return fmt.Errorf("look up database tokenwarden: %w", err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, `CREATE DATABASE tokenwarden OWNER tokenwarden`); err != nil {
			return fmt.Errorf("create database tokenwarden: %w", err)
		}
	}
	return nil
}

// StopPostgres stops PostgreSQL with a fast shutdown (SIGINT, as
// `pg_ctl stop -m fast`): sessions are ended, committed data is flushed.
func (s *Stack) StopPostgres() error {
	s.mu.Lock()
	p := s.postgres
	s.postgres = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	fmt.Fprintln(s.log, "postgres: stopping")
	if err := p.stop(syscall.SIGINT, false, 30*time.Second); err != nil {
		return fmt.Errorf("devstack: postgres: %w", err)
	}
	_ = os.Remove(filepath.Join(s.dir, "run", "postgres.pid"))
	return nil
}

// postgresCredential picks who runs initdb and postgres. Both refuse to run
// as root, and CI and this project's machines run as root: then the cluster
// belongs to the "postgres" user (or "nobody"), which must be able to reach
// the state folder.
func (s *Stack) postgresCredential(root string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	var u *user.User
	var err error
	for _, name := range []string{"postgres", "nobody"} {
		if u, err = user.Lookup(name); err == nil {
			break
		}
	}
	if u == nil {
		return nil, errors.New("running as root, and neither a postgres nor a nobody user exists to run the server as")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if st, err := os.Stat(root); err != nil {
		return nil, err
	} else if sys, ok := st.Sys().(*syscall.Stat_t); !ok || int(sys.Uid) != uid {
		if err := filepath.Walk(root, func(path string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, uid, gid)
		}); err != nil {
			return nil, fmt.Errorf("hand %s to user %s: %w", root, u.Username, err)
		}
	}
	// The user needs to pass through every folder above the cluster.
	if err := addSearchBit(s.dir); err != nil {
		return nil, err
	}
	for dir := filepath.Dir(s.dir); ; dir = filepath.Dir(dir) {
		st, err := os.Stat(dir)
		if err != nil {
			return nil, err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return nil, fmt.Errorf("postgres runs as user %s (it refuses root) but cannot enter %s: allow it with `chmod o+x %s` or pick a state folder elsewhere", u.Username, dir, dir)
		}
		if dir == filepath.Dir(dir) {
			break
		}
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func addSearchBit(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o001 == 0 {
		return os.Chmod(dir, st.Mode().Perm()|0o011)
	}
	return nil
}

// pgBinary finds a PostgreSQL server program.
func (s *Stack) pgBinary(name string) (string, error) {
	if s.opts.PostgresBinDir != "" {
		return filepath.Join(s.opts.PostgresBinDir, name), nil
	}
	if p, err := lookPath(name); err == nil {
		return p, nil
	}
	// Debian keeps the server programs off PATH.
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) > 0 {
		sort.Strings(matches)
		return matches[len(matches)-1], nil
	}
	return "", fmt.Errorf("%s not found on PATH or in /usr/lib/postgresql/*/bin: install PostgreSQL 15 (apt-get install postgresql)", name)
}

func lookPath(name string) (string, error) { return exec.LookPath(name) }

// childEnv is our environment without variables that would point a service
// elsewhere (VAULT_ADDR, PG*, TEMPORAL_*), plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if hasAnyPrefix(kv, "VAULT_", "PG", "TEMPORAL_", "LC_", "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if len(s) >= len(p) && s[:len(p)] == p {
			return true
		}
	}
	return false
}
