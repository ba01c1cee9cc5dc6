package workflows

import (
	"time"

	"github.com/tokenwarden/tokenwarden/providers/schedule"
)

// Message names of the link workflow. Callers (the gateway, the CLI) use
// these constants; the types next to them are the whole payload, and none
// of them ever carries a secret: codes, passwords and tokens travel through
// Vault, and messages only say "look there now".
const (
	// UpdateRefresh asks for a token valid until at least MinValidUntil,
	// refreshing at the provider only when the current one is not.
	UpdateRefresh = "refresh"
	// UpdateRevoke revokes at the provider, wipes the secrets and ends the
	// link; it returns when that is done.
	UpdateRevoke = "revoke"
	// SignalRevoke is the fire-and-forget twin of UpdateRevoke.
	SignalRevoke = "revoke"
	// SignalAuthorized tells a pending link that the gateway stored an
	// authorization code in Vault (the OAuth callback arrived).
	SignalAuthorized = "authorized"
	// SignalDenied tells a pending link that the end-user (or the
	// provider) refused consent: the OAuth callback carried error=.
	SignalDenied = "denied"
	// SignalReauthorize tells a link needing re-authorization that new grant
	// material is in Vault.
	SignalReauthorize = "reauthorize"
	// QueryState returns the link's State.
	QueryState = "state"
)

// Activity names, registered by the worker.
const (
	ActivityEnroll     = "Enroll"
	ActivityPollDevice = "PollDevice"
	ActivityRefresh    = "Refresh"
	ActivityRevoke     = "Revoke"
	ActivitySuspend    = "Suspend"
	ActivityRecord     = "RecordTransition"
	// ActivityRecordBatch records the transitions a run carried in from
	// the previous one (see records.go), in one activity.
	ActivityRecordBatch = "RecordTransitions"
	// ActivityWebhookSubscribed asks whether the tenant's webhook wants
	// an event type; ActivityDeliverWebhook delivers one event.
	ActivityWebhookSubscribed = "WebhookSubscribed"
	ActivityDeliverWebhook    = "DeliverWebhook"
)

// WorkflowWebhook is the name of the child workflow that delivers one
// webhook event (WebhookDelivery).
const WorkflowWebhook = "WebhookDelivery"

// Error types of activity failures, as temporal.ApplicationError types. The
// activities classify provider errors once; the workflow decides on type.
const (
	ErrTypeInvalidGrant = "InvalidGrant" // grant material no longer accepted: re-consent
	ErrTypePermanent    = "Permanent"    // client misconfigured, user locked, ...: re-consent or operator
	ErrTypeDenied       = "Denied"       // the end-user refused consent
	ErrTypeExpired      = "Expired"      // the authorization window (code, device code) closed
	ErrTypeConfig       = "Config"       // unknown provider, missing grant material
	ErrTypeWebhookGone  = "WebhookGone"  // the webhook receiver answered 410 Gone: stop delivering
)

// ErrTypeSubjectChanged is the error type of a re-authorization whose
// verified ID token names another end-user than the link's, when the
// caller did not allow that (allow_subject_change): the enrollment fails,
// and the link keeps its stored tokens and waits for re-authorization.
const ErrTypeSubjectChanged = "SubjectChanged"

// Status is where a link stands in its lifecycle.
type Status string

const (
	StatusPendingAuthorization Status = "pending_authorization"
	StatusActive               Status = "active"
	StatusRefreshing           Status = "refreshing"
	// StatusDegraded: the provider fails transiently but the engine keeps
	// retrying with backoff; the current token may still be valid.
	StatusDegraded       Status = "degraded"
	StatusReauthRequired Status = "reauth_required"
	StatusRevoked        Status = "revoked"
	StatusFailed         Status = "failed"
)

// Terminal reports whether a link in status s has ended for good.
func (s Status) Terminal() bool { return s == StatusRevoked || s == StatusFailed }

// LinkParams starts a link workflow. State is set only when the workflow
// continues as new.
type LinkParams struct {
	TenantID  string   `json:"tenant_id"`
	LinkID    string   `json:"link_id"`
	Provider  string   `json:"provider"`
	GrantType string   `json:"grant_type"`
	Scopes    []string `json:"scopes,omitempty"`
	// AuthorizationTimeout bounds how long a link waits for the end-user
	// (consent or device approval); zero means DefaultAuthorizationTimeout.
	AuthorizationTimeout time.Duration `json:"authorization_timeout,omitempty"`
	// MaxCyclesPerRun bounds refreshes per run before continue-as-new;
	// zero means DefaultMaxCyclesPerRun.
	MaxCyclesPerRun int    `json:"max_cycles_per_run,omitempty"`
	State           *State `json:"state,omitempty"`
	// Unrecorded and Unhooked carry, across continue-as-new, transitions
	// whose audit record or webhook subscription check the previous run
	// could not complete (PostgreSQL down): see records.go.
	Unrecorded []Transition `json:"unrecorded,omitempty"`
	Unhooked   []Transition `json:"unhooked,omitempty"`
}

// State is the link as the workflow knows it: what the state query returns
// and what continue-as-new carries. It holds no secret.
type State struct {
	Status        Status    `json:"status"`
	ExpiresAt     time.Time `json:"expires_at,omitzero"`
	RefreshExpiry time.Time `json:"refresh_expires_at,omitzero"`
	ObtainedAt    time.Time `json:"obtained_at,omitzero"`
	// ExpirySource says where ExpiresAt came from: "expires_in", "jwt",
	// "introspection" or "default".
	ExpirySource  string            `json:"expiry_source,omitempty"`
	NextRefreshAt time.Time         `json:"next_refresh_at,omitzero"`
	VaultVersion  int               `json:"vault_version,omitempty"`
	Scopes        []string          `json:"scopes,omitempty"`
	TokenType     string            `json:"token_type,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	Schedule      schedule.Schedule `json:"schedule"`
	LastError     string            `json:"last_error,omitempty"`
	// Refreshes counts successful refreshes over the link's life;
	// Failures counts consecutive failed attempts.
	Refreshes int `json:"refreshes"`
	Failures  int `json:"failures"`
	// RetryNotBefore is when a degraded link tries again: its backoff, or
	// the provider's Retry-After when that is longer.
	RetryNotBefore time.Time `json:"retry_not_before,omitzero"`
	// Seq numbers transitions; it makes audit event IDs deterministic, so a
	// retried activity never writes an event twice.
	Seq int64 `json:"seq"`
	// Runs counts continue-as-new generations, for operators.
	Runs int `json:"runs"`
}

// Adopt takes the metadata of a freshly stored token.
func (st *State) Adopt(info TokenInfo) {
	st.VaultVersion = info.VaultVersion
	st.ObtainedAt = info.ObtainedAt
	st.ExpiresAt = info.ExpiresAt
	st.ExpirySource = info.ExpirySource
	st.RefreshExpiry = info.RefreshExpiry
	st.Scopes = info.Scopes
	st.TokenType = info.TokenType
	st.Metadata = info.Metadata
	st.Schedule = info.Schedule
}

// Refreshed is st after a successful refresh recorded as transition seq.
func (st State) Refreshed(info TokenInfo, seq int64) State {
	st = st.Enrolled(info, seq)
	st.Refreshes += max(info.Refreshes, 1)
	st.RetryNotBefore = time.Time{}
	return st
}

// Enrolled is st after an enrollment recorded as transition seq.
func (st State) Enrolled(info TokenInfo, seq int64) State {
	st.Adopt(info)
	st.Status = StatusActive
	st.Seq = seq
	st.Failures = 0
	st.LastError = ""
	return st
}

// ScheduledRefresh is when a link in state st refreshes next, as its
// workflow computes it (see NextRefresh; the jitter's seed is the link and
// its sequence number).
func (st State) ScheduledRefresh(linkID string, now time.Time) time.Time {
	return NextRefresh(st.Schedule, now, st.ObtainedAt, st.ExpiresAt, st.RefreshExpiry, seedFor(linkID, st.Seq))
}

// RefreshRequest is the input of UpdateRefresh.
type RefreshRequest struct {
	// MinValidUntil: refresh unless the current token is valid until then.
	// Zero forces a refresh.
	MinValidUntil time.Time `json:"min_valid_until,omitzero"`
	// SeenVersion is the Vault version of the token the caller found
	// wanting; a workflow that knows no newer one refreshes rather than
	// vouch for a token it has not seen.
	SeenVersion int `json:"seen_version,omitempty"`
}

// RefreshResult is what UpdateRefresh returns: never the token itself.
type RefreshResult struct {
	ExpiresAt    time.Time `json:"expires_at"`
	VaultVersion int       `json:"vault_version"`
	Refreshed    bool      `json:"refreshed"`
}

// RevokeRequest is the input of UpdateRevoke and SignalRevoke.
type RevokeRequest struct {
	Reason string `json:"reason,omitempty"`
}

// DeniedRequest is the input of SignalDenied: the RFC 6749 error code and
// description from the callback.
type DeniedRequest struct {
	Error       string `json:"error"`
	Description string `json:"description,omitempty"`
}

// ReauthorizeRequest is the input of SignalReauthorize; the new grant
// material is already in Vault.
type ReauthorizeRequest struct {
	GrantType string `json:"grant_type"`
}

// LinkRef names a link for an activity.
type LinkRef struct {
	TenantID  string `json:"tenant_id"`
	LinkID    string `json:"link_id"`
	Provider  string `json:"provider"`
	GrantType string `json:"grant_type"`
}

// RefreshInput is the input of the Refresh activity.
type RefreshInput struct {
	LinkRef
	// KnownVersion is the Vault version the workflow last saw; a newer one
	// means someone else already refreshed (a lost race, not a dead link).
	KnownVersion int `json:"known_version"`
	// Record, when set, is the transition a successful refresh records;
	// the activity completes and writes it (see refresh.go).
	Record *Transition `json:"record,omitempty"`
}

// EnrollInput is the input of ActivityEnroll. Runs that began before
// "lean-enroll" send a bare LinkRef, which decodes into it.
type EnrollInput struct {
	LinkRef
	// Record, when set, is the transition a successful enrollment
	// records; the activity completes and writes it (see enrollNow).
	Record *Transition `json:"record,omitempty"`
	// Webhook, when set, asks whether the tenant's webhook wants the
	// event of that transition; the answer is TokenInfo.Subscribed.
	Webhook *WebhookCheck `json:"webhook,omitempty"`
}

// TokenInfo is what Enroll, PollDevice and Refresh return: metadata about
// the token they stored in Vault, never the token.
type TokenInfo struct {
	VaultVersion  int               `json:"vault_version"`
	ObtainedAt    time.Time         `json:"obtained_at"`
	ExpiresAt     time.Time         `json:"expires_at"`
	ExpirySource  string            `json:"expiry_source"`
	RefreshExpiry time.Time         `json:"refresh_expires_at,omitzero"`
	Scopes        []string          `json:"scopes,omitempty"`
	TokenType     string            `json:"token_type,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	Schedule      schedule.Schedule `json:"schedule"`
	Rotated       bool              `json:"rotated,omitempty"`
	// Reenrolled: the refresh token was dead and the activity enrolled
	// again from stored credentials (password or client credentials).
	Reenrolled bool `json:"reenrolled,omitempty"`
	// Recorded: the activity wrote RefreshInput.Record (or
	// EnrollInput.Record) to the audit trail.
	Recorded bool `json:"recorded,omitempty"`
	// Subscribed answers EnrollInput.Webhook (nil: not asked, or the
	// database did not answer).
	Subscribed *bool `json:"subscribed,omitempty"`
	// Refreshes is how many refreshes at the provider this answer stands
	// for: 2 when the activity found a token an earlier attempt had
	// refreshed and stored, and refreshed on from it; 0 means 1.
	Refreshes int `json:"refreshes,omitempty"`
}

// DevicePoll is the PollDevice activity's answer: Pending (keep polling
// after Interval) or Token.
type DevicePoll struct {
	Pending  bool          `json:"pending"`
	Interval time.Duration `json:"interval,omitempty"`
	// SlowDown: the provider answered slow_down; the workflow adds 5 s to
	// the interval of this and every later poll (RFC 8628 section 3.5).
	SlowDown bool       `json:"slow_down,omitempty"`
	Token    *TokenInfo `json:"token,omitempty"`
}

// Transition is one recorded change of a link, written to the audit trail
// and the links table by the RecordTransition activity.
type Transition struct {
	LinkRef
	EventID string    `json:"event_id"`
	Seq     int64     `json:"seq"`
	Type    string    `json:"type"`
	From    Status    `json:"from"`
	To      Status    `json:"to"`
	At      time.Time `json:"at"`
	State   State     `json:"state"`
	Detail  string    `json:"detail,omitempty"`
	// ScheduledFor is, for a refresh the link's timer started, when it
	// was due: At minus ScheduledFor is the refresh's lag.
	ScheduledFor time.Time `json:"scheduled_for,omitzero"`
}
