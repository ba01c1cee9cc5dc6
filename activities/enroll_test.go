package activities_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/internal/store"
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
		v, err := f.env.ExecuteActivity(f.acts.Enroll, workflows.EnrollInput{LinkRef: ref(providers.GrantAuthorizationCode)})
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

// TestLeanEnrollmentRecordsAndAnswersTheWebhookQuestion: an Enroll given
// the planned record and the webhook question writes the one and answers
// the other, so the workflow runs no other activity; the record carries
// the token's expiry and the next refresh.
func TestLeanEnrollmentRecordsAndAnswersTheWebhookQuestion(t *testing.T) {
	f := newFixture(t, &fakeProvider{expiresIn: time.Hour})
	ctx := context.Background()
	_, _, err := f.st.CreateLink(ctx, store.Link{ID: "lnk_a", TenantID: "default", Provider: "fake", UserID: "u",
		GrantType: providers.GrantClientCredentials, Status: "pending", VaultPath: "x"})
	require.NoError(t, err)
	_, err = f.sec.WriteGrant(ctx, "default", "lnk_a", providers.Grant{Type: providers.GrantClientCredentials}, -1)
	require.NoError(t, err)
	in := workflows.EnrollInput{
		LinkRef: ref(providers.GrantClientCredentials),
		Record: &workflows.Transition{LinkRef: ref(providers.GrantClientCredentials), EventID: "link/default/lnk_a/1", Seq: 1,
			Type: "enrolled", To: workflows.StatusActive},
		Webhook: &workflows.WebhookCheck{TenantID: "default", Type: workflows.WebhookLinkActive},
	}
	v, err := f.env.ExecuteActivity(f.acts.Enroll, in)
	require.NoError(t, err)
	var info workflows.TokenInfo
	require.NoError(t, v.Get(&info))
	assert.True(t, info.Recorded)
	require.NotNil(t, info.Subscribed, "the webhook question is answered")
	assert.False(t, *info.Subscribed, "no webhook configured")
	l, err := f.st.GetLink(ctx, "default", "lnk_a")
	require.NoError(t, err)
	assert.Equal(t, "active", l.Status)
	require.NotNil(t, l.ExpiresAt)
	assert.WithinDuration(t, info.ExpiresAt, *l.ExpiresAt, time.Second)
	require.NotNil(t, l.NextRefreshAt, "the record says when the link refreshes")
	assert.True(t, l.NextRefreshAt.Before(*l.ExpiresAt))
}
