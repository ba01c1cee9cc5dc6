package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Refresh outcomes as RefreshCounts reports them.
const (
	RefreshOutcomeOK     = "ok"
	RefreshOutcomeFailed = "failed"
	RefreshOutcomeReauth = "reauth_required"
)

// LinkCount is the number of links of one provider in one status.
type LinkCount struct {
	Provider string
	Status   string
	Count    int64
}

// RefreshCount is the number of refresh attempts of one provider's links
// that ended in one outcome, over the whole audit trail.
type RefreshCount struct {
	Provider string
	Outcome  string
	Count    int64
}

// LinkCounts counts links by provider and status, across tenants. It
// scans the links table: meant for a metrics scrape, not a request path.
func (s *Store) LinkCounts(ctx context.Context) ([]LinkCount, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT provider, status, count(*)
		FROM links
		GROUP BY provider, status
		ORDER BY provider, status`)
	if err != nil {
		return nil, fmt.Errorf("store: count links: %w", err)
	}
	counts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (LinkCount, error) {
		var c LinkCount
		err := row.Scan(&c.Provider, &c.Status, &c.Count)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: count links: %w", err)
	}
	return counts, nil
}

// RefreshCounts counts the outcomes of refresh attempts by provider, from
// the audit trail. The event types are the ones the link workflow records
// when a refresh ends (workflows/link.go, refresh): "refreshed",
// "recovered" (after a degraded spell) and "reenrolled" (Norman's
// token/retrieve) succeeded; "refresh_failed" (transient, the link is
// degraded) and "failed" (a configuration error ends the link) failed;
// "reauth_required" means the provider rejected the grant.
//
// The audit trail is append-only (link_events has no cascade), so each
// count only grows and serves as a Prometheus counter; a deliberate purge
// shows as a counter reset, which Prometheus handles.
func (s *Store) RefreshCounts(ctx context.Context) ([]RefreshCount, error) {
	// The join is on (tenant_id, id), the key link_events references, so
	// it cannot pair an event with another tenant's link of the same ID.
	rows, err := s.pool.Query(ctx, `
		SELECT l.provider,
		       CASE e.type
		         WHEN 'refreshed'       THEN $1
		         WHEN 'recovered'       THEN $1
		         WHEN 'reenrolled'      THEN $1
		         WHEN 'refresh_failed'  THEN $2
		         WHEN 'failed'          THEN $2
		         WHEN 'reauth_required' THEN $3
		       END AS outcome,
		       count(*)
		FROM link_events e
		JOIN links l ON l.tenant_id = e.tenant_id AND l.id = e.link_id
		WHERE e.type IN ('refreshed', 'recovered', 'reenrolled', 'refresh_failed', 'failed', 'reauth_required')
		GROUP BY 1, 2
		ORDER BY 1, 2`,
		RefreshOutcomeOK, RefreshOutcomeFailed, RefreshOutcomeReauth)
	if err != nil {
		return nil, fmt.Errorf("store: count refreshes: %w", err)
	}
	counts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RefreshCount, error) {
		var c RefreshCount
		err := row.Scan(&c.Provider, &c.Outcome, &c.Count)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: count refreshes: %w", err)
	}
	return counts, nil
}
