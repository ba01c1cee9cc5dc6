package store

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLinkAndRefreshCounts(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)

	// An empty schema counts nothing and is not an error.
	links, err := s.LinkCounts(ctx)
	require.NoError(t, err)
	require.Empty(t, links)
	refreshes, err := s.RefreshCounts(ctx)
	require.NoError(t, err)
	require.Empty(t, refreshes)

	_, err = s.EnsureTenant(ctx, "acme", "Acme")
	require.NoError(t, err)
	newLink := func(tenant, provider, status string) Link {
		in := newTestLink(tenant)
		in.Provider, in.Status = provider, status
		l, _, err := s.CreateLink(ctx, in)
		require.NoError(t, err)
		return l
	}
	g1 := newLink(DefaultTenantID, "google", "active")
	g2 := newLink("acme", "google", "active")
	newLink(DefaultTenantID, "google", "pending")
	n1 := newLink("acme", "norman", "degraded")

	seq := 0
	event := func(l Link, typ string) {
		seq++
		_, err := s.AppendEvent(ctx, Event{ID: fmt.Sprintf("ev-%d", seq), TenantID: l.TenantID, LinkID: l.ID, Type: typ})
		require.NoError(t, err)
	}
	// Events that are not refresh outcomes count nowhere.
	event(g1, "created")
	event(g1, "enrolled")
	event(g1, "refresh_started")
	event(g1, "refreshed")
	event(g2, "refreshed")
	event(g2, "refresh_failed")
	event(g2, "recovered")
	event(n1, "reenrolled")
	event(n1, "refresh_failed")
	event(n1, "failed")
	event(n1, "reauth_required")
	event(n1, "enroll_failed")
	event(n1, "revoked")

	links, err = s.LinkCounts(ctx)
	require.NoError(t, err)
	require.Equal(t, []LinkCount{
		{Provider: "google", Status: "active", Count: 2},
		{Provider: "google", Status: "pending", Count: 1},
		{Provider: "norman", Status: "degraded", Count: 1},
	}, links)

	refreshes, err = s.RefreshCounts(ctx)
	require.NoError(t, err)
	require.Equal(t, []RefreshCount{
		{Provider: "google", Outcome: RefreshOutcomeFailed, Count: 1},
		{Provider: "google", Outcome: RefreshOutcomeOK, Count: 3},
		{Provider: "norman", Outcome: RefreshOutcomeFailed, Count: 2},
		{Provider: "norman", Outcome: RefreshOutcomeOK, Count: 1},
		{Provider: "norman", Outcome: RefreshOutcomeReauth, Count: 1},
	}, refreshes)
}

// TestRefreshCountsSurviveTheMigrationAndRetries: events written before
// the counting trigger existed are counted by its migration, and a
// retried record (same event ID) counts once.
func TestRefreshCountsSurviveTheMigrationAndRetries(t *testing.T) {
	t.Parallel()
	s, pool := testStore(t)
	ctx := testCtx(t)
	l, _, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
	require.NoError(t, err)
	record := func(id, typ string) {
		_, err := s.AppendEvent(ctx, Event{ID: id, TenantID: l.TenantID, LinkID: l.ID, Type: typ})
		require.NoError(t, err)
	}
	record("before-1", "refreshed")
	record("before-2", "reauth_required")
	require.NoError(t, MigrateDown(ctx, pool, 10))
	record("old-layout", "refreshed") // written while only the audit trail counted
	require.NoError(t, Migrate(ctx, pool))
	record("after", "refreshed")
	record("after", "refreshed") // a retried record
	got, err := s.RefreshCounts(ctx)
	require.NoError(t, err)
	require.Equal(t, []RefreshCount{
		{Provider: l.Provider, Outcome: RefreshOutcomeOK, Count: 3},
		{Provider: l.Provider, Outcome: RefreshOutcomeReauth, Count: 1},
	}, got)
}
