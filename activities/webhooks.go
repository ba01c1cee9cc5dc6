package activities

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
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
// query (which may carry a receiver's token) nor the secret. How each
// attempt ended is recorded on the tenant's webhook row (recordDelivery),
// best effort, for GET /v1/webhook.
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
		a.recordDelivery(ctx, w, ev, "the webhook URL is invalid; set it again with PUT /v1/webhook", false)
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
	var status int
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		status = resp.StatusCode
	}
	if err != nil && ctx.Err() != nil {
		// The attempt was cut off (the worker stopping, the activity's
		// timeout): it says nothing about the receiver. Temporal retries.
		return fmt.Errorf("deliver %s to %s: %s", ev.ID, host, transportReason(err))
	}
	o := judgeDelivery(status, err)
	a.Metrics.webhookAttempt(o)
	problem, retrying := o.problem, o.retrying
	switch {
	case retrying && lastAttempt(ctx, a.now()):
		problem, retrying = problem+"; no retry is left (the 24-hour delivery window is over), so the event is dropped", false
	case retrying:
		problem += "; retrying with backoff"
	}
	a.recordDelivery(ctx, w, ev, problem, retrying)
	if o.err == nil {
		return nil
	}
	msg := fmt.Sprintf("deliver %s to %s: %s", ev.ID, host, o.err)
	if o.errType != "" && !o.retrying {
		return temporal.NewNonRetryableApplicationError(msg, o.errType, nil)
	}
	return temporal.NewApplicationError(msg, o.errType)
}

// deliveryVerdict is how one delivery attempt ended: what the activity
// returns (err, typed errType) and what the tenant is shown (problem, ""
// when delivered; retrying: whether the event is tried again).
type deliveryVerdict struct {
	err      error
	errType  string
	problem  string
	retrying bool
}

// judgeDelivery reads an attempt's answer (status) or transport error.
// Problems are plain words from wire facts: a status, a refusal, a
// transport failure without the URL (whose path or query may carry the
// receiver's token); never the response body.
func judgeDelivery(status int, err error) deliveryVerdict {
	switch {
	case errors.Is(err, errBlockedAddress):
		return deliveryVerdict{err: errBlockedAddress, errType: workflows.ErrTypeConfig,
			problem: "refused: the webhook's host is or resolves to an internal address (loopback, private, link-local or another special-purpose range); webhooks are delivered to public addresses only, so this event is dropped"}
	case err != nil:
		reason := transportReason(err)
		return deliveryVerdict{err: errors.New(reason), errType: "WebhookTransport", retrying: true,
			problem: transportProblem(err, reason)}
	case status >= 200 && status <= 299:
		return deliveryVerdict{}
	case status == http.StatusGone:
		return deliveryVerdict{err: errors.New("HTTP 410 Gone"), errType: workflows.ErrTypeWebhookGone,
			problem: "the receiver answered HTTP 410 Gone, which stops an event's retries; this event is dropped"}
	case status >= 300 && status <= 399:
		return deliveryVerdict{err: fmt.Errorf("HTTP %d", status), errType: "WebhookStatus", retrying: true,
			problem: fmt.Sprintf("the receiver answered HTTP %d %s; redirects are not followed, so register the URL it redirects to", status, http.StatusText(status))}
	}
	return deliveryVerdict{err: fmt.Errorf("HTTP %d", status), errType: "WebhookStatus", retrying: true,
		problem: strings.TrimSpace(fmt.Sprintf("the receiver answered HTTP %d %s", status, http.StatusText(status))) + " (expected a 2xx)"}
}

// lastAttempt reports whether the delivery workflow's retry policy leaves
// no attempt after this one. Temporal ends the retries by itself; this
// only lets the tenant read that the event was dropped.
func lastAttempt(ctx context.Context, now time.Time) bool {
	if !activity.IsActivity(ctx) {
		return false
	}
	info := activity.GetInfo(ctx)
	return noRetryLeft(info.RetryPolicy, info.Attempt, info.ScheduledTime, info.ScheduleToCloseTimeout, now)
}

// noRetryLeft: the attempts of policy p are used up, or the backoff
// before the next one ends past the schedule-to-close window that began
// when the activity was first scheduled. Without the policy's facts it
// answers false (the retries go on as far as anyone here knows).
func noRetryLeft(p *temporal.RetryPolicy, attempt int32, firstScheduled time.Time, window time.Duration, now time.Time) bool {
	if p == nil {
		return false
	}
	if p.MaximumAttempts > 0 && attempt >= p.MaximumAttempts {
		return true
	}
	if window <= 0 || firstScheduled.IsZero() {
		return false
	}
	backoff := float64(p.InitialInterval) * math.Pow(max(p.BackoffCoefficient, 1), float64(max(attempt-1, 0)))
	if p.MaximumInterval > 0 {
		backoff = min(backoff, float64(p.MaximumInterval))
	}
	backoff = min(backoff, float64(window)) // no overflow below
	return now.Add(time.Duration(backoff)).After(firstScheduled.Add(window))
}

// transportProblem says in plain words why no answer came.
func transportProblem(err error, reason string) string {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	switch {
	case reason == "timed out":
		return fmt.Sprintf("no answer within %s", webhookTimeout)
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return "the webhook's host name does not resolve"
		}
		return "the webhook's host name could not be resolved"
	case errors.As(err, &certErr):
		return "TLS: the receiver's certificate was not accepted: " + reason
	case errors.As(err, &recordErr):
		return "TLS: the receiver did not answer with TLS (an http server on an https URL?)"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "the receiver refused the connection"
	case errors.Is(err, syscall.ECONNRESET):
		return "the receiver reset the connection"
	}
	return "no answer: " + reason
}

// recordDelivery records how an attempt ended on the tenant's webhook, so
// that GET /v1/webhook can say why nothing arrives. Best effort: a
// failure to record is logged and changes nothing about the delivery (it
// neither fails nor retries it). It has its own short deadline, apart
// from the attempt's.
func (a *Activities) recordDelivery(ctx context.Context, w store.Webhook, ev workflows.WebhookEvent, problem string, retrying bool) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordDeliveryTimeout)
	defer cancel()
	err := a.Store.RecordWebhookDelivery(rctx, store.DeliveryOutcome{TenantID: w.TenantID, URL: w.URL,
		DeliveryAttempt: store.DeliveryAttempt{At: a.now(), EventID: ev.ID, EventType: ev.Type,
			OK: problem == "", Retrying: retrying, Problem: problem}})
	if err != nil {
		activity.GetLogger(ctx).Warn("webhook delivery status not recorded", "event", ev.ID, "tenant", w.TenantID, "error", err.Error())
	}
}

// recordDeliveryTimeout bounds the status write after an attempt.
const recordDeliveryTimeout = 5 * time.Second

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
