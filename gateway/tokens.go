package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// maxMinTTL bounds ?min_ttl: nobody needs a token valid for more than a
// day, and providers rarely issue one.
const maxMinTTL = 86400

type tokenResponse struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	Scopes      []string  `json:"scopes"`
}

// getToken is the hot path: one Vault read when the stored token is fresh
// enough, which it nearly always is, since the workflow refreshes ahead of
// expiry. Only when it is not does the request wait for the link's
// workflow to refresh, the one refresher, so concurrent readers share a
// single provider call.
func (s *Server) getToken(c *gin.Context) {
	id, ok := s.linkID(c)
	if !ok {
		return
	}
	var minTTL time.Duration
	if raw, ok := c.GetQuery("min_ttl"); ok {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 || n > maxMinTTL {
			s.fail(c, errBadRequest(fmt.Sprintf(`"min_ttl" must be an integer number of seconds from 0 to %d`, maxMinTTL)))
			return
		}
		minTTL = time.Duration(n) * time.Second
	}
	wantScopes, connect, err := scopeQuery(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	tenant := tenantOf(c)

	tok, err := s.readAccess(ctx, tenant, id)
	if err != nil {
		s.fail(c, s.missingToken(ctx, tenant, id, err))
		return
	}
	// A link the workflow has suspended, failed or revoked never serves
	// its token, even when the write that wipes it from Vault has not
	// happened (yet): a map lookup, no extra read.
	if err := s.linkStatus.refusal(ctx, tenant, id); err != nil {
		s.fail(c, err)
		return
	}
	// Scopes asked for are checked against those stored with the token
	// just read: no further read unless the answer is a connect URL.
	if err := s.checkScopes(ctx, tenant, id, wantScopes, tok.Value.Scopes, connect); err != nil {
		s.fail(c, err)
		return
	}
	now := s.now()
	need := s.need(tok.Value, minTTL)
	if !fresh(tok.Value, now, need) {
		if err := s.syncRefresh(ctx, tenant, id, now.Add(need), tok.Version); err != nil {
			// A degraded link (the provider failing, or asking us to slow
			// down) still has a valid token: better a token that lives a
			// little less than asked than none. Re-authorization, revoke
			// and other answers about the link itself stand.
			var ae *apiError
			if errors.As(err, &ae) && (ae.code == CodeRefreshFailed || ae.code == CodeUnavailable) &&
				fresh(tok.Value, s.now(), 0) {
				s.serveToken(c, tenant, id, tok.Value, s.now(), minTTL)
				return
			}
			s.fail(c, err)
			return
		}
		if tok, err = s.readAccessFromVault(ctx, tenant, id); err != nil {
			s.fail(c, s.missingToken(ctx, tenant, id, err))
			return
		}
		now = s.now()
		// A provider may issue tokens shorter than asked for; such a
		// token is still served, one within minTokenLife of its expiry
		// never.
		if !fresh(tok.Value, now, 0) {
			s.fail(c, &apiError{status: http.StatusServiceUnavailable, code: CodeRefreshFailed,
				msg: "the refreshed token is already expired; retry later", retryAfter: retryAfterSeconds})
			return
		}
	}
	s.serveToken(c, tenant, id, tok.Value, now, minTTL)
}

// minTokenLife is the floor of fresh and need: the gateway never serves a
// token with less than this left by its stored expiry. The engine stores
// a conservative expiry (counted from when the token request was sent,
// less a second for providers that round to whole seconds), and the
// floor covers what remains: clock skew between the gateway and the
// provider, and the caller's own round trip before it uses the token.
const minTokenLife = time.Second

// need is how long a served token must stay valid: the caller's min_ttl,
// and at least the gateway's margin, never less than minTokenLife. The
// margin and min_ttl are capped by what the provider's tokens can give: the margin at a tenth of the lifetime (so
// the workflow, which refreshes earlier, stays the one that refreshes) and
// min_ttl at half of it (a 5-second token can never satisfy a 60-second
// min_ttl; asking for it would turn every read into a provider call).
func (s *Server) need(t providers.Token, minTTL time.Duration) time.Duration {
	margin := s.cfg.TokenMargin
	if !t.IssuedAt.IsZero() && t.Expiry.After(t.IssuedAt) {
		lifetime := t.Expiry.Sub(t.IssuedAt)
		margin = min(margin, lifetime/10)
		minTTL = min(minTTL, lifetime/2)
	}
	return max(margin, minTTL, minTokenLife)
}

// fresh reports whether t is valid for at least need (never less than
// minTokenLife) from now. A token without a known expiry is taken as
// valid: the workflow refreshes it on its default lifetime.
func fresh(t providers.Token, now time.Time, need time.Duration) bool {
	need = max(need, minTokenLife)
	return t.AccessToken != "" && (t.Expiry.IsZero() || t.Expiry.After(now.Add(need)))
}

// HeaderMinTTLCapped is set on a token answer that cannot honour the
// caller's min_ttl: the token served expires sooner. Its value is the
// whole seconds the token stays valid. It happens when the provider's
// tokens live less than twice min_ttl (the gateway refreshes for at most
// half a token's lifetime: a fresh token could not satisfy more either,
// and every read would become a provider call), and when the provider is
// failing and the current token is served while it lasts.
const HeaderMinTTLCapped = "Tokenwarden-Min-Ttl-Capped"

// serveToken answers with t. minTTL is what the caller asked for (0:
// nothing); a token that falls short of it says so in
// HeaderMinTTLCapped rather than pass for one that does.
func (s *Server) serveToken(c *gin.Context, tenant, id string, t providers.Token, now time.Time, minTTL time.Duration) {
	tokenType := t.TokenType
	if tokenType == "" {
		tokenType = "Bearer"
	}
	scopes := t.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	if !t.Expiry.IsZero() {
		s.metrics.tokenRemaining.Observe(t.Expiry.Sub(now).Seconds())
	}
	s.countServed(tenant, id)
	c.Header("Cache-Control", "no-store")
	c.Header("Pragma", "no-cache")
	if left := t.Expiry.Sub(now); minTTL > 0 && !t.Expiry.IsZero() && left < minTTL {
		c.Header(HeaderMinTTLCapped, strconv.Itoa(int(max(left, 0)/time.Second)))
	}
	c.JSON(http.StatusOK, tokenResponse{AccessToken: t.AccessToken, TokenType: tokenType,
		ExpiresAt: t.Expiry.UTC(), Scopes: scopes})
}

// missingToken explains why Vault has no token for the link: the rare
// path, so it may ask PostgreSQL.
func (s *Server) missingToken(ctx context.Context, tenant, id string, err error) error {
	if !errors.Is(err, secrets.ErrNotFound) {
		return err
	}
	return s.linkStateError(ctx, tenant, id, nil)
}

// linkStateError answers from the link's stored status why it cannot
// give what was asked. fallback is used for a link whose status does not
// explain it (nil: 503 refresh_failed).
func (s *Server) linkStateError(ctx context.Context, tenant, id string, fallback error) error {
	link, err := s.store.GetLink(ctx, tenant, id)
	if err != nil {
		return storeError(err)
	}
	if e := statusError(link.Status, link.LastError); e != nil {
		return e
	}
	if fallback != nil {
		return fallback
	}
	return &apiError{status: http.StatusServiceUnavailable, code: CodeRefreshFailed,
		msg: "the link has no usable token right now; retry later", retryAfter: retryAfterSeconds}
}

// statusError is the answer for a link in a status that has no token to
// give, nil for the others.
func statusError(status, lastError string) *apiError {
	switch workflows.Status(status) {
	case workflows.StatusRevoked:
		return errConflict(CodeLinkRevoked, "the link was revoked")
	case workflows.StatusPendingAuthorization, statusPending:
		return errConflict(CodeLinkPending, "the link is waiting for authorization and has no token yet")
	case workflows.StatusFailed:
		return errConflict(CodeLinkFailed, withReason("the link failed and has no token", lastError))
	case workflows.StatusReauthRequired:
		return errConflict(CodeReauthRequired,
			withReason("the link needs re-authorization: POST /v1/links/{id}/reauthorize", lastError))
	}
	return nil
}

// withReason appends a link's last_error, which the workflow builds from
// wire facts only (status, OAuth error code).
func withReason(msg, reason string) string {
	if reason = shownLastError(reason); reason == "" {
		return msg
	}
	return msg + " (" + reason + ")"
}

// syncRefresh asks the link's workflow for a token valid until at least
// until and waits, bounded by RefreshWait.
func (s *Server) syncRefresh(ctx context.Context, tenant, id string, until time.Time, seen int) error {
	_, err := s.update(ctx, s.cfg.RefreshWait, tenant, id, workflows.UpdateRefresh,
		workflows.RefreshRequest{MinValidUntil: until, SeenVersion: seen})
	outcome := refreshOK
	if err != nil {
		err = s.refreshError(ctx, tenant, id, err)
		var ae *apiError
		switch {
		case errors.As(err, &ae) && ae.code == CodeReauthRequired:
			outcome = refreshReauth
		case errors.As(err, &ae) && ae.status == http.StatusConflict:
			outcome = refreshRejected
		case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
			outcome = refreshTimeout
		case errors.As(err, &ae) && ae.code == CodeUnavailable:
			outcome = refreshUnavailable
		default:
			outcome = refreshFailed
		}
	}
	s.metrics.syncRefreshes.WithLabelValues(outcome).Inc()
	return err
}

// update runs an update on the link's workflow and waits for its result.
func (s *Server) update(ctx context.Context, wait time.Duration, tenant, id, name string, arg any) (client.WorkflowUpdateHandle, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	h, err := s.d.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflows.WorkflowID(tenant, id),
		UpdateName:   name,
		Args:         []any{arg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return nil, err
	}
	return h, h.Get(ctx, nil)
}

// refreshError maps the failure of a refresh update. The workflow reports
// where the link stands as a typed error (workflows.ErrTypeLinkStatus with
// a workflows.LinkStatus detail), both when its validator refuses the
// update and when the attempt it waited for ended the grant; a link that
// is merely degraded (the provider failing transiently) is retried by the
// workflow, so the caller is asked to come back: 503 refresh_failed, like
// every other refresh that produced no fresh token.
func (s *Server) refreshError(ctx context.Context, tenant, id string, err error) error {
	if gone(err) {
		return s.linkStateError(ctx, tenant, id, nil)
	}
	if ls, ok := workflows.LinkStatusOf(err); ok {
		if e := statusError(string(ls.Status), ls.LastError); e != nil {
			e.cause = err
			return e
		}
		msg := withReason("the provider could not refresh the token; retry later", ls.LastError)
		return &apiError{status: http.StatusServiceUnavailable, code: CodeRefreshFailed,
			msg: msg, retryAfter: retryAfterSeconds, cause: err}
	}
	switch {
	case isTimeout(err), errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusServiceUnavailable, code: CodeRefreshFailed,
			msg: "the refresh did not finish in time; retry later", retryAfter: retryAfterSeconds, cause: err}
	case isTemporalDown(err):
		return errUnavailable("Temporal", err)
	}
	return &apiError{status: http.StatusServiceUnavailable, code: CodeRefreshFailed,
		msg: "the refresh failed; retry later", retryAfter: retryAfterSeconds, cause: err}
}

// gone reports that the link's workflow does not exist or has ended.
func gone(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}

func isTimeout(err error) bool {
	var te *client.WorkflowUpdateServiceTimeoutOrCanceledError
	return errors.As(err, &te)
}

// refreshLink forces a refresh now, whatever the current token's expiry,
// unless the link was forced less than its provider's
// forced_refresh_interval ago: then the answer is the current token's
// expiry, refreshed false, with Retry-After saying when a force will be
// honoured. A loop of forced refreshes thus costs the provider one call
// per interval (per gateway replica), not one per request.
func (s *Server) refreshLink(c *gin.Context) {
	id, ok := s.linkID(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	tenant := tenantOf(c)
	now := s.now()
	if wait, ok := s.forced.wait(tenant+"/"+id, now); ok {
		s.refreshThrottled(c, tenant, id, wait)
		return
	}
	link, err := s.store.GetLink(ctx, tenant, id)
	if err != nil {
		s.fail(c, storeError(err))
		return
	}
	if _, entry, ok := s.d.Providers.Get(link.Provider); ok && entry.ForcedRefreshInterval > 0 {
		if wait, ok := s.forced.claim(tenant+"/"+id, now, entry.ForcedRefreshInterval); !ok {
			s.refreshThrottled(c, tenant, id, wait)
			return
		}
	}
	h, err := s.update(ctx, max(s.cfg.RefreshWait, forcedRefreshWait), tenant, id,
		workflows.UpdateRefresh, workflows.RefreshRequest{})
	if err != nil {
		s.fail(c, s.refreshError(ctx, tenant, id, err))
		return
	}
	var res workflows.RefreshResult
	if err := h.Get(ctx, &res); err != nil {
		s.fail(c, s.refreshError(ctx, tenant, id, err))
		return
	}
	// The caller's next read here gets the new token, not one cached
	// before the links row's notification arrives (a client forcing a
	// refresh after a 401 must not get the rejected token back).
	s.tokens.drop(tenant + "/" + id)
	c.JSON(http.StatusOK, refreshResponse{ExpiresAt: res.ExpiresAt.UTC(), VaultVersion: res.VaultVersion, Refreshed: true})
}

// forcedRefreshWait is the least a forced refresh waits for the
// workflow (RefreshWait when longer). The HTTP write timeout must exceed
// it.
const forcedRefreshWait = 30 * time.Second

// refreshResponse is the answer of POST /v1/links/{id}/refresh.
type refreshResponse struct {
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	VaultVersion int       `json:"vault_version"`
	// Refreshed is false when the force came too soon after the last one
	// and the current token is reported instead.
	Refreshed bool `json:"refreshed"`
}

// refreshThrottled answers a force that came too soon with the current
// token's expiry.
func (s *Server) refreshThrottled(c *gin.Context, tenant, id string, wait time.Duration) {
	ctx := c.Request.Context()
	tok, err := s.secrets.ReadAccessToken(ctx, tenant, id)
	if err != nil {
		s.fail(c, s.missingToken(ctx, tenant, id, err))
		return
	}
	if err := s.linkStatus.refusal(ctx, tenant, id); err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
	var exp time.Time
	if !tok.Value.Expiry.IsZero() {
		exp = tok.Value.Expiry.UTC()
	}
	c.JSON(http.StatusOK, refreshResponse{ExpiresAt: exp, VaultVersion: tok.Version, Refreshed: false})
}

// forcedRefreshes remembers, per link, when the next forced refresh may
// reach the provider.
type forcedRefreshes struct {
	mu   sync.Mutex
	next map[string]time.Time
}

func newForcedRefreshes() *forcedRefreshes { return &forcedRefreshes{next: map[string]time.Time{}} }

// wait reports how long the link must still wait, if it must.
func (f *forcedRefreshes) wait(key string, now time.Time) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.next[key]; ok && now.Before(n) {
		return n.Sub(now), true
	}
	return 0, false
}

// claim takes the link's next forced refresh, or reports how long until
// it may.
func (f *forcedRefreshes) claim(key string, now time.Time, interval time.Duration) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.next[key]; ok && now.Before(n) {
		return n.Sub(now), false
	}
	if len(f.next) >= maxCachedLinks {
		for k, n := range f.next {
			if !now.Before(n) {
				delete(f.next, k)
			}
		}
		if len(f.next) >= maxCachedLinks {
			clear(f.next)
		}
	}
	f.next[key] = now.Add(interval)
	return 0, true
}

type revokeRequest struct {
	Reason string `json:"reason"`
}

// revokeLink revokes through the workflow, which revokes at the provider
// and wipes Vault. It is idempotent. When the workflow has already ended
// without revoking (the link failed, or its workflow never started), the
// gateway wipes the secrets itself and marks the row revoked, so that
// "revoked" always means "no secret left".
func (s *Server) revokeLink(c *gin.Context) {
	id, ok := s.linkID(c)
	if !ok {
		return
	}
	var req revokeRequest
	if err := s.decodeJSON(c, &req, true); err != nil {
		s.fail(c, err)
		return
	}
	if len(req.Reason) > maxReasonLen || !printable(req.Reason) {
		s.fail(c, errBadRequest(fmt.Sprintf(`"reason" must be printable and at most %d bytes`, maxReasonLen)))
		return
	}
	ctx := c.Request.Context()
	tenant := tenantOf(c)
	revoked := gin.H{"id": id, "status": string(workflows.StatusRevoked)}

	h, err := s.update(ctx, revokeWait, tenant, id, workflows.UpdateRevoke, workflows.RevokeRequest{Reason: req.Reason})
	var st workflows.State
	if err == nil {
		err = h.Get(ctx, &st)
	}
	switch {
	case err == nil && st.Status == workflows.StatusRevoked:
		s.revoked(c, tenant, id, revoked)
		return
	case err == nil, gone(err):
		// An update that reached a workflow which had just ended
		// otherwise (failed) returns at once without revoking: finish
		// the job here as for a workflow that is gone.
		if err := s.revokeOrphan(ctx, tenant, id, req.Reason); err != nil {
			s.fail(c, err)
			return
		}
		s.revoked(c, tenant, id, revoked)
		return
	}
	if ls, ok := workflows.LinkStatusOf(err); ok && ls.Status == workflows.StatusRevoked {
		s.revoked(c, tenant, id, revoked)
		return
	}
	if isTimeout(err) || errors.Is(err, context.DeadlineExceeded) {
		// The update is durable: the revocation goes on, and a retry
		// answers once it is done.
		s.fail(c, &apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable,
			msg: "the revocation is still running; retry to see it finish", retryAfter: retryAfterSeconds, cause: err})
		return
	}
	s.fail(c, err)
}

// revoked answers a revoke that is done, once no gateway's token cache
// can serve the link's token any more.
func (s *Server) revoked(c *gin.Context, tenant, id string, body gin.H) {
	s.tokens.forget(c.Request.Context(), tenant+"/"+id)
	c.JSON(http.StatusOK, body)
}

// revokeOrphan revokes a link whose workflow is gone.
func (s *Server) revokeOrphan(ctx context.Context, tenant, id, reason string) error {
	link, err := s.store.GetLink(ctx, tenant, id)
	if err != nil {
		return storeError(err)
	}
	if link.Status == string(workflows.StatusRevoked) {
		return nil
	}
	if err := s.secrets.DeleteLink(ctx, tenant, id); err != nil {
		return err
	}
	detail := map[string]any{"message": "revoked by the gateway: the link's workflow had ended"}
	if reason != "" {
		detail["reason"] = reason
	}
	err = s.store.RecordTransition(ctx, store.LinkState{
		TenantID: tenant, LinkID: id, Seq: link.StateSeq + 1,
		Status: string(workflows.StatusRevoked), LastError: link.LastError, RefreshCount: link.RefreshCount,
	}, store.Event{
		ID:       workflows.WorkflowID(tenant, id) + "/gateway-revoke",
		TenantID: tenant, LinkID: id, Type: store.EventRevoked,
		FromStatus: link.Status, ToStatus: string(workflows.StatusRevoked), Detail: detail,
	})
	return storeError(err)
}

type reauthorizeRequest struct {
	Credentials *credentials `json:"credentials"`
	ReturnURL   string       `json:"return_url"`
	// AllowSubjectChange lets another end-user than the one the link was
	// enrolled for (the sub of its verified ID token) take it over;
	// without it, such a re-authorization is refused and the link stays
	// as it was.
	AllowSubjectChange bool `json:"allow_subject_change"`
	// Scopes are additional scopes (incremental consent): the provider is
	// asked for the link's scopes and these. They also let a live link
	// (active, degraded) be re-authorized, keeping its token until the
	// new grant replaces it.
	Scopes []string `json:"scopes"`
}

// reauthorizeResult is the answer of a re-authorization.
type reauthorizeResult struct {
	ID               string `json:"id"`
	Status           string `json:"status"`
	AuthorizationURL string `json:"authorization_url,omitempty"`
}

// reauthorizeLink gives a link that lost its grant new grant material:
// a new consent URL for authorization_code, new credentials for
// password, a nudge for client_credentials (whose client secret an
// operator fixed). Only links in reauth_required qualify, and live ones
// given additional scopes; a failed link has ended and is replaced by a
// new one.
func (s *Server) reauthorizeLink(c *gin.Context) {
	id, ok := s.linkID(c)
	if !ok {
		return
	}
	var req reauthorizeRequest
	if err := s.decodeJSON(c, &req, true); err != nil {
		s.fail(c, err)
		return
	}
	res, status, err := s.reauthorize(c.Request.Context(), tenantOf(c), id, req)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(status, res)
}

// reauthorize re-authorizes link id: the API's path and the connect
// page's. It answers with the HTTP status: 200 with an authorization URL
// for authorization_code (the callback signals the workflow once the
// end-user consents), 202 once the workflow was told to enroll again.
func (s *Server) reauthorize(ctx context.Context, tenant, id string, req reauthorizeRequest) (reauthorizeResult, int, error) {
	if err := validScopes(req.Scopes); err != nil {
		return reauthorizeResult{}, 0, err
	}
	link, err := s.store.GetLink(ctx, tenant, id)
	if err != nil {
		return reauthorizeResult{}, 0, storeError(err)
	}
	if e := reauthorizable(link, req.Scopes); e != nil {
		return reauthorizeResult{}, 0, e
	}
	p, entry, ok := s.d.Providers.Get(link.Provider)
	if !ok {
		return reauthorizeResult{}, 0, errConflict(CodeConflict,
			fmt.Sprintf("provider %q of this link is no longer in the catalog", link.Provider))
	}
	if link.GrantType != providers.GrantPassword && req.Credentials != nil {
		return reauthorizeResult{}, 0, errBadRequest(`"credentials" are only for the password grant`)
	}
	if link.GrantType != providers.GrantAuthorizationCode && req.ReturnURL != "" {
		return reauthorizeResult{}, 0, errBadRequest(`"return_url" is only for the authorization_code grant`)
	}
	if req.AllowSubjectChange && link.GrantType != providers.GrantAuthorizationCode && link.GrantType != providers.GrantPassword {
		return reauthorizeResult{}, 0, errBadRequest(`"allow_subject_change" is only for grants with an end-user (authorization_code, password)`)
	}

	// The old grant keeps the link's scopes and parameters.
	old, err := s.secrets.ReadGrantRequest(ctx, tenant, id)
	switch {
	case errors.Is(err, secrets.ErrNotFound):
		old = secrets.Versioned[providers.Grant]{Value: providers.Grant{Type: link.GrantType, Scopes: link.Scopes}, Version: -1}
	case err != nil:
		return reauthorizeResult{}, 0, err
	}
	scopes, err := grantScopes(old.Value.Scopes, req.Scopes, entry)
	if err != nil {
		return reauthorizeResult{}, 0, err
	}
	g := providers.Grant{Type: link.GrantType, Scopes: scopes, Params: old.Value.Params,
		AllowSubjectChange: req.AllowSubjectChange}

	switch link.GrantType {
	case providers.GrantAuthorizationCode:
		if req.ReturnURL != "" {
			if err := s.validReturnURL(req.ReturnURL); err != nil {
				return reauthorizeResult{}, 0, err
			}
		}
		auth, err := s.newAuthRequest(p, entry, "", g.Scopes, g.Params)
		if err != nil {
			return reauthorizeResult{}, 0, err
		}
		g.CodeVerifier, g.RedirectURL = auth.verifier, auth.redirect
		if _, err := s.secrets.WriteGrant(ctx, tenant, id, g, -1); err != nil {
			return reauthorizeResult{}, 0, err
		}
		if err := s.store.PutOAuthState(ctx, auth.state,
			auth.oauthState(tenant, id, req.ReturnURL, s.now().Add(s.cfg.AuthorizationTimeout))); err != nil {
			return reauthorizeResult{}, 0, storeError(err)
		}
		// The callback signals the workflow once the end-user consents.
		return reauthorizeResult{ID: id, Status: link.Status, AuthorizationURL: auth.url}, http.StatusOK, nil
	case providers.GrantPassword:
		if err := validCredentials(req.Credentials); err != nil {
			return reauthorizeResult{}, 0, err
		}
		g.Username, g.Password = req.Credentials.Username, req.Credentials.Password
		if _, err := s.secrets.WriteGrant(ctx, tenant, id, g, -1); err != nil {
			return reauthorizeResult{}, 0, err
		}
	case providers.GrantClientCredentials:
		// The request part is all a client_credentials grant holds, so
		// it is written again when the scopes change.
		if old.Version < 0 || len(req.Scopes) > 0 {
			if _, err := s.secrets.WriteGrant(ctx, tenant, id, g, -1); err != nil {
				return reauthorizeResult{}, 0, err
			}
		}
	default:
		return reauthorizeResult{}, 0, newError(http.StatusBadRequest, CodeUnsupportedGrant,
			fmt.Sprintf("links with grant %q cannot be re-authorized; create a new link", link.GrantType))
	}
	err = s.d.Temporal.SignalWorkflow(ctx, workflows.WorkflowID(tenant, id), "", workflows.SignalReauthorize,
		workflows.ReauthorizeRequest{GrantType: link.GrantType})
	if err != nil {
		if gone(err) {
			return reauthorizeResult{}, 0, s.linkStateError(ctx, tenant, id, errConflict(CodeLinkFailed, "the link's workflow has ended; create a new link"))
		}
		return reauthorizeResult{}, 0, fmt.Errorf("signal reauthorize to link %s: %w", id, err)
	}
	return reauthorizeResult{ID: id, Status: "reauthorizing"}, http.StatusAccepted, nil
}
