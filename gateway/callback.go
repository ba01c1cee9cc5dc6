package gateway

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"

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
	// grantWriteAttempts bounds check-and-set retries on the grant.
	grantWriteAttempts = 3
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

// oauthCallback is where the provider sends the end-user's browser after
// consent. The state is single-use and expires; the code goes to Vault
// and the workflow is told to look there.
func (s *Server) oauthCallback(c *gin.Context) {
	ctx := c.Request.Context()
	q := c.Request.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > maxStateLen {
		s.renderPage(c, http.StatusBadRequest, pageMissingState)
		return
	}
	st, err := s.store.ConsumeOAuthState(ctx, state, s.now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.renderPage(c, http.StatusBadRequest, pageUnknownState)
		return
	case errors.Is(err, store.ErrStateUsed):
		s.renderPage(c, http.StatusBadRequest, pageUsedState)
		return
	case errors.Is(err, store.ErrStateExpired):
		s.renderPage(c, http.StatusBadRequest, pageExpiredState)
		return
	case err != nil:
		s.callbackFailed(c, "consume oauth state", err)
		return
	}
	wfID := workflows.WorkflowID(st.TenantID, st.LinkID)

	if e := q.Get("error"); e != "" {
		denied := workflows.DeniedRequest{Error: cut(e, maxErrorCodeLen), Description: cut(q.Get("error_description"), maxErrorDescLen)}
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

	code := q.Get("code")
	if code == "" || len(code) > maxCodeLen {
		s.renderPage(c, http.StatusBadRequest, pageMissingCode)
		return
	}
	if err := s.storeCode(ctx, st.TenantID, st.LinkID, code); err != nil {
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

// storeCode puts the code into the link's grant, with check-and-set so a
// concurrent writer (a re-authorization) is not overwritten blindly.
func (s *Server) storeCode(ctx context.Context, tenant, link, code string) error {
	var err error
	for range grantWriteAttempts {
		cur, rerr := s.secrets.ReadGrant(ctx, tenant, link)
		if rerr != nil {
			return rerr
		}
		grant := cur.Value
		grant.Code = code
		if _, err = s.secrets.WriteGrant(ctx, tenant, link, grant, cur.Version); err == nil {
			return nil
		}
		if !errors.Is(err, secrets.ErrVersionConflict) {
			return err
		}
	}
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
