package store

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	s, pool := testStore(t)
	ctx := testCtx(t)
	_, err := s.EnsureTenant(ctx, "other", "Other")
	require.NoError(t, err)

	key, k, err := s.CreateAPIKey(ctx, DefaultTenantID, "ci")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(key, APIKeyPrefix))
	require.Len(t, key, len(APIKeyPrefix)+43, "32 random bytes, base64url")
	require.Equal(t, key[:8], k.Prefix)
	require.Regexp(t, `^key_`, k.ID)
	require.Nil(t, k.RevokedAt)

	found, err := s.LookupAPIKey(ctx, key)
	require.NoError(t, err)
	require.Equal(t, k.ID, found.ID)
	require.Equal(t, DefaultTenantID, found.TenantID)

	// last_used_at is recorded.
	listed, err := s.ListAPIKeys(ctx, DefaultTenantID)
	require.NoError(t, err)
	require.Len(t, listed, 1)
	require.NotNil(t, listed[0].LastUsedAt)

	for _, wrong := range []string{"", key + "x", key[:len(key)-1], strings.ToUpper(key)} {
		_, err = s.LookupAPIKey(ctx, wrong)
		require.ErrorIs(t, err, ErrNotFound)
	}

	requireNotStored(t, pool, key)
	requireNotStored(t, pool, key[len(APIKeyPrefix):])

	// Other tenants cannot see or revoke it.
	otherKeys, err := s.ListAPIKeys(ctx, "other")
	require.NoError(t, err)
	require.Empty(t, otherKeys)
	_, err = s.RevokeAPIKey(ctx, "other", k.ID)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = s.LookupAPIKey(ctx, key)
	require.NoError(t, err)

	revoked, err := s.RevokeAPIKey(ctx, DefaultTenantID, k.ID)
	require.NoError(t, err)
	require.NotNil(t, revoked.RevokedAt)
	_, err = s.LookupAPIKey(ctx, key)
	require.ErrorIs(t, err, ErrNotFound)
	again, err := s.RevokeAPIKey(ctx, DefaultTenantID, k.ID)
	require.NoError(t, err)
	require.True(t, revoked.RevokedAt.Equal(*again.RevokedAt), "first revocation time kept")

	_, _, err = s.CreateAPIKey(ctx, "nope", "x")
	require.ErrorIs(t, err, ErrNotFound)
}

func TestInsertAPIKeyHash(t *testing.T) {
	t.Parallel()
	s, pool := testStore(t)
	ctx := testCtx(t)
	_, err := s.EnsureTenant(ctx, "other", "Other")
	require.NoError(t, err)

	const bootstrap = "bootstrap-key-from-config-0123456789"
	k1, err := s.InsertAPIKeyHash(ctx, DefaultTenantID, "bootstrap", bootstrap)
	require.NoError(t, err)
	k2, err := s.InsertAPIKeyHash(ctx, DefaultTenantID, "bootstrap", bootstrap)
	require.NoError(t, err)
	require.Equal(t, k1, k2, "idempotent on the key")

	found, err := s.LookupAPIKey(ctx, bootstrap)
	require.NoError(t, err)
	require.Equal(t, k1.ID, found.ID)
	requireNotStored(t, pool, bootstrap)

	_, err = s.InsertAPIKeyHash(ctx, "other", "bootstrap", bootstrap)
	require.Error(t, err, "one key cannot serve two tenants")

	_, err = s.InsertAPIKeyHash(ctx, DefaultTenantID, "short", "short")
	require.Error(t, err)

	// A revoked bootstrap key stays revoked across restarts.
	_, err = s.RevokeAPIKey(ctx, DefaultTenantID, k1.ID)
	require.NoError(t, err)
	k3, err := s.InsertAPIKeyHash(ctx, DefaultTenantID, "bootstrap", bootstrap)
	require.NoError(t, err)
	require.NotNil(t, k3.RevokedAt)
	_, err = s.LookupAPIKey(ctx, bootstrap)
	require.ErrorIs(t, err, ErrNotFound)
}

// TestAPIKeyRateLimit: a key's own rate is stored with it and read back
// by LookupAPIKey; zero returns it to the gateway's default.
func TestAPIKeyRateLimit(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)
	key, k, err := s.CreateAPIKey(ctx, DefaultTenantID, "rated")
	require.NoError(t, err)
	require.Zero(t, k.RateLimit)
	require.NoError(t, s.SetAPIKeyRateLimit(ctx, DefaultTenantID, k.ID, 250))
	got, err := s.LookupAPIKey(ctx, key)
	require.NoError(t, err)
	require.Equal(t, 250.0, got.RateLimit)
	require.NoError(t, s.SetAPIKeyRateLimit(ctx, DefaultTenantID, k.ID, 0))
	got, err = s.LookupAPIKey(ctx, key)
	require.NoError(t, err)
	require.Zero(t, got.RateLimit)
	require.ErrorIs(t, s.SetAPIKeyRateLimit(ctx, "other", k.ID, 5), ErrNotFound)
}
