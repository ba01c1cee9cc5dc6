package worker_test

// The integration tests of the link engine: the real Temporal server,
// Vault and PostgreSQL of the test stack, a real worker, and the certified
// oidc-provider peer as the OAuth server. Nothing is mocked.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
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
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"golang.org/x/oauth2"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tokenwarden/tokenwarden/activities"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/builtin"
	"github.com/tokenwarden/tokenwarden/worker"
	"github.com/tokenwarden/tokenwarden/workflows"
)

const tenant = store.DefaultTenantID

// engine is one test's Tokenwarden: its own namespace, Vault prefix and
// schema on the shared stack, its own OIDC peer, and a worker.
type engine struct {
	t        *testing.T
	info     testStack
	temporal client.Client
	ns       string
	vault    *vault.Client
	prefix   string
	pool     *pgxpool.Pool
	schema   string
	store    *store.Store
	secrets  *secrets.Store
	peer     *oidcpeer.Peer
	registry *providers.Registry
	catalog  string // path of the catalog file
	logs     *syncBuffer

	mu     sync.Mutex
	seen   map[string]bool   // every secret the test came across, for the leak scan
	grants map[string]string // workflow ID -> grant type, to name recorded histories
}

type testStack struct {
	temporalAddress string
	vaultAddress    string
	roleID          string
	secretID        string
	postgresURL     string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEngine(t *testing.T, peerOpts oidcpeer.Options) *engine {
	t.Helper()
	info := testenv.StackInfo(t)
	e := &engine{t: t, seen: map[string]bool{}, grants: map[string]string{}, logs: &syncBuffer{}}
	e.info = testStack{info.TemporalAddress, info.VaultAddress, info.VaultRoleID, info.VaultSecretID, info.PostgresURL}
	admin, ns := testenv.Temporal(t)
	_ = admin
	e.ns = ns
	e.vault, e.prefix = testenv.Vault(t)
	e.pool, e.schema = testenv.Postgres(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, e.pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	e.store = store.New(e.pool)
	e.secrets = secrets.New(e.vault, info.VaultMount, e.prefix)

	// The worker's client logs into a buffer the leak scan reads.
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := client.Dial(client.Options{HostPort: info.TemporalAddress, Namespace: ns, Logger: tlog.NewStructuredLogger(logger)})
	if err != nil {
		t.Fatalf("temporal: %v", err)
	}
	t.Cleanup(c.Close)
	e.temporal = c

	if peerOpts.Log == nil {
		peerOpts.Log = e.logs
	}
	e.peer = oidcpeer.StartT(t, peerOpts)
	e.remember(e.peer.ClientSecret)
	if err := e.secrets.PutValue(ctx, "providers/peer", map[string]string{"client_secret": e.peer.ClientSecret}); err != nil {
		t.Fatalf("store client secret: %v", err)
	}
	e.catalog = filepath.Join(t.TempDir(), "catalog.yaml")
	yaml := fmt.Sprintf(`providers:
  - name: peer
    kind: oidc
    issuer: %s
    auth_style: header
    client_id: %s
    client_secret: {vault: "providers/peer#client_secret"}
    scopes: [openid, offline_access]
    grants: [authorization_code, client_credentials, device_code]
    auth_params: {prompt: consent}
    schedule: {min_margin: 1s, fraction: 0.2, jitter: 0.1, default_lifetime: 5s}
`, e.peer.Issuer, e.peer.ClientID)
	if err := os.WriteFile(e.catalog, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cat, err := providers.LoadFile(e.catalog, builtin.Kinds)
	if err != nil {
		t.Fatalf("catalog: %v", err)
	}
	e.registry, err = cat.Open(ctx, func(ctx context.Context, ref providers.SecretRef) (string, error) {
		return e.secrets.Resolve(ctx, ref.Vault)
	}, nil)
	if err != nil {
		t.Fatalf("open catalog: %v", err)
	}
	return e
}

// startWorker runs an in-process worker until the test ends.
func (e *engine) startWorker() {
	w := worker.New(e.temporal, &activities.Activities{Providers: e.registry, Secrets: e.secrets, Store: e.store}, sdkworker.Options{})
	if err := w.Start(); err != nil {
		e.t.Fatalf("worker: %v", err)
	}
	e.t.Cleanup(w.Stop)
}

func (e *engine) remember(secret string) {
	if secret == "" {
		return
	}
	e.mu.Lock()
	e.seen[secret] = true
	e.mu.Unlock()
}

func randomString() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// createLink does what the gateway does: a links row, the grant material
// in Vault, and the link's workflow.
func (e *engine) createLink(ctx context.Context, grantType string, g providers.Grant) string {
	e.t.Helper()
	id := store.NewLinkID()
	if _, _, err := e.store.CreateLink(ctx, store.Link{ID: id, TenantID: tenant, Provider: "peer", UserID: "alice",
		GrantType: grantType, Status: "pending", VaultPath: e.secrets.TokenPath(tenant, id)}); err != nil {
		e.t.Fatalf("create link: %v", err)
	}
	g.Type = grantType
	e.mu.Lock()
	e.grants[workflows.WorkflowID(tenant, id)] = grantType
	e.mu.Unlock()
	if _, err := e.secrets.WriteGrant(ctx, tenant, id, g, -1); err != nil {
		e.t.Fatalf("write grant: %v", err)
	}
	_, err := e.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       workflows.WorkflowID(tenant, id),
		TaskQueue:                workflows.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.TenantKey.ValueSet(tenant), workflows.ProviderKey.ValueSet("peer"),
			workflows.LinkIDKey.ValueSet(id), workflows.StatusKey.ValueSet("pending")),
	}, "Link", workflows.LinkParams{TenantID: tenant, LinkID: id, Provider: "peer", GrantType: grantType, Scopes: g.Scopes})
	if err != nil {
		e.t.Fatalf("start workflow: %v", err)
	}
	return id
}

// authorize drives the peer's login and consent pages for an
// authorization-code link and hands the code to the workflow, as the
// gateway's callback does.
func (e *engine) createAuthCodeLink(ctx context.Context) string {
	e.t.Helper()
	p, _, _ := e.registry.Get("peer")
	verifier := oauth2.GenerateVerifier()
	state := randomString()
	redirect := "http://127.0.0.1/v1/oauth/callback"
	scopes := []string{"openid", "offline_access"}
	e.remember(verifier)
	id := e.createLink(ctx, providers.GrantAuthorizationCode, providers.Grant{CodeVerifier: verifier, RedirectURL: redirect, Scopes: scopes})
	authURL, err := p.(providers.Authorizer).AuthCodeURL(state, verifier, redirect, scopes, nil)
	if err != nil {
		e.t.Fatalf("auth URL: %v", err)
	}
	back, err := e.peer.Login(ctx, authURL, "alice")
	if err != nil {
		e.t.Fatalf("login at the peer: %v", err)
	}
	if back.Query().Get("state") != state {
		e.t.Fatalf("state did not round-trip")
	}
	code := back.Query().Get("code")
	e.remember(code)
	g, err := e.secrets.ReadGrant(ctx, tenant, id)
	if err != nil {
		e.t.Fatal(err)
	}
	g.Value.Code = code
	if _, err := e.secrets.WriteGrant(ctx, tenant, id, g.Value, g.Version); err != nil {
		e.t.Fatal(err)
	}
	if err := e.temporal.SignalWorkflow(ctx, workflows.WorkflowID(tenant, id), "", workflows.SignalAuthorized, nil); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *engine) state(ctx context.Context, id string) (workflows.State, error) {
	var st workflows.State
	v, err := e.temporal.QueryWorkflow(ctx, workflows.WorkflowID(tenant, id), "", workflows.QueryState)
	if err != nil {
		return st, err
	}
	return st, v.Get(&st)
}

// waitFor polls the link's state until cond holds.
func (e *engine) waitFor(ctx context.Context, id, what string, cond func(workflows.State) bool) workflows.State {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last workflows.State
	var lastErr error
	for time.Now().Before(deadline) {
		st, err := e.state(ctx, id)
		if err == nil && cond(st) {
			return st
		}
		last, lastErr = st, err
		time.Sleep(200 * time.Millisecond)
	}
	e.t.Fatalf("link %s: %s: timed out; last status %q, last_error %q, query error %v", id, what, last.Status, last.LastError, lastErr)
	return last
}

// token reads the link's current token from Vault (as the gateway does)
// and remembers its secrets for the leak scan.
func (e *engine) token(ctx context.Context, id string) (providers.Token, int) {
	e.t.Helper()
	v, err := e.secrets.ReadToken(ctx, tenant, id)
	if err != nil {
		e.t.Fatalf("read token: %v", err)
	}
	e.remember(v.Value.AccessToken)
	e.remember(v.Value.RefreshToken)
	e.remember(v.Value.IDToken)
	return v.Value, v.Version
}

// scanForSecrets replays every recorded history and fails the test if any secret it came across appears in a
// Temporal history (every run of every workflow in the namespace), the
// process logs, or any Postgres table of the test's schema.
func (e *engine) scanForSecrets(ctx context.Context) {
	e.t.Helper()
	var haystacks []string
	var where []string
	it := e.listWorkflows(ctx)
	for _, ex := range it {
		h := e.temporal.GetWorkflowHistory(ctx, ex.GetExecution().GetWorkflowId(), ex.GetExecution().GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		var sb strings.Builder
		hist := &historypb.History{}
		for h.HasNext() {
			ev, err := h.Next()
			if err != nil {
				e.t.Fatalf("history: %v", err)
			}
			hist.Events = append(hist.Events, ev)
			b, _ := protojson.Marshal(ev)
			sb.Write(b)
		}
		haystacks = append(haystacks, sb.String())
		e.replay(ex.GetExecution().GetWorkflowId(), hist)
		where = append(where, "history of "+ex.GetExecution().GetWorkflowId()+" run "+ex.GetExecution().GetRunId())
	}
	if len(it) == 0 {
		e.t.Fatal("leak scan: no workflow histories found")
	}
	haystacks = append(haystacks, e.logs.String())
	where = append(where, "worker and peer logs")

	rows, err := e.pool.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1`, e.schema)
	if err != nil {
		e.t.Fatal(err)
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
		if err := e.pool.QueryRow(ctx, fmt.Sprintf(`SELECT coalesce(string_agg(t::text, E'\n'), '') FROM %q t`, tbl)).Scan(&dump); err != nil {
			e.t.Fatalf("dump %s: %v", tbl, err)
		}
		haystacks = append(haystacks, dump)
		where = append(where, "table "+tbl)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.seen) < 3 {
		e.t.Fatalf("leak scan: only %d secrets collected; the test did not exercise the engine", len(e.seen))
	}
	for secret := range e.seen {
		for i, h := range haystacks {
			if strings.Contains(h, secret) {
				// Never print the secret itself.
				e.t.Errorf("a secret (%d characters) leaked into %s", len(secret), where[i])
			}
		}
	}
	e.t.Logf("leak scan: %d secrets checked against %d workflow runs, the logs and %d tables: none found", len(e.seen), len(it), len(tables))
}

// replay runs the current workflow code against a history the real server
// recorded: a non-deterministic change to the workflow fails here.
func (e *engine) replay(id string, h *historypb.History) {
	e.t.Helper()
	r := sdkworker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(workflows.Link, workflow.RegisterOptions{Name: "Link"})
	if err := r.ReplayWorkflowHistory(tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(e.logs, nil))), h); err != nil {
		e.t.Errorf("replay of %s (%d events): %v", id, len(h.Events), err)
	}
	if dir := os.Getenv("TOKENWARDEN_RECORD_HISTORIES"); dir != "" {
		b, _ := protojson.MarshalOptions{Indent: "  "}.Marshal(h)
		e.mu.Lock()
		name := e.grants[id] + ".json"
		e.mu.Unlock()
		_ = os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
}

func (e *engine) listWorkflows(ctx context.Context) []*workflowpb.WorkflowExecutionInfo {
	var out []*workflowpb.WorkflowExecutionInfo
	var token []byte
	for {
		resp, err := e.temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: e.ns, NextPageToken: token, PageSize: 100})
		if err != nil {
			e.t.Fatalf("list workflows: %v", err)
		}
		out = append(out, resp.Executions...)
		token = resp.NextPageToken
		if len(token) == 0 {
			return out
		}
	}
}
