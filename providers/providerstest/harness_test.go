// Package providerstest_test runs each seed provider end to end: its
// simulator on an httptest server, a catalog entry pointing at it, and a
// whole Tokenwarden (internal/e2e) driven through the REST API and the Go
// client as a user would. For each provider the same scenarios run, each
// on a link of its own against a simulator of its own so that they can run
// side by side:
//
//   - main: enrollment, at least five background refresh cycles with every
//     token the gateway serves checked at the simulator, a forced refresh,
//     and revocation (the gateway answers 409 link_revoked, and the
//     simulator shows the refresh token dead where the provider revokes);
//   - expired, revoked: the refresh token dies or is revoked at the
//     provider; password and Norman grants enroll again by themselves,
//     authorization-code grants need re-authorization;
//   - locked: the user is locked or disabled: reauth_required;
//   - secret: the provider stops accepting the client secret (it was
//     rotated there): reauth_required;
//   - outage, malformed: 5xx or broken JSON until the fault clears: the
//     link is degraded, then active again without help;
//   - ratelimit: a 429 with Retry-After is retried after that delay.
//
// Each provider's test ends with a leak scan (e2e.ScanForSecrets) for every
// token, code, password and client secret that crossed the simulator's
// wire.
package providerstest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/providers"
)

// Lifetimes of the simulators' access tokens. The main link lives on
// short tokens and refreshes on its own every few seconds; the scenario
// links get longer ones, so that their failures come from the forced
// refresh the scenario asks for, not from a timer racing the test.
const (
	shortTTL = 4 * time.Second
	longTTL  = 30 * time.Second
)

// rotatedSecret is what the provider sees once the client secret was
// "rotated" at the provider (wire.rotate): any value but the real one.
const rotatedSecret = "rotated-at-the-provider"

// retryAfter is the Retry-After of the rate-limit scenario: longer than
// the activity's first retry interval (1s), so that honouring it shows.
const retryAfter = 3 * time.Second

// controls are the simulator switches the scenarios use.
type controls struct {
	FailNext            func(n, status int)
	RateLimit           func(n int, retryAfter time.Duration)
	Malformed           func(n int)
	ExpireRefreshTokens func()
	// Valid reports whether the simulator accepts an access token now.
	Valid func(accessToken string) bool
	// LockUser locks or disables a user; nil when the provider has none.
	LockUser func(user string)
	// RevokeGrant revokes every grant at the provider (the end-user
	// removed the application, an administrator ended the sessions); nil
	// when the simulator cannot.
	RevokeGrant func()
	// RefreshValid reports whether a refresh token still works; nil when
	// the simulator cannot tell without spending it.
	RefreshValid func(refreshToken string) bool

	// Switches of single-provider variants (variants_luca_everifin_test.go).
	expireAccess func()
	stats        func() map[string]int
	tempLock     func(user string, d time.Duration)
}

// spec is what differs between providers.
type spec struct {
	Kind string
	// Secret is the client secret, "" for a public client.
	Secret string
	// NewSim builds a fresh simulator for fixture f (f.User and
	// f.Password are set) with access tokens living ttl.
	NewSim func(f *fixture, ttl time.Duration) (http.Handler, controls)
	// Entry is the catalog entry of fixture f (name f.Name, simulator at
	// f.URL, default lifetime ttl), indented as a list item of providers:.
	Entry func(f *fixture, ttl time.Duration) string
	// Enroll creates a link at f's entry through the API and completes
	// whatever the end-user has to do. It returns the link's id.
	Enroll func(t *check, h *harness, f *fixture) string
	// FaultPath is the path of the refresh call, where faults are put.
	FaultPath string
	// Recovers: a dead refresh token is replaced from stored grant
	// material (password, Norman's token/retrieve) without the end-user.
	Recovers bool
	// Reenrolled tells a request that obtained a token without a refresh
	// token (the re-login of a recovering grant).
	Reenrolled func(h hit) bool
	// LockedError and SecretError are what last_error must name when the
	// user is locked and when the client secret is refused; "" when the
	// provider has no locked users (controls.LockUser nil) or no secret.
	LockedError, SecretError string
	// RefreshDead asks the simulator whether a refresh token is dead; nil
	// for providers that cannot revoke (Luca).
	RefreshDead func(t *check, f *fixture, refreshToken string) bool
	// RevokeKillsAccess: controls.RevokeGrant ends access tokens too.
	RevokeKillsAccess bool
	// AccessDiesOnRevoke: revocation also ends the access token (Norman's
	// token/expire ends the session, finAPI revokes both); Keycloak's
	// logout leaves access tokens to expire.
	AccessDiesOnRevoke bool
}

// fixture is one scenario's simulator and catalog entry.
type fixture struct {
	Name     string
	URL      string
	User     string
	Password string
	ctl      controls
	wire     *wire
}

// harness is one provider's Tokenwarden.
type harness struct {
	s    *e2e.Stack
	spec spec
	ctx  context.Context
}

// scenario is one link's story.
type scenario struct {
	name string
	ttl  time.Duration
	run  func(t *check, h *harness, f *fixture)
}

// runProvider runs every scenario that applies to sp against a fresh
// Tokenwarden, then scans for leaked secrets.
func runProvider(t *testing.T, sp spec) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	scenarios := []scenario{
		{"main", shortTTL, mainScenario},
		{"expired", longTTL, deadGrantScenario(func(c controls) { c.ExpireRefreshTokens() }, true)},
		{"outage", longTTL, faultScenario("outage")},
		{"malformed", longTTL, faultScenario("malformed")},
		{"ratelimit", longTTL, rateLimitScenario},
	}
	// A throwaway simulator tells whether this one can revoke grants.
	if _, c := sp.NewSim(&fixture{}, longTTL); c.RevokeGrant != nil {
		scenarios = append(scenarios, scenario{"revoked", longTTL, deadGrantScenario(func(c controls) { c.RevokeGrant() }, !sp.RevokeKillsAccess)})
	}
	if sp.LockedError != "" {
		scenarios = append(scenarios, scenario{"locked", longTTL, lockedScenario})
	}
	if sp.Secret != "" {
		scenarios = append(scenarios, scenario{"secret", longTTL, secretScenario})
	}

	fixtures := map[string]*fixture{}
	var catalog strings.Builder
	catalog.WriteString("providers:\n")
	for _, sc := range scenarios {
		f := &fixture{Name: sp.Kind + "-" + sc.name, User: "u" + randomString(6), Password: randomString(18)}
		sim, c := sp.NewSim(f, sc.ttl)
		f.ctl = c
		f.wire = newWire(sim, c, sp.FaultPath)
		srv := httptest.NewServer(f.wire)
		t.Cleanup(srv.Close)
		f.URL = srv.URL
		fixtures[sc.name] = f
		catalog.WriteString(sp.Entry(f, sc.ttl))
	}
	opts := e2e.Options{
		Catalog: catalog.String(),
		// Tokens live seconds here: reads are served from Vault, so the
		// refreshes counted are the schedule's (the gateway also caps its
		// margin at a tenth of the token's lifetime).
		Gateway: gateway.Config{TokenMargin: 500 * time.Millisecond},
	}
	if sp.Secret != "" {
		opts.VaultSecrets = map[string]map[string]string{"providers/" + sp.Kind: {"client_secret": sp.Secret}}
	}
	s := e2e.Start(t, opts)
	h := &harness{s: s, spec: sp, ctx: ctx}

	// The scenarios wait on timers and the network, not on the CPU: they
	// run side by side in goroutines of their own (parallel subtests would
	// queue behind -parallel), and report as subtests once all are done.
	names := make([]string, len(scenarios))
	runs := make([]func(*check, *harness, *fixture), len(scenarios))
	fs := make([]*fixture, len(scenarios))
	for i, sc := range scenarios {
		names[i], runs[i], fs[i] = sc.name, sc.run, fixtures[sc.name]
	}
	took := runConcurrently(t, h, names, runs, fs)
	t.Logf("%s: scenarios took %s", sp.Kind, took.Round(100*time.Millisecond))
	s.ScanForSecrets(ctx)
}

// check is what a scenario reports to: testing.T's reporting methods for
// a goroutine that is not a test's. Fatal ends the scenario's goroutine;
// report replays everything into the scenario's subtest.
type check struct {
	start time.Time

	mu     sync.Mutex
	lines  []string
	failed bool
	took   time.Duration
}

func (c *check) Helper() {}

func (c *check) add(failed bool, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, fmt.Sprintf("[%5.1fs] %s", time.Since(c.start).Seconds(), msg))
	c.failed = c.failed || failed
}

func (c *check) Logf(format string, args ...any)   { c.add(false, fmt.Sprintf(format, args...)) }
func (c *check) Errorf(format string, args ...any) { c.add(true, fmt.Sprintf(format, args...)) }
func (c *check) Error(args ...any)                 { c.add(true, fmt.Sprint(args...)) }

func (c *check) Fatalf(format string, args ...any) {
	c.Errorf(format, args...)
	runtime.Goexit()
}

func (c *check) Fatal(args ...any) {
	c.Error(args...)
	runtime.Goexit()
}

func (c *check) finish() {
	c.mu.Lock()
	c.took = time.Since(c.start)
	c.mu.Unlock()
}

func (c *check) report(t *testing.T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		t.Log(l)
	}
	t.Logf("scenario took %s", c.took.Round(100*time.Millisecond))
	if c.failed {
		t.Fail()
	}
}

// mainScenario: enrollment, refresh cycles with every served token valid
// at the provider, a forced refresh, revocation.
func mainScenario(t *check, h *harness, f *fixture) {
	id := h.spec.Enroll(t, h, f)
	h.waitLink(t, id, "enrolled", 30*time.Second, isStatus("active"))

	const cycles = 5
	distinct := map[string]bool{}
	reads := 0
	deadline := time.Now().Add(45 * time.Second)
	for {
		tok := h.token(t, id, f)
		distinct[tok.AccessToken] = true
		reads++
		l := h.getLink(t, id)
		if l.RefreshCount >= cycles && l.Status == "active" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 45 s: status %s, %d refreshes (want %d), last_error %q", l.Status, l.RefreshCount, cycles, l.LastError)
		}
		if l.Status != "active" && l.Status != "refreshing" {
			t.Fatalf("link went %s during refresh cycles; last_error %q", l.Status, l.LastError)
		}
		time.Sleep(250 * time.Millisecond)
	}
	st, err := h.s.State(h.ctx, id)
	if err != nil {
		t.Fatalf("query state: %v", err)
	}
	if st.Refreshes < cycles || st.Status != "active" {
		t.Fatalf("workflow state: %s with %d refreshes, want active with >= %d", st.Status, st.Refreshes, cycles)
	}
	if len(distinct) < cycles {
		t.Fatalf("only %d distinct access tokens served over %d refreshes", len(distinct), st.Refreshes)
	}
	t.Logf("%d refreshes, %d token reads, %d distinct access tokens, all valid at the simulator", st.Refreshes, reads, len(distinct))

	// Forced refresh: a newer token in Vault, served and valid.
	before := h.vaultToken(t, id)
	res, err := h.s.Client.Refresh(h.ctx, id)
	if err != nil {
		t.Fatalf("forced refresh: %v", err)
	}
	if res.VaultVersion <= before.Version || !res.ExpiresAt.After(time.Now()) {
		t.Fatalf("forced refresh answered version %d (before %d), expires_at %s", res.VaultVersion, before.Version, res.ExpiresAt)
	}
	after := h.token(t, id, f)
	if after.AccessToken == before.Value.AccessToken {
		t.Fatal("the token served after a forced refresh is the one from before it")
	}

	// Revocation.
	last := h.vaultToken(t, id).Value
	if err := h.s.Client.Revoke(h.ctx, id, "e2e: main scenario done"); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	l := h.waitLink(t, id, "revoked", 15*time.Second, isStatus("revoked"))
	if l.NextRefreshAt.After(time.Now()) {
		t.Errorf("a revoked link still has next_refresh_at %s", l.NextRefreshAt)
	}
	h.wantTokenError(t, id, http.StatusConflict, tokenwarden.CodeLinkRevoked)
	if _, err := h.s.Secrets.ReadToken(h.ctx, e2e.Tenant, id); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("after revoke Vault still answers for the token (err %v)", err)
	}
	if h.spec.RefreshDead != nil {
		if !h.spec.RefreshDead(t, f, last.RefreshToken) {
			t.Error("after revoke the provider still accepts the refresh token")
		}
	} else {
		t.Logf("%s documents no revocation: the tokens were wiped here only", h.spec.Kind)
	}
	if h.spec.AccessDiesOnRevoke && f.ctl.Valid(last.AccessToken) {
		t.Error("after revoke the provider still accepts the access token")
	}
}

// deadGrantScenario: the refresh token dies at the provider, by expiry
// or by revocation there (kill).
// accessSurvives says whether the provider still accepts the access token
// issued with the dead refresh token.
func deadGrantScenario(kill func(controls), accessSurvives bool) func(t *check, h *harness, f *fixture) {
	return func(t *check, h *harness, f *fixture) {
		id := h.enrollActive(t, f)
		kill(f.ctl)
		h.afterDeadGrant(t, id, f, accessSurvives)
		h.revoke(t, id)
	}
}

// afterDeadGrant: a link whose refresh token died recovers by itself where
// the grant allows, and needs re-authorization otherwise.
func (h *harness) afterDeadGrant(t *check, id string, f *fixture, accessSurvives bool) {
	if h.spec.Recovers {
		relogins := f.wire.count(h.spec.Reenrolled)
		before := h.vaultToken(t, id)
		res, err := h.s.Client.Refresh(h.ctx, id)
		if err != nil {
			t.Fatalf("refresh after the refresh token died: %v (want a new login from stored grant material)", err)
		}
		if res.VaultVersion <= before.Version {
			t.Fatalf("refresh stored no new token (version %d, before %d)", res.VaultVersion, before.Version)
		}
		if n := f.wire.count(h.spec.Reenrolled); n <= relogins {
			t.Fatalf("the link recovered without logging in again (%d logins before, %d after)", relogins, n)
		}
		l := h.waitLink(t, id, "active again", 15*time.Second, isStatus("active"))
		if l.LastError != "" {
			t.Errorf("recovered link keeps last_error %q", l.LastError)
		}
		h.token(t, id, f)
		if cur := h.vaultToken(t, id).Value; cur.RefreshToken == before.Value.RefreshToken {
			t.Error("the link kept the dead refresh token")
		}
	} else {
		h.wantRefreshError(t, id, http.StatusConflict, tokenwarden.CodeReauthRequired)
		l := h.waitLink(t, id, "reauth_required", 15*time.Second, isStatus("reauth_required"))
		if !strings.Contains(l.LastError, "invalid_grant") {
			t.Errorf("last_error %q does not name invalid_grant", l.LastError)
		}
		h.wantReauthToken(t, id, f, accessSurvives)
	}
}

// lockedScenario: the provider locks (disables) the user.
func lockedScenario(t *check, h *harness, f *fixture) {
	id := h.enrollActive(t, f)
	f.ctl.LockUser(f.User)
	h.wantRefreshError(t, id, http.StatusConflict, tokenwarden.CodeReauthRequired)
	l := h.waitLink(t, id, "reauth_required", 15*time.Second, isStatus("reauth_required"))
	if !strings.Contains(l.LastError, h.spec.LockedError) {
		t.Errorf("last_error %q does not name %q", l.LastError, h.spec.LockedError)
	}
	h.wantReauthToken(t, id, f, true)
	h.revoke(t, id)
}

// secretScenario: the provider no longer accepts the client secret.
func secretScenario(t *check, h *harness, f *fixture) {
	id := h.enrollActive(t, f)
	f.wire.rotated.Store(true)
	h.wantRefreshError(t, id, http.StatusConflict, tokenwarden.CodeReauthRequired)
	l := h.waitLink(t, id, "reauth_required", 15*time.Second, isStatus("reauth_required"))
	if !strings.Contains(l.LastError, h.spec.SecretError) {
		t.Errorf("last_error %q does not name %q", l.LastError, h.spec.SecretError)
	}
	h.wantReauthToken(t, id, f, true)
	h.revoke(t, id)
}

// faultScenario: the refresh call fails (5xx, or 200 with broken JSON)
// until the fault clears.
func faultScenario(mode string) func(t *check, h *harness, f *fixture) {
	want := map[string]string{"outage": "503", "malformed": "malformed"}[mode]
	return func(t *check, h *harness, f *fixture) {
		id := h.enrollActive(t, f)
		f.wire.fault.Store(mode)
		// The activity retries a few times, then the link is degraded
		// and the gateway says the provider failed.
		h.wantRefreshError(t, id, http.StatusServiceUnavailable, tokenwarden.CodeRefreshFailed)
		l := h.waitLink(t, id, "degraded", 15*time.Second, isStatus("degraded"))
		if !strings.Contains(l.LastError, want) {
			t.Errorf("last_error %q does not name %q", l.LastError, want)
		}
		failed := l.RefreshCount
		// The current token is still good: it is served while degraded.
		h.token(t, id, f)
		f.wire.fault.Store("")
		l = h.waitLink(t, id, "active again", 30*time.Second, func(l *tokenwarden.Link) bool {
			return l.Status == "active" && l.RefreshCount > failed
		})
		if l.LastError != "" {
			t.Errorf("recovered link keeps last_error %q", l.LastError)
		}
		h.token(t, id, f)
		h.revoke(t, id)
	}
}

// rateLimitScenario: one 429 with Retry-After, then the provider answers.
func rateLimitScenario(t *check, h *harness, f *fixture) {
	id := h.enrollActive(t, f)
	before := h.getLink(t, id).RefreshCount
	f.ctl.RateLimit(1, retryAfter)
	start := time.Now()
	if _, err := h.s.Client.Refresh(h.ctx, id); err != nil {
		t.Fatalf("refresh through a 429: %v", err)
	}
	if took := time.Since(start); took < retryAfter-200*time.Millisecond {
		t.Errorf("the refresh through a 429 took %s, less than Retry-After %s", took, retryAfter)
	}
	hits := f.wire.hits()
	limited := -1
	for i, x := range hits {
		if x.Status == http.StatusTooManyRequests {
			limited = i
			break
		}
	}
	switch {
	case limited < 0:
		t.Fatal("the simulator never answered 429")
	case hits[limited].RetryAfter != fmt.Sprint(int(retryAfter.Seconds())):
		t.Errorf("429 carried Retry-After %q", hits[limited].RetryAfter)
	case limited+1 >= len(hits):
		t.Fatal("no request followed the 429")
	default:
		gap := hits[limited+1].Start.Sub(hits[limited].End)
		if gap < retryAfter-100*time.Millisecond {
			t.Errorf("retried %s after the 429, before its Retry-After of %s", gap.Round(time.Millisecond), retryAfter)
		}
		t.Logf("retried %s after a 429 with Retry-After %s", gap.Round(time.Millisecond), retryAfter)
	}
	l := h.waitLink(t, id, "active", 15*time.Second, func(l *tokenwarden.Link) bool {
		return l.Status == "active" && l.RefreshCount > before
	})
	if l.LastError != "" {
		t.Errorf("last_error %q after a refresh that succeeded", l.LastError)
	}
	h.token(t, id, f)
	h.revoke(t, id)
}

// enrollActive enrolls a link at f and waits until it is active.
func (h *harness) enrollActive(t *check, f *fixture) string {
	t.Helper()
	id := h.spec.Enroll(t, h, f)
	h.waitLink(t, id, "enrolled", 30*time.Second, isStatus("active"))
	return id
}

func isStatus(s string) func(*tokenwarden.Link) bool {
	return func(l *tokenwarden.Link) bool { return l.Status == s }
}

// getLink is GET /v1/links/{id}.
func (h *harness) getLink(t *check, id string) *tokenwarden.Link {
	t.Helper()
	l, err := h.s.Client.GetLink(h.ctx, id)
	if err != nil {
		t.Fatalf("get link: %v", err)
	}
	return l
}

// waitLink polls GET /v1/links/{id} until cond holds.
func (h *harness) waitLink(t *check, id, what string, timeout time.Duration, cond func(*tokenwarden.Link) bool) *tokenwarden.Link {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		l := h.getLink(t, id)
		if cond(l) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("link %s: %s: timed out after %s; status %s, %d refreshes, last_error %q",
				id, what, timeout, l.Status, l.RefreshCount, l.LastError)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// token is GET /v1/links/{id}/token; the token must be unexpired and
// accepted by the simulator.
func (h *harness) token(t *check, id string, f *fixture) *oauth2.Token {
	t.Helper()
	tok, err := h.s.Client.Token(h.ctx, id, 0)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	h.s.Remember(tok.AccessToken)
	left := time.Until(tok.Expiry)
	if tok.Expiry.IsZero() || left <= 0 {
		t.Fatalf("the gateway served a token without a future expiry (expires in %s)", left)
	}
	// A token that expires within a breath of being served may be dead by
	// the time the simulator looks; anything else must be good.
	if !f.ctl.Valid(tok.AccessToken) && left > 300*time.Millisecond {
		t.Fatalf("the served access token (expiring in %s) is not valid at the simulator", left.Round(time.Millisecond))
	}
	return tok
}

// vaultToken reads the stored token, only to compare versions and to
// remember its secrets for the leak scan.
func (h *harness) vaultToken(t *check, id string) secrets.Versioned[providers.Token] {
	t.Helper()
	v, err := h.s.Secrets.ReadToken(h.ctx, e2e.Tenant, id)
	if err != nil {
		t.Fatalf("read token from Vault: %v", err)
	}
	h.s.Remember(v.Value.AccessToken, v.Value.RefreshToken, v.Value.IDToken)
	return v
}

// wantTokenError checks that GET /token answers status and code.
func (h *harness) wantTokenError(t *check, id string, status int, code string) {
	t.Helper()
	_, err := h.s.Client.Token(h.ctx, id, 0)
	wantAPIError(t, "token", err, status, code)
}

// wantReauthToken checks that a link needing re-authorization no longer
// hands out its last access token, whether or not the provider would
// still take it: the engine suspends it (keeping the refresh token) as
// the link enters reauth_required, and GET /token answers 409 at once.
func (h *harness) wantReauthToken(t *check, id string, _ *fixture, _ bool) {
	t.Helper()
	for _, minTTL := range []time.Duration{0, time.Second} {
		_, err := h.s.Client.Token(h.ctx, id, minTTL)
		wantAPIError(t, "token of a link needing re-authorization", err, http.StatusConflict, tokenwarden.CodeReauthRequired)
	}
}

// wantRefreshError checks that a forced refresh answers status and code.
func (h *harness) wantRefreshError(t *check, id string, status int, code string) {
	t.Helper()
	_, err := h.s.Client.Refresh(h.ctx, id)
	wantAPIError(t, "forced refresh", err, status, code)
}

func wantAPIError(t *check, op string, err error, status int, code string) {
	t.Helper()
	var ae *tokenwarden.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("%s: got %v, want HTTP %d %s", op, err, status, code)
	}
	if ae.Status != status || ae.Code != code {
		t.Fatalf("%s: got HTTP %d %s (%s), want HTTP %d %s", op, ae.Status, ae.Code, ae.Message, status, code)
	}
}

// revoke ends a scenario's link.
func (h *harness) revoke(t *check, id string) {
	t.Helper()
	if err := h.s.Client.Revoke(h.ctx, id, "e2e: scenario done"); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	h.waitLink(t, id, "revoked", 15*time.Second, isStatus("revoked"))
	h.wantTokenError(t, id, http.StatusConflict, tokenwarden.CodeLinkRevoked)
}

// followAuthorization plays the end-user's browser: it opens the
// authorization URL at the simulator, which signs the user in at once
// and redirects to the gateway's callback, and checks that the gateway
// says the account is connected.
func followAuthorization(t *check, authURL string) {
	t.Helper()
	if authURL == "" {
		t.Fatal("an authorization_code link came without authorization_url")
	}
	hops := 0
	// A jar: path-state providers bind the flow to the browser with a
	// cookie set by the gateway's start page.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 15 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		hops++
		if hops > 5 {
			return errors.New("too many redirects")
		}
		return nil
	}}
	resp, err := browser.Get(authURL)
	if err != nil {
		// Not the *url.Error itself: it would quote a URL with a code.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		t.Fatalf("following the authorization URL failed: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.Path, gateway.CallbackPath) || !bytes.Contains(body, []byte("Connected")) {
		t.Fatalf("the browser ended at %s with HTTP %d, not at the gateway's Connected page", resp.Request.URL.Path, resp.StatusCode)
	}
}

// hit is one request a simulator answered.
type hit struct {
	Start, End time.Time
	Path       string
	Grant      string // grant_type of a form request
	Status     int
	RetryAfter string
}

// wire sits in front of a simulator: it records the requests, collects
// every secret that crosses it (for the leak scan), puts faults in front
// of the refresh call while fault is set, and when rotated plays a
// provider whose client secret was rotated: it replaces the client
// credential of each request with a stale one before the simulator sees
// it.
type wire struct {
	sim       http.Handler
	ctl       controls
	faultPath string

	rotated atomic.Bool
	fault   atomic.Value // "", "outage" or "malformed"

	mu   sync.Mutex
	log  []hit
	seen map[string]bool
}

func newWire(sim http.Handler, ctl controls, faultPath string) *wire {
	w := &wire{sim: sim, ctl: ctl, faultPath: faultPath, seen: map[string]bool{}}
	w.fault.Store("")
	return w
}

// Fields whose values are secrets, in form bodies and in JSON bodies
// (where "code" is an error code, not an authorization code).
var (
	formSecrets = []string{"password", "code", "code_verifier", "client_secret", "refresh_token", "access_token", "token"}
	jsonSecrets = []string{"password", "refresh_token", "access_token", "id_token", "token",
		"accessToken", "refreshToken", "access", "refresh"}
)

func (w *wire) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	_ = r.Body.Close()
	h := hit{Start: start, Path: r.URL.Path}
	form, formErr := url.ParseQuery(string(body))
	isForm := strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") && formErr == nil
	if isForm {
		h.Grant = form.Get("grant_type")
		for _, k := range formSecrets {
			w.collect(form[k]...)
		}
	} else {
		w.collectJSON(body)
	}
	if u, p, ok := r.BasicAuth(); ok {
		w.collect(p)
		if w.rotated.Load() {
			r.SetBasicAuth(u, rotatedSecret)
		}
	}
	if w.rotated.Load() {
		if inst := r.Header.Get("Institution"); inst != "" {
			id, _, _ := strings.Cut(inst, ":")
			r.Header.Set("Institution", id+":"+rotatedSecret)
		}
		if isForm && form.Has("client_secret") {
			form.Set("client_secret", rotatedSecret)
			body = []byte(form.Encode())
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))

	if r.URL.Path == w.faultPath {
		switch w.fault.Load() {
		case "outage":
			w.ctl.FailNext(1, http.StatusServiceUnavailable)
		case "malformed":
			w.ctl.Malformed(1)
		}
	}
	rec := httptest.NewRecorder()
	w.sim.ServeHTTP(rec, r)
	res := rec.Result()
	w.collectJSON(rec.Body.Bytes())
	if loc, err := url.Parse(res.Header.Get("Location")); err == nil {
		w.collect(loc.Query()["code"]...)
	}
	for k, v := range res.Header {
		rw.Header()[k] = v
	}
	rw.WriteHeader(res.StatusCode)
	_, _ = rw.Write(rec.Body.Bytes())

	h.End = time.Now()
	h.Status = res.StatusCode
	h.RetryAfter = res.Header.Get("Retry-After")
	w.mu.Lock()
	w.log = append(w.log, h)
	w.mu.Unlock()
}

func (w *wire) collectJSON(b []byte) {
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return
	}
	w.collectMap(m)
	// One level down too: token replies may nest the pair ({"data": {...}}).
	for _, v := range m {
		if inner, ok := v.(map[string]any); ok {
			w.collectMap(inner)
		}
	}
}

func (w *wire) collectMap(m map[string]any) {
	for _, k := range jsonSecrets {
		if s, ok := m[k].(string); ok {
			w.collect(s)
		}
	}
}

func (w *wire) collect(vs ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range vs {
		if v != "" && v != rotatedSecret {
			w.seen[v] = true
		}
	}
}

func (w *wire) secrets() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.seen))
	for v := range w.seen {
		out = append(out, v)
	}
	return out
}

func (w *wire) hits() []hit {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]hit(nil), w.log...)
}

// count is the number of answered requests that match and succeeded.
func (w *wire) count(match func(hit) bool) int {
	n := 0
	for _, x := range w.hits() {
		if x.Status >= 200 && x.Status < 300 && match(x) {
			n++
		}
	}
	return n
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
