package activities_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// oidcFake is a provider that verifies ID tokens: each exchange reports
// subject as the end-user who consented.
type oidcFake struct {
	*fakeProvider
	subject string
}

func (p *oidcFake) Exchange(ctx context.Context, g providers.Grant) (*providers.Token, error) {
	tok, err := p.fakeProvider.Exchange(ctx, g)
	if err == nil {
		tok.Subject = p.subject
	}
	return tok, err
}

func (p *oidcFake) AuthCodeURL(state, verifier, redirectURL string, scopes []string, params map[string]string) (string, error) {
	return "https://idp.example/auth", nil
}

func (p *oidcFake) AuthCodeURLNonce(state, verifier, nonce, redirectURL string, scopes []string, params map[string]string) (string, error) {
	return "https://idp.example/auth", nil
}

var _ providers.IDTokenVerifier = (*oidcFake)(nil)

// TestEnrollBindsTheSubject: the first verified ID token binds the link
// to its end-user; a re-authorization by another one is refused with a
// typed, permanent error and changes nothing stored (tokens, subject),
// unless the grant allows the change.
func TestEnrollBindsTheSubject(t *testing.T) {
	ctx := context.Background()
	p := &oidcFake{fakeProvider: &fakeProvider{expiresIn: time.Hour, rotate: true}, subject: "sub-alice"}
	f := newFixture(t, p)
	_, _, err := f.st.CreateLink(ctx, store.Link{ID: "lnk_a", TenantID: "default", Provider: "fake", UserID: "alice",
		GrantType: providers.GrantAuthorizationCode, Status: "pending", VaultPath: "links/default/lnk_a"})
	require.NoError(t, err)
	subject := func() string {
		t.Helper()
		sub, err := f.st.LinkSubject(ctx, "default", "lnk_a")
		require.NoError(t, err)
		return sub
	}
	reauthorize := func(allow bool) error {
		t.Helper()
		_, err := f.sec.WriteGrant(ctx, "default", "lnk_a", providers.Grant{Type: providers.GrantAuthorizationCode,
			Code: "code-secret-new", CodeVerifier: "verifier-secret-new", Nonce: "nonce-new", AllowSubjectChange: allow}, -1)
		require.NoError(t, err)
		_, err = f.env.ExecuteActivity(f.acts.Enroll, workflows.EnrollInput{LinkRef: ref(providers.GrantAuthorizationCode)})
		return err
	}

	f.enroll(t, providers.GrantAuthorizationCode, providers.Grant{Code: "code-secret-1", CodeVerifier: "verifier-secret-1", Nonce: "nonce-1"})
	assert.Equal(t, "sub-alice", subject(), "the first verified ID token binds the link")
	before, err := f.sec.ReadToken(ctx, "default", "lnk_a")
	require.NoError(t, err)
	assert.Equal(t, "sub-alice", before.Value.Subject)

	t.Run("same end-user", func(t *testing.T) {
		require.NoError(t, reauthorize(false))
		assert.Equal(t, "sub-alice", subject())
		before, err = f.sec.ReadToken(ctx, "default", "lnk_a")
		require.NoError(t, err)
	})

	t.Run("another end-user is refused", func(t *testing.T) {
		p.subject = "sub-mallory"
		exchanges := p.exchanges
		err := reauthorize(false)
		require.Error(t, err, "a re-authorization by another end-user was taken")
		var appErr *temporal.ApplicationError
		require.ErrorAs(t, err, &appErr)
		assert.Equal(t, workflows.ErrTypeSubjectChanged, appErr.Type())
		assert.True(t, appErr.NonRetryable())
		assert.Contains(t, appErr.Message(), "re-authorization refused: the ID token names another end-user")
		assert.Contains(t, appErr.Message(), "allow_subject_change")
		for _, leak := range []string{"sub-alice", "sub-mallory", "secret"} {
			assert.NotContains(t, appErr.Message(), leak)
		}
		assert.Equal(t, exchanges+1, p.exchanges)

		after, err := f.sec.ReadToken(ctx, "default", "lnk_a")
		require.NoError(t, err)
		assert.Equal(t, before.Version, after.Version, "the refused token was stored")
		assert.Equal(t, before.Value.AccessToken, after.Value.AccessToken)
		assert.Equal(t, before.Value.RefreshToken, after.Value.RefreshToken)
		assert.Equal(t, "sub-alice", subject(), "the link's subject changed")
		require.NotEmpty(t, p.revoked, "the refused token was left alive at the provider")
		assert.NotEqual(t, before.Value.RefreshToken, p.revoked[len(p.revoked)-1], "the link's own token was revoked")
	})

	t.Run("another end-user, allowed", func(t *testing.T) {
		require.NoError(t, reauthorize(true))
		assert.Equal(t, "sub-mallory", subject())
		after, err := f.sec.ReadToken(ctx, "default", "lnk_a")
		require.NoError(t, err)
		assert.Greater(t, after.Version, before.Version)
		g, err := f.sec.ReadGrant(ctx, "default", "lnk_a")
		require.NoError(t, err)
		assert.False(t, g.Value.AllowSubjectChange, "the permission outlived its re-authorization")
		assert.Empty(t, g.Value.Nonce)
		assert.Empty(t, g.Value.Code)
	})

	t.Run("the new end-user is bound now", func(t *testing.T) {
		p.subject = "sub-alice"
		err := reauthorize(false)
		var appErr *temporal.ApplicationError
		require.ErrorAs(t, err, &appErr)
		assert.Equal(t, workflows.ErrTypeSubjectChanged, appErr.Type())
		assert.Equal(t, "sub-mallory", subject())
	})
}
