package security_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	lucasim "github.com/tokenwarden/tokenwarden/providers/luca/sim"
	"github.com/tokenwarden/tokenwarden/workflows"
)

const allowedOrigin = "https://app.example"

func failed(st workflows.State) bool { return st.Status == workflows.StatusFailed }

// noToken fails unless Vault holds no token for the link.
func noToken(t *testing.T, s *stack, ctx context.Context, id string) {
	t.Helper()
	if _, err := s.Secrets.ReadToken(ctx, e2e.Tenant, id); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("link %s holds a token (read: %v)", id, err)
	}
}

// TestOAuthCallbackAttacks drives the OAuth callback the way an attacker
// holding a browser would, against a real OIDC provider.
func TestOAuthCallbackAttacks(t *testing.T) {
	t.Parallel()
	s := newStack(t, gateway.Config{AllowedReturnOrigins: []string{allowedOrigin}})
	ctx := testContext(t)

	t.Run("state replay", func(t *testing.T) {
		l, _ := s.authLink(t, ctx, "")
		back := s.consent(t, ctx, l)
		if a := s.callback(t, back.Query()); a.status != http.StatusOK || !strings.Contains(a.body, "Connected") {
			t.Fatalf("first callback: %d", a.status)
		}
		s.WaitFor(ctx, l.ID, "enrolled", e2e.Status(workflows.StatusActive))
		_, version := s.Token(ctx, l.ID)

		// The same redirect again, and the same state with a fresh code
		// (the attacker consented with their own account).
		again := s.callback(t, back.Query())
		fresh := s.consent(t, ctx, l)
		withFresh := s.callback(t, fresh.Query())
		for _, a := range []answer{again, withFresh} {
			if a.status != http.StatusBadRequest || !strings.Contains(a.body, "already used") {
				t.Errorf("replayed state: %d, want 400 'already used' page", a.status)
			}
		}
		time.Sleep(2 * time.Second) // a re-enrollment would have happened by now
		if _, v := s.Token(ctx, l.ID); v != version {
			t.Errorf("token version %d -> %d: the replay re-enrolled the link", version, v)
		}
		types := s.eventTypes(t, ctx, l.ID)
		if count(types, "enrolled") != 1 || count(types, "reauthorized") != 0 {
			t.Errorf("audit trail %v: want exactly one enrollment", types)
		}
		if g, err := s.Secrets.ReadGrant(ctx, e2e.Tenant, l.ID); err != nil || g.Value.Code != "" {
			t.Errorf("the replayed code reached the grant (err %v)", err)
		}
	})

	t.Run("state of another link", func(t *testing.T) {
		a, _ := s.authLink(t, ctx, "")
		b, stateB := s.authLink(t, ctx, "")
		backA := s.consent(t, ctx, a)
		// A's code presented with B's state: the state binds the code to
		// B, whose PKCE verifier does not match the challenge A's code
		// was issued for, so the provider refuses it.
		q := url.Values{"state": {stateB}, "code": {backA.Query().Get("code")}}
		s.callback(t, q)
		st := s.WaitFor(ctx, b.ID, "failed", failed)
		if !strings.Contains(st.LastError, "invalid_grant") {
			t.Errorf("B's last_error = %q, want the provider's invalid_grant", st.LastError)
		}
		noToken(t, s, ctx, b.ID)
		// A's own redirect still enrolls A: the swap did not spend it.
		if r := s.callback(t, backA.Query()); r.status != http.StatusOK {
			t.Fatalf("A's own callback: %d", r.status)
		}
		s.WaitFor(ctx, a.ID, "A enrolled", e2e.Status(workflows.StatusActive))
		s.Token(ctx, a.ID)
	})

	t.Run("missing PKCE verifier", func(t *testing.T) {
		l, _ := s.authLink(t, ctx, "")
		g, err := s.Secrets.ReadGrant(ctx, e2e.Tenant, l.ID)
		if err != nil {
			t.Fatal(err)
		}
		s.Remember(g.Value.CodeVerifier)
		g.Value.CodeVerifier = ""
		if _, err := s.Secrets.WriteGrant(ctx, e2e.Tenant, l.ID, g.Value, g.Version); err != nil {
			t.Fatal(err)
		}
		back := s.consent(t, ctx, l)
		s.callback(t, back.Query())
		// The provider client refuses before calling out: a clear,
		// permanent failure, not a retry loop or a panic.
		st := s.WaitFor(ctx, l.ID, "failed", failed)
		if !strings.Contains(st.LastError, "no code verifier") {
			t.Errorf("last_error = %q, want it to name the missing code verifier", st.LastError)
		}
		if strings.Contains(strings.ToLower(s.Logs.String()), "panic") {
			t.Error("the logs mention a panic")
		}
		noToken(t, s, ctx, l.ID)
		s.WaitRecorded(ctx, l.ID)
		got, err := s.Client.GetLink(ctx, l.ID)
		if err != nil || got.Status != string(workflows.StatusFailed) || got.LastError == "" {
			t.Errorf("the API shows status %q, last_error %q (err %v)", got.Status, got.LastError, err)
		}
	})

	t.Run("access denied", func(t *testing.T) {
		l, state := s.authLink(t, ctx, "")
		a := s.callback(t, url.Values{"state": {state}, "error": {"access_denied"}, "error_description": {"<script>alert(1)</script>"}})
		if a.status != http.StatusBadRequest || !strings.Contains(a.body, "access_denied") || strings.Contains(a.body, "<script>") {
			t.Errorf("denied callback: %d (escaped: %v)", a.status, !strings.Contains(a.body, "<script>"))
		}
		st := s.WaitFor(ctx, l.ID, "failed", failed)
		if !strings.HasPrefix(st.LastError, "authorization denied: access_denied") {
			t.Errorf("last_error = %q", st.LastError)
		}
		// The state is spent: a code cannot follow the refusal.
		if r := s.callback(t, url.Values{"state": {state}, "code": {"attacker-code"}}); r.status != http.StatusBadRequest {
			t.Errorf("code after a refusal: %d, want 400", r.status)
		}
		noToken(t, s, ctx, l.ID)
	})

	// Issue 12 point 7: a callback without a code (or with one too long
	// to be real) is refused before the state is spent, so the end-user's
	// real redirect still enrolls the link.
	t.Run("malformed callback keeps the state", func(t *testing.T) {
		l, state := s.authLink(t, ctx, "")
		for name, q := range map[string]url.Values{
			"no code":        {"state": {state}},
			"empty code":     {"state": {state}, "code": {""}},
			"over-long code": {"state": {state}, "code": {strings.Repeat("c", 5000)}},
		} {
			if a := s.callback(t, q); a.status != http.StatusBadRequest || !strings.Contains(a.body, "without an authorization code") {
				t.Errorf("%s: %d, want 400 'without an authorization code' page", name, a.status)
			}
		}
		if a := s.callback(t, s.consent(t, ctx, l).Query()); a.status != http.StatusOK || !strings.Contains(a.body, "Connected") {
			t.Fatalf("the real redirect after malformed ones: %d, want 200 Connected (the state was burnt)", a.status)
		}
		s.WaitFor(ctx, l.ID, "enrolled", e2e.Status(workflows.StatusActive))
	})

	t.Run("unknown and missing state", func(t *testing.T) {
		for _, q := range []url.Values{{"code": {"c"}}, {"state": {"forged-state-0123456789abcdef"}, "code": {"c"}}} {
			if a := s.callback(t, q); a.status != http.StatusBadRequest {
				t.Errorf("callback %v: %d, want 400", q, a.status)
			}
		}
	})

	t.Run("open redirect through return_url", func(t *testing.T) {
		for _, bad := range []string{
			"//evil.com", "https://app.example.evil.com", "https://evil.com", "javascript:alert(1)",
			"JavaScript://app.example/%0aalert(1)", "data:text/html,<script>alert(1)</script>",
			"https://app.example@evil.com/", "https://user:pw@app.example/", "http://app.example/",
			"https://app.example:8443/", `https:\\evil.com`, "/relative", "https:evil.com",
			"https://evil.com/https://app.example", "ftp://app.example/", " https://evil.com",
		} {
			body := `{"provider":"peer","user_id":"alice","grant":"authorization_code","return_url":` + quote(bad) + `}`
			a := s.do(t, http.MethodPost, "/v1/links", s.APIKey, body)
			if a.status != http.StatusBadRequest || errorCode(a.body) != gateway.CodeBadRequest {
				t.Errorf("return_url %q: %d %s, want 400 bad_request", bad, a.status, errorCode(a.body))
			}
		}
		// The allow-listed origin works, end to end.
		l, _ := s.authLink(t, ctx, allowedOrigin+"/done?x=1")
		a := s.callback(t, s.consent(t, ctx, l).Query())
		u, err := url.Parse(a.location)
		if a.status != http.StatusFound || err != nil || u.Scheme+"://"+u.Host != allowedOrigin ||
			u.Query().Get("link_id") != l.ID || u.Query().Get("x") != "1" || u.Query().Get("code") != "" {
			t.Errorf("callback with an allowed return_url: %d to %q", a.status, a.location)
		}
		s.WaitFor(ctx, l.ID, "enrolled", e2e.Status(workflows.StatusActive))
	})
}

// TestOAuthCallbackExpiredState: a state used after the authorization
// window is refused, and the link ends without a token.
func TestOAuthCallbackExpiredState(t *testing.T) {
	t.Parallel()
	s := newStack(t, gateway.Config{AuthorizationTimeout: 3 * time.Second})
	ctx := testContext(t)
	l, _ := s.authLink(t, ctx, "")
	created := time.Now()
	back := s.consent(t, ctx, l)
	time.Sleep(time.Until(created.Add(4 * time.Second)))
	a := s.callback(t, back.Query())
	if a.status != http.StatusBadRequest || !strings.Contains(a.body, "expired") {
		t.Errorf("expired state: %d, want 400 'expired' page", a.status)
	}
	st := s.WaitFor(ctx, l.ID, "failed", failed)
	if !strings.Contains(st.LastError, "did not authorize") {
		t.Errorf("last_error = %q", st.LastError)
	}
	noToken(t, s, ctx, l.ID)
	if types := s.eventTypes(t, ctx, l.ID); count(types, "enrolled") != 0 {
		t.Errorf("audit trail %v shows an enrollment", types)
	}
	if _, err := s.Client.Token(ctx, l.ID, 0); tokenwarden.ErrorCode(err) != tokenwarden.CodeLinkFailed {
		t.Errorf("token of the expired link: %v, want link_failed", err)
	}
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// lucaStack is a Tokenwarden whose one provider, "luca", is the Luca
// simulator in its strictest mode: it drops state from its redirect (as
// Luca's article lists only code and scope), checks redirect_uri at the
// token endpoint, and has no PKCE. The catalog entry takes Luca's
// defaults: redirect_state path, pkce off.
func lucaStack(t *testing.T) *stack {
	t.Helper()
	const clientID, secret = "tw-luca", "luca-client-SECRET-0123456789"
	sim := lucasim.New(lucasim.Options{ClientID: clientID, ClientSecret: secret, AutoApprove: true,
		Users: map[string]string{"kari": "kari-password"}, DropState: true, RequireRedirectMatch: true})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	s := e2e.Start(t, e2e.Options{
		VaultSecrets: map[string]map[string]string{"providers/luca": {"client_secret": secret}},
		Catalog: fmt.Sprintf(`providers:
  - name: luca
    kind: luca
    client_id: %s
    client_secret: {vault: "providers/luca#client_secret"}
    grants: [authorization_code]
    settings: {base_url: %q}
`, clientID, srv.URL),
	})
	return &stack{Stack: s}
}

// browserClient is a browser with its own cookie jar that does not follow
// redirects.
func browserClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// open GETs u with c and returns the answer.
func open(t *testing.T, c *http.Client, u string) answer {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may carry a code
		}
		t.Fatalf("browser: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), location: resp.Header.Get("Location")}
}

// TestOAuthCallbackBrowserBinding attacks path-state flows (providers that
// drop state, issue 11 point 6) and the code swap on a provider without
// PKCE (issue 12 point 9).
func TestOAuthCallbackBrowserBinding(t *testing.T) {
	t.Parallel()
	s := lucaStack(t)
	ctx := testContext(t)
	create := func(t *testing.T) *tokenwarden.Link {
		t.Helper()
		l, err := s.Client.CreateLink(ctx, tokenwarden.CreateLinkRequest{Provider: "luca", UserID: "kari",
			Grant: tokenwarden.GrantAuthorizationCode}, "")
		if err != nil {
			t.Fatalf("create link: %v", err)
		}
		if !strings.HasPrefix(l.AuthorizationURL, s.Gateway.URL+gateway.StartPath+"/") {
			t.Fatalf("authorization_url is not the gateway's start page")
		}
		s.Remember(strings.TrimPrefix(l.AuthorizationURL, s.Gateway.URL+gateway.StartPath+"/"))
		return l
	}
	// start opens the start page in c and returns the provider's consent URL.
	start := func(t *testing.T, c *http.Client, l *tokenwarden.Link) string {
		t.Helper()
		a := open(t, c, l.AuthorizationURL)
		if a.status != http.StatusFound || a.location == "" || strings.HasPrefix(a.location, s.Gateway.URL) {
			t.Fatalf("start page: %d", a.status)
		}
		return a.location
	}
	// consent follows the consent URL in c and returns the redirect back.
	consent := func(t *testing.T, c *http.Client, consentURL string) string {
		t.Helper()
		a := open(t, c, consentURL)
		if a.status != http.StatusFound || !strings.HasPrefix(a.location, s.Gateway.URL+gateway.CallbackPath+"/") {
			t.Fatalf("consent: %d, not sent back to a path callback", a.status)
		}
		u, _ := url.Parse(a.location)
		if u.Query().Has("state") {
			t.Fatal("the simulator echoed state although it drops it")
		}
		s.Remember(u.Query().Get("code"))
		return a.location
	}

	t.Run("enrolls without state in the redirect", func(t *testing.T) {
		l := create(t)
		b := browserClient()
		a := open(t, b, consent(t, b, start(t, b, l)))
		if a.status != http.StatusOK || !strings.Contains(a.body, "Connected") {
			t.Fatalf("callback: %d, want Connected", a.status)
		}
		s.WaitFor(ctx, l.ID, "enrolled", e2e.Status(workflows.StatusActive))
		s.Token(ctx, l.ID)
	})

	t.Run("consent forwarded to another browser", func(t *testing.T) {
		// The attacker opens their link's start page, then sends the
		// consent URL to the victim, who consents in their own browser.
		l := create(t)
		attacker, victim := browserClient(), browserClient()
		consentURL := start(t, attacker, l)
		back := consent(t, victim, consentURL)
		if a := open(t, victim, back); a.status != http.StatusBadRequest || !strings.Contains(a.body, "started in another browser") {
			t.Errorf("callback in the victim's browser: %d, want 400 'started in another browser'", a.status)
		}
		if a := open(t, browserClient(), back); a.status != http.StatusBadRequest {
			t.Errorf("callback in a third browser: %d, want 400", a.status)
		}
		// The refusal spent nothing: the browser that started the flow
		// still can finish it.
		if a := open(t, attacker, consent(t, attacker, consentURL)); a.status != http.StatusOK {
			t.Errorf("callback in the starting browser after the refusals: %d, want 200", a.status)
		}
		s.WaitFor(ctx, l.ID, "enrolled", e2e.Status(workflows.StatusActive))
	})

	t.Run("start page works once", func(t *testing.T) {
		l := create(t)
		start(t, browserClient(), l)
		if a := open(t, browserClient(), l.AuthorizationURL); a.status != http.StatusBadRequest || !strings.Contains(a.body, "already opened") {
			t.Errorf("second start: %d, want 400 'already opened'", a.status)
		}
	})

	t.Run("path state through the query callback", func(t *testing.T) {
		l := create(t)
		b := browserClient()
		back, _ := url.Parse(consent(t, b, start(t, b, l)))
		state := strings.TrimPrefix(back.Path, gateway.CallbackPath+"/")
		q := url.Values{"state": {state}, "code": {back.Query().Get("code")}}
		if a := open(t, b, s.Gateway.URL+gateway.CallbackPath+"?"+q.Encode()); a.status != http.StatusBadRequest {
			t.Errorf("path state at the query callback: %d, want 400", a.status)
		}
		if a := open(t, b, back.String()); a.status != http.StatusOK {
			t.Errorf("the real callback afterwards: %d, want 200", a.status)
		}
		s.WaitFor(ctx, l.ID, "enrolled", e2e.Status(workflows.StatusActive))
	})

	t.Run("malformed callback keeps the state", func(t *testing.T) {
		l := create(t)
		b := browserClient()
		back, _ := url.Parse(consent(t, b, start(t, b, l)))
		bare := *back
		bare.RawQuery = ""
		if a := open(t, b, bare.String()); a.status != http.StatusBadRequest || !strings.Contains(a.body, "without an authorization code") {
			t.Errorf("callback without code: %d", a.status)
		}
		if a := open(t, b, back.String()); a.status != http.StatusOK {
			t.Errorf("the real callback afterwards: %d, want 200", a.status)
		}
		s.WaitFor(ctx, l.ID, "enrolled", e2e.Status(workflows.StatusActive))
	})

	t.Run("code swap without PKCE", func(t *testing.T) {
		// The attacker holds a code issued for link A (their victim's
		// consent) and presents it at their own link B's callback, from
		// B's browser, with B's state and cookie. B's redirect URI
		// differs from A's, so Luca refuses the code and B gets nothing.
		a, b := create(t), create(t)
		ba, bb := browserClient(), browserClient()
		backA, _ := url.Parse(consent(t, ba, start(t, ba, a)))
		backB, _ := url.Parse(consent(t, bb, start(t, bb, b)))
		swapped := *backB
		swapped.RawQuery = url.Values{"code": {backA.Query().Get("code")}, "scope": {"accounting"}}.Encode()
		open(t, bb, swapped.String())
		st := s.WaitFor(ctx, b.ID, "B failed", failed)
		if !strings.Contains(st.LastError, "invalid_grant") {
			t.Errorf("B's last_error = %q, want the provider's invalid_grant", st.LastError)
		}
		noToken(t, s, ctx, b.ID)
	})
}
