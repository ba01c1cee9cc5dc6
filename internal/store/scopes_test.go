package store

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A transition records the scopes granted with the link's token; one
// without scopes keeps those stored.
func TestUpdateLinkStateScopes(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)
	in := newTestLink(DefaultTenantID)
	in.Scopes = []string{"openid"}
	l, _, err := s.CreateLink(ctx, in)
	require.NoError(t, err)

	for _, tc := range []struct {
		seq    int64
		scopes []string
		want   []string
	}{
		{1, nil, []string{"openid"}},
		{2, []string{"openid", "api:read"}, []string{"openid", "api:read"}},
		{3, nil, []string{"openid", "api:read"}},
	} {
		_, err := s.UpdateLinkState(ctx, LinkState{TenantID: l.TenantID, LinkID: l.ID, Seq: tc.seq, Status: "active", Scopes: tc.scopes})
		require.NoError(t, err)
		got, err := s.GetLink(ctx, l.TenantID, l.ID)
		require.NoError(t, err)
		require.Equalf(t, tc.want, got.Scopes, "after seq %d", tc.seq)
	}
}
