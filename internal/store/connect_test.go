package store

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A connect session is stored under the hash of its token only, can be
// read until it is spent or expires, is spent once (also under
// concurrency), and says why it cannot be used.
func TestConnectSession(t *testing.T) {
	t.Parallel()
	s, pool := testStore(t)
	ctx := testCtx(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const token = "cst_0123456789abcdefghijklmnopqrstuvwxyzABCD"

	cs, err := s.CreateConnectSession(ctx, token, ConnectSession{
		TenantID: DefaultTenantID, UserID: "alice", Providers: []string{"luca", "finapi"},
		ReturnURL: "https://app.example/done", ExpiresAt: now.Add(15 * time.Minute),
	})
	require.NoError(t, err)
	require.Regexp(t, `^cs_[a-z2-7]{24}$`, cs.ID)
	require.Equal(t, []string{}, cs.Scopes)
	requireNotStored(t, pool, token)

	got, err := s.GetConnectSession(ctx, token, now)
	require.NoError(t, err)
	require.Equal(t, cs.ID, got.ID)
	require.Equal(t, []string{"luca", "finapi"}, got.Providers)
	require.Equal(t, "https://app.example/done", got.ReturnURL)
	require.Nil(t, got.UsedAt)

	_, err = s.GetConnectSession(ctx, "cst_unknown-0123456789abcdefghijklmnopq", now)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = s.GetConnectSession(ctx, token, now.Add(15*time.Minute))
	require.ErrorIs(t, err, ErrSessionExpired, "expiry is exclusive")
	_, err = s.ConsumeConnectSession(ctx, token, now.Add(time.Hour))
	require.ErrorIs(t, err, ErrSessionExpired)

	// Spent once, by exactly one of many concurrent submissions.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
		used int
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.ConsumeConnectSession(ctx, token, now)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, ErrSessionUsed):
				used++
			default:
				t.Errorf("consume: %v", err)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 1, wins)
	require.Equal(t, 7, used)
	_, err = s.GetConnectSession(ctx, token, now)
	require.ErrorIs(t, err, ErrSessionUsed)
	_, err = s.ConsumeConnectSession(ctx, token, now.Add(time.Hour))
	require.ErrorIs(t, err, ErrSessionUsed, "used beats expired")

	// A reconnect names a link of the tenant; another tenant's is unknown.
	l, _, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
	require.NoError(t, err)
	const reconnect = "cst_reconnect-0123456789abcdefghijklmnopq"
	rc, err := s.CreateConnectSession(ctx, reconnect, ConnectSession{TenantID: DefaultTenantID, UserID: l.UserID,
		Providers: []string{l.Provider}, LinkID: l.ID, Scopes: []string{"api:read"}, ExpiresAt: now.Add(time.Minute)})
	require.NoError(t, err)
	require.Equal(t, l.ID, rc.LinkID)
	require.Equal(t, []string{"api:read"}, rc.Scopes)
	_, err = s.EnsureTenant(ctx, "other", "Other")
	require.NoError(t, err)
	_, err = s.CreateConnectSession(ctx, "cst_other-tenant-0123456789abcdefghijklm", ConnectSession{TenantID: "other",
		UserID: "bob", Providers: []string{l.Provider}, LinkID: l.ID, ExpiresAt: now.Add(time.Minute)})
	require.ErrorIs(t, err, ErrNotFound)

	// Validation.
	for name, tc := range map[string]struct {
		token string
		cs    ConnectSession
	}{
		"short token":  {"cst_short", ConnectSession{TenantID: DefaultTenantID, UserID: "a", Providers: []string{"p"}, ExpiresAt: now}},
		"no user":      {token + "x", ConnectSession{TenantID: DefaultTenantID, Providers: []string{"p"}, ExpiresAt: now}},
		"no providers": {token + "y", ConnectSession{TenantID: DefaultTenantID, UserID: "a", ExpiresAt: now}},
		"no expiry":    {token + "z", ConnectSession{TenantID: DefaultTenantID, UserID: "a", Providers: []string{"p"}}},
		"same token":   {token, ConnectSession{TenantID: DefaultTenantID, UserID: "a", Providers: []string{"p"}, ExpiresAt: now}},
	} {
		_, err := s.CreateConnectSession(ctx, tc.token, tc.cs)
		require.Errorf(t, err, "%s", name)
	}

	// Purge removes only what expired before the cut-off.
	n, err := s.PurgeConnectSessions(ctx, now.Add(2*time.Minute))
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the reconnect session expired; the spent one has not yet")
	_, err = s.GetConnectSession(ctx, reconnect, now)
	require.ErrorIs(t, err, ErrNotFound)
}
