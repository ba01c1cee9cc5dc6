package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
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

// Connect sessions let a backend hand the whole "connect your account"
// step to the gateway: POST /v1/connect/sessions makes a short-lived,
// single-use session bound to the tenant, an end-user and the providers
// offered, and answers with a connect_url for the end-user's browser. The
// page there (connect_page.go) lets the end-user pick a provider and
// either passes them through its consent or takes the credentials a
// password provider needs, creating the link (or, for a session naming
// a link, re-authorizing it) through the same paths as the API.

const (
	// ConnectPath is the connect page, relative to PublicURL.
	ConnectPath = "/connect"
	// DefaultConnectSessionTTL is how long a session stays usable unless
	// the request says otherwise (expires_in).
	DefaultConnectSessionTTL = 15 * time.Minute
	minConnectSessionTTL     = time.Minute
	maxConnectSessionTTL     = time.Hour
	// connectTokenPrefix marks session tokens, so that one pasted in the
	// wrong place is recognised.
	connectTokenPrefix = "cst_"
	// maxConnectProviders bounds the providers one session may offer.
	maxConnectProviders = 50
)

// connectSessions is what connect sessions need of the store;
// *store.Store has it (a store without it has no connect page).
type connectSessions interface {
	CreateConnectSession(ctx context.Context, token string, cs store.ConnectSession) (store.ConnectSession, error)
	GetConnectSession(ctx context.Context, token string, now time.Time) (store.ConnectSession, error)
	ConsumeConnectSession(ctx context.Context, token string, now time.Time) (store.ConnectSession, error)
}

// connectSessionRequest is the body of POST /v1/connect/sessions.
type connectSessionRequest struct {
	UserID    string   `json:"user_id"`
	Providers []string `json:"providers"`
	ReturnURL string   `json:"return_url"`
	LinkID    string   `json:"link_id"`
	Scopes    []string `json:"scopes"`
	// ExpiresIn is the session's lifetime in seconds; 0 means
	// DefaultConnectSessionTTL.
	ExpiresIn int `json:"expires_in"`
}

// connectSessionResponse is the answer of POST /v1/connect/sessions. Token
// is shown once; only its hash is stored.
type connectSessionResponse struct {
	ID         string    `json:"id"`
	Token      string    `json:"token"`
	ConnectURL string    `json:"connect_url"`
	ExpiresAt  time.Time `json:"expires_at"`
	UserID     string    `json:"user_id"`
	Providers  []string  `json:"providers"`
	LinkID     string    `json:"link_id,omitempty"`
	Scopes     []string  `json:"scopes"`
	ReturnURL  string    `json:"return_url,omitempty"`
}

// sessions returns the store's connect sessions, or the answer for a
// gateway running without them.
func (s *Server) sessions() (connectSessions, error) {
	cs, ok := s.store.(connectSessions)
	if !ok || cs == nil {
		return nil, errUnavailable("the connect session store", nil)
	}
	return cs, nil
}

func (s *Server) createConnectSession(c *gin.Context) {
	var req connectSessionRequest
	if err := s.decodeJSON(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	cs, ttl, err := s.validConnectSession(ctx, tenantOf(c), &req)
	if err != nil {
		s.fail(c, err)
		return
	}
	resp, err := s.newConnectSession(ctx, cs, ttl)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, resp)
}

// validConnectSession checks a session request against the catalog and,
// for a reconnect, the link, before anything is stored.
func (s *Server) validConnectSession(ctx context.Context, tenant string, req *connectSessionRequest) (store.ConnectSession, time.Duration, error) {
	ttl := DefaultConnectSessionTTL
	if req.ExpiresIn != 0 {
		ttl = time.Duration(req.ExpiresIn) * time.Second
		if ttl < minConnectSessionTTL || ttl > maxConnectSessionTTL {
			return store.ConnectSession{}, 0, errBadRequest(fmt.Sprintf(`"expires_in" must be from %d to %d seconds`,
				int(minConnectSessionTTL/time.Second), int(maxConnectSessionTTL/time.Second)))
		}
	}
	if req.ReturnURL != "" {
		if err := s.validReturnURL(req.ReturnURL); err != nil {
			return store.ConnectSession{}, 0, err
		}
	}
	if err := validScopes(req.Scopes); err != nil {
		return store.ConnectSession{}, 0, err
	}
	cs := store.ConnectSession{TenantID: tenant, UserID: req.UserID, ReturnURL: req.ReturnURL, Scopes: dedupe(req.Scopes)}
	if req.LinkID != "" {
		return s.validReconnect(ctx, cs, req, ttl)
	}
	if err := validUserID(req.UserID); err != nil {
		return store.ConnectSession{}, 0, err
	}
	if len(req.Providers) > maxConnectProviders {
		return store.ConnectSession{}, 0, errBadRequest(fmt.Sprintf(`"providers" has more than %d entries`, maxConnectProviders))
	}
	for _, name := range dedupe(req.Providers) {
		p, entry, ok := s.d.Providers.Get(name)
		if !ok {
			return store.ConnectSession{}, 0, newError(http.StatusBadRequest, CodeUnknownProvider,
				fmt.Sprintf("unknown provider %s", quoteShort(name)))
		}
		if connectGrant(p, entry) == "" {
			return store.ConnectSession{}, 0, newError(http.StatusBadRequest, CodeUnsupportedGrant,
				fmt.Sprintf("provider %q offers neither a consent page (authorization_code) nor the password grant, so the connect page cannot connect it", entry.Name))
		}
		cs.Providers = append(cs.Providers, entry.Name)
	}
	if len(cs.Providers) == 0 {
		for _, e := range s.d.Providers.Entries() {
			if p, entry, ok := s.d.Providers.Get(e.Name); ok && connectGrant(p, entry) != "" {
				cs.Providers = append(cs.Providers, entry.Name)
			}
		}
		if len(cs.Providers) == 0 {
			return store.ConnectSession{}, 0, errBadRequest("the catalog has no provider the connect page can offer (none has the authorization_code or password grant)")
		}
	}
	return cs, ttl, nil
}

// validReconnect completes cs for a session that re-authorizes a link.
func (s *Server) validReconnect(ctx context.Context, cs store.ConnectSession, req *connectSessionRequest, ttl time.Duration) (store.ConnectSession, time.Duration, error) {
	if !validLinkID(req.LinkID) {
		return store.ConnectSession{}, 0, errLinkNotFound()
	}
	link, err := s.store.GetLink(ctx, cs.TenantID, req.LinkID)
	if err != nil {
		return store.ConnectSession{}, 0, storeError(err)
	}
	if req.UserID != "" && req.UserID != link.UserID {
		return store.ConnectSession{}, 0, errBadRequest(`"user_id" must be the link's (or left out) for a reconnect`)
	}
	if len(req.Providers) > 1 || len(req.Providers) == 1 && req.Providers[0] != link.Provider {
		return store.ConnectSession{}, 0, errBadRequest(`"providers" must be the link's provider (or left out) for a reconnect`)
	}
	if err := reauthorizable(link, cs.Scopes); err != nil {
		return store.ConnectSession{}, 0, err
	}
	p, entry, ok := s.d.Providers.Get(link.Provider)
	if !ok {
		return store.ConnectSession{}, 0, errConflict(CodeConflict,
			fmt.Sprintf("provider %q of this link is no longer in the catalog", link.Provider))
	}
	_, consent := p.(providers.Authorizer)
	switch {
	case link.GrantType == providers.GrantAuthorizationCode && consent && entry.HasGrant(link.GrantType):
	case link.GrantType == providers.GrantPassword && entry.HasGrant(link.GrantType):
	default:
		return store.ConnectSession{}, 0, newError(http.StatusBadRequest, CodeUnsupportedGrant,
			fmt.Sprintf("the connect page cannot re-authorize a %s link of provider %q: use POST /v1/links/{id}/reauthorize", link.GrantType, entry.Name))
	}
	cs.UserID, cs.LinkID, cs.Providers = link.UserID, link.ID, []string{link.Provider}
	return cs, ttl, nil
}

// newConnectSession stores cs with a fresh token, valid for ttl.
func (s *Server) newConnectSession(ctx context.Context, cs store.ConnectSession, ttl time.Duration) (connectSessionResponse, error) {
	sessions, err := s.sessions()
	if err != nil {
		return connectSessionResponse{}, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return connectSessionResponse{}, fmt.Errorf("connect session token: %w", err)
	}
	token := connectTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	cs.ExpiresAt = s.now().Add(ttl).UTC().Truncate(time.Second)
	stored, err := sessions.CreateConnectSession(ctx, token, cs)
	if err != nil {
		return connectSessionResponse{}, storeError(err)
	}
	return connectSessionResponse{
		ID: stored.ID, Token: token, ConnectURL: s.connectURL(token), ExpiresAt: stored.ExpiresAt,
		UserID: stored.UserID, Providers: stored.Providers, LinkID: stored.LinkID, Scopes: stored.Scopes,
		ReturnURL: stored.ReturnURL,
	}, nil
}

func (s *Server) connectURL(token string) string {
	return s.cfg.PublicURL + ConnectPath + "?" + url.Values{"session": {token}}.Encode()
}

// connectGrant is the grant the connect page uses for a provider: its
// consent page where it has one, else the password form; "" for a
// provider the page cannot connect (client credentials, device flow and
// kinds of their own need no browser or another one).
func connectGrant(p providers.Provider, e providers.Entry) string {
	if _, ok := p.(providers.Authorizer); ok && e.HasGrant(providers.GrantAuthorizationCode) {
		return providers.GrantAuthorizationCode
	}
	if e.HasGrant(providers.GrantPassword) {
		return providers.GrantPassword
	}
	return ""
}

// reauthorizable says why link cannot be re-authorized now, nil if it
// can: a link that lost its grant always can, and a live one can take
// additional scopes (incremental consent), keeping its current token
// until the new grant replaces it.
func reauthorizable(link store.Link, scopes []string) *apiError {
	switch workflows.Status(link.Status) {
	case workflows.StatusReauthRequired:
		return nil
	case workflows.StatusActive, workflows.StatusDegraded, workflows.StatusRefreshing:
		if len(scopes) > 0 {
			return nil
		}
		return errConflict(CodeConflict, fmt.Sprintf(
			"the link is %s; only links in reauth_required can be re-authorized, or live ones given additional \"scopes\"", link.Status))
	}
	if e := statusError(link.Status, ""); e != nil {
		e.msg += "; only links in reauth_required can be re-authorized"
		return e
	}
	return errConflict(CodeConflict, fmt.Sprintf("the link is %s; only links in reauth_required can be re-authorized", link.Status))
}

// grantScopes is what a re-authorization asks the provider for: the
// scopes the link asked for before (the provider's defaults when it named
// none, as the provider then used those), with the additional ones added.
// Without additional scopes it is the earlier request, unchanged.
func grantScopes(before, more []string, entry providers.Entry) ([]string, error) {
	if len(more) == 0 {
		return before, nil
	}
	base := before
	if len(base) == 0 {
		base = entry.Scopes
	}
	union := dedupe(append(slices.Clone(base), more...))
	if len(union) > maxScopes {
		return nil, errBadRequest(fmt.Sprintf("the link's scopes and the additional ones come to more than %d", maxScopes))
	}
	return union, nil
}

// dedupe drops repeated entries, keeping the first of each.
func dedupe(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range in {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// scopeQuery reads a token read's ?scopes= (comma- or space-separated)
// and ?connect=.
func scopeQuery(c *gin.Context) (scopes []string, connect bool, err error) {
	raw, ok := c.GetQuery("scopes")
	if !ok {
		if _, asked := c.GetQuery("connect"); asked {
			return nil, false, errBadRequest(`"connect" goes with "scopes"`)
		}
		return nil, false, nil
	}
	scopes = dedupe(strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || r == ' ' }))
	if len(scopes) == 0 {
		return nil, false, errBadRequest(`"scopes" names no scope`)
	}
	if err := validScopes(scopes); err != nil {
		return nil, false, err
	}
	connect, err = flagQuery(c, "connect")
	return scopes, connect, err
}

// missingScopes are those of want that have does not hold.
func missingScopes(want, have []string) []string {
	var out []string
	for _, sc := range want {
		if !slices.Contains(have, sc) {
			out = append(out, sc)
		}
	}
	return out
}

// checkScopes answers a token read that asked for scopes the link's token
// lacks. It looks only at the scopes stored with the token the read has
// already fetched; the rare answer with a connect URL costs a PostgreSQL
// read and write.
func (s *Server) checkScopes(ctx context.Context, tenant, id string, want, have []string, connect bool) error {
	missing := missingScopes(want, have)
	if len(missing) == 0 {
		return nil
	}
	e := errConflict(CodeInsufficientScope, fmt.Sprintf(
		"the link's token lacks scope %s; add it with POST /v1/links/{id}/reauthorize {\"scopes\": [...]} (the end-user consents again, the link keeps its id), or ask with connect=1 for a connect_url to send the end-user to",
		strings.Join(missing, ", ")))
	e.missingScopes = missing
	if !connect {
		return e
	}
	link, err := s.store.GetLink(ctx, tenant, id)
	if err != nil {
		return storeError(err)
	}
	cs, ttl, err := s.validConnectSession(ctx, tenant, &connectSessionRequest{LinkID: id, Scopes: missing})
	var ae *apiError
	if errors.As(err, &ae) && ae.status < 500 {
		// Not a link the connect page can re-authorize (client
		// credentials, say): the API is the way.
		e.msg = fmt.Sprintf("the link's token lacks scope %s; a %s link takes them through POST /v1/links/{id}/reauthorize {\"scopes\": [...]}",
			strings.Join(missing, ", "), link.GrantType)
		return e
	}
	if err != nil {
		return err
	}
	resp, err := s.newConnectSession(ctx, cs, ttl)
	if err != nil {
		return err
	}
	e.connectURL = resp.ConnectURL
	e.msg = fmt.Sprintf("the link's token lacks scope %s; send the end-user to connect_url (single use, until %s) or use POST /v1/links/{id}/reauthorize {\"scopes\": [...]}",
		strings.Join(missing, ", "), resp.ExpiresAt.Format(time.RFC3339))
	return e
}
