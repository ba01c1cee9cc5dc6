package providerstest_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/providers/finapi/sim"
)

// TestFinAPI: a password link creates its finAPI user (create_user=true)
// and logs in; a dead refresh token means logging in again with the
// stored password; a locked user (423) needs re-authorization; revocation
// revokes refresh and access token (RFC 7009, with a client token).
func TestFinAPI(t *testing.T) {
	const clientID = "tw-finapi-client"
	secret := "finapi-" + randomString(24)
	runProvider(t, spec{
		Kind:   "finapi",
		Secret: secret,
		NewSim: func(f *fixture, ttl time.Duration) (http.Handler, controls) {
			s := sim.New(sim.Options{ClientID: clientID, ClientSecret: secret, AccessTTL: ttl,
				RefreshTTL: 10 * time.Minute, Refresh: sim.RefreshRotate})
			return s, controls{
				FailNext: s.FailNext, RateLimit: s.RateLimit, Malformed: s.Malformed,
				ExpireRefreshTokens: s.ExpireRefreshTokens, Valid: s.Valid, LockUser: s.LockUser,
			}
		},
		Entry: func(f *fixture, ttl time.Duration) string {
			return fmt.Sprintf(`  - name: %s
    kind: finapi
    client_id: %s
    client_secret: {vault: "providers/finapi#client_secret"}
    auth_style: body
    grants: [password]
    allowed_params: [create_user, email, phone, isAutoUpdateEnabled]
    schedule: {min_margin: 1s, fraction: 0.2, default_lifetime: %s}
    settings: {base_url: %q, client_token_margin: 1s, user_token_validity: %s}
`, f.Name, clientID, ttl, f.URL, ttl)
		},
		Enroll: func(t *check, h *harness, f *fixture) string {
			t.Helper()
			l, err := h.s.Client.CreateLink(h.ctx, tokenwarden.CreateLinkRequest{
				Provider: f.Name, UserID: f.User, Grant: tokenwarden.GrantPassword,
				Credentials: &tokenwarden.Credentials{Username: f.User, Password: f.Password},
				Params:      map[string]string{"create_user": "true", "email": f.User + "@example.com", "isAutoUpdateEnabled": "false"},
			}, "")
			if err != nil {
				t.Fatalf("create link: %v", err)
			}
			return l.ID
		},
		FaultPath:   sim.PathToken,
		Recovers:    true,
		Reenrolled:  func(x hit) bool { return x.Path == sim.PathToken && x.Grant == "password" },
		LockedError: "USER_LOCKED",
		SecretError: "invalid_client",
		RefreshDead: func(t *check, f *fixture, refresh string) bool {
			t.Helper()
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh},
				"client_id": {clientID}, "client_secret": {secret}}
			resp, err := http.Post(f.URL+sim.PathToken, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
			if err != nil {
				t.Fatalf("refresh at the simulator: %v", err)
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusBadRequest
		},
		AccessDiesOnRevoke: true,
	})
}
