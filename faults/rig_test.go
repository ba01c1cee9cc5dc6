package faults

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/tokenwarden/tokenwarden/activities"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/devstack"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/builtin"
	"github.com/tokenwarden/tokenwarden/worker"
	"github.com/tokenwarden/tokenwarden/workflows"
)

const tenant = e2e.Tenant

// peerOptions are those of every fault test: 5 s access tokens, refresh
// token rotation with reuse detection (a replayed refresh token revokes the
// whole grant).
var peerOptions = oidcpeer.Options{AccessTokenTTL: 5 * time.Second, RequireOfflineAccess: true}

// gatewayConfig keeps the in-process gateway from forcing a refresh on
// every read of a 5 s token (the default margin is 30 s).
var gatewayConfig = gateway.Config{TokenMargin: 500 * time.Millisecond}

// rig is one test's Tokenwarden: on the shared test stack (through
// internal/e2e) or on a private stack the test may break.
type rig struct {
	t *testing.T
	// maxCycles, if set, is the links' continue-as-new period.
	maxCycles int
	Temporal  client.Client
	Secrets   *secrets.Store
	Store     *store.Store
	Pool      *pgxpool.Pool
	Registry  *providers.Registry
	// CatalogPath is the catalog on disk; Gateway the in-process gateway.
	CatalogPath string
	Gateway     string
	APIKey      string
	peer        *oidcpeer.Peer
	e2e         *e2e.Stack      // shared stack only
	stack       *devstack.Stack // private stack only
}

// catalogEntry is the peer's catalog entry; tokenURL, if set, replaces the
// discovered token endpoint (a proxy in front of the peer).
func peerCatalog(peer *oidcpeer.Peer, tokenURL string) string {
	endpoint := ""
	if tokenURL != "" {
		endpoint = fmt.Sprintf("\n    endpoint: {token_url: %q}", tokenURL)
	}
	return fmt.Sprintf(`providers:
  - name: peer
    kind: oidc
    issuer: %s%s
    auth_style: header
    client_id: %s
    client_secret: {vault: "providers/peer#client_secret"}
    scopes: [openid, offline_access]
    grants: [authorization_code, client_credentials]
    auth_params: {prompt: consent}
    schedule: {min_margin: 1s, fraction: 0.2, jitter: 0.1, default_lifetime: 5s}
`, peer.Issuer, endpoint, peer.ClientID)
}

// newSharedRig is a Tokenwarden on the shared stack, without a worker.
// extraCatalog is appended to the peer's catalog (more providers).
func newSharedRig(t *testing.T, tokenURL func(*oidcpeer.Peer) string, extraCatalog string, extraSecrets map[string]map[string]string) *rig {
	t.Helper()
	return newSharedRigWith(t, peerOptions, tokenURL, extraCatalog, extraSecrets)
}

// newSharedRigWith is newSharedRig with a peer of its own options.
func newSharedRigWith(t *testing.T, opts oidcpeer.Options, tokenURL func(*oidcpeer.Peer) string, extraCatalog string, extraSecrets map[string]map[string]string) *rig {
	t.Helper()
	peer := oidcpeer.StartT(t, opts)
	tu := ""
	if tokenURL != nil {
		tu = tokenURL(peer)
	}
	sec := map[string]map[string]string{"providers/peer": {"client_secret": peer.ClientSecret}}
	for k, v := range extraSecrets {
		sec[k] = v
	}
	s := e2e.Start(t, e2e.Options{
		NoWorker:     true,
		VaultSecrets: sec,
		Catalog:      peerCatalog(peer, tu) + extraCatalog,
		Gateway:      gatewayConfig,
	})
	return &rig{t: t, Temporal: s.Temporal, Secrets: s.Secrets, Store: s.Store, Pool: s.Pool, Registry: s.Registry,
		CatalogPath: s.CatalogPath, Gateway: s.Gateway.URL, APIKey: s.APIKey, peer: peer, e2e: s}
}

// privateSlots: at most two private stacks at once (the machine has two
// cores and other tests to run).
var privateSlots = make(chan struct{}, 2)

// privateStack starts Temporal, Vault and Postgres for this test alone.
func privateStack(t *testing.T) *devstack.Stack {
	t.Helper()
	bin := testenv.ToolBinDir(t)
	privateSlots <- struct{}{}
	t.Cleanup(func() { <-privateSlots })
	dir := testenv.StateDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	st, err := testenv.StartPrivate(t, ctx, devstack.Options{Dir: dir, BinDir: bin})
	if err != nil {
		t.Fatalf("private stack: %v", err)
	}
	t.Cleanup(func() { _ = st.Stop() })
	t.Logf("private stack up in %s", time.Since(began).Round(100*time.Millisecond))
	return st
}

// newPrivateRig is a Tokenwarden on a private stack, without a worker.
func newPrivateRig(t *testing.T) *rig {
	t.Helper()
	stack := privateStack(t)
	info := stack.Info()
	peer := oidcpeer.StartT(t, peerOptions)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	c, err := devstack.DialTemporal(ctx, info.TemporalAddress, info.TemporalNamespace)
	if err != nil {
		t.Fatalf("temporal: %v", err)
	}
	t.Cleanup(c.Close)
	vcfg := vault.DefaultConfig()
	vcfg.Address = info.VaultAddress
	vc, err := vault.NewClient(vcfg)
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(info.VaultToken)
	sec := secrets.New(vc, info.VaultMount, "tokenwarden/faults")
	pool, err := pgxpool.New(ctx, info.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	st := store.New(pool)
	if err := sec.PutValue(ctx, "providers/peer", map[string]string{"client_secret": peer.ClientSecret}); err != nil {
		t.Fatalf("put client secret: %v", err)
	}
	r := &rig{t: t, Temporal: c, Secrets: sec, Store: st, Pool: pool, peer: peer, stack: stack}
	r.CatalogPath = filepath.Join(t.TempDir(), "catalog.yaml")
	if err := os.WriteFile(r.CatalogPath, []byte(peerCatalog(peer, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	r.Registry = r.openRegistry(0)
	key, _, err := st.CreateAPIKey(ctx, tenant, "faults")
	if err != nil {
		t.Fatalf("api key: %v", err)
	}
	r.APIKey = key
	srv := httptest.NewUnstartedServer(nil)
	srv.Start()
	t.Cleanup(srv.Close)
	cfg := gatewayConfig
	cfg.PublicURL = srv.URL
	srv.Config.Handler = gateway.New(gateway.Deps{Temporal: c, Store: st, Secrets: sec, Providers: r.Registry}, cfg).Handler()
	r.Gateway = srv.URL
	return r
}

// openRegistry opens the catalog again with its own HTTP timeout (0: the
// default), for a worker that should give up on a slow provider sooner.
func (r *rig) openRegistry(timeout time.Duration) *providers.Registry {
	r.t.Helper()
	cat, err := providers.LoadFile(r.CatalogPath, builtin.Kinds)
	if err != nil {
		r.t.Fatalf("catalog: %v", err)
	}
	var hc *http.Client
	if timeout > 0 {
		hc = &http.Client{Timeout: timeout}
	}
	reg, err := cat.Open(context.Background(), func(ctx context.Context, ref providers.SecretRef) (string, error) {
		return r.Secrets.Resolve(ctx, ref.Vault)
	}, hc)
	if err != nil {
		r.t.Fatalf("open catalog: %v", err)
	}
	return reg
}

// startWorker runs an in-process worker on reg (nil: the rig's registry).
func (r *rig) startWorker(reg *providers.Registry) (stop func()) {
	if reg == nil {
		reg = r.Registry
	}
	w := worker.New(r.Temporal, &activities.Activities{Providers: reg, Secrets: r.Secrets, Store: r.Store, WebhooksToInternal: true}, sdkworker.Options{})
	if err := w.Start(); err != nil {
		r.t.Fatalf("worker: %v", err)
	}
	var once sync.Once
	stop = func() { once.Do(w.Stop) }
	r.t.Cleanup(stop)
	return stop
}

func (r *rig) remember(s ...string) {
	if r.e2e != nil {
		r.e2e.Remember(s...)
	}
}

func randomString() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// linker creates links on the rig's stack, shared or private.
func (r *rig) linker() e2e.Linker {
	return e2e.Linker{T: r.t, Store: r.Store, Secrets: r.Secrets, Temporal: r.Temporal, Registry: r.Registry, Remember: r.remember,
		MaxCyclesPerRun: r.maxCycles}
}

// createLink does what the gateway does: a links row, the grant material
// in Vault, and the link's workflow.
func (r *rig) createLink(ctx context.Context, provider, grantType string, g providers.Grant) string {
	r.t.Helper()
	return r.linker().CreateLink(ctx, provider, grantType, g)
}

// createAuthCodeLink drives the peer's login and consent pages and hands
// the code to the workflow, as the gateway's callback does.
func (r *rig) createAuthCodeLink(ctx context.Context) string {
	r.t.Helper()
	return r.linker().CreateAuthCodeLink(ctx, r.peer)
}

// activeLinks creates n authorization-code links and waits until each
// is active.
func (r *rig) activeLinks(ctx context.Context, n int) []string {
	r.t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, r.createAuthCodeLink(ctx))
	}
	for _, id := range ids {
		r.waitFor(ctx, id, "enrolled", 90*time.Second, isActive)
	}
	return ids
}

func (r *rig) state(ctx context.Context, id string) (workflows.State, error) {
	var st workflows.State
	v, err := r.Temporal.QueryWorkflow(ctx, workflows.WorkflowID(tenant, id), "", workflows.QueryState)
	if err != nil {
		return st, err
	}
	return st, v.Get(&st)
}

func isActive(st workflows.State) bool { return st.Status == workflows.StatusActive }

// waitFor polls a link's state until cond holds.
func (r *rig) waitFor(ctx context.Context, id, what string, limit time.Duration, cond func(workflows.State) bool) workflows.State {
	r.t.Helper()
	deadline := time.Now().Add(limit)
	var last workflows.State
	var lastErr error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := r.state(qctx, id)
		cancel()
		if err == nil && cond(st) {
			return st
		}
		last, lastErr = st, err
		time.Sleep(200 * time.Millisecond)
	}
	r.t.Fatalf("link %s: %s: timed out after %s; last status %q, last_error %q, query error %v", id, what, limit, last.Status, last.LastError, lastErr)
	return last
}

// states queries every link.
func (r *rig) states(ctx context.Context, ids []string) map[string]workflows.State {
	r.t.Helper()
	out := map[string]workflows.State{}
	for _, id := range ids {
		st, err := r.state(ctx, id)
		if err != nil {
			r.t.Fatalf("query %s: %v", id, err)
		}
		out[id] = st
	}
	return out
}

// refreshNow forces a refresh through the workflow.
func (r *rig) refreshNow(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	h, err := r.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflows.WorkflowID(tenant, id), UpdateName: workflows.UpdateRefresh,
		Args: []any{workflows.RefreshRequest{}}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	return err
}

// lost counts links that are not alive after a fault: each must be
// active, refresh on demand, and hold an access token the peer accepts
// (a replayed refresh token would have revoked the grant).
func (r *rig) lost(ctx context.Context, ids []string) int {
	r.t.Helper()
	lost := 0
	for _, id := range ids {
		if err := r.alive(ctx, id); err != nil {
			lost++
			r.t.Errorf("link %s: %v", id, err)
		}
	}
	return lost
}

// alive forces a refresh of one link and asks the peer about the access
// token it stored. On a loaded machine a 5 s token can expire between the
// refresh and the peer's answer (seen 4 times in 50 links, up to 4.5 s
// late), and a state query can time out: neither says anything about the
// grant, so the check is made again, up to three times. A revoked grant
// fails every attempt: its refresh is refused, its status is not active,
// or its token is inactive before its own expiry.
func (r *rig) alive(ctx context.Context, id string) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var inconclusive bool
		if inconclusive, err = r.aliveOnce(ctx, id); !inconclusive {
			return err
		}
		r.t.Logf("link %s: inconclusive (%v); checking again", id, err)
	}
	return err
}

func (r *rig) aliveOnce(ctx context.Context, id string) (inconclusive bool, err error) {
	if err := r.refreshNow(ctx, id); err != nil {
		return false, fmt.Errorf("cannot refresh after the fault: %w", err)
	}
	tok, err := r.Secrets.ReadToken(ctx, tenant, id)
	if err != nil {
		return false, fmt.Errorf("read token: %w", err)
	}
	r.remember(tok.Value.AccessToken, tok.Value.RefreshToken, tok.Value.IDToken)
	st, err := r.state(ctx, id)
	if err != nil {
		return true, fmt.Errorf("query state: %w", err)
	}
	if st.Status != workflows.StatusActive {
		return false, fmt.Errorf("%s after the fault", st.Status)
	}
	ok, _, err := r.peer.Introspect(ctx, tok.Value.AccessToken)
	if err != nil {
		return false, err
	}
	if ok {
		return false, nil
	}
	expiredMeanwhile := !tok.Value.Expiry.IsZero() && !time.Now().Before(tok.Value.Expiry)
	return expiredMeanwhile, fmt.Errorf("access token not active at the peer after the fault (its expiry %s, now %s)",
		tok.Value.Expiry.UTC().Format("15:04:05.000"), time.Now().UTC().Format("15:04:05.000"))
}

// refreshErrors is the number of refresh requests the peer rejected for a
// reason other than an injected fault (a spent refresh token replayed).
func (r *rig) refreshErrors(ctx context.Context) (hits, errors int) {
	r.t.Helper()
	s, err := r.peer.Stats(ctx)
	if err != nil {
		r.t.Fatalf("peer stats: %v", err)
	}
	return s.TokenByGrantType["refresh_token"], s.TokenErrorsByGrantType["refresh_token"] - s.FaultsInjected
}

// noBadStatus fails for a link that ended failed or reauth_required,
// whose refresh token would be gone for good.
func noBadStatus(t *testing.T, sts map[string]workflows.State) int {
	t.Helper()
	bad := 0
	for id, st := range sts {
		if st.Status == workflows.StatusFailed || st.Status == workflows.StatusReauthRequired || st.Status == workflows.StatusRevoked {
			bad++
			t.Errorf("link %s ended %s (%s)", id, st.Status, st.LastError)
		}
	}
	return bad
}

// reader polls the gateway's token endpoint for links, checking every
// token it serves.
type reader struct {
	url, key string
	ids      []string
	every    time.Duration
	// onResponse, if set, sees every answer (status, Retry-After).
	onResponse func(status int, retryAfter string)

	mu            sync.Mutex
	served        int
	servedExpired int
	statuses      map[int]int
	codes         map[string]int
	missingRetry  int
}

func newReader(gatewayURL, key string, ids []string, every time.Duration) *reader {
	return &reader{url: gatewayURL, key: key, ids: ids, every: every, statuses: map[int]int{}, codes: map[string]int{}}
}

// run reads until ctx ends; concurrency goroutines share the links.
func (rd *reader) run(ctx context.Context, concurrency int) (wait func()) {
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 30 * time.Second}
	for g := 0; g < concurrency; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; ctx.Err() == nil; i++ {
				rd.once(ctx, hc, rd.ids[i%len(rd.ids)])
				select {
				case <-ctx.Done():
				case <-time.After(rd.every):
				}
			}
		}(g)
	}
	return wg.Wait
}

// warm waits until the reader has been served a token (so the gateway
// has looked its API key up once).
func (rd *reader) warm(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if served, _, _, _ := rd.summary(); served > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway served no token within a minute: %s", rd.errorCodes())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (rd *reader) once(ctx context.Context, hc *http.Client, id string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rd.url+"/v1/links/"+id+"/token", nil)
	req.Header.Set("Authorization", "Bearer "+rd.key)
	resp, err := hc.Do(req)
	if err != nil {
		return // the test ending, or the gateway process being stopped
	}
	defer resp.Body.Close()
	got := time.Now()
	var body struct {
		AccessToken string    `json:"access_token"`
		ExpiresAt   time.Time `json:"expires_at"`
		Error       struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	rd.mu.Lock()
	defer rd.mu.Unlock()
	rd.statuses[resp.StatusCode]++
	if body.Error.Code != "" {
		rd.codes[strconv.Itoa(resp.StatusCode)+" "+body.Error.Code+": "+body.Error.Message]++
	}
	if resp.StatusCode == http.StatusOK {
		rd.served++
		if body.AccessToken == "" || (!body.ExpiresAt.IsZero() && !body.ExpiresAt.After(got)) {
			rd.servedExpired++
		}
	}
	if (resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusBadGateway) && resp.Header.Get("Retry-After") == "" {
		rd.missingRetry++
	}
	if rd.onResponse != nil {
		rd.onResponse(resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func (rd *reader) summary() (served, expired int, statuses map[int]int, missingRetry int) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	st := map[int]int{}
	for k, v := range rd.statuses {
		st[k] = v
	}
	return rd.served, rd.servedExpired, st, rd.missingRetry
}

// errorCodes lists the error answers seen (codes and messages, which
// never carry a secret).
func (rd *reader) errorCodes() string {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	var parts []string
	for c, n := range rd.codes {
		parts = append(parts, fmt.Sprintf("%s ×%d", c, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func statusString(m map[int]int) string {
	var parts []string
	for _, code := range []int{200, 409, 429, 500, 502, 503, 504} {
		if m[code] > 0 {
			parts = append(parts, strconv.Itoa(code)+"×"+strconv.Itoa(m[code]))
		}
	}
	for code, n := range m {
		switch code {
		case 200, 409, 429, 500, 502, 503, 504:
		default:
			parts = append(parts, strconv.Itoa(code)+"×"+strconv.Itoa(n))
		}
	}
	return strings.Join(parts, " ")
}

// event is one audit event of a link.
type event struct {
	ID, Type, From, To string
}

// events reads a link's audit trail straight from the table, in the
// order written.
func (r *rig) events(ctx context.Context, id string) ([]event, error) {
	rows, err := r.Pool.Query(ctx, `SELECT id, type, coalesce(from_status, ''), coalesce(to_status, '') FROM link_events WHERE tenant_id = $1 AND link_id = $2 ORDER BY occurred_at, id`, tenant, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []event
	for rows.Next() {
		var e event
		if err := rows.Scan(&e.ID, &e.Type, &e.From, &e.To); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func countEvents(t *testing.T, r *rig, id, typ string) int {
	t.Helper()
	evs, err := r.events(context.Background(), id)
	if err != nil {
		t.Fatalf("events of %s: %v", id, err)
	}
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// countsAgree compares the refreshes the peer answered with those the
// workflows counted. Refreshes in flight make the two differ for a
// moment, so it samples until they agree (15 s at most); a refresh that
// ran twice makes the peer's count lead for good.
func (r *rig) countsAgree(ctx context.Context, ids []string) (peer, counted int, ok bool) {
	r.t.Helper()
	// Links refresh all the time (5-second tokens): the two counts are
	// compared within milliseconds of each other, the links' from one
	// query of the links table (where the refresh activity writes its
	// count before it answers), until they meet.
	deadline := time.Now().Add(15 * time.Second)
	for {
		hits, errs := r.refreshErrors(ctx)
		peer = hits - errs
		if err := r.Pool.QueryRow(ctx, `SELECT coalesce(sum(refresh_count), 0) FROM links WHERE tenant_id = $1 AND id = ANY($2)`,
			tenant, ids).Scan(&counted); err != nil {
			r.t.Fatalf("count refreshes: %v", err)
		}
		if peer == counted {
			return peer, counted, true
		}
		if time.Now().After(deadline) {
			return peer, counted, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
