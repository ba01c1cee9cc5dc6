package activities

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/tokenwarden/tokenwarden/internal/iprange"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// Webhook request headers.
const (
	// HeaderWebhookSignature is "t=<unix seconds>,v1=<hex HMAC-SHA256 of
	// "<t>.<body>" keyed with the tenant's signing secret>".
	HeaderWebhookSignature = "Tokenwarden-Signature"
	// HeaderWebhookEventID repeats the body's id, for receivers that
	// de-duplicate before parsing.
	HeaderWebhookEventID = "Tokenwarden-Event-Id"
)

// webhookTimeout bounds one delivery attempt; a receiver should answer
// fast and do its work afterwards.
const webhookTimeout = 10 * time.Second

// errBlockedAddress refuses a webhook connection to an internal address.
var errBlockedAddress = errors.New("the webhook's address is internal (a special-purpose range: loopback, private, link-local, shared, reserved, ...)")

// newWebhookClient makes the client that delivers webhooks. It never
// follows redirects: the configured URL is the one the tenant vouched
// for, and a 3xx is retried like any other non-2xx answer. Unless
// allowInternal, it refuses to connect to any special-purpose address
// (iprange: loopback, private, link-local, carrier-grade NAT, reserved,
// the IPv6 prefixes that translate to them), checked on the address
// actually dialled (so
// DNS cannot smuggle one in): a tenant's webhook must not become a way
// into the network Tokenwarden runs in.
func newWebhookClient(allowInternal bool) *http.Client {
	dialer := &net.Dialer{Timeout: webhookTimeout}
	if !allowInternal {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			ip, err := netip.ParseAddr(host)
			if err != nil || iprange.SpecialPurpose(ip) {
				return errBlockedAddress
			}
			return nil
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DialContext = dialer.DialContext
	transport.Proxy = nil // a proxy would dial on our behalf, past the check
	return &http.Client{
		Timeout:   webhookTimeout,
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

var (
	webhookClient         = newWebhookClient(false)
	webhookClientInternal = newWebhookClient(true)
)

// WebhookSubscribed reports whether the tenant's webhook wants events of
// type c.Type; a tenant without a webhook wants none.
func (a *Activities) WebhookSubscribed(ctx context.Context, c workflows.WebhookCheck) (bool, error) {
	w, err := a.Store.GetWebhook(ctx, c.TenantID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("webhook of %s: %w", c.TenantID, err)
	}
	return w.Wants(c.Type), nil
}

// DeliverWebhook POSTs one signed event to the tenant's webhook. The
// configuration and the secret are read at delivery time, so a retry
// after a rotation signs with the new secret and an endpoint removed
// meanwhile gets nothing. A 2xx answer delivers; 410 Gone stops for good
// (non-retryable); anything else is retried by the delivery workflow's
// policy. Errors name the status and the host, never the URL's path or
// query (which may carry a receiver's token) nor the secret.
func (a *Activities) DeliverWebhook(ctx context.Context, ev workflows.WebhookEvent) error {
	log := activity.GetLogger(ctx)
	w, err := a.Store.GetWebhook(ctx, ev.Data.TenantID)
	if errors.Is(err, store.ErrNotFound) {
		log.Info("tenant has no webhook any more; event dropped", "event", ev.ID)
		return nil
	}
	if err != nil {
		return fmt.Errorf("webhook of %s: %w", ev.Data.TenantID, err)
	}
	if !w.Wants(ev.Type) {
		log.Info("webhook no longer wants this event type; event dropped", "event", ev.ID, "type", ev.Type)
		return nil
	}
	secret, err := a.Secrets.ReadWebhookSecret(ctx, ev.Data.TenantID)
	if err != nil {
		// A webhook row without its secret is mid-creation or
		// mid-deletion: retry rather than send an unsigned event.
		return fmt.Errorf("webhook secret of %s: %w", ev.Data.TenantID, err)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return temporal.NewNonRetryableApplicationError("encode webhook event: "+err.Error(), workflows.ErrTypeConfig, nil)
	}
	host := "webhook"
	if u, err := url.Parse(w.URL); err == nil {
		host = u.Host
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return temporal.NewNonRetryableApplicationError("webhook URL of "+ev.Data.TenantID+" is invalid", workflows.ErrTypeConfig, nil)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Tokenwarden-Webhooks/1")
	req.Header.Set(HeaderWebhookEventID, ev.ID)
	req.Header.Set(HeaderWebhookSignature, SignWebhook(secret, a.now(), body))
	client := webhookClient
	if a.WebhooksToInternal {
		client = webhookClientInternal
	}
	resp, err := client.Do(req)
	if errors.Is(err, errBlockedAddress) {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("deliver %s to %s: %v", ev.ID, host, errBlockedAddress), workflows.ErrTypeConfig, nil)
	}
	if err != nil {
		// Transport errors quote the URL; say only where and how.
		return fmt.Errorf("deliver %s to %s: %s", ev.ID, host, transportReason(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return nil
	case resp.StatusCode == http.StatusGone:
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("deliver %s to %s: HTTP 410 Gone", ev.ID, host), workflows.ErrTypeWebhookGone, nil)
	}
	return temporal.NewApplicationError(fmt.Sprintf("deliver %s to %s: HTTP %d", ev.ID, host, resp.StatusCode), "WebhookStatus")
}

// SignWebhook is the Tokenwarden-Signature header value for body sent at
// now: "t=<unix>,v1=<hex HMAC-SHA256 over "<t>.<body>">".
func SignWebhook(secret string, now time.Time, body []byte) string {
	t := strconv.FormatInt(now.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(t))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + t + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

func transportReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return err.Error()
}
