package gateway

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"

	"github.com/tokenwarden/tokenwarden/internal/iprange"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// maxWebhookURLLen matches the webhooks.url column's limit.
const maxWebhookURLLen = 2000

// webhookRequest is the body of PUT /v1/webhook.
type webhookRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

// webhookView is a webhook as the API shows it. Secret is set only in the
// answer that created the secret (creation, rotation): it is shown once.
// The delivery fields say how deliveries to the current URL have been
// going, so that a tenant can see why nothing arrives.
type webhookView struct {
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	Secret    string    `json:"secret,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// LastDelivery is the latest attempt; null before the first.
	LastDelivery             *deliveryView `json:"last_delivery"`
	LastSuccessAt            *time.Time    `json:"last_success_at"`
	FailuresSinceLastSuccess int           `json:"failures_since_last_success"`
}

// deliveryView is how one delivery attempt ended.
type deliveryView struct {
	At       time.Time `json:"at"`
	Event    string    `json:"event"`
	EventID  string    `json:"event_id"`
	OK       bool      `json:"ok"`
	Retrying bool      `json:"retrying"`
	// Problem is why it did not deliver; "" when it did.
	Problem string `json:"problem"`
}

// maxDeliveryProblemLen bounds a delivery problem as the API shows it
// (the column's own cap).
const maxDeliveryProblemLen = 300

func webhookViewOf(w store.Webhook) webhookView {
	v := webhookView{URL: w.URL, Events: w.Events, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt,
		LastSuccessAt: w.Delivery.LastSuccessAt, FailuresSinceLastSuccess: w.Delivery.FailuresSinceSuccess}
	if v.Events == nil {
		v.Events = []string{}
	}
	if l := w.Delivery.Last; l != nil {
		// The worker writes plain text already; cleaned again on the
		// way out, as last_error is, whatever wrote the row.
		v.LastDelivery = &deliveryView{At: l.At, Event: l.EventType, EventID: l.EventID, OK: l.OK, Retrying: l.Retrying,
			Problem: providerText(l.Problem, maxDeliveryProblemLen)}
	}
	return v
}

func errNoWebhook() *apiError {
	return errNotFound("no webhook is configured; create one with PUT /v1/webhook")
}

// validWebhook checks a webhook request. Messages never echo the URL: a
// receiver's URL may carry a token of its own.
func validWebhook(req *webhookRequest) error {
	if req.URL == "" {
		return errBadRequest(`"url" is required`)
	}
	if len(req.URL) > maxWebhookURLLen {
		return errBadRequest(fmt.Sprintf(`"url" is longer than %d bytes`, maxWebhookURLLen))
	}
	u, err := url.Parse(req.URL)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" || u.Hostname() == "" {
		return errBadRequest(`"url" must be an absolute https URL`)
	}
	if u.User != nil {
		// Credentials would land in PostgreSQL; authenticate the sender
		// by its signature instead.
		return errBadRequest(`"url" must not carry credentials; verify the Tokenwarden-Signature header instead`)
	}
	if u.Fragment != "" || strings.Contains(req.URL, "#") {
		return errBadRequest(`"url" must not have a fragment`)
	}
	if internalHost(u.Hostname()) {
		return errBadRequest(`"url" names an internal address (a special-purpose IP range or a cloud metadata name); webhooks go to public servers`)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		// Plain http only to this host, for development: anywhere else
		// the signed body would travel readable.
		if !isLoopback(u.Hostname()) {
			return errBadRequest(`"url" must use https (http is allowed for loopback addresses only)`)
		}
	default:
		return errBadRequest(`"url" must be an absolute https URL`)
	}
	seen := map[string]bool{}
	for _, e := range req.Events {
		if !slices.Contains(workflows.WebhookEventTypes, e) {
			return errBadRequest(fmt.Sprintf("unknown event type %s; known: %s", quoteShort(e), strings.Join(workflows.WebhookEventTypes, ", ")))
		}
		if seen[e] {
			return errBadRequest(fmt.Sprintf("event type %s is listed twice", quoteShort(e)))
		}
		seen[e] = true
	}
	return nil
}

// internalHost reports what registration can judge of a webhook host
// without resolving it: an IP literal in a special-purpose range (other
// than loopback, kept for development: deliveries to it are refused at
// dial time unless the worker allows internal addresses) or a cloud
// metadata name. Names that resolve to such addresses are refused when a
// delivery dials them.
func internalHost(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "metadata" || h == "metadata.google.internal" || strings.HasSuffix(h, ".internal") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(h, "[]"))
	return err == nil && !ip.Unmap().IsLoopback() && iprange.SpecialPurpose(ip)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// newWebhookSecret returns a fresh signing secret: 256 random bits.
func newWebhookSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return "whsec_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// webhookDeps are the concrete stores the webhook endpoints need: they
// hold a PostgreSQL row lock across the Vault write.
func (s *Server) webhookDeps() (*store.Store, *secrets.Store, error) {
	if s.d.Store == nil || s.d.Secrets == nil {
		return nil, nil, errors.New("webhooks need the PostgreSQL and Vault stores")
	}
	return s.d.Store, s.d.Secrets, nil
}

func (s *Server) getWebhook(c *gin.Context) {
	st, _, err := s.webhookDeps()
	if err != nil {
		s.fail(c, err)
		return
	}
	w, err := st.GetWebhook(c.Request.Context(), tenantOf(c))
	if errors.Is(err, store.ErrNotFound) {
		s.fail(c, errNoWebhook())
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, webhookViewOf(w))
}

// putWebhook creates or replaces the tenant's webhook. The row stays
// locked while the secret is written, so concurrent first PUTs cannot
// each hand out a secret of which only one is kept: the second waits and
// finds the first's secret in place.
func (s *Server) putWebhook(c *gin.Context) {
	var req webhookRequest
	if err := s.decodeJSON(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	if err := validWebhook(&req); err != nil {
		s.fail(c, err)
		return
	}
	st, sec, err := s.webhookDeps()
	if err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	tenant := tenantOf(c)
	var view webhookView
	var created bool
	err = pgx.BeginFunc(ctx, st.Pool(), func(tx pgx.Tx) error {
		w, cr, err := st.PutWebhookTx(ctx, tx, store.Webhook{TenantID: tenant, URL: req.URL, Events: req.Events})
		if err != nil {
			return err
		}
		created = cr
		view = webhookViewOf(w)
		needSecret := cr
		if !cr {
			// A webhook whose secret went missing (an interrupted
			// delete, a Vault restore) gets a new one rather than
			// deliveries that can never be signed.
			_, err := sec.ReadWebhookSecret(ctx, tenant)
			switch {
			case errors.Is(err, secrets.ErrNotFound):
				needSecret = true
			case err != nil:
				return err
			}
		}
		if needSecret {
			view.Secret = newWebhookSecret()
			return sec.WriteWebhookSecret(ctx, tenant, view.Secret)
		}
		return nil
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(status, view)
}

// rotateWebhookSecret replaces the signing secret. Deliveries read the
// secret when they run, so retries of older events are signed with the
// new one too.
func (s *Server) rotateWebhookSecret(c *gin.Context) {
	st, sec, err := s.webhookDeps()
	if err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	tenant := tenantOf(c)
	var view webhookView
	err = pgx.BeginFunc(ctx, st.Pool(), func(tx pgx.Tx) error {
		w, err := st.LockWebhookTx(ctx, tx, tenant)
		if err != nil {
			return err
		}
		view = webhookViewOf(w)
		view.Secret = newWebhookSecret()
		return sec.WriteWebhookSecret(ctx, tenant, view.Secret)
	})
	if errors.Is(err, store.ErrNotFound) {
		s.fail(c, errNoWebhook())
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, view)
}

// deleteWebhook removes the webhook and its secret together: if the
// secret cannot be destroyed, the row stays and the caller retries.
func (s *Server) deleteWebhook(c *gin.Context) {
	st, sec, err := s.webhookDeps()
	if err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	tenant := tenantOf(c)
	err = pgx.BeginFunc(ctx, st.Pool(), func(tx pgx.Tx) error {
		if err := st.DeleteWebhookTx(ctx, tx, tenant); err != nil {
			return err
		}
		return sec.DeleteWebhookSecret(ctx, tenant)
	})
	if errors.Is(err, store.ErrNotFound) {
		s.fail(c, errNoWebhook())
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
