package tokenwarden

import (
	"context"
	"net/http"
	"time"
)

// CodeInsufficientScope: a token read asked for scopes the link's token
// was not granted (409).
const CodeInsufficientScope = "insufficient_scope"

// ConnectSessionRequest asks the gateway for a connect session: a
// short-lived, single-use invitation for one end-user to connect an
// account on the gateway's hosted connect page.
type ConnectSessionRequest struct {
	// UserID is your reference for the end-user; required unless LinkID
	// is set.
	UserID string `json:"user_id,omitempty"`
	// Providers the page offers; empty offers every provider of the
	// catalog with a consent page or the password grant.
	Providers []string `json:"providers,omitempty"`
	// ReturnURL is where the browser lands afterwards, with link_id and
	// status added to its query; its origin must be allowed by the
	// gateway. Empty: the gateway shows a result page.
	ReturnURL string `json:"return_url,omitempty"`
	// LinkID makes a reconnect: the session re-authorizes that link,
	// which keeps its id (one in reauth_required, or a live one given
	// additional Scopes).
	LinkID string `json:"link_id,omitempty"`
	// Scopes are a new link's scopes, or for a reconnect the scopes to
	// add (incremental consent).
	Scopes []string `json:"scopes,omitempty"`
	// ExpiresIn is the session's lifetime (whole seconds, 1 minute to 1
	// hour); zero takes the gateway's default, 15 minutes.
	ExpiresIn time.Duration `json:"-"`
}

// ConnectSession is a created session. Token is a bearer capability for
// the connect page until it is used or expires: hand it (or ConnectURL)
// to the end-user's browser only.
type ConnectSession struct {
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

// CreateConnectSession makes a connect session; send the end-user's
// browser to the answer's ConnectURL.
func (c *Client) CreateConnectSession(ctx context.Context, r ConnectSessionRequest) (*ConnectSession, error) {
	body := struct {
		ConnectSessionRequest
		ExpiresIn int `json:"expires_in,omitempty"`
	}{r, int(r.ExpiresIn / time.Second)}
	var cs ConnectSession
	if err := c.call(ctx, http.MethodPost, "/v1/connect/sessions", body, &cs); err != nil {
		return nil, err
	}
	return &cs, nil
}

// ReauthorizeRequest gives a link new grant material (see Reauthorize).
type ReauthorizeRequest struct {
	// Credentials are a password link's new ones.
	Credentials *Credentials `json:"credentials,omitempty"`
	// ReturnURL is where an authorization_code link's callback sends the
	// browser this time.
	ReturnURL string `json:"return_url,omitempty"`
	// AllowSubjectChange lets another end-user take the link over.
	AllowSubjectChange bool `json:"allow_subject_change,omitempty"`
	// Scopes are additional scopes (incremental consent): the provider is
	// asked for the link's scopes and these, and a live link qualifies
	// too.
	Scopes []string `json:"scopes,omitempty"`
}

// Reauthorization is the answer of Reauthorize: for authorization_code,
// AuthorizationURL is where to send the end-user; otherwise Status is
// "reauthorizing" and the link enrolls again by itself.
type Reauthorization struct {
	ID               string `json:"id"`
	Status           string `json:"status"`
	AuthorizationURL string `json:"authorization_url,omitempty"`
}

// Reauthorize re-authorizes link id, keeping its id: a link in
// reauth_required, or a live one given additional scopes.
func (c *Client) Reauthorize(ctx context.Context, id string, r ReauthorizeRequest) (*Reauthorization, error) {
	p, err := linkPath(id, "reauthorize")
	if err != nil {
		return nil, err
	}
	var out Reauthorization
	if err := c.call(ctx, http.MethodPost, p, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
