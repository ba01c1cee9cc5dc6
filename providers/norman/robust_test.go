package norman

import (
	"context"
	"net/http"
	"net/http/httptest"
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
// error (Misconfigured, the engine fails the link) at the first reply.
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

// A complete 2xx that is no JSON object (here an HTML page, as a web
// site answers when base_url points at it) is a configuration error at
// the first reply, whichever call gets it, with a message naming what
// came back but none of it; one request each, no retry.
func TestNonJSONReplyIsMisconfigured(t *testing.T) {
	f := newFixture(t, sim.Options{})
	ctx := context.Background()
	tok := f.enroll(t, "nia")
	f.sim.SetShape(sim.ShapeHTML)
	check := func(err error) {
		t.Helper()
		pe := f.class(t, err, providers.Misconfigured)
		assert.Equal(t, http.StatusOK, pe.Status)
		assert.Contains(t, err.Error(), "not a JSON object")
		assert.Contains(t, err.Error(), "text/html")
		assert.Contains(t, err.Error(), "base_url")
		assert.NotContains(t, err.Error(), "Norman</", "nothing of the page in the error")
		assert.NotErrorIs(t, err, providers.ErrMalformedReply)
	}
	_, err := f.p.Refresh(ctx, tok)
	check(err)
	_, err = f.p.Exchange(ctx, userGrant("nia-2"))
	check(err)
	_, err = f.p.Reenroll(ctx, userGrant("nia"))
	check(err)
	assert.Equal(t, map[string]int{"create": 2, "refresh": 1, "retrieve": 1}, f.sim.Stats(),
		"one request per call, no retry inside the provider")
}

// How a 2xx token reply that yields no token is classified: a complete
// body that is no JSON object is Misconfigured; a body cut off on the way
// (a read error, or JSON that stops short) is Transient.
func TestUndecodableReplies(t *testing.T) {
	p := fuzzProvider(t)
	for _, tc := range []struct {
		body  string
		ctype string
		want  providers.Class
	}{
		{`<!DOCTYPE html><html><body>Norman</body></html>`, "text/html", providers.Misconfigured},
		{`<html>502 Bad Gateway</html>`, "", providers.Misconfigured},
		{``, "", providers.Misconfigured},
		{"  \n", "application/json", providers.Misconfigured},
		{`OK`, "text/plain", providers.Misconfigured},
		{`[]`, "application/json", providers.Misconfigured},
		{`null`, "application/json", providers.Misconfigured},
		{`"accessToken"`, "application/json", providers.Misconfigured},
		{`{"accessToken":"x"} trailing`, "application/json", providers.Misconfigured},
		{`{"accessToken":"x"}{"access":"y"}`, "application/json", providers.Misconfigured},
		{`{"access": "`, "application/json", providers.Transient},
		{`{"accessToken":"eyJ`, "application/json", providers.Transient},
		{`{`, "application/json", providers.Transient},
	} {
		h := http.Header{}
		if tc.ctype != "" {
			h.Set("Content-Type", tc.ctype)
		}
		_, err := p.token(opRefresh, &reply{status: http.StatusOK, header: h, body: []byte(tc.body)}, nil)
		var pe *providers.Error
		require.ErrorAs(t, err, &pe, "body %q", tc.body)
		assert.Equal(t, tc.want, pe.Class, "body %q: %v", tc.body, err)
		if tc.want == providers.Transient {
			assert.ErrorIs(t, err, providers.ErrMalformedReply)
		}
		assert.NotContains(t, err.Error(), "Norman<", "no body in the error")
	}

	// A reply cut off in transit: Content-Length promises more than
	// arrives, so reading the body fails.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "200")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"access": "eyJ`))
	}))
	defer srv.Close()
	cut, err := NewProvider(srv.URL, institutionID, secretKey, 0, nil)
	require.NoError(t, err)
	_, err = cut.Refresh(context.Background(), &providers.Token{RefreshToken: "r"})
	var pe *providers.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, providers.Transient, pe.Class, "a body cut off in transit: %v", err)
}

// A username another person holds: users/create says it exists (400 or
// 409); token/retrieve with all three of the link's fields finds no one
// (a strict Norman) or, on a lenient one, answers for the other person,
// whose tokens are refused: because the reply names the other person
// (user_mismatch), or because it names no one, so nothing proves the
// tokens are the link's user (user_unproven). Either way the link gets no
// tokens and the first user keeps hers.
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
		{"strict anonymous", sim.Options{Anonymous: true}, CodeUserExists},
		{"lenient anonymous 400", sim.Options{Retrieve: sim.RetrieveUsername, Anonymous: true}, CodeUserUnproven},
		{"lenient anonymous 409", sim.Options{Retrieve: sim.RetrieveUsername, Anonymous: true, ConflictStatus: http.StatusConflict}, CodeUserUnproven},
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
			if !tc.opts.Anonymous {
				// Re-enrollment refuses a reply naming another person
				// too. (An anonymous one it accepts: it is only asked
				// for a user the link enrolled, see the package comment.)
				_, err = f.p.Reenroll(ctx, other)
				require.Error(t, err)
			}
			assert.True(t, f.sim.Valid(first.AccessToken), "the first user's token is untouched")
			if tc.opts.Anonymous {
				// Fail-closed: the first user's own repeated enrollment
				// cannot prove itself either, even to a strict Norman.
				_, err := f.p.Exchange(ctx, userGrant("ann"))
				assert.Equal(t, CodeUserUnproven, f.class(t, err, providers.Permanent).Code)
				return
			}
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

// proves: the link's email or external_id, stated anywhere owner reads,
// is proof; the username alone or SimpleJWT's user_id is not.
func TestOwnerProves(t *testing.T) {
	id := identity{Username: "ann", Email: "Ann@Example.com", ExternalID: "e1"}
	for body, access := range map[string]string{
		`{"user":{"username":"ann","email":"ann@example.com"}}`: "x",
		`{"data":{"externalId":"e1"}}`:                          "x",
		`{"external_id":"e1"}`:                                  "x",
		`{}`:                                                    fuzzJWT(`{"user_id":7,"email":"ANN@example.com"}`),
	} {
		assert.True(t, owner([]byte(body), access).proves(id), "%s %s", body, access)
	}
	for body, access := range map[string]string{
		`{"accessToken":"opaque"}`:                      "opaque",
		`{"user":{"username":"ann"}}`:                   "x",
		`{"user":{"id":7}}`:                             fuzzJWT(`{"token_type":"access","user_id":7,"username":"ann"}`),
		`{"user":{"email":""}}`:                         "x",
		`{"user":{"email":"other@example.com"}}`:        "x",
		`{"user":"ann@example.com","external_id":"e2"}`: "x",
	} {
		assert.False(t, owner([]byte(body), access).proves(id), "%s %s", body, access)
	}
}
