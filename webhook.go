package tokenwarden

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Webhook event types. A tenant's webhook receives the link changes it can
// act on; routine refreshes send none.
const (
	// EventLinkActive: the link obtained a token (enrolled or
	// re-authorized) and is ready to use.
	EventLinkActive = "link.active"
	// EventLinkRefreshFailed: refreshing failed transiently; the engine
	// keeps retrying with backoff. Sent for the first failure of a streak.
	EventLinkRefreshFailed = "link.refresh_failed"
	// EventLinkReauthRequired: the grant is dead; send the end-user
	// through re-authorization (POST /v1/links/{id}/reauthorize).
	EventLinkReauthRequired = "link.reauth_required"
	// EventLinkRevoked: the link ended for good.
	EventLinkRevoked = "link.revoked"
	// EventLinkRecovered: the link refreshes again after failing.
	EventLinkRecovered = "link.recovered"
)

// Webhook headers.
const (
	HeaderWebhookSignature = "Tokenwarden-Signature"
	HeaderWebhookEventID   = "Tokenwarden-Event-Id"
)

// DefaultWebhookTolerance is how old a signed webhook VerifyWebhook
// accepts when given no tolerance.
const DefaultWebhookTolerance = 5 * time.Minute

// WebhookEvent is the JSON body of a webhook. Delivery is at least once:
// de-duplicate on ID.
type WebhookEvent struct {
	ID        string           `json:"id"`
	Type      string           `json:"type"`
	CreatedAt time.Time        `json:"created_at"`
	Data      WebhookEventData `json:"data"`
}

// WebhookEventData is the link an event is about.
type WebhookEventData struct {
	LinkID    string `json:"link_id"`
	TenantID  string `json:"tenant_id"`
	Provider  string `json:"provider"`
	Status    string `json:"status"`
	LastError string `json:"last_error"`
}

// ErrWebhookSignature is what VerifyWebhook returns (wrapped, with the
// reason) for a request that must not be trusted.
var ErrWebhookSignature = errors.New("tokenwarden: webhook signature invalid")

// VerifyWebhook checks a webhook request: header is its
// Tokenwarden-Signature ("t=<unix>,v1=<hex HMAC-SHA256 over "<t>.<body>">"),
// body the raw request body, secret the signing secret the gateway showed
// when the webhook was created or its secret rotated. A signature older
// (or newer) than tolerance is refused, so a captured request cannot be
// replayed later; tolerance <= 0 means DefaultWebhookTolerance. Several v1
// entries are accepted, any one matching.
func VerifyWebhook(secret, header string, body []byte, tolerance time.Duration) error {
	return verifyWebhook(secret, header, body, tolerance, time.Now())
}

func verifyWebhook(secret, header string, body []byte, tolerance time.Duration, now time.Time) error {
	if secret == "" {
		return fmt.Errorf("%w: no secret given", ErrWebhookSignature)
	}
	if tolerance <= 0 {
		tolerance = DefaultWebhookTolerance
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			if sig, err := hex.DecodeString(v); err == nil && len(sig) == sha256.Size {
				sigs = append(sigs, sig)
			}
		}
	}
	if ts == "" || len(sigs) == 0 {
		return fmt.Errorf("%w: header has no t= or no v1= signature", ErrWebhookSignature)
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp is not a number", ErrWebhookSignature)
	}
	if age := now.Sub(time.Unix(unix, 0)); age > tolerance || age < -tolerance {
		return fmt.Errorf("%w: timestamp outside the tolerance of %s", ErrWebhookSignature, tolerance)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return fmt.Errorf("%w: no signature matches", ErrWebhookSignature)
}

// Webhook is a tenant's webhook as the gateway shows it. Secret is set
// only in the answer that created the webhook or rotated its secret: keep
// it then, it is never shown again.
type Webhook struct {
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	Secret    string    `json:"secret,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`

	// LastDelivery is how the latest delivery attempt to the current
	// URL ended; nil before the first (and after the URL is replaced).
	// When events do not arrive, its Problem says why.
	LastDelivery *WebhookDelivery `json:"last_delivery,omitempty"`
	// LastSuccessAt is when an event last reached the current URL; zero
	// if none has.
	LastSuccessAt time.Time `json:"last_success_at,omitzero"`
	// FailuresSinceLastSuccess counts the delivery attempts (each retry
	// counts) that did not deliver since the last one that did.
	FailuresSinceLastSuccess int `json:"failures_since_last_success,omitempty"`
}

// WebhookDelivery is how one webhook delivery attempt ended.
type WebhookDelivery struct {
	At time.Time `json:"at"`
	// Event is the event's type (EventLinkActive, ...), EventID its ID.
	Event   string `json:"event"`
	EventID string `json:"event_id"`
	// OK: the receiver answered 2xx.
	OK bool `json:"ok"`
	// Retrying: the event will be tried again; false once delivered or
	// dropped (an internal address, 410 Gone, retries used up).
	Retrying bool `json:"retrying"`
	// Problem is why the attempt did not deliver, in plain words; ""
	// when it did.
	Problem string `json:"problem,omitempty"`
}

// SetWebhook creates or replaces the tenant's webhook. events lists the
// event types to receive; empty means all. Creating returns the signing
// secret; replacing keeps the existing one (and returns none).
func (c *Client) SetWebhook(ctx context.Context, url string, events []string) (*Webhook, error) {
	if events == nil {
		events = []string{}
	}
	body := struct {
		URL    string   `json:"url"`
		Events []string `json:"events"`
	}{url, events}
	var w Webhook
	if err := c.call(ctx, http.MethodPut, "/v1/webhook", body, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// GetWebhook returns the tenant's webhook (without its secret); a tenant
// without one gets an *APIError with code not_found.
func (c *Client) GetWebhook(ctx context.Context) (*Webhook, error) {
	var w Webhook
	if err := c.call(ctx, http.MethodGet, "/v1/webhook", nil, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// DeleteWebhook removes the tenant's webhook and its secret; events not
// yet delivered are dropped.
func (c *Client) DeleteWebhook(ctx context.Context) error {
	return c.call(ctx, http.MethodDelete, "/v1/webhook", nil, nil)
}

// RotateWebhookSecret replaces the signing secret and returns the new one.
// Deliveries from then on, retries included, are signed with it.
func (c *Client) RotateWebhookSecret(ctx context.Context) (*Webhook, error) {
	var w Webhook
	if err := c.call(ctx, http.MethodPost, "/v1/webhook/rotate-secret", nil, &w); err != nil {
		return nil, err
	}
	return &w, nil
}
