package norman

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/norman/sim"
)

// Every reply shape the simulator can speak that a provider should read:
// enrollment, refresh (rotating), retrieve after a dead refresh token.
func TestReplyShapes(t *testing.T) {
	for name, shape := range map[string]sim.Shape{"guide": sim.ShapeGuide, "snake": sim.ShapeSnake, "nested": sim.ShapeNested} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, sim.Options{Shape: shape, AccessTTL: 10 * time.Minute})
			ctx := context.Background()
			tok := f.enroll(t, "sam")
			assert.True(t, f.sim.Valid(tok.AccessToken))
			require.NotEmpty(t, tok.RefreshToken)
			assert.WithinDuration(t, time.Now().Add(10*time.Minute), tok.Expiry, 3*time.Second, "expiry from the JWT")
			next, err := f.p.Refresh(ctx, tok)
			require.NoError(t, err)
			f.remember(next)
			assert.True(t, f.sim.Valid(next.AccessToken))
			assert.True(t, tok.RefreshToken != next.RefreshToken, "rotated refresh token adopted")
			f.sim.ExpireRefreshTokens()
			again, err := f.p.Reenroll(ctx, userGrant("sam"))
			require.NoError(t, err)
			f.remember(again)
			assert.True(t, f.sim.Valid(again.AccessToken))
		})
	}
}

// A 2xx whose JSON holds no access token in any shape is a configuration
// error (Misconfigured, the engine fails the link) at the first reply; a
// body that is no JSON at all stays Transient.
func TestUnknownReplyShapeIsMisconfigured(t *testing.T) {
	f := newFixture(t, sim.Options{})
	ctx := context.Background()
	tok := f.enroll(t, "uma")
	f.sim.SetShape(sim.ShapeUnknown)
	_, err := f.p.Refresh(ctx, tok)
	pe := f.class(t, err, providers.Misconfigured)
	require.ErrorIs(t, err, ErrUnknownReplyShape)
	assert.Equal(t, http.StatusOK, pe.Status)
	assert.Contains(t, err.Error(), "keys: jwt")
	_, err = f.p.Exchange(ctx, userGrant("uma-2"))
	f.class(t, err, providers.Misconfigured)
	assert.Equal(t, 1, f.sim.Stats()["refresh"], "one request, no retry inside the provider")
}

// A username another person holds: users/create says it exists (400 or
// 409); token/retrieve with all three of the link's fields finds no one
// (a strict Norman) or, on a lenient one, answers for the other person,
// whose tokens are refused. Either way the link gets no tokens and the
// first user keeps hers.
func TestUsernameCollision(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     sim.Options
		wantCode string
	}{
		{"strict 400", sim.Options{}, CodeUserExists},
		{"strict 409", sim.Options{ConflictStatus: http.StatusConflict}, CodeUserExists},
		{"lenient 400", sim.Options{Retrieve: sim.RetrieveUsername}, CodeUserMismatch},
		{"lenient 409", sim.Options{Retrieve: sim.RetrieveUsername, ConflictStatus: http.StatusConflict}, CodeUserMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.opts)
			ctx := context.Background()
			first := f.enroll(t, "ann")
			other := providers.Grant{Type: GrantUser, Params: map[string]string{
				ParamUsername: "ann", ParamEmail: "another-ann@example.com", ParamExternalID: "ext-another-ann"}}
			tok, err := f.p.Exchange(ctx, other)
			assert.True(t, tok == nil, "no token for the second person")
			pe := f.class(t, err, providers.Permanent)
			assert.Equal(t, tc.wantCode, pe.Code)
			assert.NotContains(t, err.Error(), "another-ann@example.com", "no personal data in the error")
			// Re-enrollment of the second link after a dead refresh token
			// is refused the same way.
			_, err = f.p.Reenroll(ctx, other)
			require.Error(t, err)
			assert.True(t, f.sim.Valid(first.AccessToken), "the first user's token is untouched")
			// The first user's own repeated enrollment still works.
			again := f.enroll(t, "ann")
			assert.True(t, f.sim.Valid(again.AccessToken))
		})
	}
}

// owner reads the user from a "user" object, top-level or nested
// fields, and JWT claims; unstated fields contradict nothing.
func TestOwnerDiffers(t *testing.T) {
	id := identity{Username: "ann", Email: "Ann@Example.com", ExternalID: "e1"}
	assert.Empty(t, owner([]byte(`{"accessToken":"opaque"}`), "opaque").differs(id))
	assert.Empty(t, owner([]byte(`{"user":{"username":"ann","email":"ann@example.com"}}`), "x").differs(id))
	assert.Equal(t, []string{ParamExternalID}, owner([]byte(`{"data":{"externalId":"e2"}}`), "x").differs(id))
	assert.Equal(t, []string{ParamUsername, ParamEmail},
		owner([]byte(`{}`), fuzzJWT(`{"username":"bob","email":"bob@example.com"}`)).differs(id))
}
