package providerstest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/builtin"
	everifinsim "github.com/tokenwarden/tokenwarden/providers/everifin/sim"
	lucasim "github.com/tokenwarden/tokenwarden/providers/luca/sim"
)

// variant is one simulator mode with a catalog entry of its own, run as
// one scenario on a stack shared by the variants of a test.
type variant struct {
	name string
	// sim builds the simulator for f (f.User and f.Password are set).
	sim func(f *fixture) (http.Handler, controls)
	// entry is the catalog entry (name f.Name, simulator at f.URL).
	entry func(f *fixture) string
	// secret, when set, is stored in Vault at providers/<kind>#client_secret.
	kind, secret string
	run          func(t *check, h *harness, f *fixture)
}

// runVariants starts one Tokenwarden for vs and runs each variant's
// scenario side by side, then scans for leaked secrets.
func runVariants(t *testing.T, vs []variant) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var catalog strings.Builder
	catalog.WriteString("providers:\n")
	fixtures := make([]*fixture, len(vs))
	vault := map[string]map[string]string{}
	for i, v := range vs {
		f := &fixture{Name: v.name, User: "u" + randomString(6), Password: randomString(18)}
		sim, c := v.sim(f)
		f.ctl = c
		f.wire = newWire(sim, c, "")
		srv := httptest.NewServer(f.wire)
		t.Cleanup(srv.Close)
		f.URL = srv.URL
		fixtures[i] = f
		catalog.WriteString(v.entry(f))
		if v.secret != "" {
			vault["providers/"+v.kind] = map[string]string{"client_secret": v.secret}
		}
	}
	s := e2e.Start(t, e2e.Options{Catalog: catalog.String(), VaultSecrets: vault,
		Gateway: gateway.Config{TokenMargin: 500 * time.Millisecond}})
	h := &harness{s: s, ctx: ctx}
	names := make([]string, len(vs))
	runs := make([]func(*check, *harness, *fixture), len(vs))
	for i, v := range vs {
		names[i], runs[i] = v.name, v.run
	}
	runConcurrently(t, h, names, runs, fixtures)
	s.ScanForSecrets(ctx)
}

const lucaClientID = "tw-luca-client"

var lucaSecret = "luca-" + randomString(24)

// lucaVariant is a Luca simulator with opts (client and user filled in)
// and an entry with extra lines (indented as entry fields).
func lucaVariant(name string, opts lucasim.Options, extra, settings string, run func(t *check, h *harness, f *fixture)) variant {
	return variant{name: name, kind: "luca", secret: lucaSecret, run: run,
		sim: func(f *fixture) (http.Handler, controls) {
			opts.ClientID, opts.ClientSecret, opts.AutoApprove = lucaClientID, lucaSecret, true
			opts.Users = map[string]string{f.User: f.Password}
			opts.AccessTTL = longTTL
			s := lucasim.New(opts)
			return s, controls{FailNext: s.FailNext, RateLimit: s.RateLimit, Malformed: s.Malformed,
				ExpireRefreshTokens: s.ExpireRefreshTokens, Valid: s.Valid, RevokeGrant: s.RevokeRefreshTokens,
				expireAccess: s.ExpireAccessTokens, stats: s.Stats}
		},
		entry: func(f *fixture) string {
			return fmt.Sprintf(`  - name: %s
    kind: luca
    client_id: %s
    client_secret: {vault: "providers/luca#client_secret"}
    grants: [authorization_code]
    schedule: {min_margin: 1s, fraction: 0.2, default_lifetime: %s}
%s    settings: {base_url: %q%s}
`, f.Name, lucaClientID, longTTL, extra, f.URL, settings)
		}}
}

// TestLucaRedirectVariants (issue 11 point 6, 7; issue 12 point 9): Luca
// with and without state in its redirect, end to end through the
// gateway's start page, the provider and the callback, and the GraphQL
// check of a Laravel-style GraphQL server.
func TestLucaRedirectVariants(t *testing.T) {
	strict := lucasim.Options{DropState: true, RequireRedirectMatch: true, UnauthenticatedOK: true, Invoices: 500}
	runVariants(t, []variant{
		// Luca drops state: the default redirect_state path carries it.
		lucaVariant("luca-dropstate", strict, "", "", func(t *check, h *harness, f *fixture) {
			id := lucaEnroll(t, h, f)
			l := h.waitLink(t, id, "enrolled", 30*time.Second, isStatus("active"))
			wantVerified(t, h, id, true, "")
			if n := f.ctl.stats()["graphql.unbounded"]; n != 0 {
				t.Errorf("the GraphQL check asked for every invoice (%d times)", n)
			}
			// A 200 "Unauthenticated." reply means "refresh", not a
			// permanent failure.
			f.ctl.expireAccess()
			wantVerified(t, h, id, false, "invalid_token")
			if _, err := h.s.Client.Refresh(h.ctx, id); err != nil {
				t.Fatalf("refresh after the GraphQL check refused the token: %v", err)
			}
			wantVerified(t, h, id, true, "")
			if got := h.getLink(t, id); got.Status != "active" || got.RefreshCount <= l.RefreshCount {
				t.Errorf("after the refresh: status %s, %d refreshes", got.Status, got.RefreshCount)
			}
			h.revoke(t, id)
		}),
		// Luca echoes state: redirect_state query, bound by PKCE.
		lucaVariant("luca-query", lucasim.Options{RequireRedirectMatch: true}, "    redirect_state: query\n", ", pkce: true", func(t *check, h *harness, f *fixture) {
			id := lucaEnroll(t, h, f)
			h.waitLink(t, id, "enrolled", 30*time.Second, isStatus("active"))
			h.revoke(t, id)
		}),
		// The code-swap attack: a code issued for link A, presented at
		// link B's callback from B's own browser, is refused by Luca
		// because B's redirect URI differs, and B gets no token.
		lucaVariant("luca-codeswap", strict, "", "", func(t *check, h *harness, f *fixture) {
			a := lucaCreate(t, h, f)
			b := lucaCreate(t, h, f)
			browserB := newBrowser()
			backB := browserB.toProvider(t, b.AuthorizationURL)
			stateB := strings.TrimPrefix(backB.Path, gateway.CallbackPath+"/")
			// A's code, as the provider would issue it for A's redirect.
			browserA := newBrowser()
			backA := browserA.toProvider(t, a.AuthorizationURL)
			codeA := backA.Query().Get("code")
			h.s.Remember(codeA, backB.Query().Get("code"), stateB)
			swapped := *backB
			q := backB.Query() // B's state too, where it rides in the query
			q.Set("code", codeA)
			swapped.RawQuery = q.Encode()
			browserB.get(t, swapped.String())
			l := h.waitLink(t, b.ID, "B failed", 30*time.Second, func(l *tokenwarden.Link) bool {
				return l.Status == "failed" || l.Status == "active"
			})
			if l.Status != "failed" || !strings.Contains(l.LastError, "invalid_grant") {
				t.Errorf("link B after the swapped code: %s, last_error %q; want failed with invalid_grant", l.Status, l.LastError)
			}
			if _, err := h.s.Client.Token(h.ctx, b.ID, 0); err == nil {
				t.Error("link B serves a token obtained with A's code")
			}
		}),
	})
}

// TestLucaCatalogRefusesUnknownScope (issue 11 point 7): a catalog that
// asks Luca for a scope it does not offer fails where the gateway and the
// worker load it (providers.LoadFile over every builtin kind, as their
// startup does, before anything is dialled), naming the entry and the
// scope; the same catalog with Luca's one scope loads.
func TestLucaCatalogRefusesUnknownScope(t *testing.T) {
	t.Parallel()
	catalog := func(scopes string) string {
		path := filepath.Join(t.TempDir(), "catalog.yaml")
		doc := fmt.Sprintf(`providers:
  - name: luca-books
    kind: luca
    client_id: %s
    client_secret: {vault: "providers/luca#client_secret"}
    grants: [authorization_code]
    scopes: %s
    settings: {base_url: "https://app.luca.example"}
`, lucaClientID, scopes)
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	_, err := providers.LoadFile(catalog("[accounting, payroll]"), builtin.Kinds)
	if err == nil {
		t.Fatal("a catalog asking Luca for the scope payroll loaded")
	}
	for _, want := range []string{"luca-books", `scope "payroll"`, "Luca offers only the scope accounting"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the catalog error does not name %s: %v", want, err)
		}
	}
	if _, err := providers.LoadFile(catalog("[accounting]"), builtin.Kinds); err != nil {
		t.Errorf("a catalog with Luca's scope: %v", err)
	}
}

// lucaCreate creates a Luca link through the API.
func lucaCreate(t *check, h *harness, f *fixture) *tokenwarden.Link {
	t.Helper()
	l, err := h.s.Client.CreateLink(h.ctx, tokenwarden.CreateLinkRequest{
		Provider: f.Name, UserID: f.User, Grant: tokenwarden.GrantAuthorizationCode,
	}, "")
	if err != nil {
		t.Fatalf("create link: %v", err)
	}
	return l
}

func lucaEnroll(t *check, h *harness, f *fixture) string {
	t.Helper()
	l := lucaCreate(t, h, f)
	followAuthorization(t, l.AuthorizationURL)
	return l.ID
}

// wantVerified checks GET /v1/links/{id}?verify=1.
func wantVerified(t *check, h *harness, id string, want bool, errPart string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(h.ctx, http.MethodGet, h.s.Gateway.URL+"/v1/links/"+id+"?verify=1", nil)
	req.Header.Set("Authorization", "Bearer "+h.s.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v struct {
		Verified    *bool  `json:"verified"`
		VerifyError string `json:"verify_error"`
	}
	if err := json.Unmarshal(body, &v); err != nil || resp.StatusCode != http.StatusOK || v.Verified == nil {
		t.Fatalf("verify: HTTP %d (%v)", resp.StatusCode, err)
	}
	if *v.Verified != want || !strings.Contains(v.VerifyError, errPart) {
		t.Errorf("verify: verified %v (%q), want %v with %q", *v.Verified, v.VerifyError, want, errPart)
	}
}

// browser is an end-user's browser with its own cookies.
type browser struct{ c *http.Client }

func newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{c: &http.Client{Jar: jar, Timeout: 15 * time.Second}}
}

// toProvider opens authURL (the gateway's start page) and follows it
// through the provider until the redirect back to the gateway's callback,
// which it returns without following.
func (b *browser) toProvider(t *check, authURL string) *url.URL {
	t.Helper()
	c := *b.c
	var back *url.URL
	c.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if strings.HasPrefix(r.URL.Path, gateway.CallbackPath) {
			back = r.URL
			return http.ErrUseLastResponse
		}
		if len(via) > 5 {
			return errors.New("too many redirects")
		}
		return nil
	}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatalf("authorization URL: %v", stripURL(err))
	}
	resp.Body.Close()
	if back == nil {
		t.Fatalf("the provider did not send the browser back (HTTP %d)", resp.StatusCode)
	}
	return back
}

// get opens u and returns the status and body.
func (b *browser) get(t *check, u string) (int, string) {
	t.Helper()
	resp, err := b.c.Get(u)
	if err != nil {
		t.Fatalf("browser: %v", stripURL(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body)
}

// stripURL drops the URL (which may carry a code) from a client error.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

const everifinClientID, everifinRealm = "tw-everifin-client", "tw-realm"

var everifinSecret = "everifin-" + randomString(24)

func everifinVariant(name string, opts everifinsim.Options, extra, settings string, run func(t *check, h *harness, f *fixture)) variant {
	return variant{name: name, kind: "everifin", secret: everifinSecret, run: run,
		sim: func(f *fixture) (http.Handler, controls) {
			opts.Realm, opts.AutoApprove = everifinRealm, true
			opts.Clients = []everifinsim.Client{{ID: everifinClientID, Secret: everifinSecret, DirectGrants: true}}
			opts.Users = map[string]string{f.User: f.Password}
			s := everifinsim.New(opts)
			return s, controls{FailNext: s.FailNext, RateLimit: s.RateLimit, Malformed: s.Malformed,
				ExpireRefreshTokens: s.ExpireRefreshTokens, Valid: s.Valid, LockUser: s.LockUser,
				RefreshValid: s.RefreshValid, RevokeGrant: s.EndSessions,
				tempLock: s.TemporarilyLockUser}
		},
		entry: func(f *fixture) string {
			return fmt.Sprintf(`  - name: %s
    kind: everifin
    client_id: %s
    client_secret: {vault: "providers/everifin#client_secret"}
    grants: [authorization_code, password]
    schedule: {min_margin: 1s, fraction: 0.2, default_lifetime: 4s}
%s    settings: {base_url: %q, realm: %s%s}
`, f.Name, everifinClientID, extra, f.URL, everifinRealm, settings)
		}}
}

// TestEverifinSessionVariants (issue 11 points 8, 9): Keycloak's SSO
// Session Max ends a busy authorization_code link, and SSO Session Idle
// one left without refreshes, which then needs the end-user, with a
// last_error that says so; offline_access avoids the limit; a realm
// without PKCE enrolls with pkce: false; a brute-force lockout is waited
// out for lockout_backoff, not a dead link.
func TestEverifinSessionVariants(t *testing.T) {
	const sessionMax = 12 * time.Second
	limits := everifinsim.Options{AccessTTL: shortTTL, RefreshTTL: time.Minute, SessionMax: sessionMax}
	offline := limits
	offline.OfflineAccess = true
	const idle = 20 * time.Second
	idleClock := &simClock{}
	const lockoutBackoff = 5 * time.Second
	noPKCE := &authRecorder{}
	runVariants(t, []variant{
		everifinVariant("everifin-sessionmax", limits, "", "", func(t *check, h *harness, f *fixture) {
			start := time.Now()
			id := everifinEnroll(t, h, f, nil)
			l := h.waitLink(t, id, "reauth_required at SSO Session Max", 30*time.Second, isStatus("reauth_required"))
			if took := time.Since(start); took < sessionMax-time.Second {
				t.Errorf("the link ended after %s, before SSO Session Max (%s)", took, sessionMax)
			}
			if l.RefreshCount < 2 {
				t.Errorf("only %d refreshes before the session ended: the session was not busy", l.RefreshCount)
			}
			if !strings.Contains(l.LastError, "session limit ended the grant") {
				t.Errorf("last_error %q does not say the provider's session limit ended the grant", l.LastError)
			}
			h.wantReauthToken(t, id, f, true)
			h.revoke(t, id)
		}),
		everifinVariant("everifin-offline", offline, "    scopes: [openid, offline_access]\n", "", func(t *check, h *harness, f *fixture) {
			id := everifinEnroll(t, h, f, []string{"openid", "offline_access"})
			h.waitLink(t, id, "enrolled", 30*time.Second, isStatus("active"))
			time.Sleep(sessionMax + 3*time.Second)
			l := h.getLink(t, id)
			if l.Status != "active" || l.LastError != "" {
				t.Fatalf("offline link after SSO Session Max: %s, last_error %q", l.Status, l.LastError)
			}
			h.token(t, id, f)
			h.revoke(t, id)
		}),
		// SSO Session Idle: the session sees no refresh for longer than
		// its idle timeout (the simulator's clock jumps past it, as for a
		// link whose worker was down that long), and the next refresh
		// finds it gone.
		everifinVariant("everifin-idle", everifinsim.Options{AccessTTL: longTTL, RefreshTTL: idle, Now: idleClock.now}, "", "", func(t *check, h *harness, f *fixture) {
			id := everifinEnroll(t, h, f, nil)
			h.waitLink(t, id, "enrolled", 30*time.Second, isStatus("active"))
			if left := time.Until(h.vaultToken(t, id).Value.RefreshExpiry); left <= 0 || left > idle {
				t.Errorf("the refresh token dies in %s; want within the idle timeout %s", left.Round(time.Second), idle)
			}
			idleClock.advance(idle + time.Second)
			h.wantRefreshError(t, id, http.StatusConflict, tokenwarden.CodeReauthRequired)
			l := h.waitLink(t, id, "reauth_required after SSO Session Idle", 15*time.Second, isStatus("reauth_required"))
			if !strings.Contains(l.LastError, "session limit ended the grant") || !strings.Contains(l.LastError, "invalid_grant") {
				t.Errorf("last_error %q does not say the provider's session limit ended the grant", l.LastError)
			}
			h.wantReauthToken(t, id, f, true)
			h.revoke(t, id)
		}),
		// A realm whose client takes no PKCE: pkce: false sends no
		// challenge and no verifier, and enrollment works.
		noPKCE.variant(everifinVariant("everifin-nopkce", everifinsim.Options{AccessTTL: longTTL}, "    pkce: false\n", "", func(t *check, h *harness, f *fixture) {
			id := everifinEnroll(t, h, f, nil)
			h.waitLink(t, id, "enrolled", 30*time.Second, isStatus("active"))
			h.token(t, id, f)
			auths, exchanges := noPKCE.seen()
			if len(auths) != 1 || len(exchanges) != 1 {
				t.Fatalf("%d authorization requests and %d code exchanges at Everifin, want one each", len(auths), len(exchanges))
			}
			if auths[0].Has("code_challenge") || auths[0].Has("code_challenge_method") {
				t.Errorf("the authorization request carried a PKCE challenge (method %q)", auths[0].Get("code_challenge_method"))
			}
			if exchanges[0] {
				t.Error("the code exchange carried a code_verifier")
			}
			h.revoke(t, id)
		})),
		// Brute-force lockout: the engine waits lockout_backoff (5 s)
		// after the locked reply, longer than the ordinary retries (1 s,
		// then 2 s) would.
		everifinVariant("everifin-lockout", everifinsim.Options{AccessTTL: longTTL}, "", ", lockout_backoff: "+lockoutBackoff.String(), func(t *check, h *harness, f *fixture) {
			id := everifinEnroll(t, h, f, nil)
			h.waitLink(t, id, "enrolled", 30*time.Second, isStatus("active"))
			before := h.getLink(t, id).RefreshCount
			f.ctl.tempLock(f.User, 2*time.Second)
			start := time.Now()
			if _, err := h.s.Client.Refresh(h.ctx, id); err != nil {
				t.Fatalf("refresh through a brute-force lockout: %v", err)
			}
			var refreshes []hit
			for _, x := range f.wire.hits() {
				if x.Grant == "refresh_token" && !x.Start.Before(start) {
					refreshes = append(refreshes, x)
				}
			}
			switch {
			case len(refreshes) != 2 || refreshes[0].Status != http.StatusBadRequest || refreshes[1].Status != http.StatusOK:
				statuses := make([]int, len(refreshes))
				for i, x := range refreshes {
					statuses[i] = x.Status
				}
				t.Errorf("refresh requests answered %v; want the lockout's 400, then 200", statuses)
			default:
				gap := refreshes[1].Start.Sub(refreshes[0].End)
				if gap < lockoutBackoff-100*time.Millisecond {
					t.Errorf("the next refresh came %s after the locked reply, before lockout_backoff %s", gap.Round(time.Millisecond), lockoutBackoff)
				}
				t.Logf("the next refresh came %s after the locked reply (lockout_backoff %s)", gap.Round(time.Millisecond), lockoutBackoff)
			}
			l := h.waitLink(t, id, "active", 15*time.Second, func(l *tokenwarden.Link) bool {
				return l.Status == "active" && l.RefreshCount > before
			})
			if l.LastError != "" {
				t.Errorf("last_error %q after the lockout cleared", l.LastError)
			}
			h.token(t, id, f)
			h.revoke(t, id)
		}),
	})
}

// simClock is a simulator's clock that a scenario moves ahead.
type simClock struct{ offset atomic.Int64 }

func (c *simClock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func (c *simClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// authRecorder remembers, in front of an Everifin simulator, the query of
// each authorization request and whether each code exchange carried a
// code_verifier.
type authRecorder struct {
	mu        sync.Mutex
	auths     []url.Values
	verifiers []bool
}

// variant puts the recorder in front of v's simulator.
func (a *authRecorder) variant(v variant) variant {
	inner := v.sim
	v.sim = func(f *fixture) (http.Handler, controls) {
		sim, c := inner(f)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.HasSuffix(r.URL.Path, "/protocol/openid-connect/auth"):
				a.mu.Lock()
				a.auths = append(a.auths, r.URL.Query())
				a.mu.Unlock()
			case strings.HasSuffix(r.URL.Path, "/protocol/openid-connect/token"):
				if err := r.ParseForm(); err == nil && r.PostForm.Get("grant_type") == "authorization_code" {
					a.mu.Lock()
					a.verifiers = append(a.verifiers, r.PostForm.Has("code_verifier"))
					a.mu.Unlock()
				}
			}
			sim.ServeHTTP(w, r)
		}), c
	}
	return v
}

func (a *authRecorder) seen() ([]url.Values, []bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]url.Values(nil), a.auths...), append([]bool(nil), a.verifiers...)
}

func everifinEnroll(t *check, h *harness, f *fixture, scopes []string) string {
	t.Helper()
	l, err := h.s.Client.CreateLink(h.ctx, tokenwarden.CreateLinkRequest{
		Provider: f.Name, UserID: f.User, Grant: tokenwarden.GrantAuthorizationCode, Scopes: scopes,
	}, "")
	if err != nil {
		t.Fatalf("create link: %v", err)
	}
	followAuthorization(t, l.AuthorizationURL)
	return l.ID
}
