package activities_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/generic"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// deviceServer is a token endpoint that answers device-code polls with
// the OAuth error codes queued in answers, then with a token.
type deviceServer struct {
	*httptest.Server
	mu      sync.Mutex
	answers []string
	polls   int
}

func newDeviceServer(t *testing.T, answers ...string) *deviceServer {
	t.Helper()
	s := &deviceServer{answers: answers}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/token" || r.ParseForm() != nil ||
			r.PostForm.Get("grant_type") != providers.GrantTypeDeviceCode || r.PostForm.Get("device_code") != "device-code-secret" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.polls++
		var answer string
		if len(s.answers) > 0 {
			answer, s.answers = s.answers[0], s.answers[1:]
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if answer != "" {
			// RFC 8628 section 3.5: an error response (RFC 6749
			// section 5.2), status 400.
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": answer})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "device-access-secret", "token_type": "Bearer",
			"refresh_token": "device-refresh-secret", "expires_in": 3600})
	}))
	t.Cleanup(s.Close)
	return s
}

// TestPollDeviceReportsSlowDown: a provider's slow_down answer to a
// device-code poll reaches the workflow as a pending poll with SlowDown
// set, which is what makes it add five seconds to every later poll
// (RFC 8628 section 3.5; workflows:TestDeviceSlowDownIsCumulative). It is
// not an activity error: the provider classifies slow_down as
// RateLimited, and a retried activity would poll again at the retry
// policy's pace, which the workflow never sees. The provider is the
// generic oauth2 one against a real HTTP endpoint, the grant in Vault.
func TestPollDeviceReportsSlowDown(t *testing.T) {
	srv := newDeviceServer(t, "authorization_pending", "slow_down", "slow_down")
	p, err := generic.New(providers.Entry{
		Name: "fake", Kind: generic.KindOAuth2, ClientID: "tokenwarden", AuthStyle: providers.AuthStyleBody,
		Endpoint: providers.Endpoint{TokenURL: srv.URL + "/token", DeviceAuthURL: srv.URL + "/device"},
		Grants:   []string{providers.GrantDeviceCode},
	}, "client-secret", nil)
	require.NoError(t, err)
	f := newFixture(t, p)
	_, err = f.sec.WriteGrant(context.Background(), "default", "lnk_a", providers.Grant{Type: providers.GrantDeviceCode,
		DeviceCode: "device-code-secret", DeviceInterval: 2 * time.Second}, -1)
	require.NoError(t, err)

	poll := func() workflows.DevicePoll {
		t.Helper()
		v, err := f.env.ExecuteActivity(f.acts.PollDevice, ref(providers.GrantDeviceCode))
		require.NoError(t, err, "a pending poll is an answer, not an error")
		var got workflows.DevicePoll
		require.NoError(t, v.Get(&got))
		return got
	}
	assert.Equal(t, workflows.DevicePoll{Pending: true, Interval: 2 * time.Second}, poll(), "authorization_pending")
	// The interval stays the one the provider gave: the workflow adds
	// the slow_down steps, and keeps them for later polls.
	for i := range 2 {
		assert.Equal(t, workflows.DevicePoll{Pending: true, Interval: 2 * time.Second, SlowDown: true}, poll(), "slow_down %d", i+1)
	}
	got := poll()
	assert.False(t, got.Pending)
	require.NotNil(t, got.Token, "the approved poll returns the token's metadata")
	srv.mu.Lock()
	assert.Equal(t, 4, srv.polls, "one token request per activity")
	srv.mu.Unlock()
	tok, err := f.sec.ReadToken(context.Background(), "default", "lnk_a")
	require.NoError(t, err)
	assert.Equal(t, got.Token.VaultVersion, tok.Version, "the token is in Vault")
}
