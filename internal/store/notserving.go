package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// NotServingStatuses are the link statuses whose access token must never
// be served: the grant is dead, the link ended, or it was revoked.
var NotServingStatuses = []string{"reauth_required", "failed", "revoked"}

// LinkStatusChange is a link that entered a not-serving status.
type LinkStatusChange struct {
	TenantID, LinkID, Status string
	UpdatedAt                time.Time
	ExpiresAt                *time.Time
}

// LinksNotServing returns the links in a NotServingStatuses status whose
// row changed after since; with a zero since, those changed within window
// or whose last token is still unexpired (a full load). It also returns
// the database's clock at the query, the since of the next call. The
// partial index links_not_serving_updated_idx serves it.
func (s *Store) LinksNotServing(ctx context.Context, since time.Time, window time.Duration) ([]LinkStatusChange, time.Time, error) {
	var (
		rows pgx.Rows
		err  error
	)
	const cols = `SELECT tenant_id, id, status, updated_at, expires_at, now() FROM links WHERE status = ANY($1) AND `
	if since.IsZero() {
		rows, err = s.pool.Query(ctx, cols+`(updated_at > now() - make_interval(secs => $2) OR expires_at > now())`,
			NotServingStatuses, window.Seconds())
	} else {
		rows, err = s.pool.Query(ctx, cols+`updated_at > $2`, NotServingStatuses, since)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("links not serving: %w", err)
	}
	defer rows.Close()
	var (
		out   []LinkStatusChange
		dbNow time.Time
	)
	for rows.Next() {
		var r LinkStatusChange
		if err := rows.Scan(&r.TenantID, &r.LinkID, &r.Status, &r.UpdatedAt, &r.ExpiresAt, &dbNow); err != nil {
			return nil, time.Time{}, fmt.Errorf("links not serving: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, time.Time{}, fmt.Errorf("links not serving: %w", err)
	}
	if dbNow.IsZero() {
		if err := s.pool.QueryRow(ctx, `SELECT now()`).Scan(&dbNow); err != nil {
			return nil, time.Time{}, fmt.Errorf("links not serving: %w", err)
		}
	}
	return out, dbNow, nil
}
