package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// The connect page. It works without JavaScript (plain links and forms)
// and loads nothing but its own style sheet, so its CSP is default-src
// 'self' with no script or inline style allowed. Spending the session is
// the one step that cannot be repeated: it happens when the end-user
// commits a choice (a provider with a consent page, or the password
// form), after the whole submission has been checked; what follows is
// the provider's consent and the usual OAuth callback.

//go:embed connect/*.html connect/connect.css
var connectFS embed.FS

var (
	connectTemplates = template.Must(template.ParseFS(connectFS, "connect/*.html"))
	connectCSS       = mustRead(connectFS, "connect/connect.css")
)

func mustRead(fs embed.FS, name string) []byte {
	b, err := fs.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

const (
	// connectCSSPath is the page's style sheet, relative to PublicURL.
	connectCSSPath = ConnectPath + "/connect.css"
	// csrfCookie holds a random browser key; forms carry an HMAC of the
	// session under it (see csrfToken).
	csrfCookie = "tw_connect"
	// connectWait bounds how long a password submission waits for the
	// link's first answer from the provider.
	connectWait = 10 * time.Second
	// maxSessionTokenLen bounds what is taken for a session token.
	maxSessionTokenLen = 100
)

// connectView is what the page templates show. html/template escapes
// every field; nothing here is a secret except Session and CSRF, which
// the page must carry.
type connectView struct {
	Title, Message, Error, Detail string
	// CSS and Action are the gateway's own paths.
	CSS, Action string
	Session     string
	CSRF        string
	Verb        string
	Scopes      []string
	Providers   []connectChoice
	// Provider is the provider of the password form.
	Provider string
	// Back leads from a password form to the choice of provider.
	Back string
	// Continue leads to the application's return URL.
	Continue string
}

// connectChoice is one provider the page offers.
type connectChoice struct {
	Name     string
	Grant    string
	Password bool
	// Href is the password form's page.
	Href string
}

// Pages of the connect flow that need no session data.
var (
	connectBadLink = connectView{Title: "Invalid connect link",
		Message: "This page was opened without a valid connect link. Go back to the application and start again."}
	connectUnknown = connectView{Title: "Unknown connect link",
		Message: "This connect link is not one we issued, or it was already cleaned up. Go back to the application and start again."}
	connectUsed = connectView{Title: "Connect link already used",
		Message: "This connect link was already used: each one works once. If your account is not connected, go back to the application and start again."}
	connectExpired = connectView{Title: "Connect link expired",
		Message: "This connect link expired before it was used. Go back to the application and start again."}
	connectForged = connectView{Title: "This form could not be verified",
		Message: "The form was not sent from this page, or this browser blocked its cookie. Open the connect link again from the application; nothing was changed."}
	connectNotOffered = connectView{Title: "Service not offered",
		Message: "This connect link does not offer that service. Go back and choose one of those listed."}
	connectUnavailable = connectView{Title: "Temporarily unavailable",
		Message: "We could not continue right now. Please try again in a minute."}
)

// basePath is PublicURL's path: the gateway may be published below one.
func (s *Server) basePath() string {
	if u, err := url.Parse(s.cfg.PublicURL); err == nil {
		return strings.TrimRight(u.Path, "/")
	}
	return ""
}

func (s *Server) renderConnect(c *gin.Context, status int, name string, v connectView) {
	base := s.basePath()
	v.CSS, v.Action = base+connectCSSPath, base+ConnectPath
	// The page's URL carries the session token: keep it out of caches,
	// out of Referer headers to other sites, and out of frames. Not
	// no-referrer: browsers then send its forms with "Origin: null",
	// which formGenuine refuses.
	c.Header("Cache-Control", "no-store")
	c.Header("Referrer-Policy", "same-origin")
	c.Header("Content-Security-Policy", "default-src 'self'; base-uri 'none'; frame-ancestors 'none'")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("X-Frame-Options", "DENY")
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(status)
	if err := connectTemplates.ExecuteTemplate(c.Writer, name, v); err != nil {
		s.log.Error("render connect page", "request_id", requestIDOf(c), "page", name, "error", err.Error())
	}
	c.Abort()
}

func (s *Server) serveConnectCSS(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age=3600")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Data(http.StatusOK, "text/css; charset=utf-8", connectCSS)
}

// sessionError renders the page for a session the store refused.
func (s *Server) sessionError(c *gin.Context, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.renderConnect(c, http.StatusNotFound, "result", connectUnknown)
	case errors.Is(err, store.ErrSessionUsed):
		s.renderConnect(c, http.StatusGone, "result", connectUsed)
	case errors.Is(err, store.ErrSessionExpired):
		s.renderConnect(c, http.StatusGone, "result", connectExpired)
	default:
		s.connectFailed(c, "connect session", err)
	}
}

// connectFailed renders the page for a dependency that failed.
func (s *Server) connectFailed(c *gin.Context, op string, err error) {
	ae := s.classify(err)
	var own *apiError
	if errors.As(err, &own) {
		ae = own
	}
	s.log.Error("connect page failed", "request_id", requestIDOf(c), "op", op, "error", err.Error())
	status := http.StatusInternalServerError
	if ae.status == http.StatusServiceUnavailable {
		status = http.StatusServiceUnavailable
		c.Header("Retry-After", "5")
	}
	s.renderConnect(c, status, "result", connectUnavailable)
}

// validSessionToken accepts what newConnectSession makes, so that
// nothing else reaches a query.
func validSessionToken(t string) bool {
	if !strings.HasPrefix(t, connectTokenPrefix) || len(t) > maxSessionTokenLen || len(t) < len(connectTokenPrefix)+32 {
		return false
	}
	for i := len(connectTokenPrefix); i < len(t); i++ {
		b := t[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

// choices are the providers cs offers that the catalog still has and the
// page can connect, with the grant it uses for each; linkGrant is a
// reconnect's link's, which it keeps.
func (s *Server) choices(cs store.ConnectSession, token, linkGrant string) []connectChoice {
	var out []connectChoice
	for _, name := range cs.Providers {
		p, entry, ok := s.d.Providers.Get(name)
		if !ok {
			continue
		}
		grant := connectGrant(p, entry)
		if linkGrant != "" {
			grant = linkGrant
		}
		if grant == "" {
			continue
		}
		ch := connectChoice{Name: entry.Name, Grant: grant, Password: grant == providers.GrantPassword}
		if ch.Password {
			ch.Href = s.basePath() + ConnectPath + "?" + url.Values{"session": {token}, "provider": {entry.Name}}.Encode()
		}
		out = append(out, ch)
	}
	return out
}

// openSession loads a live session and what its page offers; when it
// cannot, it has answered the browser itself.
func (s *Server) openSession(ctx context.Context, c *gin.Context, token string) (store.ConnectSession, connectView, []connectChoice, bool) {
	sessions, err := s.sessions()
	if err != nil {
		s.connectFailed(c, "connect sessions", err)
		return store.ConnectSession{}, connectView{}, nil, false
	}
	cs, err := sessions.GetConnectSession(ctx, token, s.now())
	if err != nil {
		s.sessionError(c, err)
		return store.ConnectSession{}, connectView{}, nil, false
	}
	v, choices, err := s.sessionView(ctx, c, cs, token)
	if err != nil {
		s.commitRefused(c, err)
		return store.ConnectSession{}, connectView{}, nil, false
	}
	return cs, v, choices, true
}

// connectPage shows the providers a session offers, or the password form
// of one of them. Showing never spends the session.
func (s *Server) connectPage(c *gin.Context) {
	token := c.Query("session")
	if !validSessionToken(token) {
		s.renderConnect(c, http.StatusBadRequest, "result", connectBadLink)
		return
	}
	ctx := c.Request.Context()
	_, v, choices, ok := s.openSession(ctx, c, token)
	if !ok {
		return
	}
	if name := c.Query("provider"); name != "" || len(choices) == 1 && choices[0].Password {
		if name == "" {
			name = choices[0].Name
		}
		i := slices.IndexFunc(choices, func(ch connectChoice) bool { return ch.Name == name && ch.Password })
		if i < 0 {
			s.renderConnect(c, http.StatusBadRequest, "result", connectNotOffered)
			return
		}
		s.renderPassword(c, http.StatusOK, v, choices, name, "")
		return
	}
	s.renderConnect(c, http.StatusOK, "pick", v)
}

// sessionView is the page's view of cs, with a CSRF token for this
// browser.
func (s *Server) sessionView(ctx context.Context, c *gin.Context, cs store.ConnectSession, token string) (connectView, []connectChoice, error) {
	linkGrant := ""
	if cs.LinkID != "" {
		link, err := s.store.GetLink(ctx, cs.TenantID, cs.LinkID)
		if err != nil {
			return connectView{}, nil, err
		}
		linkGrant = link.GrantType
	}
	choices := s.choices(cs, token, linkGrant)
	if len(choices) == 0 {
		return connectView{}, nil, errConflict(CodeConflict, "no provider of the session is in the catalog")
	}
	csrf, err := s.csrfFor(c, token)
	if err != nil {
		return connectView{}, nil, err
	}
	v := connectView{Title: "Connect an account", Message: "Choose the service whose account you want to connect.",
		Verb: "Connect", Session: token, CSRF: csrf, Scopes: cs.Scopes, Providers: choices}
	if cs.LinkID != "" {
		v.Title, v.Verb = "Reconnect your "+choices[0].Name+" account", "Reconnect"
		v.Message = "The application needs you to approve its access to your " + choices[0].Name + " account again."
		if len(cs.Scopes) > 0 {
			v.Message = "The application asks for more access to your " + choices[0].Name + " account."
		}
	}
	return v, choices, nil
}

func (s *Server) renderPassword(c *gin.Context, status int, v connectView, choices []connectChoice, provider, problem string) {
	v.Provider, v.Error = provider, problem
	v.Title = v.Verb + " your " + provider + " account"
	v.Message = "Enter the username and password you use at " + provider + "."
	if len(choices) > 1 {
		v.Back = s.basePath() + ConnectPath + "?" + url.Values{"session": {v.Session}}.Encode()
	}
	s.renderConnect(c, status, "password", v)
}

// csrfFor returns the form token for the session token in this browser,
// setting the browser's random key (csrfCookie) if it has none. The token
// is an HMAC of the session's hash under that key: a form forged
// elsewhere has neither, and the key never leaves the browser's cookie
// (HttpOnly, SameSite=Lax).
func (s *Server) csrfFor(c *gin.Context, session string) (string, error) {
	key, err := c.Cookie(csrfCookie)
	if err != nil || !validCSRFKey(key) {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		key = base64.RawURLEncoding.EncodeToString(b[:])
		http.SetCookie(c.Writer, &http.Cookie{
			Name: csrfCookie, Value: key, Path: s.basePath() + ConnectPath,
			HttpOnly: true, Secure: strings.HasPrefix(s.cfg.PublicURL, "https://"), SameSite: http.SameSiteLaxMode,
		})
	}
	return csrfToken(key, session), nil
}

func validCSRFKey(k string) bool {
	b, err := base64.RawURLEncoding.DecodeString(k)
	return err == nil && len(b) == 32
}

func csrfToken(key, session string) string {
	sum := sha256.Sum256([]byte(session))
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("tokenwarden connect form\x00"))
	m.Write(sum[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// formGenuine checks that a submission comes from the connect page in
// this browser: the Origin a browser sends with a form is the gateway's,
// and the form's token matches the browser's key and the session.
func (s *Server) formGenuine(c *gin.Context, session string) bool {
	if o := c.GetHeader("Origin"); o != "" {
		got, ok1 := normalizeOrigin(o)
		want, ok2 := normalizeOrigin(s.cfg.PublicURL)
		if !ok1 || !ok2 || got != want {
			return false
		}
	}
	key, err := c.Cookie(csrfCookie)
	if err != nil || !validCSRFKey(key) {
		return false
	}
	return hmac.Equal([]byte(c.PostForm("csrf")), []byte(csrfToken(key, session)))
}

// connectSubmit commits the end-user's choice: it checks the whole
// submission, spends the session, then creates (or re-authorizes) the
// link and sends the browser on, to the provider's consent or to where
// the session lands.
func (s *Server) connectSubmit(c *gin.Context) {
	token := c.PostForm("session")
	if !validSessionToken(token) {
		s.renderConnect(c, http.StatusBadRequest, "result", connectBadLink)
		return
	}
	if !s.formGenuine(c, token) {
		s.renderConnect(c, http.StatusForbidden, "result", connectForged)
		return
	}
	ctx := c.Request.Context()
	cs, v, choices, ok := s.openSession(ctx, c, token)
	if !ok {
		return
	}
	name := c.PostForm("provider")
	i := slices.IndexFunc(choices, func(ch connectChoice) bool { return ch.Name == name })
	if i < 0 {
		s.renderConnect(c, http.StatusBadRequest, "result", connectNotOffered)
		return
	}
	choice := choices[i]
	var cred *credentials
	if choice.Password {
		// The credentials go to the link's grant in Vault and nowhere
		// else: a refused form is shown again empty, never echoed.
		cred = &credentials{Username: c.PostForm("username"), Password: c.PostForm("password")}
		if err := validCredentials(cred); err != nil {
			s.renderPassword(c, http.StatusBadRequest, v, choices, choice.Name, "Enter both your username and your password (at most 1000 characters each).")
			return
		}
	}
	commit, err := s.prepareCommit(ctx, cs, choice, cred)
	if err != nil {
		s.commitRefused(c, err)
		return
	}
	sessions, err := s.sessions()
	if err != nil {
		s.connectFailed(c, "connect sessions", err)
		return
	}
	if cs, err = sessions.ConsumeConnectSession(ctx, token, s.now()); err != nil {
		s.sessionError(c, err)
		return
	}
	linkID, authURL, after, err := commit(ctx)
	if err != nil {
		s.commitRefused(c, err)
		return
	}
	s.log.Info("connect session used", "request_id", requestIDOf(c), "tenant", cs.TenantID, "session", cs.ID,
		"provider", choice.Name, "grant", choice.Grant, "link", linkID, "reconnect", cs.LinkID != "")
	if authURL != "" {
		// See other: the browser follows with a GET to the consent page.
		c.Header("Cache-Control", "no-store")
		c.Header("Referrer-Policy", "no-referrer")
		c.Redirect(http.StatusSeeOther, authURL)
		return
	}
	s.land(c, cs, linkID, s.connectOutcome(ctx, cs.TenantID, linkID, after))
}

// commitFunc does what a submission committed to, once the session is
// spent: it reports the link, the consent URL to send the browser to
// (authorization_code) and, for a password link, the workflow sequence
// number its outcome must follow (-1: unknown).
type commitFunc func(ctx context.Context) (linkID, authURL string, after int64, err error)

// prepareCommit checks what can be checked before the session is spent
// and returns the step that follows.
func (s *Server) prepareCommit(ctx context.Context, cs store.ConnectSession, choice connectChoice, cred *credentials) (commitFunc, error) {
	if cs.LinkID != "" {
		// The link may have moved on since the session was made (another
		// reconnect, a revoke): say so before the session is spent.
		link, err := s.store.GetLink(ctx, cs.TenantID, cs.LinkID)
		if err != nil {
			return nil, storeError(err)
		}
		if e := reauthorizable(link, cs.Scopes); e != nil {
			return nil, e
		}
		req := reauthorizeRequest{Credentials: cred, Scopes: cs.Scopes}
		if choice.Grant == providers.GrantAuthorizationCode {
			req.ReturnURL = cs.ReturnURL
		}
		return func(ctx context.Context) (string, string, int64, error) {
			after := int64(-1)
			if st, err := s.queryState(ctx, store.Link{TenantID: cs.TenantID, ID: cs.LinkID}); err == nil {
				after = st.Seq
			}
			res, _, err := s.reauthorize(ctx, cs.TenantID, cs.LinkID, req)
			return cs.LinkID, res.AuthorizationURL, after, err
		}, nil
	}
	req := &createLinkRequest{Provider: choice.Name, UserID: cs.UserID, Grant: choice.Grant, Scopes: cs.Scopes, Credentials: cred}
	if choice.Grant == providers.GrantAuthorizationCode {
		req.ReturnURL = cs.ReturnURL
	}
	p, entry, err := s.validate(req)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) (string, string, int64, error) {
		resp, _, err := s.createValidLink(ctx, cs.TenantID, req, p, entry, "")
		return resp.ID, resp.AuthorizationURL, 0, err
	}, nil
}

// commitRefused renders the page for a link that could not be created or
// re-authorized: the API's message for a request the gateway refused
// (it names no secret), the unavailable page for a dependency.
func (s *Server) commitRefused(c *gin.Context, err error) {
	var ae *apiError
	if !errors.As(err, &ae) || ae.status >= 500 {
		s.connectFailed(c, "connect", err)
		return
	}
	s.renderConnect(c, ae.status, "result", connectView{Title: "Could not connect",
		Message: "The connection could not be started. Go back to the application and start again, or tell it what happened:",
		Detail:  ae.msg})
}

// connectOutcome waits, bounded by connectWait, for a password link's
// answer from the provider: "connected" (active), "failed" (refused, or
// still needing re-authorization after a transition past after), or
// "pending" when the provider has not answered yet.
func (s *Server) connectOutcome(ctx context.Context, tenant, linkID string, after int64) string {
	ctx, cancel := context.WithTimeout(ctx, connectWait)
	defer cancel()
	link := store.Link{TenantID: tenant, ID: linkID}
	for {
		if st, err := s.queryState(ctx, link); err == nil && st.Seq > after {
			switch {
			case st.Status == workflows.StatusActive:
				return "connected"
			case after >= 0 && (st.Status == workflows.StatusFailed || st.Status == workflows.StatusReauthRequired):
				return "failed"
			}
		}
		select {
		case <-ctx.Done():
			return "pending"
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// land ends a password submission: the browser goes to the session's
// return URL with link_id and status, or sees the outcome here.
func (s *Server) land(c *gin.Context, cs store.ConnectSession, linkID, status string) {
	if cs.ReturnURL != "" {
		if u, err := url.Parse(cs.ReturnURL); err == nil {
			q := u.Query()
			q.Set("link_id", linkID)
			q.Set("status", status)
			u.RawQuery = q.Encode()
			c.Header("Cache-Control", "no-store")
			c.Header("Referrer-Policy", "no-referrer")
			c.Redirect(http.StatusSeeOther, u.String())
			return
		}
	}
	v := connectView{Title: "Connected", Message: "Your account is connected. You can close this window."}
	switch status {
	case "failed":
		v = connectView{Title: "Not connected",
			Message: "The service did not accept these credentials, so the account was not connected. Go back to the application and start again."}
	case "pending":
		v = connectView{Title: "Almost done",
			Message: "The service has not answered yet. The application will see the connection as soon as it does; you can close this window."}
	}
	s.renderConnect(c, http.StatusOK, "result", v)
}
