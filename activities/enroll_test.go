package activities_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// TestEnrollIsIdempotentAcrossReauthorization: a repeated Enroll of the
// same grant (an attempt retried after its Vault write) adopts the stored
// token, whether or not the spent code was dropped yet; a new code (a
// re-authorization) is exchanged, never answered with the older token.
func TestEnrollIsIdempotentAcrossReauthorization(t *testing.T) {
	ctx := context.Background()
	p := &fakeProvider{expiresIn: time.Hour, rotate: true}
	f := newFixture(t, p)
	first := f.enroll(t, providers.GrantAuthorizationCode, providers.Grant{Code: "code-secret-1", CodeVerifier: "verifier-secret-1"})
	require.Equal(t, 1, p.exchanges)

	again := func() workflows.TokenInfo {
		t.Helper()
		v, err := f.env.ExecuteActivity(f.acts.Enroll, ref(providers.GrantAuthorizationCode))
		require.NoError(t, err)
		var info workflows.TokenInfo
		require.NoError(t, v.Get(&info))
		return info
	}
	// Retried after the code was dropped.
	info := again()
	assert.Equal(t, 1, p.exchanges, "a retried enrollment sent the spent code again")
	assert.Equal(t, first.VaultVersion, info.VaultVersion)

	// Grant material stored after the enrollment is a new authorization
	// (the gateway's callback), even with the same code: exchanged. (A
	// retry before the code was dropped, same grant version, is
	// TestEnrollRetryAfterWorkerKilled in worker/.)
	g, err := f.sec.ReadGrant(ctx, "default", "lnk_a")
	require.NoError(t, err)
	g.Value.Code, g.Value.CodeVerifier = "code-secret-1", "verifier-secret-1"
	_, err = f.sec.WriteGrant(ctx, "default", "lnk_a", g.Value, g.Version)
	require.NoError(t, err)
	again()
	assert.Equal(t, 2, p.exchanges)

	// A refreshed token is never adopted by an enrollment.
	_, err = f.refresh(0, providers.GrantAuthorizationCode)
	require.NoError(t, err)
	g, err = f.sec.ReadGrant(ctx, "default", "lnk_a")
	require.NoError(t, err)
	g.Value.Code, g.Value.CodeVerifier = "code-secret-2", "verifier-secret-2"
	_, err = f.sec.WriteGrant(ctx, "default", "lnk_a", g.Value, g.Version)
	require.NoError(t, err)
	reauth := again()
	assert.Equal(t, 3, p.exchanges, "a re-authorization adopted the older token")
	tok, err := f.sec.ReadToken(ctx, "default", "lnk_a")
	require.NoError(t, err)
	assert.Equal(t, reauth.VaultVersion, tok.Version)
	assert.Equal(t, "access-secret-4", tok.Value.AccessToken)

	// And its retry adopts the new one.
	again()
	assert.Equal(t, 3, p.exchanges)
}
