package providerstest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	demobanksim "github.com/tokenwarden/tokenwarden/providers/demobank/sim"
	everifinsim "github.com/tokenwarden/tokenwarden/providers/everifin/sim"
	finapisim "github.com/tokenwarden/tokenwarden/providers/finapi/sim"
	lucasim "github.com/tokenwarden/tokenwarden/providers/luca/sim"
	normansim "github.com/tokenwarden/tokenwarden/providers/norman/sim"
)

// apiTap sits in front of a simulator for the proxy tests: requests to
// the simulator's API (api true) stream through untouched, since bodies
// here are larger than the wire records, and only their Bearer tokens
// are kept for the leak scan; token endpoint traffic goes through the
// wire, which collects every secret in it.
type apiTap struct {
	api     func(path string) bool
	sim     http.Handler
	wire    *wire
	bearers *wire
}

func (a *apiTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.api(r.URL.Path) {
		a.wire.ServeHTTP(w, r)
		return
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		a.bearers.collect(tok)
	}
	a.sim.ServeHTTP(w, r)
}

func newAPITap(t *testing.T, sim http.Handler, api func(string) bool) (*apiTap, string) {
	tap := &apiTap{api: api, sim: sim, wire: newWire(sim, controls{}, ""), bearers: newWire(nil, controls{}, "")}
	srv := httptest.NewServer(tap)
	t.Cleanup(srv.Close)
	return tap, srv.URL
}

// proxySim is one seed provider behind the proxy.
type proxySim struct {
	name string
	tap  *apiTap
	// enroll creates an active link; call is the provider's API call,
	// check its answer's body.
	enroll       func(t *testing.T, s *e2e.Stack, ctx context.Context) string
	call         func() *http.Request
	check        func(t *testing.T, body []byte)
	expireAccess func()
	// extra runs provider-specific checks on the active link.
	extra func(t *testing.T, s *e2e.Stack, ctx context.Context, id string)
}

// TestProxyAgainstSimulators: each seed provider's API through the
// gateway's proxy, on the real stack: a call with the link's token, a
// 401 after the provider dropped every access token (one forced refresh,
// one retry), paths that leave the API base, and a revoked link; Norman's
// institution calls get no Institution header, Luca's bodies of megabytes
// stream both ways (and a 401 with one is not retried), Everifin's dead
// session ends in reauth_required in the audit trail, and Demobank's
// outbound limit answers 429. Then the leak scan.
func TestProxyAgainstSimulators(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const institution, finapiClient, lucaClient, everifinClient, realm = "tw-institution", "tw-finapi-client", "tw-luca-client", "tw-everifin-client", "tw-realm"
	normanSecret, finapiSecret, lucaSecret, everifinSecret := "norman-"+randomString(24), "finapi-"+randomString(24), "luca-"+randomString(24), "everifin-"+randomString(24)
	user, password := "u"+randomString(6), randomString(18)
	const ttl = 30 * time.Second

	norman := normansim.New(normansim.Options{InstitutionID: institution, SecretKey: normanSecret, AccessTTL: ttl})
	finapi := finapisim.New(finapisim.Options{ClientID: finapiClient, ClientSecret: finapiSecret, AccessTTL: ttl, Refresh: finapisim.RefreshRotate})
	const invoices = 200000 // about 3 MB of GraphQL answer
	luca := lucasim.New(lucasim.Options{ClientID: lucaClient, ClientSecret: lucaSecret, Users: map[string]string{user: password},
		AccessTTL: ttl, AutoApprove: true, Invoices: invoices})
	everifin := everifinsim.New(everifinsim.Options{Realm: realm, Clients: []everifinsim.Client{{ID: everifinClient, Secret: everifinSecret}},
		Users: map[string]string{user: password}, AccessTTL: ttl, AutoApprove: true})
	demobank := demobanksim.New(demobanksim.Options{Users: map[string]string{user: password}, AccessTTL: ttl})

	prefix := func(p string) func(string) bool { return func(path string) bool { return strings.HasPrefix(path, p) } }
	normanTap, normanURL := newAPITap(t, norman, prefix("/api/v1/companies/"))
	finapiTap, finapiURL := newAPITap(t, finapi, func(p string) bool { return p == finapisim.PathUsers })
	lucaTap, lucaURL := newAPITap(t, luca, prefix("/api/v1/graphql"))
	everifinTap, everifinURL := newAPITap(t, everifin, func(p string) bool { return strings.HasSuffix(p, "/userinfo") })
	demobankTap, demobankURL := newAPITap(t, demobank, func(p string) bool { return strings.HasSuffix(p, "/userinfo") })

	catalog := fmt.Sprintf(`providers:
  - name: norman
    kind: norman
    client_id: %[1]s
    client_secret: {vault: "providers/norman#client_secret"}
    grants: [norman_user]
    allowed_params: [username, email, external_id]
    settings: {base_url: %[2]q, access_token_lifetime: 30s}
    api_base_url: %[2]s/api/v1
    api_allow_internal: true
  - name: finapi
    kind: finapi
    client_id: %[3]s
    client_secret: {vault: "providers/finapi#client_secret"}
    auth_style: body
    grants: [password]
    allowed_params: [create_user, email]
    settings: {base_url: %[4]q}
    api_base_url: %[4]s/api/v2
    api_allow_internal: true
  - name: luca
    kind: luca
    client_id: %[5]s
    client_secret: {vault: "providers/luca#client_secret"}
    auth_style: body
    grants: [authorization_code]
    settings: {base_url: %[6]q}
    api_base_url: %[6]s/api/v1
    api_allow_internal: true
    forced_refresh_interval: 0s
  - name: everifin
    kind: everifin
    client_id: %[7]s
    client_secret: {vault: "providers/everifin#client_secret"}
    auth_style: body
    grants: [authorization_code]
    settings: {base_url: %[8]q, realm: %[9]s}
    api_base_url: %[8]s/auth/realms/%[9]s/protocol/openid-connect
    api_allow_internal: true
    forced_refresh_interval: 0s
  - name: finapi-demobank
    kind: demobank
    client_id: demobank-cli
    auth_style: none
    grants: [password]
    settings: {base_url: %[10]q, mandator: customer}
    api_base_url: %[10]s/realms/customer/protocol/openid-connect
    api_allow_internal: true
  - name: demobank-limited
    kind: demobank
    client_id: demobank-cli
    auth_style: none
    grants: [password]
    settings: {base_url: %[10]q, mandator: customer}
    api_base_url: %[10]s/realms/customer/protocol/openid-connect
    api_allow_internal: true
    api_rate_limit: 0.05
    api_burst: 2
`, institution, normanURL, finapiClient, finapiURL, lucaClient, lucaURL, everifinClient, everifinURL, realm, demobankURL)
	s := e2e.Start(t, e2e.Options{Catalog: catalog, VaultSecrets: map[string]map[string]string{
		"providers/norman":   {"client_secret": normanSecret},
		"providers/finapi":   {"client_secret": finapiSecret},
		"providers/luca":     {"client_secret": lucaSecret},
		"providers/everifin": {"client_secret": everifinSecret},
	}})
	s.Remember(password)
	finapi.AddUser(user, password)

	create := func(t *testing.T, r tokenwarden.CreateLinkRequest) *tokenwarden.Link {
		t.Helper()
		l, err := s.Client.CreateLink(ctx, r, "")
		if err != nil {
			t.Fatalf("create link at %s: %v", r.Provider, err)
		}
		return l
	}
	passwordLink := func(provider string) func(*testing.T, *e2e.Stack, context.Context) string {
		return func(t *testing.T, s *e2e.Stack, ctx context.Context) string {
			return create(t, tokenwarden.CreateLinkRequest{Provider: provider, UserID: user, Grant: tokenwarden.GrantPassword,
				Credentials: &tokenwarden.Credentials{Username: user, Password: password}}).ID
		}
	}
	browser := func(provider string) func(*testing.T, *e2e.Stack, context.Context) string {
		return func(t *testing.T, s *e2e.Stack, ctx context.Context) string {
			l := create(t, tokenwarden.CreateLinkRequest{Provider: provider, UserID: user, Grant: tokenwarden.GrantAuthorizationCode})
			c := &check{start: time.Now()}
			done := make(chan struct{})
			go func() { defer close(done); followAuthorization(c, l.AuthorizationURL) }()
			<-done
			c.report(t)
			if t.Failed() {
				t.FailNow()
			}
			return l.ID
		}
	}
	get := func(path string) func() *http.Request {
		return func() *http.Request { r, _ := http.NewRequest(http.MethodGet, path, nil); return r }
	}
	jsonField := func(field, want string) func(*testing.T, []byte) {
		return func(t *testing.T, body []byte) {
			t.Helper()
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil || fmt.Sprint(m[field]) != want {
				t.Fatalf("the provider answered %.200s; want %s = %s", body, field, want)
			}
		}
	}
	graphql := func(padding, first int) func() *http.Request {
		return func() *http.Request {
			q, _ := json.Marshal(map[string]string{"query": "# " + strings.Repeat("x", padding) + "\n{ saleInvoices(first: " + strconv.Itoa(first) + ") { nodes { id } } }"})
			r, _ := http.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(q))
			r.Header.Set("Content-Type", "application/json")
			return r
		}
	}

	sims := []proxySim{
		{name: "norman", tap: normanTap,
			enroll: func(t *testing.T, s *e2e.Stack, ctx context.Context) string {
				return create(t, tokenwarden.CreateLinkRequest{Provider: "norman", UserID: user, Grant: "norman_user",
					Params: map[string]string{"username": user, "email": user + "@example.com", "external_id": "ext-" + user}}).ID
			},
			call: get("/companies/bec25987/taxes/reports/"),
			check: func(t *testing.T, body []byte) {
				if !bytes.Contains(body, []byte(`"created_by":"`+user+`"`)) {
					t.Fatalf("the reports are not the link's user's: %.200s", body)
				}
			},
			expireAccess: norman.ExpireAccessTokens,
			extra: func(t *testing.T, s *e2e.Stack, ctx context.Context, id string) {
				// The institution calls take the Institution header, which
				// the proxy never sends: Norman answers "not provided".
				req, _ := http.NewRequest(http.MethodPost, "/institution/users/token/verify/", strings.NewReader(`{"token":"x"}`))
				req.Header.Set("Content-Type", "application/json")
				resp, body := proxyDo(t, s, id, req)
				if resp.StatusCode != http.StatusUnauthorized || !bytes.Contains(body, []byte("credentials were not provided")) {
					t.Fatalf("token/verify through the proxy answered %d %.200s; want Norman's 401 for a missing Institution header", resp.StatusCode, body)
				}
			}},
		{name: "finapi", tap: finapiTap, enroll: passwordLink("finapi"), call: get("/users"),
			check: jsonField("id", user), expireAccess: finapi.ExpireAccessTokens},
		{name: "luca", tap: lucaTap, enroll: browser("luca"), call: graphql(10, 2),
			check: func(t *testing.T, body []byte) {
				if !bytes.Contains(body, []byte(`"saleInvoices"`)) {
					t.Fatalf("GraphQL answered %.200s", body)
				}
			},
			expireAccess: luca.ExpireAccessTokens,
			extra: func(t *testing.T, s *e2e.Stack, ctx context.Context, id string) {
				// 2 MiB up, about 3 MB down.
				resp, body := proxyDo(t, s, id, graphql(2<<20, invoices)())
				var out struct {
					Data struct {
						SaleInvoices struct{ Nodes []struct{ ID string } }
					}
				}
				if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil || len(out.Data.SaleInvoices.Nodes) != invoices {
					t.Fatalf("a 2 MiB query answered %d with %d bytes, %d invoices", resp.StatusCode, len(body), len(out.Data.SaleInvoices.Nodes))
				}
				t.Logf("a 2 MiB GraphQL query through the proxy: %d bytes back", len(body))
				// Too large to keep: the 401 is not retried, the token is
				// refreshed, and the same request then works.
				luca.ExpireAccessTokens()
				resp, _ = proxyDo(t, s, id, graphql(2<<20, 1)())
				if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get(tokenwarden.HeaderProxyRetry) != "body_not_replayable" {
					t.Fatalf("a 401 for a 2 MiB body answered %d, %s %q", resp.StatusCode, tokenwarden.HeaderProxyRetry, resp.Header.Get(tokenwarden.HeaderProxyRetry))
				}
				resp, _ = proxyDo(t, s, id, graphql(2<<20, 1)())
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("the 2 MiB request after the refresh answered %d", resp.StatusCode)
				}
			}},
		{name: "everifin", tap: everifinTap, enroll: browser("everifin"), call: get("/userinfo"),
			check: jsonField("preferred_username", user), expireAccess: everifin.ExpireAccessTokens},
		{name: "finapi-demobank", tap: demobankTap, enroll: passwordLink("finapi-demobank"), call: get("/userinfo"),
			check: jsonField("preferred_username", user), expireAccess: demobank.ExpireAccessTokens,
			extra: func(t *testing.T, s *e2e.Stack, ctx context.Context, _ string) {
				id := passwordLink("demobank-limited")(t, s, ctx)
				waitStatus(t, s, ctx, id, "active")
				for i := range 2 {
					if resp, _ := proxyDo(t, s, id, get("/userinfo")()); resp.StatusCode != http.StatusOK {
						t.Fatalf("call %d within the burst answered %d", i+1, resp.StatusCode)
					}
				}
				resp, body := proxyDo(t, s, id, get("/userinfo")())
				wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
				if resp.StatusCode != http.StatusTooManyRequests || wait < 1 || resp.Header.Get(tokenwarden.HeaderProxySource) != "gateway" {
					t.Fatalf("past api_rate_limit the proxy answered %d (Retry-After %q): %.200s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
				}
				vaultVersion(t, s, ctx, id)
			}},
	}

	t.Run("providers", func(t *testing.T) {
		for _, sim := range sims {
			t.Run(sim.name, func(t *testing.T) {
				t.Parallel()
				runProxySim(t, s, ctx, sim, everifin)
			})
		}
	})
	for _, sim := range sims {
		s.Remember(sim.tap.wire.secrets()...)
		s.Remember(sim.tap.bearers.secrets()...)
	}
	s.ScanForSecrets(ctx)
}

// runProxySim is one provider's story through the proxy.
func runProxySim(t *testing.T, s *e2e.Stack, ctx context.Context, sim proxySim, everifin *everifinsim.Server) {
	id := sim.enroll(t, s, ctx)
	waitStatus(t, s, ctx, id, "active")

	resp, body := proxyDo(t, s, id, sim.call())
	if resp.StatusCode != http.StatusOK || resp.Header.Get(tokenwarden.HeaderLinkStatus) != "active" ||
		resp.Header.Get(tokenwarden.HeaderProxySource) != "upstream" {
		t.Fatalf("the API call answered %d, link status %q, source %q: %.200s", resp.StatusCode,
			resp.Header.Get(tokenwarden.HeaderLinkStatus), resp.Header.Get(tokenwarden.HeaderProxySource), body)
	}
	sim.check(t, body)

	// Every access token dies at the provider: one refresh, one retry.
	before := vaultVersion(t, s, ctx, id)
	sim.expireAccess()
	resp, body = proxyDo(t, s, id, sim.call())
	if resp.StatusCode != http.StatusOK || resp.Header.Get(tokenwarden.HeaderProxyRetry) != "retried" {
		t.Fatalf("after the provider dropped the access token the call answered %d, %s %q: %.200s",
			resp.StatusCode, tokenwarden.HeaderProxyRetry, resp.Header.Get(tokenwarden.HeaderProxyRetry), body)
	}
	sim.check(t, body)
	if after := vaultVersion(t, s, ctx, id); after <= before {
		t.Fatalf("no new token in Vault after the 401 (version %d, before %d)", after, before)
	}

	// Paths that leave the API base never leave the gateway.
	for _, p := range []string{"/../../token", "/a%2F..%2F..%2Ftoken", "/%2e%2e/x", "//evil.example/x"} {
		path, err := url.PathUnescape(p)
		if err != nil {
			t.Fatal(err)
		}
		req := (&http.Request{Method: http.MethodGet, URL: &url.URL{Path: path, RawPath: p}, Header: http.Header{}}).WithContext(ctx)
		resp, body := proxyDo(t, s, id, req)
		if resp.StatusCode != http.StatusBadRequest || tokenwarden.ErrorCode(tokenwarden.ProxyError(wrap(resp, body))) != tokenwarden.CodeBadRequest {
			t.Errorf("path %s answered %d %.200s; want 400 bad_request", p, resp.StatusCode, body)
		}
	}
	if sim.extra != nil {
		sim.extra(t, s, ctx, id)
	}

	if sim.name == "everifin" {
		// The grant dies: the 401's refresh fails, the link needs the
		// end-user again, and the audit trail says so.
		vaultVersion(t, s, ctx, id)
		everifin.EndSessions()
		everifin.ExpireAccessTokens()
		resp, _ = proxyDo(t, s, id, sim.call())
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get(tokenwarden.HeaderProxyRetry) != "refresh_failed" ||
			resp.Header.Get(tokenwarden.HeaderLinkStatus) != "reauth_required" {
			t.Fatalf("a 401 whose refresh found the grant dead answered %d, retry %q, link status %q", resp.StatusCode,
				resp.Header.Get(tokenwarden.HeaderProxyRetry), resp.Header.Get(tokenwarden.HeaderLinkStatus))
		}
		waitForTransition(t, s, ctx, id, "reauth_required")
	} else {
		vaultVersion(t, s, ctx, id)
	}

	if err := s.Client.Revoke(ctx, id, "proxy test done"); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	waitStatus(t, s, ctx, id, "revoked")
	resp, body = proxyDo(t, s, id, sim.call())
	if code := tokenwarden.ErrorCode(tokenwarden.ProxyError(wrap(resp, body))); resp.StatusCode != http.StatusConflict ||
		code != tokenwarden.CodeLinkRevoked || resp.Header.Get(tokenwarden.HeaderLinkStatus) != "revoked" {
		t.Fatalf("a revoked link's proxy call answered %d %s, link status %q", resp.StatusCode, code, resp.Header.Get(tokenwarden.HeaderLinkStatus))
	}
}

// proxyDo sends req through the proxy of link id and reads the answer.
func proxyDo(t *testing.T, s *e2e.Stack, id string, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := s.Client.ProxyClient(id).Do(req)
	if err != nil {
		t.Fatalf("%s %s through the proxy: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the proxy's answer: %v", err)
	}
	return resp, body
}

// wrap gives ProxyError an answer whose body was read already.
func wrap(resp *http.Response, body []byte) *http.Response {
	r := *resp
	r.Body = io.NopCloser(bytes.NewReader(body))
	return &r
}

// waitStatus polls the link until it is in status want.
func waitStatus(t *testing.T, s *e2e.Stack, ctx context.Context, id, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		l, err := s.Client.GetLink(ctx, id)
		if err != nil {
			t.Fatalf("get link: %v", err)
		}
		if l.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("link %s: still %s after 60 s, want %s (last_error %q)", id, l.Status, want, l.LastError)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// vaultVersion reads the link's token from Vault (remembering its
// secrets for the leak scan) and returns its version.
func vaultVersion(t *testing.T, s *e2e.Stack, ctx context.Context, id string) int {
	t.Helper()
	v, err := s.Secrets.ReadToken(ctx, e2e.Tenant, id)
	if err != nil {
		t.Fatalf("read token from Vault: %v", err)
	}
	s.Remember(v.Value.AccessToken, v.Value.RefreshToken, v.Value.IDToken)
	return v.Version
}

// waitForTransition polls the link's audit trail for an event that moved
// the link to status to.
func waitForTransition(t *testing.T, s *e2e.Stack, ctx context.Context, id, to string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		page, err := s.Client.Events(ctx, id, "", 200)
		if err != nil {
			t.Fatalf("events: %v", err)
		}
		for _, e := range page.Events {
			if e.ToStatus == to {
				t.Logf("audit trail: %s event to %s, detail %v", e.Type, e.ToStatus, e.Detail)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event to %s in the audit trail after 30 s", to)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
