package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestOAuthStateNonce: the nonce comes back with the state it was stored
// with, for either kind of state, and a state without one has none.
func TestOAuthStateNonce(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)
	l, _, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
	require.NoError(t, err)
	now := time.Now()

	tests := []struct {
		name, state, nonce string
		bound              bool
	}{
		{"query state with nonce", "st_nonce-query-0123456789abcdef", "nonce-query-abcdef", false},
		{"bound state with nonce", "st_nonce-bound-0123456789abcdef", "nonce-bound-abcdef", true},
		{"state without nonce", "st_no-nonce-0123456789abcdefghij", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := OAuthState{TenantID: l.TenantID, LinkID: l.ID, ExpiresAt: now.Add(time.Minute), Nonce: tt.nonce}
			if tt.bound {
				st.BrowserBound, st.AuthURL = true, "https://idp.example/auth?state=X"
			}
			require.NoError(t, s.PutOAuthState(ctx, tt.state, st))
			var got OAuthState
			if tt.bound {
				const binding = "binding-0123456789abcdefghijklmnop"
				started, err := s.StartOAuthState(ctx, tt.state, binding, now)
				require.NoError(t, err)
				require.Equal(t, tt.nonce, started.Nonce)
				got, err = s.ConsumeBoundOAuthState(ctx, tt.state, binding, now)
				require.NoError(t, err)
			} else {
				got, err = s.ConsumeOAuthState(ctx, tt.state, now)
				require.NoError(t, err)
			}
			require.Equal(t, tt.nonce, got.Nonce)
		})
	}
}

func TestLinkSubject(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)
	l, _, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
	require.NoError(t, err)

	sub, err := s.LinkSubject(ctx, l.TenantID, l.ID)
	require.NoError(t, err)
	require.Empty(t, sub, "no subject until an ID token was verified")

	require.NoError(t, s.SetLinkSubject(ctx, l.TenantID, l.ID, "end-user-alice"))
	require.NoError(t, s.SetLinkSubject(ctx, l.TenantID, l.ID, "end-user-alice"), "idempotent")
	sub, err = s.LinkSubject(ctx, l.TenantID, l.ID)
	require.NoError(t, err)
	require.Equal(t, "end-user-alice", sub)

	require.ErrorIs(t, s.SetLinkSubject(ctx, "other-tenant", l.ID, "end-user-mallory"), ErrNotFound)
	_, err = s.LinkSubject(ctx, "other-tenant", l.ID)
	require.ErrorIs(t, err, ErrNotFound)
	require.Error(t, s.SetLinkSubject(ctx, l.TenantID, l.ID, ""))
}
