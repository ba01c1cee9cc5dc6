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
// A trigger counts them as events are inserted (migration 011), so a poll
// reads a few rows per provider however long the audit trail has grown.
// The audit trail is append-only (link_events has no cascade), so each
// count only grows and serves as a Prometheus counter; a deliberate purge
// (which leaves these counts alone) would show as no change.
func (s *Store) RefreshCounts(ctx context.Context) ([]RefreshCount, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT provider, outcome, sum(count)::bigint
		FROM refresh_outcome_counts
		GROUP BY 1, 2
		ORDER BY 1, 2`)
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
