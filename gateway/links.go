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
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/oauth2"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// Link statuses as the store holds them. The gateway writes "pending";
// the workflow moves the link on to workflows.Status values.
const statusPending = "pending"

// Input limits. They keep one request from filling a Vault secret or a
// Postgres row with junk.
const (
	maxUserIDLen     = 200
	maxScopes        = 50
	maxScopeLen      = 200
	maxParams        = 30
	maxParamLen      = 1000
	maxCredentialLen = 1000
	maxReturnURLLen  = 2000
	maxReasonLen     = 500
	maxLinkIDLen     = 64
)

// createLinkRequest is the body of POST /v1/links.
type createLinkRequest struct {
	Provider    string            `json:"provider"`
	UserID      string            `json:"user_id"`
	Grant       string            `json:"grant"`
	Scopes      []string          `json:"scopes"`
	Params      map[string]string `json:"params"`
	Credentials *credentials      `json:"credentials"`
	ReturnURL   string            `json:"return_url"`
}

// credentials are a resource owner's username and password (password
// grant). They go to Vault and nowhere else.
type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// deviceView is what the end-user needs to approve a device_code link.
type deviceView struct {
	UserCode                string    `json:"user_code"`
	VerificationURI         string    `json:"verification_uri"`
	VerificationURIComplete string    `json:"verification_uri_complete,omitempty"`
	ExpiresAt               time.Time `json:"expires_at,omitzero"`
}

type createLinkResponse struct {
	ID               string      `json:"id"`
	Status           string      `json:"status"`
	Provider         string      `json:"provider"`
	UserID           string      `json:"user_id"`
	AuthorizationURL string      `json:"authorization_url,omitempty"`
	Device           *deviceView `json:"device,omitempty"`
}

// linkView is a link as the API shows it.
type linkView struct {
	ID               string          `json:"id"`
	Provider         string          `json:"provider"`
	UserID           string          `json:"user_id"`
	Grant            string          `json:"grant"`
	Status           string          `json:"status"`
	Scopes           []string        `json:"scopes"`
	ExpiresAt        *time.Time      `json:"expires_at"`
	RefreshExpiresAt *time.Time      `json:"refresh_expires_at"`
	NextRefreshAt    *time.Time      `json:"next_refresh_at"`
	LastError        string          `json:"last_error"`
	RefreshCount     int             `json:"refresh_count"`
	Metadata         map[string]any  `json:"metadata"`
	CreatedAt        time.Time       `json:"created_at"`
	UpdatedAt        time.Time       `json:"updated_at"`
	Live             *workflowsState `json:"live,omitempty"`
	LiveError        string          `json:"live_error,omitempty"`
	// Verified is the provider's verdict on the stored access token (GET
	// ?verify=1); nil when the provider cannot verify tokens.
	Verified    *bool  `json:"verified,omitempty"`
	VerifyError string `json:"verify_error,omitempty"`
}

// workflowsState is the workflow's own view (GET ?live=1).
type workflowsState = workflows.State

func viewOf(l store.Link) linkView {
	v := linkView{
		ID: l.ID, Provider: l.Provider, UserID: l.UserID, Grant: l.GrantType, Status: l.Status,
		Scopes: l.Scopes, ExpiresAt: l.ExpiresAt, RefreshExpiresAt: l.RefreshExpiresAt,
		NextRefreshAt: l.NextRefreshAt, LastError: shownLastError(l.LastError), RefreshCount: l.RefreshCount,
		Metadata: l.Metadata, CreatedAt: l.CreatedAt, UpdatedAt: l.UpdatedAt,
	}
	if v.Scopes == nil {
		v.Scopes = []string{}
	}
	if v.Metadata == nil {
		v.Metadata = map[string]any{}
	}
	return v
}

// validate checks a create request against the catalog. It runs before
// anything is written, so a bad request leaves no trace.
func (s *Server) validate(req *createLinkRequest) (providers.Provider, providers.Entry, error) {
	if req.Provider == "" {
		return nil, providers.Entry{}, errBadRequest(`"provider" is required`)
	}
	p, entry, ok := s.d.Providers.Get(req.Provider)
	if !ok {
		var names []string
		for _, e := range s.d.Providers.Entries() {
			names = append(names, e.Name)
		}
		return nil, entry, newError(http.StatusBadRequest, CodeUnknownProvider,
			fmt.Sprintf("unknown provider %s; known providers: %s", quoteShort(req.Provider), strings.Join(names, ", ")))
	}
	if err := validUserID(req.UserID); err != nil {
		return nil, entry, err
	}
	if req.Grant == "" {
		return nil, entry, errBadRequest(`"grant" is required`)
	}
	if !entry.HasGrant(req.Grant) {
		return nil, entry, newError(http.StatusBadRequest, CodeUnsupportedGrant,
			fmt.Sprintf("provider %q does not offer grant %s; it offers: %s",
				entry.Name, quoteShort(req.Grant), strings.Join(entry.Grants, ", ")))
	}
	switch req.Grant {
	case providers.GrantAuthorizationCode:
		if _, ok := p.(providers.Authorizer); !ok {
			return nil, entry, newError(http.StatusBadRequest, CodeUnsupportedGrant,
				fmt.Sprintf("provider %q cannot send end-users to a consent page", entry.Name))
		}
	case providers.GrantDeviceCode:
		if _, ok := p.(providers.DeviceAuthorizer); !ok {
			return nil, entry, newError(http.StatusBadRequest, CodeUnsupportedGrant,
				fmt.Sprintf("provider %q does not support device authorization", entry.Name))
		}
	default:
		// password, client_credentials, and grants a provider kind
		// defines itself (Norman's norman_user): the catalog listed it,
		// the provider's Exchange knows what to do with the material.
	}
	if req.Grant == providers.GrantPassword {
		if err := validCredentials(req.Credentials); err != nil {
			return nil, entry, err
		}
	} else if req.Credentials != nil {
		return nil, entry, errBadRequest(`"credentials" are only for the password grant`)
	}
	if err := validScopes(req.Scopes); err != nil {
		return nil, entry, err
	}
	if err := validParams(req.Params, entry); err != nil {
		return nil, entry, err
	}
	if req.ReturnURL != "" {
		if req.Grant != providers.GrantAuthorizationCode {
			return nil, entry, errBadRequest(`"return_url" is only for the authorization_code grant`)
		}
		if err := s.validReturnURL(req.ReturnURL); err != nil {
			return nil, entry, err
		}
	}
	return p, entry, nil
}

func validUserID(id string) error {
	switch {
	case id == "":
		return errBadRequest(`"user_id" is required`)
	case len(id) > maxUserIDLen:
		return errBadRequest(fmt.Sprintf(`"user_id" is longer than %d bytes`, maxUserIDLen))
	case !printable(id):
		return errBadRequest(`"user_id" must be printable UTF-8`)
	}
	return nil
}

func validCredentials(cr *credentials) error {
	if cr == nil || cr.Username == "" || cr.Password == "" {
		return errBadRequest(`the password grant needs "credentials" with "username" and "password"`)
	}
	if len(cr.Username) > maxCredentialLen || len(cr.Password) > maxCredentialLen {
		return errBadRequest(fmt.Sprintf("credentials are limited to %d bytes each", maxCredentialLen))
	}
	return nil
}

func validScopes(scopes []string) error {
	if len(scopes) > maxScopes {
		return errBadRequest(fmt.Sprintf(`"scopes" has more than %d entries`, maxScopes))
	}
	for _, sc := range scopes {
		// RFC 6749 section 3.3: scope tokens are printable ASCII
		// without space, quote or backslash.
		if sc == "" || len(sc) > maxScopeLen {
			return errBadRequest(`"scopes" entries must be non-empty and short`)
		}
		for i := 0; i < len(sc); i++ {
			if b := sc[i]; b <= 0x20 || b == '"' || b == '\\' || b >= 0x7f {
				return errBadRequest(fmt.Sprintf(`scope %s has a character RFC 6749 does not allow`, quoteShort(sc)))
			}
		}
	}
	return nil
}

// validParams enforces the entry's allowed_params here, before anything
// is stored, so that a caller learns at once what was refused.
func validParams(params map[string]string, entry providers.Entry) error {
	if len(params) > maxParams {
		return errBadRequest(fmt.Sprintf(`"params" has more than %d entries`, maxParams))
	}
	var bad []string
	for k, v := range params {
		if len(v) > maxParamLen || !utf8.ValidString(v) {
			return errBadRequest(fmt.Sprintf("param %s is too long or not UTF-8", quoteShort(k)))
		}
		if !slices.Contains(entry.AllowedParams, k) {
			bad = append(bad, quoteShort(k))
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		allowed := "none"
		if len(entry.AllowedParams) > 0 {
			allowed = strings.Join(entry.AllowedParams, ", ")
		}
		return errBadRequest(fmt.Sprintf("params not allowed for provider %q: %s (allowed: %s)",
			entry.Name, strings.Join(bad, ", "), allowed))
	}
	return nil
}

// validReturnURL only lets the callback redirect to an allow-listed
// origin: anything else would make it an open redirect carrying the
// end-user's trust in our domain.
func (s *Server) validReturnURL(raw string) error {
	if len(raw) > maxReturnURLLen {
		return errBadRequest(`"return_url" is too long`)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil || u.Opaque != "" {
		return errBadRequest(`"return_url" must be an absolute http(s) URL without credentials`)
	}
	origin, ok := normalizeOrigin(raw)
	if !ok || !s.origins[origin] {
		return errBadRequest(`"return_url" origin is not in the allowed return origins`)
	}
	return nil
}

// normalizeOrigin returns scheme://host[:port] of an http(s) URL, in
// lower case, with default ports made explicit so that
// https://a.example and https://a.example:443 are one origin.
func normalizeOrigin(raw string) (string, bool) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	switch scheme {
	case "https":
		if port == "" {
			port = "443"
		}
	case "http":
		if port == "" {
			port = "80"
		}
	default:
		return "", false
	}
	host := strings.ToLower(u.Hostname())
	if host == "" || strings.ContainsAny(host, "\\@") {
		return "", false
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host + ":" + port, true
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// quoteShort quotes caller input for a message, cut so that a huge value
// cannot blow up the answer.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

// validLinkID accepts the IDs store.NewLinkID makes. The ID becomes part
// of Vault paths and workflow IDs, so nothing else may pass.
func validLinkID(id string) bool {
	if id == "" || len(id) > maxLinkIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

// linkID returns the :id parameter, or fails the request with 404.
func (s *Server) linkID(c *gin.Context) (string, bool) {
	id := c.Param("id")
	if !validLinkID(id) {
		s.fail(c, errLinkNotFound())
		return "", false
	}
	return id, true
}

func (s *Server) createLink(c *gin.Context) {
	var req createLinkRequest
	if err := s.decodeJSON(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	p, entry, err := s.validate(&req)
	if err != nil {
		s.fail(c, err)
		return
	}
	idemKey := c.GetHeader("Idempotency-Key")
	if len(idemKey) > 200 || !printable(idemKey) {
		s.fail(c, errBadRequest("Idempotency-Key must be printable and at most 200 bytes"))
		return
	}
	resp, status, err := s.createValidLink(c.Request.Context(), tenantOf(c), &req, p, entry, idemKey)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(status, resp)
}

// createValidLink creates the link req asks for, once validate has
// passed it: the API's path, and the connect page's. It answers with the
// HTTP status of the creation (201, or 200 for an idempotent replay).
func (s *Server) createValidLink(ctx context.Context, tenant string, req *createLinkRequest, p providers.Provider, entry providers.Entry, idemKey string) (createLinkResponse, int, error) {
	var (
		reqHash []byte
		err     error
	)
	if idemKey != "" {
		if reqHash, err = hashRequest(nil, req); err != nil {
			return createLinkResponse{}, 0, err
		}
	}

	// The authorization URL is built before anything is stored: a
	// provider refusing it leaves nothing behind.
	linkID := store.NewLinkID()
	var auth *authRequest
	if req.Grant == providers.GrantAuthorizationCode {
		if auth, err = s.newAuthRequest(p, entry, "", req.Scopes, req.Params); err != nil {
			return createLinkResponse{}, 0, err
		}
	}

	link, created, err := s.store.CreateLink(ctx, store.Link{
		ID:             linkID,
		TenantID:       tenant,
		Provider:       entry.Name,
		UserID:         req.UserID,
		GrantType:      req.Grant,
		Scopes:         req.Scopes,
		Status:         statusPending,
		VaultPath:      s.secrets.TokenPath(tenant, linkID),
		IdempotencyKey: idemKey,
		RequestHash:    reqHash,
	})
	if err != nil {
		return createLinkResponse{}, 0, storeError(err)
	}
	if !created && link.RequestHash != nil {
		if same, err := sameRequest(link.RequestHash, req); err != nil {
			return createLinkResponse{}, 0, err
		} else if !same {
			return createLinkResponse{}, 0, newError(http.StatusUnprocessableEntity, CodeIdempotencyMismatch,
				"Idempotency-Key was already used with a different request body; use a new key for a new request")
		}
	}
	s.linkProv.put(tenant+"/"+link.ID, link.Provider)
	resp := createLinkResponse{ID: link.ID, Status: link.Status, Provider: link.Provider, UserID: link.UserID}
	status := http.StatusCreated

	setup := true
	if !created {
		// A replay: answer with the first link, and finish whatever the
		// first request may not have (grant material, workflow start).
		status = http.StatusOK
		setup, auth, err = s.replaySetup(ctx, tenant, link, p, entry, auth)
		if err != nil {
			return createLinkResponse{}, 0, err
		}
	}
	if setup {
		dev, err := s.storeGrant(ctx, tenant, link.ID, req, p, auth)
		if err != nil {
			return createLinkResponse{}, 0, err
		}
		resp.Device = dev
	}
	if auth != nil && (link.Status == statusPending || link.Status == string(workflows.StatusPendingAuthorization)) {
		if err := s.store.PutOAuthState(ctx, auth.state,
			auth.oauthState(tenant, link.ID, req.ReturnURL, s.now().Add(s.cfg.AuthorizationTimeout))); err != nil {
			return createLinkResponse{}, 0, storeError(err)
		}
		resp.AuthorizationURL = auth.url
	}
	if err := s.startWorkflow(ctx, link); err != nil {
		return createLinkResponse{}, 0, err
	}
	return resp, status, nil
}

// authRequest is a fresh authorization redirect: its state, PKCE
// verifier, OpenID Connect nonce (providers that verify ID tokens) and
// the URL carrying them.
type authRequest struct {
	state, verifier, nonce, url string
	// redirect is the redirect URI the provider was given; it goes into
	// the grant, since the token request must repeat it.
	redirect string
	// bound: redirect_state path. url is then the gateway's start page,
	// and template the provider's consent URL with statePlaceholder
	// where the state goes.
	bound    bool
	template string
}

// statePlaceholder stands for the state in a stored consent URL: letters
// and digits only, so that URL encoding leaves it as it is.
const statePlaceholder = "TWSTATEPLACEHOLDER0twstateplaceholder0TWSTAT"

// oauthState is the row that remembers ar until its callback.
func (ar *authRequest) oauthState(tenant, linkID, returnURL string, expires time.Time) store.OAuthState {
	st := store.OAuthState{LinkID: linkID, TenantID: tenant, ExpiresAt: expires, ReturnURL: returnURL, Nonce: ar.nonce}
	if ar.bound {
		st.BrowserBound, st.AuthURL = true, ar.template
	}
	return st
}

// newAuthRequest makes a state and, unless one is given (a replay keeps
// the verifier already in Vault), a verifier, and asks the provider for
// the consent URL. Where the entry's redirect_state is path, the state
// goes into the redirect URI's path and the URL handed out is the
// gateway's start page (see oauthStart), which binds the browser.
func (s *Server) newAuthRequest(p providers.Provider, entry providers.Entry, verifier string, scopes []string, params map[string]string) (*authRequest, error) {
	az, ok := p.(providers.Authorizer)
	if !ok {
		return nil, newError(http.StatusBadRequest, CodeUnsupportedGrant, "provider cannot send end-users to a consent page")
	}
	var b, n [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("oauth state: %w", err)
	}
	if _, err := rand.Read(n[:]); err != nil {
		return nil, fmt.Errorf("oidc nonce: %w", err)
	}
	if verifier == "" {
		verifier = oauth2.GenerateVerifier()
	}
	ar := &authRequest{state: base64.RawURLEncoding.EncodeToString(b[:]), verifier: verifier, redirect: s.callback}
	state, redirect := ar.state, s.callback
	if entry.RedirectState == providers.RedirectStatePath {
		ar.bound, ar.redirect = true, s.callback+"/"+ar.state
		state, redirect = statePlaceholder, s.callback+"/"+statePlaceholder
	}
	var u string
	var err error
	if iv, ok := p.(providers.IDTokenVerifier); ok {
		// A nonce per authorization, kept with its state: the callback
		// hands it to the exchange, which checks the ID token carries it.
		ar.nonce = base64.RawURLEncoding.EncodeToString(n[:])
		u, err = iv.AuthCodeURLNonce(state, ar.verifier, ar.nonce, redirect, scopes, params)
	} else {
		u, err = az.AuthCodeURL(state, ar.verifier, redirect, scopes, params)
	}
	if err != nil {
		// Provider errors about the URL are about the request (a param,
		// a missing setting) and carry no secret.
		return nil, errBadRequest("the provider refused to build an authorization URL: " + err.Error())
	}
	ar.url = u
	if ar.bound {
		ar.template, ar.url = u, strings.TrimSuffix(s.callback, CallbackPath)+StartPath+"/"+ar.state
	}
	return ar, nil
}

// replaySetup decides what a replayed create still has to do. It reports
// setup=true when no grant material is stored (the first request died
// before writing it). A pending authorization_code link gets a new state
// bound to the verifier already stored, so both URLs work.
func (s *Server) replaySetup(ctx context.Context, tenant string, link store.Link, p providers.Provider, entry providers.Entry, auth *authRequest) (bool, *authRequest, error) {
	pending := link.Status == statusPending || link.Status == string(workflows.StatusPendingAuthorization)
	if !pending {
		return false, nil, nil
	}
	g, err := s.secrets.ReadGrantRequest(ctx, tenant, link.ID)
	switch {
	case errors.Is(err, secrets.ErrNotFound):
		return true, auth, nil
	case err != nil:
		return false, nil, err
	}
	if link.GrantType != providers.GrantAuthorizationCode || g.Value.CodeVerifier == "" {
		return false, nil, nil
	}
	ar, err := s.newAuthRequest(p, entry, g.Value.CodeVerifier, g.Value.Scopes, g.Value.Params)
	if err != nil {
		return false, nil, err
	}
	return false, ar, nil
}

// storeGrant writes the link's grant material to Vault; for device_code
// it first asks the provider for a device code.
func (s *Server) storeGrant(ctx context.Context, tenant, linkID string, req *createLinkRequest, p providers.Provider, auth *authRequest) (*deviceView, error) {
	g := providers.Grant{Type: req.Grant, Scopes: req.Scopes, Params: req.Params}
	if req.Credentials != nil {
		g.Username, g.Password = req.Credentials.Username, req.Credentials.Password
	}
	var dev *deviceView
	switch req.Grant {
	case providers.GrantAuthorizationCode:
		g.CodeVerifier = auth.verifier
		g.RedirectURL = auth.redirect
	case providers.GrantDeviceCode:
		da, err := p.(providers.DeviceAuthorizer).DeviceAuth(ctx, req.Scopes)
		if err != nil {
			return nil, providerFailure("device authorization", err)
		}
		g = providers.Grant{Type: providers.GrantDeviceCode, DeviceCode: da.DeviceCode, Scopes: req.Scopes,
			DeviceInterval: da.Interval}
		dev = &deviceView{UserCode: da.UserCode, VerificationURI: da.VerificationURI,
			VerificationURIComplete: da.VerificationURIComplete, ExpiresAt: da.Expiry.UTC()}
	}
	if _, err := s.secrets.WriteGrant(ctx, tenant, linkID, g, -1); err != nil {
		return nil, err
	}
	return dev, nil
}

// providerFailure answers a provider call the gateway made itself. The
// *providers.Error text is wire facts only (status, OAuth error code).
func providerFailure(op string, err error) *apiError {
	var pe *providers.Error
	msg := "the provider failed " + op
	if errors.As(err, &pe) {
		msg += ": " + pe.Error()
	}
	return &apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, msg: msg + "; retry later",
		retryAfter: retryAfterSeconds, cause: err}
}

// startWorkflow starts the link's workflow, or joins it if it runs. A
// workflow that already ran to its end is not started again: a link ID
// has one life.
func (s *Server) startWorkflow(ctx context.Context, link store.Link) error {
	_, err := s.d.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       workflows.WorkflowID(link.TenantID, link.ID),
		TaskQueue:                workflows.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		StaticSummary:            workflows.StaticSummary(link.TenantID, link.ID, link.Provider, link.GrantType, link.UserID),
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.TenantKey.ValueSet(link.TenantID),
			workflows.ProviderKey.ValueSet(link.Provider),
			workflows.LinkIDKey.ValueSet(link.ID),
			workflows.StatusKey.ValueSet(statusPending),
		),
	}, "Link", workflows.LinkParams{
		TenantID:             link.TenantID,
		LinkID:               link.ID,
		Provider:             link.Provider,
		GrantType:            link.GrantType,
		Scopes:               link.Scopes,
		AuthorizationTimeout: s.cfg.AuthorizationTimeout,
	})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if err != nil && !errors.As(err, &started) && !temporal.IsWorkflowExecutionAlreadyStartedError(err) {
		return fmt.Errorf("start workflow of link %s: %w", link.ID, err)
	}
	return nil
}

func (s *Server) getLink(c *gin.Context) {
	id, ok := s.linkID(c)
	if !ok {
		return
	}
	// Both flags are checked before any work, so a bad one costs nothing.
	live, err := flagQuery(c, "live")
	if err != nil {
		s.fail(c, err)
		return
	}
	verify, err := flagQuery(c, "verify")
	if err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	tenant := tenantOf(c)
	link, err := s.store.GetLink(ctx, tenant, id)
	if err != nil {
		s.fail(c, storeError(err))
		return
	}
	v := viewOf(link)
	if live {
		st, err := s.queryState(ctx, link)
		if err != nil {
			// The row is still worth showing; say why live is missing.
			v.LiveError = "the workflow could not be queried"
			s.log.Warn("live state query failed", "request_id", requestIDOf(c), "link", id, "error", err.Error())
		} else {
			v.Live = &st
		}
	}
	if verify {
		v.Verified, v.VerifyError = s.verifyToken(ctx, c, tenant, link)
	}
	c.JSON(http.StatusOK, v)
}

// flagQuery reads an optional 0/1 query parameter.
func flagQuery(c *gin.Context, name string) (bool, error) {
	switch c.Query(name) {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	}
	return false, errBadRequest(fmt.Sprintf("%q must be 1 or 0", name))
}

// verifyWait bounds the provider call of GET ?verify=1.
const verifyWait = 10 * time.Second

// Answers of GET ?verify=1 that are not the provider's own.
const (
	verifyUnsupported = "the provider offers no verification"
	verifyNoProvider  = "the link's provider is not in the catalog"
	verifyNoToken     = "the link has no access token to verify"
	verifyVaultDown   = "the access token could not be read; retry later"
	verifyFailed      = "the provider could not verify the token"
)

// verifyToken asks the link's provider whether the stored access token
// works. verified is nil when the provider cannot tell; otherwise it is
// true only when the provider accepted the token, and message says why
// not. A failed check is an answer about the link, not a failed request:
// the row is still shown, like live_error.
//
// The message is built from *providers.Error only, whose text is wire
// facts (status, error code) by contract; any other error may say more
// than it should, so it becomes a fixed text.
func (s *Server) verifyToken(ctx context.Context, c *gin.Context, tenant string, link store.Link) (verified *bool, message string) {
	p, _, ok := s.d.Providers.Get(link.Provider)
	if !ok {
		return nil, verifyNoProvider
	}
	vf, ok := p.(providers.Verifier)
	if !ok {
		return nil, verifyUnsupported
	}
	no, yes := false, true
	tok, err := s.secrets.ReadAccessToken(ctx, tenant, link.ID)
	switch {
	case errors.Is(err, secrets.ErrNotFound):
		// Pending, failed or revoked: nothing was ever stored, or it is
		// wiped.
		return &no, verifyNoToken
	case err != nil:
		s.log.Warn("verify: token read failed", "request_id", requestIDOf(c), "link", link.ID, "error", err.Error())
		return &no, verifyVaultDown
	case tok.Value.AccessToken == "":
		// Suspended for re-authorization: the access token is gone.
		return &no, verifyNoToken
	}
	vctx, cancel := context.WithTimeout(ctx, verifyWait)
	defer cancel()
	t := tok.Value
	if err := vf.Verify(vctx, &t); err != nil {
		var pe *providers.Error
		if errors.As(err, &pe) {
			return &no, pe.Error()
		}
		s.log.Warn("verify: provider call failed", "request_id", requestIDOf(c), "link", link.ID,
			"provider", link.Provider, "class", providers.ClassOf(err).String())
		return &no, verifyFailed
	}
	return &yes, ""
}

func (s *Server) queryState(ctx context.Context, link store.Link) (workflows.State, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var st workflows.State
	res, err := s.d.Temporal.QueryWorkflow(ctx, workflows.WorkflowID(link.TenantID, link.ID), "", workflows.QueryState)
	if err != nil {
		return st, err
	}
	return st, res.Get(&st)
}

func (s *Server) listLinks(c *gin.Context) {
	f := store.ListFilter{
		Provider: c.Query("provider"),
		Status:   c.Query("status"),
		UserID:   c.Query("user_id"),
		Cursor:   c.Query("cursor"),
	}
	for name, v := range map[string]string{"provider": f.Provider, "status": f.Status, "user_id": f.UserID} {
		if len(v) > maxUserIDLen || !printable(v) {
			s.fail(c, errBadRequest(fmt.Sprintf("%q must be printable and at most %d bytes", name, maxUserIDLen)))
			return
		}
	}
	if len(f.Cursor) > 1000 {
		s.fail(c, errBadRequest("cursor is not one this API returned"))
		return
	}
	if raw, ok := c.GetQuery("limit"); ok {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > store.MaxListLimit {
			s.fail(c, errBadRequest(fmt.Sprintf(`"limit" must be an integer from 1 to %d`, store.MaxListLimit)))
			return
		}
		f.Limit = n
	}
	links, next, err := s.store.ListLinks(c.Request.Context(), tenantOf(c), f)
	if err != nil {
		s.fail(c, storeError(err))
		return
	}
	out := make([]linkView, 0, len(links))
	for _, l := range links {
		out = append(out, viewOf(l))
	}
	c.JSON(http.StatusOK, gin.H{"links": out, "next_cursor": next})
}
