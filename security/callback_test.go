package security_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
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
