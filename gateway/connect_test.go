package gateway

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
)

// fakePasswordEntry offers the fake provider's password grant alone, so
// that the connect page shows its credentials form.
var fakePasswordEntry = providers.Entry{
	Name:     "fakepw",
	Kind:     "fake",
	ClientID: "client-3",
	Grants:   []string{providers.GrantPassword},
	Schedule: providers.DefaultSchedule(),
}

// connectEnv is the gateway on the real stack with the fake provider
// under two names: fake (consent page) and fakepw (password only).
func connectEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	require.NoError(t, e.srv.d.Providers.(*providers.Registry).Add(fakePasswordEntry, e.prov))
	return e
}

// session creates a connect session through the API.
func (e *env) session(body string) connectSessionResponse {
	e.t.Helper()
	a := e.do("POST", "/v1/connect/sessions", body)
	require.Equal(e.t, http.StatusCreated, a.Code, shown(a))
	var cs connectSessionResponse
	a.json(e.t, &cs)
	e.leaks = append(e.leaks, cs.Token)
	return cs
}

// browserForm is what the connect page gave a browser: its cookie and the
// form token.
type browserForm struct {
	cookie *http.Cookie
	csrf   string
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// open opens the connect page as a browser without cookies does.
func (e *env) open(target string, hdr ...string) (answer, browserForm) {
	e.t.Helper()
	a := do(e.h, "GET", target, "", nil, hdr...)
	var f browserForm
	for _, c := range (&http.Response{Header: a.Header}).Cookies() {
		if c.Name == csrfCookie {
			f.cookie = c
		}
	}
	if m := csrfField.FindSubmatch(a.Body); m != nil {
		f.csrf = string(m[1])
	}
	return a, f
}

// submit posts a connect form as the browser holding f.
func (e *env) submit(f browserForm, fields url.Values, hdr ...string) answer {
	e.t.Helper()
	if f.csrf != "" && fields.Get("csrf") == "" {
		fields.Set("csrf", f.csrf)
	}
	h := []string{"Content-Type", "application/x-www-form-urlencoded", "Origin", "http://gateway.test"}
	if f.cookie != nil {
		h = append(h, "Cookie", f.cookie.Name+"="+f.cookie.Value)
	}
	return do(e.h, "POST", ConnectPath, "", strings.NewReader(fields.Encode()), append(h, hdr...)...)
}

// has and lacks check a page without printing it: pages carry session
// tokens and form keys, and a failing check must not show them.
func has(t *testing.T, a answer, want string, msg ...any) bool {
	t.Helper()
	return assert.Truef(t, strings.Contains(string(a.Body), want), "the answer lacks %q %v", want, msg)
}

func lacks(t *testing.T, a answer, unwanted string, msg ...any) bool {
	t.Helper()
	return assert.Falsef(t, strings.Contains(string(a.Body), unwanted), "the answer holds something it must not (%d characters) %v", len(unwanted), msg)
}

var (
	tokenShown = regexp.MustCompile(`cst_[A-Za-z0-9_-]+`)
	csrfShown  = regexp.MustCompile(`name="csrf" value="[^"]+"`)
)

// shown is an answer for a failure message, with session tokens and form
// keys masked.
func shown(a answer) string {
	b := tokenShown.ReplaceAll(a.Body, []byte("cst_…"))
	return string(csrfShown.ReplaceAll(b, []byte(`name="csrf" value="…"`)))
}

func pagePath(cs connectSessionResponse, extra ...string) string {
	q := url.Values{"session": {cs.Token}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return ConnectPath + "?" + q.Encode()
}

// notInDatabase fails if secret is in any row of any table of the
// stack's schema.
func notInDatabase(t *testing.T, st *store.Store, secret string) {
	t.Helper()
	ctx := context.Background()
	rows, err := st.Pool().Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Contains(t, tables, "connect_sessions")
	for _, tbl := range tables {
		var dump string
		require.NoError(t, st.Pool().QueryRow(ctx,
			`SELECT coalesce(string_agg(row_to_json(t)::text, E'\n'), '') FROM `+pgx.Identifier{tbl}.Sanitize()+` t`).Scan(&dump))
		if strings.Contains(dump, secret) {
			t.Fatalf("a session token is stored in table %s", tbl)
		}
	}
}

func TestConnectSessions(t *testing.T) {
	e := connectEnv(t)
	ctx := context.Background()

	t.Run("create: validated, token shown once and stored hashed", func(t *testing.T) {
		active := e.create(`{"provider":"fake","user_id":"val","grant":"client_credentials"}`)
		e.waitStatus(active.ID, "active")
		for body, code := range map[string]string{
			`{}`:                                     CodeBadRequest,
			`{"user_id":"u","providers":["nope"]}`:   CodeUnknownProvider,
			`{"user_id":"u","providers":["narrow"]}`: CodeUnsupportedGrant,
			`{"user_id":"u","return_url":"https://evil.example/"}`:   CodeBadRequest,
			`{"user_id":"u","expires_in":30}`:                        CodeBadRequest,
			`{"user_id":"u","expires_in":7200}`:                      CodeBadRequest,
			`{"user_id":"u","scopes":["a b"]}`:                       CodeBadRequest,
			`{"user_id":"u","Providers":["fake"]}`:                   CodeUnknownField,
			`{"link_id":"lnk_nosuchlink"}`:                           CodeNotFound,
			`{"link_id":"` + active.ID + `","scopes":["x"]}`:         CodeUnsupportedGrant,
			`{"link_id":"` + active.ID + `"}`:                        CodeConflict,
			`{"link_id":"` + active.ID + `","user_id":"someone"}`:    CodeBadRequest,
			`{"link_id":"` + active.ID + `","providers":["fakepw"]}`: CodeBadRequest,
		} {
			a := e.do("POST", "/v1/connect/sessions", body)
			assert.Equalf(t, code, a.errCode(t), "%s: %s", body, shown(a))
		}
		a := do(e.h, "POST", "/v1/connect/sessions", e.otherKey, strings.NewReader(`{"link_id":"`+active.ID+`","scopes":["x"]}`))
		assert.Equal(t, http.StatusNotFound, a.Code, "another tenant's link")
		a = do(e.h, "POST", "/v1/connect/sessions", "", strings.NewReader(`{"user_id":"u"}`))
		assert.Equal(t, http.StatusUnauthorized, a.Code)

		before := time.Now()
		cs := e.session(`{"user_id":"alice"}`)
		assert.Equal(t, []string{"fake", "fakepw"}, cs.Providers, "every provider the page can connect")
		assert.Equal(t, "alice", cs.UserID)
		assert.Regexp(t, `^cst_[A-Za-z0-9_-]{43}$`, cs.Token)
		assert.Equal(t, "http://gateway.test/connect?session="+cs.Token, cs.ConnectURL)
		assert.WithinDuration(t, before.Add(DefaultConnectSessionTTL), cs.ExpiresAt, 5*time.Second)
		notInDatabase(t, e.st, cs.Token)
		var hash []byte
		require.NoError(t, e.st.Pool().QueryRow(ctx, `SELECT hash FROM connect_sessions WHERE id = $1`, cs.ID).Scan(&hash))
		sum := sha256.Sum256([]byte(cs.Token))
		assert.Equal(t, sum[:], hash, "the token's SHA-256 is what is kept")
	})

	t.Run("page: self-contained, accessible, no script", func(t *testing.T) {
		cs := e.session(`{"user_id":"page"}`)
		a, f := e.open(pagePath(cs))
		require.Equal(t, http.StatusOK, a.Code, shown(a))
		assert.Equal(t, "default-src 'self'; base-uri 'none'; frame-ancestors 'none'", a.Header.Get("Content-Security-Policy"))
		assert.Equal(t, "no-store", a.Header.Get("Cache-Control"))
		assert.Equal(t, "same-origin", a.Header.Get("Referrer-Policy"), "no Referer to other sites, an Origin for its own forms")
		assert.Equal(t, "DENY", a.Header.Get("X-Frame-Options"))
		has(t, a, `<html lang="en">`)
		has(t, a, `<link rel="stylesheet" href="/connect/connect.css">`)
		assert.False(t, regexp.MustCompile(`(?i)<script|<style|\sstyle=|\son[a-z]+=|javascript:`).Match(a.Body), "no inline script or style")
		assert.False(t, regexp.MustCompile(`(?i)(src|href)="(https?:)?//`).Match(a.Body), "nothing loaded from elsewhere")
		has(t, a, `<button type="submit">Connect fake</button>`)
		has(t, a, `>Connect fakepw</a>`)
		require.NotNil(t, f.cookie, "the page sets its form key cookie")
		assert.True(t, f.cookie.HttpOnly)
		assert.Equal(t, http.SameSiteLaxMode, f.cookie.SameSite)
		assert.Equal(t, ConnectPath, f.cookie.Path)
		assert.NotEmpty(t, f.csrf)

		a = do(e.h, "GET", connectCSSPath, "", nil)
		assert.Equal(t, http.StatusOK, a.Code)
		assert.Equal(t, "text/css; charset=utf-8", a.Header.Get("Content-Type"))
		has(t, a, "focus-visible")

		a, _ = e.open(pagePath(cs, "provider", "fakepw"))
		require.Equal(t, http.StatusOK, a.Code)
		for _, want := range []string{`<label for="username">Username</label>`, `<label for="password">Password</label>`,
			`autocomplete="current-password"`, `type="password"`, "Choose another service"} {
			has(t, a, want)
		}
		a, _ = e.open(pagePath(cs, "provider", "fake"))
		assert.Equal(t, http.StatusBadRequest, a.Code, "fake has a consent page, no password form")

		for target, want := range map[string]int{
			ConnectPath:                   http.StatusBadRequest,
			ConnectPath + "?session=junk": http.StatusBadRequest,
			ConnectPath + "?session=cst_" + strings.Repeat("x", 43): http.StatusNotFound,
		} {
			a, _ := e.open(target)
			assert.Equalf(t, want, a.Code, "%s", target)
			assert.Contains(t, a.Header.Get("Content-Type"), "text/html")
			has(t, a, "Go back to the application")
		}
	})

	t.Run("forged forms are refused and spend nothing", func(t *testing.T) {
		cs := e.session(`{"user_id":"csrf","providers":["fake"]}`)
		other := e.session(`{"user_id":"csrf-other","providers":["fake"]}`)
		_, f := e.open(pagePath(cs))
		_, fo := e.open(pagePath(other), "Cookie", f.cookie.Name+"="+f.cookie.Value)
		pick := func() url.Values { return url.Values{"session": {cs.Token}, "provider": {"fake"}} }
		for name, a := range map[string]answer{
			"no cookie":                    e.submit(browserForm{csrf: f.csrf}, pick()),
			"another browser's cookie":     e.submit(browserForm{cookie: &http.Cookie{Name: csrfCookie, Value: strings.Repeat("A", 43)}, csrf: f.csrf}, pick()),
			"no form token":                e.submit(browserForm{cookie: f.cookie}, pick()),
			"another session's token":      e.submit(browserForm{cookie: f.cookie, csrf: fo.csrf}, pick()),
			"posted from another origin":   e.submit(f, pick(), "Origin", "https://evil.example"),
			"posted from an opaque origin": e.submit(f, pick(), "Origin", "null"),
		} {
			assert.Equalf(t, http.StatusForbidden, a.Code, "%s: %s", name, shown(a))
			assert.Containsf(t, shown(a), "could not be verified", "%s", name)
		}
		a, _ := e.open(pagePath(cs))
		assert.Equal(t, http.StatusOK, a.Code, "the session is still unspent")
		a = e.submit(f, url.Values{"session": {cs.Token}, "provider": {"fakepw"}})
		assert.Equal(t, http.StatusBadRequest, a.Code, "a provider the session does not offer")
		a, _ = e.open(pagePath(cs))
		assert.Equal(t, http.StatusOK, a.Code, "still unspent")
	})

	t.Run("authorization code: consent, then the return_url with the link", func(t *testing.T) {
		cs := e.session(`{"user_id":"ann","providers":["fake"],"scopes":["read"],"return_url":"https://app.example/done?x=1"}`)
		_, f := e.open(pagePath(cs))
		a := e.submit(f, url.Values{"session": {cs.Token}, "provider": {"fake"}})
		require.Equal(t, http.StatusSeeOther, a.Code, shown(a))
		consent := a.Header.Get("Location")
		require.True(t, strings.HasPrefix(consent, fakeAuthURL+"?"), "redirected elsewhere than the consent page")
		u, _ := url.Parse(consent)
		assert.Equal(t, "read", u.Query().Get("scope"))

		// Spent: the page and a second submission say so.
		a, _ = e.open(pagePath(cs))
		assert.Equal(t, http.StatusGone, a.Code)
		has(t, a, "already used")
		a = e.submit(f, url.Values{"session": {cs.Token}, "provider": {"fake"}})
		assert.Equal(t, http.StatusGone, a.Code)

		a = e.authorize(consent, "code-connect-ann")
		require.Equal(t, http.StatusFound, a.Code, shown(a))
		back, err := url.Parse(a.Header.Get("Location"))
		require.NoError(t, err)
		assert.Equal(t, "https://app.example/done", back.Scheme+"://"+back.Host+back.Path)
		assert.Equal(t, "connected", back.Query().Get("status"))
		assert.Equal(t, "1", back.Query().Get("x"))
		id := back.Query().Get("link_id")
		v := e.waitStatus(id, "active")
		assert.Equal(t, "ann", v.UserID)
		assert.Equal(t, "fake", v.Provider)
		assert.Equal(t, []string{"read"}, v.Scopes)
	})

	t.Run("password: form to Vault, never echoed or logged", func(t *testing.T) {
		const password = "pw-connect-secret-9f2"
		e.leaks = append(e.leaks, password)
		cs := e.session(`{"user_id":"pat","providers":["fakepw"]}`)
		a, f := e.open(pagePath(cs))
		require.Equal(t, http.StatusOK, a.Code)
		has(t, a, `name="password"`, "the only provider's form at once")
		lacks(t, a, "Choose another service")

		a = e.submit(f, url.Values{"session": {cs.Token}, "provider": {"fakepw"}, "username": {"pat-at-bank"}})
		assert.Equal(t, http.StatusBadRequest, a.Code)
		has(t, a, `role="alert"`)
		has(t, a, `aria-invalid="true"`)
		lacks(t, a, "pat-at-bank", "nothing typed is echoed")
		a, _ = e.open(pagePath(cs))
		require.Equal(t, http.StatusOK, a.Code, "an incomplete form spends nothing")

		a = e.submit(f, url.Values{"session": {cs.Token}, "provider": {"fakepw"}, "username": {"pat-at-bank"}, "password": {password}})
		require.Equal(t, http.StatusOK, a.Code, shown(a))
		has(t, a, "Your account is connected")
		lacks(t, a, password)
		lacks(t, a, "pat-at-bank")

		list := e.do("GET", "/v1/links?user_id=pat", "")
		var links struct{ Links []linkView }
		list.json(t, &links)
		require.Len(t, links.Links, 1)
		l := links.Links[0]
		assert.Equal(t, "fakepw", l.Provider)
		assert.Equal(t, "password", l.Grant)
		assert.Equal(t, "active", l.Status)
		g, err := e.sec.ReadGrant(ctx, store.DefaultTenantID, l.ID)
		require.NoError(t, err)
		assert.Equal(t, password, g.Value.Password, "the credentials are in the link's grant in Vault")
		notInDatabase(t, e.st, password)
		assert.NotContains(t, e.logs.String(), password)

		// Incremental consent for a password link: new credentials and
		// the scopes to add; the link enrolls again, keeping its id.
		a = e.do("POST", "/v1/links/"+l.ID+"/reauthorize", `{"scopes":["extra"]}`)
		assert.Equal(t, CodeBadRequest, a.errCode(t), "a password link needs its credentials again")
		a = e.do("POST", "/v1/links/"+l.ID+"/reauthorize", `{"scopes":["extra"],"credentials":{"username":"pat-at-bank","password":"`+password+`"}}`)
		require.Equal(t, http.StatusAccepted, a.Code, shown(a))
		require.Eventually(t, func() bool {
			a, tok := e.token(l.ID, "?scopes=extra")
			return a.Code == http.StatusOK && len(tok.Scopes) == 1
		}, 30*time.Second, 100*time.Millisecond, "the password link holds the scope asked for")

		// With a return_url the browser lands there.
		cs = e.session(`{"user_id":"pat","providers":["fakepw"],"return_url":"https://app.example/back"}`)
		_, f = e.open(pagePath(cs))
		a = e.submit(f, url.Values{"session": {cs.Token}, "provider": {"fakepw"}, "username": {"pat"}, "password": {password}})
		require.Equal(t, http.StatusSeeOther, a.Code, shown(a))
		back, _ := url.Parse(a.Header.Get("Location"))
		assert.Equal(t, "app.example", back.Host)
		assert.Equal(t, "connected", back.Query().Get("status"))
		e.waitStatus(back.Query().Get("link_id"), "active")
	})

	t.Run("reconnect: a reauth_required link keeps its id", func(t *testing.T) {
		l := e.create(`{"provider":"fake","user_id":"rita","grant":"authorization_code","params":{"fail_refresh":"1"}}`)
		require.Equal(t, 200, e.authorize(l.AuthorizationURL, "code-rita-1").Code)
		e.waitStatus(l.ID, "active")
		e.do("POST", "/v1/links/"+l.ID+"/refresh", "")
		e.waitStatus(l.ID, "reauth_required")

		cs := e.session(`{"link_id":"` + l.ID + `","return_url":"https://app.example/again"}`)
		late := e.session(`{"link_id":"` + l.ID + `"}`)
		assert.Equal(t, "rita", cs.UserID)
		assert.Equal(t, []string{"fake"}, cs.Providers)
		assert.Equal(t, l.ID, cs.LinkID)
		a, f := e.open(pagePath(cs))
		require.Equal(t, http.StatusOK, a.Code)
		has(t, a, "Reconnect your fake account")
		a = e.submit(f, url.Values{"session": {cs.Token}, "provider": {"fake"}})
		require.Equal(t, http.StatusSeeOther, a.Code, shown(a))
		a = e.authorize(a.Header.Get("Location"), "code-rita-2")
		require.Equal(t, http.StatusFound, a.Code, shown(a))
		back, _ := url.Parse(a.Header.Get("Location"))
		assert.Equal(t, l.ID, back.Query().Get("link_id"), "the same link")
		e.waitStatus(l.ID, "active")
		g, _ := e.prov.lastExchange()
		assert.Equal(t, "code-rita-2", g.Code)
		ev := e.do("GET", "/v1/links/"+l.ID+"/events", "")
		assert.Contains(t, string(ev.Body), `"reauthorized"`, "the link's own audit trail goes on")

		// A second session for the same reconnect, used once the link is
		// active again: refused before it is spent.
		require.Eventually(t, func() bool {
			var v linkView
			e.do("GET", "/v1/links/"+l.ID, "").json(t, &v)
			return v.Status == "active"
		}, 30*time.Second, 100*time.Millisecond)
		_, f = e.open(pagePath(late))
		a = e.submit(f, url.Values{"session": {late.Token}, "provider": {"fake"}})
		assert.Equal(t, http.StatusConflict, a.Code, shown(a))
		has(t, a, "Could not connect")
		a, _ = e.open(pagePath(late))
		assert.Equal(t, http.StatusOK, a.Code, "the refused submission spent nothing")
	})

	t.Run("expired session: a clear page", func(t *testing.T) {
		cs := e.session(`{"user_id":"late","providers":["fake"],"expires_in":60}`)
		_, f := e.open(pagePath(cs))
		e.srv.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
		defer func() { e.srv.now = time.Now }()
		a, _ := e.open(pagePath(cs))
		assert.Equal(t, http.StatusGone, a.Code)
		has(t, a, "Connect link expired")
		a = e.submit(f, url.Values{"session": {cs.Token}, "provider": {"fake"}})
		assert.Equal(t, http.StatusGone, a.Code)
		has(t, a, "expired")
	})

	t.Run("incremental consent through the API", func(t *testing.T) {
		l := e.create(`{"provider":"fake","user_id":"ivy","grant":"authorization_code","scopes":["read"]}`)
		require.Equal(t, 200, e.authorize(l.AuthorizationURL, "code-ivy-1").Code)
		e.waitStatus(l.ID, "active")

		a := e.do("POST", "/v1/links/"+l.ID+"/reauthorize", `{"scopes":["a b"]}`)
		assert.Equal(t, CodeBadRequest, a.errCode(t))
		a = e.do("POST", "/v1/links/"+l.ID+"/reauthorize", `{"scopes":["write","read"]}`)
		require.Equal(t, http.StatusOK, a.Code, shown(a))
		var ra reauthorizeResult
		a.json(t, &ra)
		assert.Equal(t, "active", ra.Status)
		u, _ := url.Parse(ra.AuthorizationURL)
		assert.Equal(t, "read write", u.Query().Get("scope"), "the union, once each")

		// Until the end-user consents, the link serves its token as before.
		a, tok := e.token(l.ID, "")
		require.Equal(t, http.StatusOK, a.Code, shown(a))
		assert.Equal(t, []string{"read"}, tok.Scopes)
		a, _ = e.token(l.ID, "?scopes=write")
		assert.Equal(t, CodeInsufficientScope, a.errCode(t))

		require.Equal(t, 200, e.authorize(ra.AuthorizationURL, "code-ivy-2").Code)
		require.Eventually(t, func() bool {
			a, tok := e.token(l.ID, "?scopes=read,write")
			return a.Code == http.StatusOK && assert.ObjectsAreEqual([]string{"read", "write"}, tok.Scopes)
		}, 30*time.Second, 100*time.Millisecond)
		require.Eventually(t, func() bool {
			var v linkView
			e.do("GET", "/v1/links/"+l.ID, "").json(t, &v)
			return assert.ObjectsAreEqual([]string{"read", "write"}, v.Scopes)
		}, 30*time.Second, 100*time.Millisecond, "the link records the granted scopes")
	})

	t.Run("token read: insufficient_scope, and a connect URL when asked", func(t *testing.T) {
		l := e.create(`{"provider":"fake","user_id":"sam","grant":"authorization_code","scopes":["read"]}`)
		require.Equal(t, 200, e.authorize(l.AuthorizationURL, "code-sam-1").Code)
		e.waitStatus(l.ID, "active")

		a, _ := e.token(l.ID, "?scopes=read")
		assert.Equal(t, http.StatusOK, a.Code, shown(a))
		for _, q := range []string{"?connect=1", "?scopes=", "?scopes=,", `?scopes=a"b`, "?scopes=read&connect=2"} {
			a, _ := e.token(l.ID, q)
			assert.Equalf(t, CodeBadRequest, a.errCode(t), "%s", q)
		}

		a, _ = e.token(l.ID, "?scopes=read,admin")
		require.Equal(t, http.StatusConflict, a.Code, shown(a))
		var body errorBody
		a.json(t, &body)
		assert.Equal(t, CodeInsufficientScope, body.Error.Code)
		assert.Equal(t, []string{"admin"}, body.Error.MissingScopes)
		assert.Empty(t, body.Error.ConnectURL)
		assert.Contains(t, body.Error.Message, "reauthorize")
		lacks(t, a, "access_token")

		a, _ = e.token(l.ID, "?scopes=admin&connect=1")
		require.Equal(t, http.StatusConflict, a.Code, shown(a))
		body = errorBody{}
		a.json(t, &body)
		require.True(t, strings.HasPrefix(body.Error.ConnectURL, "http://gateway.test/connect?session=cst_"), shown(a))
		cu, _ := url.Parse(body.Error.ConnectURL)
		e.leaks = append(e.leaks, cu.Query().Get("session"))

		page, f := e.open(ConnectPath + "?" + cu.RawQuery)
		require.Equal(t, http.StatusOK, page.Code)
		has(t, page, "asks for more access")
		has(t, page, "<code>admin</code>")
		a = e.submit(f, url.Values{"session": {cu.Query().Get("session")}, "provider": {"fake"}})
		require.Equal(t, http.StatusSeeOther, a.Code, shown(a))
		consent, _ := url.Parse(a.Header.Get("Location"))
		assert.Equal(t, "read admin", consent.Query().Get("scope"))
		a = e.authorize(consent.String(), "code-sam-2")
		require.Equal(t, http.StatusOK, a.Code, "no return_url: the result page")
		require.Eventually(t, func() bool {
			a, _ := e.token(l.ID, "?scopes=admin")
			return a.Code == http.StatusOK
		}, 30*time.Second, 100*time.Millisecond)

		// A link the connect page cannot re-authorize gets the API's way.
		cc := e.create(`{"provider":"fake","user_id":"svc-scopes","grant":"client_credentials","scopes":["read"]}`)
		e.waitStatus(cc.ID, "active")
		a, _ = e.token(cc.ID, "?scopes=admin&connect=1")
		body = errorBody{}
		a.json(t, &body)
		assert.Equal(t, CodeInsufficientScope, body.Error.Code)
		assert.Empty(t, body.Error.ConnectURL)
		assert.Contains(t, body.Error.Message, "client_credentials link takes them through POST /v1/links/{id}/reauthorize")
		a = e.do("POST", "/v1/links/"+cc.ID+"/reauthorize", `{"scopes":["admin"]}`)
		require.Equal(t, http.StatusAccepted, a.Code, shown(a))
		require.Eventually(t, func() bool {
			a, _ := e.token(cc.ID, "?scopes=read,admin")
			return a.Code == http.StatusOK
		}, 30*time.Second, 100*time.Millisecond, "a client_credentials link takes additional scopes at once")
	})

	t.Run("no session token or password reached the logs", func(t *testing.T) {
		logs := e.logs.String()
		assert.Contains(t, logs, `"msg":"connect session used"`)
		for _, s := range e.leaks {
			if s != "" {
				assert.NotContains(t, logs, s, "a secret reached the logs")
			}
		}
		assert.NotContains(t, logs, "session=cst_")
	})
}
