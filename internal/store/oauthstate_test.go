package store

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestOAuthState(t *testing.T) {
	t.Parallel()
	s, pool := testStore(t)
	ctx := testCtx(t)
	l, _, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
	require.NoError(t, err)

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const state = "st_0123456789abcdefghijklmnopqrstuv"
	require.NoError(t, s.PutOAuthState(ctx, state, OAuthState{
		TenantID: l.TenantID, LinkID: l.ID, ExpiresAt: now.Add(10 * time.Minute), ReturnURL: "https://app.example/done",
	}))
	requireNotStored(t, pool, state)

	// Unknown.
	_, err = s.ConsumeOAuthState(ctx, "st_unknown-but-long-enough", now)
	require.ErrorIs(t, err, ErrNotFound)

	got, err := s.ConsumeOAuthState(ctx, state, now)
	require.NoError(t, err)
	require.Equal(t, l.ID, got.LinkID)
	require.Equal(t, l.TenantID, got.TenantID)
	require.Equal(t, "https://app.example/done", got.ReturnURL)
	require.NotNil(t, got.UsedAt)
	require.True(t, now.Equal(*got.UsedAt))

	_, err = s.ConsumeOAuthState(ctx, state, now)
	require.ErrorIs(t, err, ErrStateUsed)
	// Used beats expired: the caller learns the state was replayed.
	_, err = s.ConsumeOAuthState(ctx, state, now.Add(time.Hour))
	require.ErrorIs(t, err, ErrStateUsed)

	// Expired.
	const expiring = "st_expiring-0123456789abcdefghijkl"
	require.NoError(t, s.PutOAuthState(ctx, expiring, OAuthState{TenantID: l.TenantID, LinkID: l.ID, ExpiresAt: now.Add(time.Minute)}))
	_, err = s.ConsumeOAuthState(ctx, expiring, now.Add(time.Minute))
	require.ErrorIs(t, err, ErrStateExpired, "expiry is exclusive")
	_, err = s.ConsumeOAuthState(ctx, expiring, now.Add(time.Hour))
	require.ErrorIs(t, err, ErrStateExpired)
	got, err = s.ConsumeOAuthState(ctx, expiring, now)
	require.NoError(t, err, "expired consumption attempts do not burn the state")
	require.Empty(t, got.ReturnURL)

	// Validation.
	require.Error(t, s.PutOAuthState(ctx, "short", OAuthState{TenantID: l.TenantID, LinkID: l.ID, ExpiresAt: now}))
	require.Error(t, s.PutOAuthState(ctx, "st_no-expiry-0123456789", OAuthState{TenantID: l.TenantID, LinkID: l.ID}))
	require.Error(t, s.PutOAuthState(ctx, state, OAuthState{TenantID: l.TenantID, LinkID: l.ID, ExpiresAt: now}), "duplicate state")

	// Purge removes only what expired before the cut-off.
	const fresh = "st_fresh-0123456789abcdefghijklmno"
	require.NoError(t, s.PutOAuthState(ctx, fresh, OAuthState{TenantID: l.TenantID, LinkID: l.ID, ExpiresAt: now.Add(24 * time.Hour)}))
	n, err := s.PurgeOAuthStates(ctx, now.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
	_, err = s.ConsumeOAuthState(ctx, fresh, now)
	require.NoError(t, err)
}

func TestOAuthStateConcurrentConsume(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)
	l, _, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
	require.NoError(t, err)

	now := time.Now()
	const state = "st_concurrent-0123456789abcdefghij"
	require.NoError(t, s.PutOAuthState(ctx, state, OAuthState{TenantID: l.TenantID, LinkID: l.ID, ExpiresAt: now.Add(time.Minute)}))

	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.ConsumeOAuthState(ctx, state, now)
		}()
	}
	wg.Wait()
	successes := 0
	for _, err := range errs {
		if err == nil {
			successes++
			continue
		}
		require.ErrorIs(t, err, ErrStateUsed)
	}
	require.Equal(t, 1, successes)
}
