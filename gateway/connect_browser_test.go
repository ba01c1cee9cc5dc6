package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/browser"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	demobanksim "github.com/tokenwarden/tokenwarden/providers/demobank/sim"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// TestConnectPageInBrowser walks the hosted connect page in headless
// Chromium, as an end-user would, against a real OpenID Connect server
// (the OIDC peer: any username logs in) and the finAPI Demobank simulator
// (a password provider):
//
//	a. pick the peer, sign in and consent there, land on the app's
//	   return_url with a link id that becomes active; the used session
//	   then shows a clear page;
//	b. pick Demobank, fill in its username and password, land likewise;
//	c. reconnect the peer link after its grant died: the link keeps its
//	   id;
//	d. incremental consent: a token read asking for a scope the link
//	   lacks gets a connect URL; after the end-user consents there, the
//	   token carries the scope.
//
// Screenshots stay in .test-artifacts/connect.
func TestConnectPageInBrowser(t *testing.T) {
	t.Parallel()
	out := browser.ArtifactsDir(t, "connect")
	peer := oidcpeer.StartT(t, oidcpeer.Options{AccessTokenTTL: time.Minute, RequireOfflineAccess: true})
	bank := httptest.NewServer(demobanksim.New(demobanksim.Options{Users: map[string]string{"demo": "demo-password-9c1"}}))
	t.Cleanup(bank.Close)
	landed := make(chan url.Values, 10)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		select {
		case landed <- q:
		default:
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>App</title><h1>Welcome back</h1><p>Link %s is %s.</p>",
			html.EscapeString(q.Get("link_id")), html.EscapeString(q.Get("status")))
	}))
	t.Cleanup(app.Close)

	s := e2e.Start(t, e2e.Options{
		VaultSecrets: peerSecrets(peer),
		Catalog: peerCatalog(peer, "", fmt.Sprintf(`  - name: demobank
    kind: demobank
    client_id: %s
    auth_style: none
    grants: [password]
    settings: {base_url: %q, mandator: customer}
`, demobanksim.ClientID, bank.URL)),
		Gateway: gateway.Config{AllowedReturnOrigins: []string{app.URL}},
	})
	s.Remember("demo-password-9c1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	session := func(r tokenwarden.ConnectSessionRequest) *tokenwarden.ConnectSession {
		t.Helper()
		cs, err := s.Client.CreateConnectSession(ctx, r)
		if err != nil {
			t.Fatalf("create connect session: %v", err)
		}
		s.Remember(cs.Token)
		return cs
	}
	walk := func(what, start string, steps ...browser.Step) browser.Result {
		t.Helper()
		res := browser.Walk(t, start, out, 60*time.Second, steps...)
		if !res.OK {
			t.Fatalf("%s: step %d: missing %q %s, at %s (screenshots in %s)", what, res.Step, res.Missing, res.Error, res.Where(), out)
		}
		return res
	}
	arrival := func(what string) url.Values {
		t.Helper()
		select {
		case q := <-landed:
			return q
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the browser never reached the app's return_url", what)
			return nil
		}
	}
	peerConsent := func(user string) []browser.Step {
		return []browser.Step{
			{Expect: []string{"Sign-in"}},
			{Fill: map[string]string{"login": user, "password": "any password"}, Click: "Sign-in", Expect: []string{"Authorize", "Continue"},
				Screenshot: "peer-consent.png"},
			{Click: "Continue", Expect: []string{"Welcome back"}, ExpectURL: "status=connected"},
		}
	}

	// a. Authorization code through the peer's consent.
	cs := session(tokenwarden.ConnectSessionRequest{UserID: "alice", Providers: []string{"peer", "demobank"}, ReturnURL: app.URL + "/done"})
	steps := append([]browser.Step{
		{Expect: []string{"Connect an account", "Connect peer", "Connect demobank"}, Screenshot: "a1-choose.png"},
		{Click: "Connect peer", Expect: []string{"Sign-in"}, Screenshot: "a2-peer-sign-in.png"},
	}, peerConsent("alice")[1:]...)
	steps[len(steps)-1].Screenshot = "a3-landed.png"
	walk("connect through the peer", cs.ConnectURL, steps...)
	q := arrival("connect through the peer")
	peerLink := q.Get("link_id")
	s.WaitFor(ctx, peerLink, "active", e2e.Status(workflows.StatusActive))
	l, err := s.Client.GetLink(ctx, peerLink)
	if err != nil || l.UserID != "alice" || l.Provider != "peer" {
		t.Fatalf("the link made through the connect page: %+v, %v", l, err)
	}
	walk("a used session", cs.ConnectURL, browser.Step{Expect: []string{"Connect link already used"}, Screenshot: "a4-used.png"})

	// b. A password provider through the form.
	cs = session(tokenwarden.ConnectSessionRequest{UserID: "bob", Providers: []string{"peer", "demobank"}, ReturnURL: app.URL + "/done"})
	walk("connect through the password form", cs.ConnectURL,
		browser.Step{Click: "Connect demobank", Expect: []string{"Connect your demobank account", "Username", "Password"}, Screenshot: "b1-password-form.png"},
		browser.Step{Fill: map[string]string{"Username": "demo", "Password": "demo-password-9c1"}, Click: "Connect demobank",
			Expect: []string{"Welcome back", "is connected"}, ExpectURL: "status=connected", Screenshot: "b2-landed.png"},
	)
	q = arrival("connect through the password form")
	bankLink := q.Get("link_id")
	s.WaitFor(ctx, bankLink, "active", e2e.Status(workflows.StatusActive))
	s.Token(ctx, bankLink)

	// c. Reconnect: the peer link's grant dies, the end-user consents
	// again through a reconnect session, the link keeps its id.
	tok, _ := s.Token(ctx, peerLink)
	if err := peer.Revoke(ctx, tok.RefreshToken); err != nil {
		t.Fatal(err)
	}
	_, _ = s.Client.Refresh(ctx, peerLink)
	s.WaitFor(ctx, peerLink, "reauth_required", e2e.Status(workflows.StatusReauthRequired))
	// Sessions are checked against the links row, which the workflow
	// records in the background.
	for deadline := time.Now().Add(30 * time.Second); ; {
		l, err := s.Client.GetLink(ctx, peerLink)
		if err == nil && l.Status == "reauth_required" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the links row never showed reauth_required: %+v %v", l, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cs = session(tokenwarden.ConnectSessionRequest{LinkID: peerLink, ReturnURL: app.URL + "/again"})
	steps = append([]browser.Step{{Expect: []string{"Reconnect your peer account"}, Screenshot: "c1-reconnect.png"},
		{Click: "Reconnect peer", Expect: []string{"Sign-in"}}}, peerConsent("alice")[1:]...)
	steps[len(steps)-1].Screenshot = "c2-reconnected.png"
	walk("reconnect", cs.ConnectURL, steps...)
	if q = arrival("reconnect"); q.Get("link_id") != peerLink {
		t.Fatalf("the reconnect landed with link %q, want the same link %s", q.Get("link_id"), peerLink)
	}
	s.WaitFor(ctx, peerLink, "active again", e2e.Status(workflows.StatusActive))

	// d. Incremental consent: the token read names a scope the link
	// lacks and asks for a connect URL.
	// (The gateway follows the links row, recorded in the background,
	// before it serves the reconnected link again.)
	req, _ := s.Client.NewRequest(ctx, http.MethodGet, "/v1/links/"+peerLink+"/token?scopes=api:read&connect=1", nil)
	for deadline := time.Now().Add(30 * time.Second); ; {
		err = s.Client.Do(req.Clone(ctx), nil)
		if tokenwarden.ErrorCode(err) == tokenwarden.CodeInsufficientScope {
			break
		}
		if tokenwarden.ErrorCode(err) != tokenwarden.CodeReauthRequired || time.Now().After(deadline) {
			t.Fatalf("token read with scopes=api:read: %v, want insufficient_scope", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	resp, err := http.DefaultClient.Do(req.Clone(ctx))
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Error struct {
			ConnectURL    string   `json:"connect_url"`
			MissingScopes []string `json:"missing_scopes"`
		} `json:"error"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if body.Error.ConnectURL == "" || !slices.Equal(body.Error.MissingScopes, []string{"api:read"}) {
		t.Fatalf("insufficient_scope answer: missing_scopes %v, connect_url given: %v", body.Error.MissingScopes, body.Error.ConnectURL != "")
	}
	if u, err := url.Parse(body.Error.ConnectURL); err == nil {
		s.Remember(u.Query().Get("session"))
	}
	walk("incremental consent", body.Error.ConnectURL,
		browser.Step{Expect: []string{"asks for more access", "api:read"}, Screenshot: "d1-more-access.png"},
		browser.Step{Click: "Reconnect peer", Expect: []string{"Sign-in"}},
		browser.Step{Fill: map[string]string{"login": "alice", "password": "any password"}, Click: "Sign-in", Expect: []string{"api:read", "Continue"},
			Screenshot: "d2-peer-consent.png"},
		browser.Step{Click: "Continue", Expect: []string{"Connected"}, Screenshot: "d3-connected.png"},
	)
	// The token read checks the scopes stored with the token; the link
	// records them too (in the background, with the transition).
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := s.Client.NewRequest(ctx, http.MethodGet, "/v1/links/"+peerLink+"/token?scopes=api:read", nil)
		var got struct {
			AccessToken string   `json:"access_token"`
			Scopes      []string `json:"scopes"`
		}
		err := s.Client.Do(req, &got)
		if err == nil {
			s.Remember(got.AccessToken)
			if !slices.Contains(got.Scopes, "offline_access") {
				t.Fatalf("the new grant lost the link's scopes: %v", got.Scopes)
			}
		}
		l, lerr := s.Client.GetLink(ctx, peerLink)
		if err == nil && lerr == nil && slices.Contains(l.Scopes, "api:read") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the consent: token read %v; link %+v (%v)", err, l, lerr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.Token(ctx, peerLink)
	s.ScanForSecrets(ctx)
}
