package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// Webhook is a tenant's webhook endpoint. The signing secret is not part
// of it: it lives in Vault.
type Webhook struct {
	TenantID string
	URL      string
	// Events are the event types delivered; empty means all.
	Events    []string
	CreatedAt time.Time
	UpdatedAt time.Time
	// Delivery is how deliveries to the current URL have been going.
	Delivery WebhookDelivery
}

// WebhookDelivery is how deliveries to a webhook's current URL have been
// going: the latest attempt, the latest success, and the attempts that
// failed since. Its zero value means nothing was attempted yet.
type WebhookDelivery struct {
	// Last is the latest attempt; nil before the first.
	Last *DeliveryAttempt
	// LastSuccessAt is when an event last reached the receiver; nil if
	// none has.
	LastSuccessAt *time.Time
	// FailuresSinceSuccess counts the attempts (each retry counts) that
	// did not deliver since the last one that did.
	FailuresSinceSuccess int
}

// DeliveryAttempt is how one webhook delivery attempt ended.
type DeliveryAttempt struct {
	At        time.Time
	EventID   string
	EventType string
	OK        bool
	// Retrying says the event will be tried again; false after a
	// delivery or a final refusal (an internal address, 410 Gone).
	Retrying bool
	// Problem is why the attempt did not deliver, in plain words built
	// from wire facts; "" when it did.
	Problem string
}

// Caps of the delivery status columns (migration 008).
const (
	maxDeliveryProblemLen = 300
	maxDeliveryNameLen    = 100
)

// Wants reports whether the endpoint subscribes to event type typ.
func (w Webhook) Wants(typ string) bool {
	return len(w.Events) == 0 || slices.Contains(w.Events, typ)
}

const webhookColumns = `tenant_id, url, events, created_at, updated_at,
	last_delivery_at, last_delivery_event, last_delivery_event_id, last_delivery_ok, last_delivery_retrying,
	last_delivery_problem, last_success_at, failures_since_success`

// scanWebhook scans webhookColumns, then extra destinations after them.
func scanWebhook(row pgx.Row, extra ...any) (Webhook, error) {
	var (
		w      Webhook
		last   DeliveryAttempt
		lastAt *time.Time
		lastOK *bool
	)
	dest := append([]any{&w.TenantID, &w.URL, &w.Events, &w.CreatedAt, &w.UpdatedAt,
		&lastAt, &last.EventType, &last.EventID, &lastOK, &last.Retrying,
		&last.Problem, &w.Delivery.LastSuccessAt, &w.Delivery.FailuresSinceSuccess}, extra...)
	if err := row.Scan(dest...); err != nil {
		return Webhook{}, err
	}
	utc(&w.CreatedAt, &w.UpdatedAt)
	if lastAt != nil {
		last.At = *lastAt
		last.OK = lastOK != nil && *lastOK
		utc(&last.At)
		w.Delivery.Last = &last
	}
	if t := w.Delivery.LastSuccessAt; t != nil {
		utc(t)
	}
	return w, nil
}

// GetWebhook returns the tenant's webhook, or ErrNotFound when it has none.
func (s *Store) GetWebhook(ctx context.Context, tenantID string) (Webhook, error) {
	return getWebhook(ctx, s.pool, tenantID, "")
}

// LockWebhookTx is GetWebhook that also locks the row until the caller's
// transaction ends, so that a secret rotation and the write that goes with
// it cannot interleave with another.
func (s *Store) LockWebhookTx(ctx context.Context, tx pgx.Tx, tenantID string) (Webhook, error) {
	return getWebhook(ctx, tx, tenantID, " FOR UPDATE")
}

func getWebhook(ctx context.Context, db DBTX, tenantID, lock string) (Webhook, error) {
	w, err := scanWebhook(db.QueryRow(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE tenant_id = $1`+lock, tenantID))
	if err != nil {
		return Webhook{}, fmt.Errorf("store: get webhook of %q: %w", tenantID, noRows(err))
	}
	return w, nil
}

// PutWebhook creates or replaces the tenant's webhook and reports whether
// it created it. An unknown tenant yields ErrNotFound.
func (s *Store) PutWebhook(ctx context.Context, w Webhook) (Webhook, bool, error) {
	return putWebhook(ctx, s.pool, w)
}

// PutWebhookTx is PutWebhook inside the caller's transaction; the row stays
// locked until it ends.
func (s *Store) PutWebhookTx(ctx context.Context, tx pgx.Tx, w Webhook) (Webhook, bool, error) {
	return putWebhook(ctx, tx, w)
}

func putWebhook(ctx context.Context, db DBTX, w Webhook) (Webhook, bool, error) {
	if w.TenantID == "" || w.URL == "" {
		return Webhook{}, false, errors.New("store: put webhook: tenant id and url are required")
	}
	events := w.Events
	if events == nil {
		events = []string{}
	}
	// xmax is 0 only in a row this statement inserted: it tells a create
	// from a replace in the same round trip. The delivery status is of
	// the URL: a new URL starts with none (the old one's problems are
	// not the new one's).
	var created bool
	row := db.QueryRow(ctx, `
		INSERT INTO webhooks AS w (tenant_id, url, events) VALUES ($1, $2, $3)
		ON CONFLICT (tenant_id) DO UPDATE SET url = EXCLUDED.url, events = EXCLUDED.events, updated_at = now(),
			last_delivery_at       = CASE WHEN w.url = EXCLUDED.url THEN w.last_delivery_at END,
			last_delivery_event    = CASE WHEN w.url = EXCLUDED.url THEN w.last_delivery_event ELSE '' END,
			last_delivery_event_id = CASE WHEN w.url = EXCLUDED.url THEN w.last_delivery_event_id ELSE '' END,
			last_delivery_ok       = CASE WHEN w.url = EXCLUDED.url THEN w.last_delivery_ok END,
			last_delivery_retrying = w.url = EXCLUDED.url AND w.last_delivery_retrying,
			last_delivery_problem  = CASE WHEN w.url = EXCLUDED.url THEN w.last_delivery_problem ELSE '' END,
			last_success_at        = CASE WHEN w.url = EXCLUDED.url THEN w.last_success_at END,
			failures_since_success = CASE WHEN w.url = EXCLUDED.url THEN w.failures_since_success ELSE 0 END
		RETURNING `+webhookColumns+`, (xmax = 0)`,
		w.TenantID, w.URL, events)
	out, err := scanWebhook(row, &created)
	if isForeignKeyViolation(err, "") {
		return Webhook{}, false, fmt.Errorf("store: put webhook: tenant %q: %w", w.TenantID, ErrNotFound)
	}
	if err != nil {
		return Webhook{}, false, fmt.Errorf("store: put webhook of %q: %w", w.TenantID, err)
	}
	return out, created, nil
}

// DeliveryOutcome is what RecordWebhookDelivery writes: how one attempt
// to deliver to URL ended.
type DeliveryOutcome struct {
	TenantID string
	// URL is the address the attempt went to. An outcome for a URL the
	// tenant has replaced since is not recorded: it says nothing about
	// the new one.
	URL string
	DeliveryAttempt
}

// RecordWebhookDelivery records how a delivery attempt ended on the
// tenant's webhook. Attempts of different events run concurrently and
// may report out of order: an attempt older than the latest recorded one
// does not replace it, a failure older than the latest success is not
// counted, and a success older than the latest attempt keeps the count of
// failures (some of them may have come after it). The problem text is
// kept to printable characters and capped. A webhook deleted or
// re-pointed meanwhile is left alone (no error): the outcome is of no use
// to anyone then.
func (s *Store) RecordWebhookDelivery(ctx context.Context, o DeliveryOutcome) error {
	if o.TenantID == "" || o.URL == "" || o.At.IsZero() {
		return errors.New("store: record webhook delivery: tenant id, url and time are required")
	}
	problem := ""
	if !o.OK {
		problem = plainText(o.Problem, maxDeliveryProblemLen)
		if problem == "" {
			problem = "not delivered"
		}
	}
	// The conditions read the row as the update finds it (locked), so
	// concurrent outcomes are judged against each other's writes.
	const newer = `(last_delivery_at IS NULL OR last_delivery_at <= $3)`
	const afterSuccess = `(last_success_at IS NULL OR last_success_at < $3)`
	_, err := s.pool.Exec(ctx, `
		UPDATE webhooks SET
			last_delivery_at       = CASE WHEN `+newer+` THEN $3 ELSE last_delivery_at END,
			last_delivery_event    = CASE WHEN `+newer+` THEN $4 ELSE last_delivery_event END,
			last_delivery_event_id = CASE WHEN `+newer+` THEN $5 ELSE last_delivery_event_id END,
			last_delivery_ok       = CASE WHEN `+newer+` THEN $6 ELSE last_delivery_ok END,
			last_delivery_retrying = CASE WHEN `+newer+` THEN $7 ELSE last_delivery_retrying END,
			last_delivery_problem  = CASE WHEN `+newer+` THEN $8 ELSE last_delivery_problem END,
			last_success_at        = CASE WHEN $6 AND `+afterSuccess+` THEN $3 ELSE last_success_at END,
			failures_since_success = CASE
				WHEN NOT `+afterSuccess+` THEN failures_since_success
				WHEN $6 AND `+newer+` THEN 0
				WHEN $6 THEN failures_since_success
				ELSE failures_since_success + 1 END
		WHERE tenant_id = $1 AND url = $2`,
		o.TenantID, o.URL, o.At.UTC(), plainText(o.EventType, maxDeliveryNameLen), plainText(o.EventID, maxDeliveryNameLen),
		o.OK, o.Retrying && !o.OK, problem)
	if err != nil {
		return fmt.Errorf("store: record webhook delivery of %q: %w", o.TenantID, err)
	}
	return nil
}

// plainText keeps s to printable characters (others become spaces, so a
// receiver's or a resolver's text cannot forge a line where it is shown)
// and at most n bytes, cut on a character boundary.
func plainText(s string, n int) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if !unicode.IsPrint(r) {
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > n {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// DeleteWebhook removes the tenant's webhook; ErrNotFound when it has none.
func (s *Store) DeleteWebhook(ctx context.Context, tenantID string) error {
	return deleteWebhook(ctx, s.pool, tenantID)
}

// DeleteWebhookTx is DeleteWebhook inside the caller's transaction.
func (s *Store) DeleteWebhookTx(ctx context.Context, tx pgx.Tx, tenantID string) error {
	return deleteWebhook(ctx, tx, tenantID)
}

func deleteWebhook(ctx context.Context, db DBTX, tenantID string) error {
	tag, err := db.Exec(ctx, `DELETE FROM webhooks WHERE tenant_id = $1`, tenantID)
	if err != nil {
		return fmt.Errorf("store: delete webhook of %q: %w", tenantID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: delete webhook of %q: %w", tenantID, ErrNotFound)
	}
	return nil
}
