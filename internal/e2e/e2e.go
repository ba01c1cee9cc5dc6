// Package e2e runs a whole Tokenwarden for one end-to-end test on the
// shared test stack: a fresh Temporal namespace, Vault prefix and Postgres
// schema (internal/testenv), the provider catalog of the test, an
// in-process worker and gateway, and an API key. Tests then drive it the way
// users do, through the REST API or the Go client, and check what reached
// Temporal, the logs and Postgres.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5/pgxpool"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/activities"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/devstack"
	"github.com/tokenwarden/tokenwarden/internal/health"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/builtin"
	"github.com/tokenwarden/tokenwarden/worker"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// Tenant is the tenant of the stack's API key.
const Tenant = store.DefaultTenantID

// Options shape a Stack.
type Options struct {
	// Catalog is the provider catalog YAML. Client secrets are best given
	// as {vault: "providers/<name>#client_secret"} with the value in
	// VaultSecrets, so the test exercises the production path.
	Catalog string
	// VaultSecrets are written below the stack's Vault prefix before the
	// catalog opens: path -> field -> value.
	VaultSecrets map[string]map[string]string
	// NoWorker leaves the worker to the test (StartWorker, or a worker
	// process with Env).
	NoWorker bool
	// Gateway overrides the gateway configuration; PublicURL is always
	// the test server's.
	Gateway gateway.Config
	// LogTo, when set, takes the stack's logs at Info level instead of
	// the in-memory debug log (Logs) that the leak scan reads: a load run
	// of many minutes would otherwise hold gigabytes of debug lines.
	LogTo io.Writer
}

// Stack is one test's Tokenwarden.
type Stack struct {
	T    testing.TB
	Info devstack.Info

	Temporal  client.Client
	Namespace string
	Vault     *vault.Client
	Prefix    string
	// Secrets has the worker's Vault access (every secret of the
	// prefix): the worker's, and the tests' to inspect.
	Secrets *secrets.Store
	// GatewaySecrets has the gateway's own Vault identity: access tokens,
	// never a refresh token or a stored credential.
	GatewaySecrets *secrets.Store

	Pool     *pgxpool.Pool
	Schema   string
	Store    *store.Store
	Registry *providers.Registry
	// CatalogPath is the catalog written to disk, for worker processes.
	CatalogPath string

	Gateway    *httptest.Server
	GatewaySrv *gateway.Server
	APIKey     string
	Client     *tokenwarden.Client
	Logs       *SyncBuffer
	Logger     *slog.Logger

	// Codec, when set, is the payload codec the stack's clients use; the
	// leak scan decodes payloads through it.
	Codec converter.PayloadCodec

	mu     sync.Mutex
	seen   map[string]bool
	labels map[string]string
}

// Start builds a Stack for t; everything is torn down on cleanup.
func Start(t testing.TB, o Options) *Stack {
	t.Helper()
	s := &Stack{T: t, Info: testenv.StackInfo(t), Logs: &SyncBuffer{}, seen: map[string]bool{}, labels: map[string]string{}}
	s.Logger = slog.New(slog.NewTextHandler(s.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.LogTo != nil {
		s.Logger = slog.New(slog.NewTextHandler(o.LogTo, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	ctx := context.Background()

	_, s.Namespace = testenv.Temporal(t)
	c, err := client.Dial(client.Options{HostPort: s.Info.TemporalAddress, Namespace: s.Namespace, Logger: tlog.NewStructuredLogger(s.Logger)})
	if err != nil {
		t.Fatalf("e2e: temporal: %v", err)
	}
	t.Cleanup(c.Close)
	s.Temporal = c

	s.Vault, s.Prefix = testenv.Vault(t)
	s.Secrets = secrets.New(s.Vault, s.Info.VaultMount, s.Prefix)
	s.GatewaySecrets = gatewaySecrets(t, s.Info, s.Vault, s.Prefix)
	s.Pool, s.Schema = testenv.Postgres(t)
	if err := store.Migrate(ctx, s.Pool); err != nil {
		t.Fatalf("e2e: migrate: %v", err)
	}
	s.Store = store.New(s.Pool)

	for path, fields := range o.VaultSecrets {
		for _, v := range fields {
			s.Remember(v)
		}
		if err := s.Secrets.PutValue(ctx, path, fields); err != nil {
			t.Fatalf("e2e: put %s: %v", path, err)
		}
	}
	s.CatalogPath = filepath.Join(t.TempDir(), "catalog.yaml")
	if err := os.WriteFile(s.CatalogPath, []byte(o.Catalog), 0o600); err != nil {
		t.Fatal(err)
	}
	cat, err := providers.LoadFile(s.CatalogPath, builtin.Kinds)
	if err != nil {
		t.Fatalf("e2e: catalog: %v", err)
	}
	s.Registry, err = cat.Open(ctx, func(ctx context.Context, ref providers.SecretRef) (string, error) {
		return s.Secrets.Resolve(ctx, ref.Vault)
	}, nil)
	if err != nil {
		t.Fatalf("e2e: open catalog: %v", err)
	}

	key, _, err := s.Store.CreateAPIKey(ctx, Tenant, "e2e")
	if err != nil {
		t.Fatalf("e2e: api key: %v", err)
	}
	s.APIKey = key
	s.Remember(key)

	s.Gateway = httptest.NewUnstartedServer(nil)
	s.Gateway.Start()
	t.Cleanup(s.Gateway.Close)
	cfg := o.Gateway
	cfg.PublicURL = s.Gateway.URL
	s.GatewaySrv = gateway.New(gateway.Deps{
		Temporal: s.Temporal, Store: s.Store, Secrets: s.GatewaySecrets, Providers: s.Registry, Logger: s.Logger,
		Checks: []health.Check{health.Temporal(s.Temporal, s.Info.TemporalAddress), health.Vault(s.Vault), health.Postgres(s.Pool)},
	}, cfg)
	t.Cleanup(s.GatewaySrv.Close) // before the pool closes: its background work uses it
	s.Gateway.Config.Handler = s.GatewaySrv.Handler()
	s.Client = tokenwarden.NewClient(s.Gateway.URL, key)

	if !o.NoWorker {
		s.StartWorker()
	}
	return s
}

// StartWorker runs an in-process worker until the returned stop (or the
// end of the test).
func (s *Stack) StartWorker() (stop func()) {
	w := worker.New(s.Temporal, &activities.Activities{Providers: s.Registry, Secrets: s.Secrets, Store: s.Store, WebhooksToInternal: true}, sdkworker.Options{})
	if err := w.Start(); err != nil {
		s.T.Fatalf("e2e: worker: %v", err)
	}
	var once sync.Once
	stop = func() { once.Do(w.Stop) }
	s.T.Cleanup(stop)
	return stop
}

// Env is the environment for a `tokenwarden worker` or `tokenwarden
// gateway` process serving this stack (AppRole login, the stack's
// namespace, Vault prefix, schema and catalog).
func (s *Stack) Env() []string {
	dsn := s.Info.PostgresURL
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return append(os.Environ(),
		"TOKENWARDEN_TEMPORAL_ADDRESS="+s.Info.TemporalAddress,
		"TOKENWARDEN_TEMPORAL_NAMESPACE="+s.Namespace,
		"VAULT_ADDR="+s.Info.VaultAddress,
		"TOKENWARDEN_VAULT_ROLE_ID="+s.Info.VaultRoleID,
		"TOKENWARDEN_VAULT_SECRET_ID="+s.Info.VaultSecretID,
		"TOKENWARDEN_VAULT_PREFIX="+s.Prefix,
		"TOKENWARDEN_DATABASE_URL="+dsn+sep+"search_path="+s.Schema,
		"TOKENWARDEN_CATALOG="+s.CatalogPath,
	)
}

// Remember adds a secret to those ScanForSecrets looks for.
func (s *Stack) Remember(secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range secrets {
		if len(v) >= 8 { // shorter strings match by accident
			s.seen[v] = true
		}
	}
}

// Label names a workflow's recorded history (see Replay).
func (s *Stack) Label(linkID, label string) {
	s.mu.Lock()
	s.labels[workflows.WorkflowID(Tenant, linkID)] = label
	s.mu.Unlock()
}

// Token reads a link's whole token from Vault, as the worker does, and
// remembers its secrets.
func (s *Stack) Token(ctx context.Context, linkID string) (providers.Token, int) {
	s.T.Helper()
	v, err := s.Secrets.ReadToken(ctx, Tenant, linkID)
	if err != nil {
		s.T.Fatalf("e2e: read token of %s: %v", linkID, err)
	}
	s.Remember(v.Value.AccessToken, v.Value.RefreshToken, v.Value.IDToken)
	return v.Value, v.Version
}

// State queries a link's workflow.
func (s *Stack) State(ctx context.Context, linkID string) (workflows.State, error) {
	var st workflows.State
	v, err := s.Temporal.QueryWorkflow(ctx, workflows.WorkflowID(Tenant, linkID), "", workflows.QueryState)
	if err != nil {
		return st, err
	}
	return st, v.Get(&st)
}

// WaitFor polls a link's state until cond holds (60 s at most).
func (s *Stack) WaitFor(ctx context.Context, linkID, what string, cond func(workflows.State) bool) workflows.State {
	s.T.Helper()
	return s.WaitForWithin(ctx, linkID, what, 60*time.Second, cond)
}

// WaitForWithin polls a link's state until cond holds, limit at most.
func (s *Stack) WaitForWithin(ctx context.Context, linkID, what string, limit time.Duration, cond func(workflows.State) bool) workflows.State {
	s.T.Helper()
	deadline := time.Now().Add(limit)
	var last workflows.State
	var lastErr error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st, err := s.State(ctx, linkID)
		if err == nil && cond(st) {
			return st
		}
		last, lastErr = st, err
		time.Sleep(200 * time.Millisecond)
	}
	s.T.Fatalf("e2e: link %s: %s: timed out; last status %q, last_error %q, query error %v", linkID, what, last.Status, last.LastError, lastErr)
	return last
}

// Status is a WaitFor condition.
func Status(want workflows.Status) func(workflows.State) bool {
	return func(st workflows.State) bool { return st.Status == want }
}

// ScanForSecrets replays every workflow history of the namespace with the
// current workflow code, and fails the test if any remembered secret
// appears in a history, the logs, or any table of the stack's schema.
func (s *Stack) ScanForSecrets(ctx context.Context) {
	s.T.Helper()
	var haystacks, where []string
	runs := s.listWorkflows(ctx)
	if len(runs) == 0 {
		s.T.Fatal("e2e: leak scan: no workflow histories found")
	}
	for _, ex := range runs {
		id, run := ex.GetExecution().GetWorkflowId(), ex.GetExecution().GetRunId()
		it := s.Temporal.GetWorkflowHistory(ctx, id, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		hist := &historypb.History{}
		var sb strings.Builder
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				s.T.Fatalf("e2e: history of %s: %v", id, err)
			}
			hist.Events = append(hist.Events, ev)
			h, err := haystack(ev, s.Codec)
			if err != nil {
				s.T.Fatalf("e2e: leak scan of %s: %v", id, err)
			}
			sb.WriteString(h)
		}
		haystacks = append(haystacks, sb.String())
		where = append(where, "history of "+id+" run "+run)
		s.replay(id, hist)
	}
	haystacks = append(haystacks, s.Logs.String())
	where = append(where, "logs")

	rows, err := s.Pool.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1`, s.Schema)
	if err != nil {
		s.T.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		_ = rows.Scan(&name)
		tables = append(tables, name)
	}
	rows.Close()
	for _, tbl := range tables {
		var dump string
		if err := s.Pool.QueryRow(ctx, fmt.Sprintf(`SELECT coalesce(string_agg(t::text, E'\n'), '') FROM %q t`, tbl)).Scan(&dump); err != nil {
			s.T.Fatalf("e2e: dump %s: %v", tbl, err)
		}
		haystacks = append(haystacks, dump)
		where = append(where, "table "+tbl)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) < 3 {
		s.T.Fatalf("e2e: leak scan: only %d secrets collected; the test did not exercise the engine", len(s.seen))
	}
	leaks := 0
	for secret := range s.seen {
		for i, h := range haystacks {
			if strings.Contains(h, secret) {
				// Never print the secret itself.
				s.T.Errorf("e2e: a secret (%d characters) leaked into %s", len(secret), where[i])
				leaks++
			}
		}
	}
	if leaks == 0 {
		s.T.Logf("leak scan: %d secrets checked against %d workflow runs, the logs and %d tables: none found", len(s.seen), len(runs), len(tables))
	}
}

// replay runs the current workflow code against a history the real
// server recorded: a non-deterministic change fails here. With
// TOKENWARDEN_RECORD_HISTORIES=dir it also saves the history (see
// workflows/replay_test.go).
func (s *Stack) replay(id string, h *historypb.History) {
	s.T.Helper()
	r := sdkworker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(workflows.Link, workflow.RegisterOptions{Name: "Link"})
	r.RegisterWorkflowWithOptions(workflows.WebhookDelivery, workflow.RegisterOptions{Name: workflows.WorkflowWebhook})
	if err := r.ReplayWorkflowHistory(tlog.NewStructuredLogger(s.Logger), h); err != nil {
		s.T.Errorf("e2e: replay of %s (%d events): %v", id, len(h.Events), err)
	}
	if dir := os.Getenv("TOKENWARDEN_RECORD_HISTORIES"); dir != "" {
		s.mu.Lock()
		label := s.labels[id]
		s.mu.Unlock()
		if label != "" {
			b, _ := protojson.MarshalOptions{Indent: "  "}.Marshal(h)
			_ = os.WriteFile(filepath.Join(dir, label+".json"), b, 0o644)
		}
	}
}

func (s *Stack) listWorkflows(ctx context.Context) []*workflowpb.WorkflowExecutionInfo {
	var out []*workflowpb.WorkflowExecutionInfo
	var token []byte
	for {
		resp, err := s.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: s.Namespace, NextPageToken: token, PageSize: 100})
		if err != nil {
			s.T.Fatalf("e2e: list workflows: %v", err)
		}
		out = append(out, resp.Executions...)
		token = resp.NextPageToken
		if len(token) == 0 {
			return out
		}
	}
}

// SyncBuffer is a log sink safe for concurrent writers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// WaitRecorded waits until the links table holds every transition the
// link's workflow has made (its sequence number): the audit trail is
// written in the background, so a test that reads PostgreSQL right after
// the workflow moved must wait for it.
func (s *Stack) WaitRecorded(ctx context.Context, linkID string) {
	s.T.Helper()
	st, err := s.State(ctx, linkID)
	if err != nil {
		s.T.Fatalf("e2e: state of %s: %v", linkID, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := s.Store.GetLink(ctx, Tenant, linkID)
		if err == nil && l.StateSeq >= st.Seq {
			return
		}
		if time.Now().After(deadline) {
			s.T.Fatalf("e2e: link %s: the links table did not reach seq %d within 30 s (err %v)", linkID, st.Seq, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
