package store

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestWebhookPutGetDelete(t *testing.T) {
	t.Parallel()
	s, pool := testStore(t)
	ctx := testCtx(t)

	_, err := s.GetWebhook(ctx, DefaultTenantID)
	require.ErrorIs(t, err, ErrNotFound)

	w, created, err := s.PutWebhook(ctx, Webhook{TenantID: DefaultTenantID, URL: "https://hooks.example/a", Events: []string{"link.revoked"}})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, []string{"link.revoked"}, w.Events)
	require.True(t, w.Wants("link.revoked"))
	require.False(t, w.Wants("link.active"))

	w2, created, err := s.PutWebhook(ctx, Webhook{TenantID: DefaultTenantID, URL: "https://hooks.example/b"})
	require.NoError(t, err)
	require.False(t, created, "a second put replaces")
	require.Equal(t, w.CreatedAt, w2.CreatedAt)
	require.Empty(t, w2.Events)
	require.True(t, w2.Wants("link.active"), "no events means all")

	got, err := s.GetWebhook(ctx, DefaultTenantID)
	require.NoError(t, err)
	require.Equal(t, w2, got)

	// The Tx twins see and lock the same row.
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		locked, err := s.LockWebhookTx(ctx, tx, DefaultTenantID)
		require.NoError(t, err)
		require.Equal(t, "https://hooks.example/b", locked.URL)
		return s.DeleteWebhookTx(ctx, tx, DefaultTenantID)
	}))
	require.ErrorIs(t, s.DeleteWebhook(ctx, DefaultTenantID), ErrNotFound)

	_, _, err = s.PutWebhook(ctx, Webhook{TenantID: "no-such-tenant", URL: "https://hooks.example/"})
	require.ErrorIs(t, err, ErrNotFound)
}
