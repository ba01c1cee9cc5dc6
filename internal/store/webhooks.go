package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

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
}

// Wants reports whether the endpoint subscribes to event type typ.
func (w Webhook) Wants(typ string) bool {
	return len(w.Events) == 0 || slices.Contains(w.Events, typ)
}

const webhookColumns = `tenant_id, url, events, created_at, updated_at`

func scanWebhook(row pgx.Row) (Webhook, error) {
	var w Webhook
	if err := row.Scan(&w.TenantID, &w.URL, &w.Events, &w.CreatedAt, &w.UpdatedAt); err != nil {
		return Webhook{}, err
	}
	utc(&w.CreatedAt, &w.UpdatedAt)
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
	// from a replace in the same round trip.
	var created bool
	row := db.QueryRow(ctx, `
		INSERT INTO webhooks (tenant_id, url, events) VALUES ($1, $2, $3)
		ON CONFLICT (tenant_id) DO UPDATE SET url = EXCLUDED.url, events = EXCLUDED.events, updated_at = now()
		RETURNING `+webhookColumns+`, (xmax = 0)`,
		w.TenantID, w.URL, events)
	var out Webhook
	err := row.Scan(&out.TenantID, &out.URL, &out.Events, &out.CreatedAt, &out.UpdatedAt, &created)
	if isForeignKeyViolation(err, "") {
		return Webhook{}, false, fmt.Errorf("store: put webhook: tenant %q: %w", w.TenantID, ErrNotFound)
	}
	if err != nil {
		return Webhook{}, false, fmt.Errorf("store: put webhook of %q: %w", w.TenantID, err)
	}
	utc(&out.CreatedAt, &out.UpdatedAt)
	return out, created, nil
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
