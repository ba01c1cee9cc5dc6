package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Event types the engine records. The column is free text so that new
// types need no migration.
const (
	EventEnrolled      = "enrolled"
	EventStatusChanged = "status_changed"
	EventRefreshed     = "refreshed"
	EventRefreshFailed = "refresh_failed"
	EventRevoked       = "revoked"
)

// Event is one audit-trail entry of a link. Detail must hold nothing secret.
type Event struct {
	// ID is chosen by the caller and deterministic (e.g. workflow ID + "/" +
	// sequence), which is what makes appending it idempotent.
	ID         string
	TenantID   string
	LinkID     string
	Type       string
	FromStatus string
	ToStatus   string
	Detail     map[string]any
	// OccurredAt defaults to the database's now() when zero. Workflows pass
	// their own deterministic time.
	OccurredAt time.Time
}

const eventColumns = `id, tenant_id, link_id, type, from_status, to_status, detail, occurred_at`

func scanEvent(row pgx.Row) (Event, error) {
	var (
		e        Event
		from, to *string
	)
	if err := row.Scan(&e.ID, &e.TenantID, &e.LinkID, &e.Type, &from, &to, &e.Detail, &e.OccurredAt); err != nil {
		return Event{}, err
	}
	utc(&e.OccurredAt)
	e.FromStatus, e.ToStatus = derefString(from), derefString(to)
	return e, nil
}

// AppendEvent records e unless an event with its ID exists, reporting
// whether it inserted. A link that does not exist in e.TenantID yields
// ErrNotFound.
func (s *Store) AppendEvent(ctx context.Context, e Event) (bool, error) {
	return appendEvent(ctx, s.pool, e)
}

// AppendEventTx is AppendEvent inside the caller's transaction, so an audit
// row commits or rolls back with the change it describes.
func (s *Store) AppendEventTx(ctx context.Context, tx pgx.Tx, e Event) (bool, error) {
	return appendEvent(ctx, tx, e)
}

func appendEvent(ctx context.Context, db DBTX, e Event) (bool, error) {
	if e.ID == "" || e.TenantID == "" || e.LinkID == "" || e.Type == "" {
		return false, errors.New("store: append event: id, tenant id, link id and type are required")
	}
	var occurredAt *time.Time
	if !e.OccurredAt.IsZero() {
		occurredAt = &e.OccurredAt
	}
	tag, err := db.Exec(ctx, `
		INSERT INTO link_events (id, tenant_id, link_id, type, from_status, to_status, detail, occurred_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now()))
		ON CONFLICT (id) DO NOTHING`,
		e.ID, e.TenantID, e.LinkID, e.Type, nullString(e.FromStatus), nullString(e.ToStatus),
		nonNilMetadata(e.Detail), occurredAt,
	)
	if isForeignKeyViolation(err, "link_events_link_fkey") {
		return false, fmt.Errorf("store: append event %q: link %q: %w", e.ID, e.LinkID, ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("store: append event %q: %w", e.ID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ListEvents returns one page of a link's events, oldest first, and the
// cursor of the next page ("" on the last). limit follows ListFilter.Limit.
// A link that does not exist in the tenant yields ErrNotFound, an alien
// cursor ErrBadCursor.
func (s *Store) ListEvents(ctx context.Context, tenantID, linkID, cur string, limit int) ([]Event, string, error) {
	limit = pageLimit(limit)
	var after *cursor
	if cur != "" {
		c, err := decodeCursor(cur)
		if err != nil {
			return nil, "", fmt.Errorf("store: list events: %w", err)
		}
		after = &c
	}
	query := `SELECT ` + eventColumns + ` FROM link_events
		WHERE tenant_id = $1 AND link_id = $2`
	args := []any{tenantID, linkID}
	if after != nil {
		query += ` AND (occurred_at, id) > ($3, $4)`
		args = append(args, after.T, after.I)
	}
	args = append(args, limit+1)
	query += fmt.Sprintf(` ORDER BY occurred_at, id LIMIT $%d`, len(args))

	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list events: %w", err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) { return scanEvent(row) })
	if err != nil {
		return nil, "", fmt.Errorf("store: list events: %w", err)
	}
	if len(events) == 0 {
		// Only an empty page pays for telling "no events" from "no such
		// link for this tenant".
		if _, err := s.GetLink(ctx, tenantID, linkID); err != nil {
			return nil, "", fmt.Errorf("store: list events: %w", err)
		}
		return events, "", nil
	}
	if len(events) <= limit {
		return events, "", nil
	}
	events = events[:limit]
	last := events[limit-1]
	return events, encodeCursor(last.OccurredAt, last.ID), nil
}

// RecordTransition writes a link's new state and the event describing it
// in one transaction. It is idempotent: replaying it (same Seq, same event
// ID) changes nothing. A stale state (Seq not above the stored one) is not
// applied, yet its event is still appended if new, so the audit trail keeps
// whatever the workflow reported.
func (s *Store) RecordTransition(ctx context.Context, st LinkState, e Event) error {
	if e.TenantID != st.TenantID || e.LinkID != st.LinkID {
		return errors.New("store: record transition: state and event name different links")
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := updateLinkState(ctx, tx, st); err != nil {
			return err
		}
		_, err := appendEvent(ctx, tx, e)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: record transition: %w", err)
	}
	return nil
}
