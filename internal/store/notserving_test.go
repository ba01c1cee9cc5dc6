package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLinksNotServing: a full load finds links that entered a not-serving
// status; a poll since a moment finds only those that changed after it;
// active links are never listed.
func TestLinksNotServing(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)
	ids := map[string]string{}
	for _, status := range []string{"active", "reauth_required", "revoked"} {
		l, _, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
		require.NoError(t, err)
		require.NoError(t, s.RecordTransition(ctx, LinkState{TenantID: DefaultTenantID, LinkID: l.ID, Seq: 1, Status: status},
			Event{ID: l.ID + "/1", TenantID: DefaultTenantID, LinkID: l.ID, Type: "t", ToStatus: status, OccurredAt: time.Now()}))
		ids[status] = l.ID
	}
	got, dbNow, err := s.LinksNotServing(ctx, time.Time{}, time.Hour)
	require.NoError(t, err)
	require.False(t, dbNow.IsZero())
	seen := map[string]string{}
	for _, r := range got {
		seen[r.LinkID] = r.Status
	}
	require.Equal(t, map[string]string{ids["reauth_required"]: "reauth_required", ids["revoked"]: "revoked"}, seen)

	again, _, err := s.LinksNotServing(ctx, dbNow, time.Hour)
	require.NoError(t, err)
	require.Empty(t, again, "nothing changed since the last poll")

	require.NoError(t, s.RecordTransition(ctx, LinkState{TenantID: DefaultTenantID, LinkID: ids["active"], Seq: 2, Status: "failed"},
		Event{ID: ids["active"] + "/2", TenantID: DefaultTenantID, LinkID: ids["active"], Type: "t", ToStatus: "failed", OccurredAt: time.Now()}))
	changed, _, err := s.LinksNotServing(ctx, dbNow, time.Hour)
	require.NoError(t, err)
	require.Len(t, changed, 1)
	require.Equal(t, ids["active"], changed[0].LinkID)
}
