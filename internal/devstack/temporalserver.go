package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The real Temporal server (go.temporal.io/server, built by
// deployments/dev/server-tools.sh as temporal-server and temporal-sql-tool)
// on the stack's own PostgreSQL: databases temporal and
// temporal_visibility, SQL visibility with Tokenwarden's search
// attributes. `make scale` runs on it; the CLI's dev server (SQLite)
// enrolls only a few links a second on a small machine.
//
// Its ports follow the frontend's: history +1, matching +2, worker +6, the
// frontend's HTTP API +10, and the membership ports 300 below each. There
// is no UI in this mode: point a Temporal UI (the temporalio/ui image, or
// `temporal server start-dev`'s) at the frontend to watch it.

// temporalDBUser owns the Temporal server's databases: the stack
// cluster's superuser (trust authentication on loopback), which may create
// them; Tokenwarden's own role may not.
const temporalDBUser = "postgres"

// HistoryShards is the server's shard count: small, for one machine (it
// can never change for a cluster's life; production sizes it up front).
const HistoryShards = 4

// serverDynamicConfig tunes the server for one small machine:
//   - one task queue partition: the default four suit many workers polling
//     at once; with one or two worker processes, tasks that land in a
//     partition nobody polls are forwarded or written to the database;
//   - eager activity execution: the activity a workflow task schedules
//     (Refresh, in every routine cycle) goes back to the worker with the
//     task's answer instead of through matching. Temporal Cloud offers it;
//     self-hosted clusters should turn it on (README, Operating).
const serverDynamicConfig = `matching.numTaskqueueReadPartitions:
  - value: 1
    constraints: {}
matching.numTaskqueueWritePartitions:
  - value: 1
    constraints: {}
system.enableActivityEagerExecution:
  - value: true
    constraints: {}
`

func (s *Stack) startTemporalServer(ctx context.Context) error {
	server, err := s.binary("temporal-server")
	if err != nil {
		return err
	}
	tool, err := s.binary("temporal-sql-tool")
	if err != nil {
		return err
	}
	root := filepath.Join(s.dir, "temporal-server")
	if err := os.MkdirAll(filepath.Join(root, "config", "dynamicconfig"), 0o700); err != nil {
		return err
	}
	if err := s.waitPostgres(ctx, 2*time.Minute); err != nil {
		return err
	}
	for _, db := range []struct{ name, schema string }{
		{"temporal", "postgresql/v12/temporal"},
		{"temporal_visibility", "postgresql/v12/visibility"},
	} {
		if err := s.temporalSchema(ctx, tool, db.name, db.schema); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "config", "development.yaml"), []byte(s.temporalServerConfig(root)), 0o600); err != nil {
		return err
	}
	dyn := serverDynamicConfig
	if err := os.WriteFile(filepath.Join(root, "config", "dynamicconfig", "development.yaml"), []byte(dyn), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(s.log, "temporal: starting the Temporal server on %s with PostgreSQL (log: %s)\n",
		hostPort(s.opts.Ports.Temporal), filepath.Join(s.dir, "logs", "temporal.log"))
	p, err := s.spawn(spawnSpec{name: "temporal", path: server, env: childEnv(),
		args: []string{"--root", root, "--config", "config", "--env", "development", "--allow-no-auth", "start"}})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.temporal = p
	s.mu.Unlock()
	namespaces := append([]string{s.opts.Namespace}, s.opts.ExtraNamespaces...)
	err = p.waitReady(ctx, 3*time.Minute, func(ctx context.Context) error {
		c, err := DialTemporal(ctx, s.Info().TemporalAddress, s.opts.Namespace)
		if err != nil {
			return err
		}
		defer c.Close()
		for _, ns := range namespaces {
			if err := registerNamespace(ctx, c.WorkflowService(), ns); err != nil {
				return err
			}
			if err := EnsureSearchAttributes(ctx, c, ns, s.opts.SearchAttributes); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = s.StopTemporal()
		return err
	}
	fmt.Fprintf(s.log, "temporal: ready (the Temporal server, %s, namespace %s)\n", s.Info().TemporalAddress, s.opts.Namespace)
	return nil
}

// waitPostgres waits until the stack's PostgreSQL answers.
func (s *Stack) waitPostgres(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := pgx.Connect(cctx, s.Info().PostgresURL)
		cancel()
		if err == nil {
			return conn.Close(ctx)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("PostgreSQL did not come up for the Temporal server: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// temporalSchema creates database db if missing and brings its schema to
// the newest version the tool embeds.
func (s *Stack) temporalSchema(ctx context.Context, tool, db, schema string) error {
	base := []string{"--plugin", "postgres12", "--endpoint", "127.0.0.1",
		"--port", strconv.Itoa(s.opts.Ports.Postgres), "--user", temporalDBUser, "--database", db}
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, tool, append(append([]string{}, base...), args...)...)
		cmd.Env = childEnv()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("temporal-sql-tool %s on %s: %w: %s", args[0], db, err, lastLines(string(out), 5))
		}
		return nil
	}
	if err := run("create-database"); err != nil && !strings.Contains(err.Error(), "already exists") {
		return err
	}
	if err := run("setup-schema", "-v", "0.0"); err != nil && !strings.Contains(err.Error(), "already exists") {
		return err
	}
	return run("update-schema", "--schema-name", schema)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// registerNamespace creates ns (one day of retention) unless it exists.
func registerNamespace(ctx context.Context, ws workflowservice.WorkflowServiceClient, ns string) error {
	_, err := ws.RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace: ns, WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour)})
	var exists *serviceerror.NamespaceAlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("register namespace %s: %w", ns, err)
	}
	return nil
}

// temporalServerConfig is the server's static configuration.
func (s *Stack) temporalServerConfig(root string) string {
	fe := s.opts.Ports.Temporal
	pg := hostPort(s.opts.Ports.Postgres)
	store := func(db string, conns int) string {
		return fmt.Sprintf(`      sql:
        pluginName: "postgres12"
        databaseName: %q
        connectAddr: %q
        connectProtocol: "tcp"
        user: %q
        maxConns: %d
        maxIdleConns: %d
        maxConnLifetime: "1h"
`, db, pg, temporalDBUser, conns, conns)
	}
	service := func(name string, grpc int, extra string) string {
		return fmt.Sprintf("  %s:\n    rpc:\n      grpcPort: %d\n      membershipPort: %d\n      bindOnLocalHost: true\n%s", name, grpc, grpc-300, extra)
	}
	return "log:\n  stdout: true\n  level: warn\n\npersistence:\n  defaultStore: default\n  visibilityStore: visibility\n" +
		fmt.Sprintf("  numHistoryShards: %d\n", HistoryShards) +
		"  datastores:\n    default:\n" + store("temporal", 20) + "    visibility:\n" + store("temporal_visibility", 10) +
		"\nglobal:\n  membership:\n    maxJoinDuration: 30s\n    broadcastAddress: \"127.0.0.1\"\n\nservices:\n" +
		service("frontend", fe, fmt.Sprintf("      httpPort: %d\n", fe+10)) +
		service("history", fe+1, "") + service("matching", fe+2, "") + service("worker", fe+6, "") +
		"\nclusterMetadata:\n  enableGlobalNamespace: false\n  failoverVersionIncrement: 10\n  masterClusterName: \"active\"\n  currentClusterName: \"active\"\n" +
		"  clusterInformation:\n    active:\n      enabled: true\n      initialFailoverVersion: 1\n      rpcName: \"frontend\"\n" +
		fmt.Sprintf("      rpcAddress: %q\n", hostPort(fe)) +
		"\ndcRedirectionPolicy:\n  policy: \"noop\"\n\n" +
		"dynamicConfigClient:\n" + fmt.Sprintf("  filepath: %q\n", filepath.Join(root, "config", "dynamicconfig", "development.yaml")) + "  pollInterval: \"10s\"\n"
}
