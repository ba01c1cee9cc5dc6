package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// Limits on what the callback copies from its query into a signal and a
// page: the provider's error fields are short by spec.
const (
	maxErrorCodeLen = 100
	maxErrorDescLen = 300
	maxCodeLen      = 4096
	maxStateLen     = 512
)

// page is one HTML answer of the callback. Every field is escaped by
// html/template.
type page struct {
	Title   string
	Message string
	Detail  string
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · Tokenwarden</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}p.detail{color:#666;font-size:.9rem}</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{if .Detail}}<p class="detail">{{.Detail}}</p>{{end}}
</body>
</html>
`))

// Pages of the callback. They say what happened and what the end-user
// can do, in words for a person who just clicked "Allow".
var (
	pageMissingState = page{Title: "Invalid sign-in link",
		Message: "This page was opened without the parameters the provider sends back. Start the connection again from the application."}
	pageUnknownState = page{Title: "Unknown sign-in link",
		Message: "This sign-in link is not one we issued, or it was already cleaned up. Start the connection again from the application."}
	pageUsedState = page{Title: "Sign-in link already used",
		Message: "This sign-in link was already used. If the connection did not work, start it again from the application."}
	pageExpiredState = page{Title: "Sign-in link expired",
		Message: "This sign-in link expired before you finished. Start the connection again from the application."}
	pageMissingCode = page{Title: "Sign-in incomplete",
		Message: "The provider sent you back without an authorization code. Start the connection again from the application."}
	pageOtherBrowser = page{Title: "Sign-in started elsewhere",
		Message: "This sign-in was started in another browser (or this browser's cookies were blocked or cleared). Finish it in the browser where you started, or start the connection again from the application."}
	pageStarted = page{Title: "Sign-in link already opened",
		Message: "This sign-in link was already opened. Continue in the window where it was first opened, or start the connection again from the application."}
	pageLinkGone = page{Title: "Connection no longer waiting",
		Message: "This connection is no longer waiting for your approval (it expired or was cancelled). Start it again from the application."}
	pageUnavailable = page{Title: "Temporarily unavailable",
		Message: "We could not finish connecting your account right now. Please try again in a minute."}
	pageConnected = page{Title: "Connected",
		Message: "Your account is connected. You can close this window."}
)

func (s *Server) renderPage(c *gin.Context, status int, p page) {
	// The URL of this page carries an authorization code: keep it out of
	// caches and out of Referer headers of anything the page loads.
	c.Header("Cache-Control", "no-store")
	c.Header("Referrer-Policy", "no-referrer")
	c.Header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("X-Frame-Options", "DENY")
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(status)
	if err := pageTemplate.Execute(c.Writer, p); err != nil {
		s.log.Error("render callback page", "request_id", requestIDOf(c), "error", err.Error())
	}
	c.Abort()
}

// StartPath is the gateway page that authorization_url points to for
// providers with redirect_state: path: GET StartPath/<state> binds the
// flow to the browser with a cookie and redirects to the provider.
const StartPath = "/v1/oauth/start"

// bindingCookie is the cookie that binds a path-state flow to the browser
// that opened its start page. It is scoped to that flow's callback path,
// so that flows in one browser do not share it.
const bindingCookie = "tw_oauth_binding"

// boundStates is what path-state flows need from the store (*store.Store
// has it; a store without it serves query-state flows only).
type boundStates interface {
	StartOAuthState(ctx context.Context, state, binding string, now time.Time) (store.OAuthState, error)
	ConsumeBoundOAuthState(ctx context.Context, state, binding string, now time.Time) (store.OAuthState, error)
}

// stateErrorPage is the page for a state the store refused.
func stateErrorPage(err error) (page, bool) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return pageUnknownState, true
	case errors.Is(err, store.ErrStateUsed):
		return pageUsedState, true
	case errors.Is(err, store.ErrStateExpired):
		return pageExpiredState, true
	case errors.Is(err, store.ErrStateStarted):
		return pageStarted, true
	case errors.Is(err, store.ErrStateBrowser):
		return pageOtherBrowser, true
	}
	return page{}, false
}

// callbackCookiePath is the path of state's callback as the browser
// sees it (PublicURL may carry a path prefix): the binding cookie goes
// there and nowhere else.
func (s *Server) callbackCookiePath(state string) string {
	p := CallbackPath
	if u, err := url.Parse(s.callback); err == nil && u.Path != "" {
		p = u.Path
	}
	return p + "/" + state
}

// oauthStart is the authorization URL of a path-state flow: it binds
// the flow to this browser (once per state: whoever opens it first) and
// sends the browser on to the provider. The callback then wants the
// cookie as well as the state in its path, so a consent URL forwarded to
// another person's browser cannot complete the link.
func (s *Server) oauthStart(c *gin.Context) {
	ctx := c.Request.Context()
	state := c.Param("state")
	bs, ok := s.store.(boundStates)
	if state == "" || len(state) > maxStateLen || !ok {
		s.renderPage(c, http.StatusBadRequest, pageMissingState)
		return
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		s.callbackFailed(c, "browser binding", err)
		return
	}
	binding := base64.RawURLEncoding.EncodeToString(b[:])
	st, err := bs.StartOAuthState(ctx, state, binding, s.now())
	if err != nil {
		if p, ok := stateErrorPage(err); ok {
			s.renderPage(c, http.StatusBadRequest, p)
			return
		}
		s.callbackFailed(c, "start oauth state", err)
		return
	}
	maxAge := max(int(st.ExpiresAt.Sub(s.now())/time.Second), 1)
	http.SetCookie(c.Writer, &http.Cookie{
		Name: bindingCookie, Value: binding, Path: s.callbackCookiePath(state), MaxAge: maxAge,
		HttpOnly: true, Secure: strings.HasPrefix(s.callback, "https://"),
		// Lax: sent on the provider's top-level redirect back, not on
		// cross-site subrequests.
		SameSite: http.SameSiteLaxMode,
	})
	c.Header("Cache-Control", "no-store")
	c.Header("Referrer-Policy", "no-referrer")
	c.Redirect(http.StatusFound, strings.ReplaceAll(st.AuthURL, statePlaceholder, state))
}

// oauthCallback is where the provider sends the end-user's browser after
// consent. The state (in the query, or in the path for redirect_state:
// path, where the browser's binding cookie must come along) is
// single-use and expires; the code goes to Vault and the workflow is told
// to look there. The whole request is checked before the state is
// spent, so that a malformed request cannot burn a sign-in.
func (s *Server) oauthCallback(c *gin.Context) {
	ctx := c.Request.Context()
	q := c.Request.URL.Query()
	state, bound := q.Get("state"), false
	if p := c.Param("state"); p != "" {
		state, bound = p, true
	}
	if state == "" || len(state) > maxStateLen {
		s.renderPage(c, http.StatusBadRequest, pageMissingState)
		return
	}
	oauthErr, code := q.Get("error"), q.Get("code")
	if oauthErr == "" && (code == "" || len(code) > maxCodeLen) {
		s.renderPage(c, http.StatusBadRequest, pageMissingCode)
		return
	}
	var (
		st  store.OAuthState
		err error
	)
	if bound {
		binding, cerr := c.Cookie(bindingCookie)
		bs, ok := s.store.(boundStates)
		if cerr != nil || binding == "" || len(binding) > maxStateLen || !ok {
			s.renderPage(c, http.StatusBadRequest, pageOtherBrowser)
			return
		}
		st, err = bs.ConsumeBoundOAuthState(ctx, state, binding, s.now())
	} else {
		st, err = s.store.ConsumeOAuthState(ctx, state, s.now())
	}
	if err != nil {
		if p, ok := stateErrorPage(err); ok {
			s.renderPage(c, http.StatusBadRequest, p)
			return
		}
		s.callbackFailed(c, "consume oauth state", err)
		return
	}
	if bound {
		// The binding is spent with the state.
		http.SetCookie(c.Writer, &http.Cookie{Name: bindingCookie, Path: s.callbackCookiePath(state), MaxAge: -1,
			HttpOnly: true, Secure: strings.HasPrefix(s.callback, "https://"), SameSite: http.SameSiteLaxMode})
	}
	wfID := workflows.WorkflowID(st.TenantID, st.LinkID)

	if oauthErr != "" {
		denied := workflows.DeniedRequest{Error: providerText(oauthErr, maxErrorCodeLen), Description: providerText(q.Get("error_description"), maxErrorDescLen)}
		if err := s.d.Temporal.SignalWorkflow(ctx, wfID, "", workflows.SignalDenied, denied); err != nil && !gone(err) {
			s.callbackFailed(c, "signal denied", err)
			return
		}
		s.log.Info("authorization denied", "request_id", requestIDOf(c), "tenant", st.TenantID, "link", st.LinkID, "oauth_error", denied.Error)
		s.renderPage(c, http.StatusBadRequest, page{
			Title:   "Connection not authorized",
			Message: "The provider reported that access was not granted, so the connection was not made.",
			Detail:  "Provider error: " + denied.Error + describe(denied.Description),
		})
		return
	}

	// A path-state flow's redirect URI names its state: the token request
	// repeats exactly that one.
	redirect := ""
	if bound {
		redirect = s.callback + "/" + state
	}
	if err := s.storeCode(ctx, st.TenantID, st.LinkID, code, redirect, st.Nonce); err != nil {
		if errors.Is(err, secrets.ErrNotFound) {
			s.renderPage(c, http.StatusBadRequest, pageLinkGone)
			return
		}
		s.callbackFailed(c, "store authorization code", err)
		return
	}
	if err := s.d.Temporal.SignalWorkflow(ctx, wfID, "", workflows.SignalAuthorized, nil); err != nil {
		if gone(err) {
			s.renderPage(c, http.StatusBadRequest, pageLinkGone)
			return
		}
		s.callbackFailed(c, "signal authorized", err)
		return
	}
	if st.ReturnURL != "" {
		if u, err := url.Parse(st.ReturnURL); err == nil {
			v := u.Query()
			v.Set("link_id", st.LinkID)
			v.Set("status", "connected")
			u.RawQuery = v.Encode()
			c.Header("Cache-Control", "no-store")
			c.Header("Referrer-Policy", "no-referrer")
			c.Redirect(http.StatusFound, u.String())
			return
		}
	}
	s.renderPage(c, http.StatusOK, pageConnected)
}

// storeCode completes the link's grant with the code (and, when not
// empty, the redirect URI it was issued for) and the nonce of the state it
// came back with (empty for providers without ID tokens, which replaces
// any nonce of an earlier sign-in). The gateway's Vault identity cannot
// read the worker's whole grant, so the grant is rebuilt from the request
// part the gateway wrote itself (an authorization-code grant holds no
// other credential) and written whole. A re-authorization racing a late
// callback is no hazard: each writes a verifier together with its own
// code or none, never one flow's code with another's verifier.
func (s *Server) storeCode(ctx context.Context, tenant, link, code, redirect, nonce string) error {
	cur, err := s.secrets.ReadGrantRequest(ctx, tenant, link)
	if err != nil {
		return err
	}
	grant := cur.Value
	grant.Code, grant.Nonce = code, nonce
	if redirect != "" {
		grant.RedirectURL = redirect
	}
	_, err = s.secrets.WriteGrant(ctx, tenant, link, grant, -1)
	return err
}

func (s *Server) callbackFailed(c *gin.Context, op string, err error) {
	// err never holds the code: the secrets store names paths, not values.
	s.log.Error("oauth callback failed", "request_id", requestIDOf(c), "op", op, "error", err.Error())
	status := http.StatusInternalServerError
	if ae := s.classify(err); ae.status == http.StatusServiceUnavailable {
		status = http.StatusServiceUnavailable
		c.Header("Retry-After", "5")
	}
	s.renderPage(c, status, pageUnavailable)
}

func describe(d string) string {
	if d == "" {
		return ""
	}
	return " (" + d + ")"
}

// cut bounds a caller-supplied string, dropping a rune split at the end.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
