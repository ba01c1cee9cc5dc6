package providerstest_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/providers/luca/sim"
)

// TestLuca: an authorization_code link whose end-user consents at Luca
// (the simulator approves at once) and comes back through the gateway's
// callback. A dead refresh token needs re-authorization. Luca documents no
// revocation endpoint and no locked users.
func TestLuca(t *testing.T) {
	const clientID = "tw-luca-client"
	secret := "luca-" + randomString(24)
	runProvider(t, spec{
		Kind:   "luca",
		Secret: secret,
		NewSim: func(f *fixture, ttl time.Duration) (http.Handler, controls) {
			s := sim.New(sim.Options{ClientID: clientID, ClientSecret: secret, Users: map[string]string{f.User: f.Password},
				AccessTTL: ttl, RotateRefreshTokens: true, AutoApprove: true})
			return s, controls{
				FailNext: s.FailNext, RateLimit: s.RateLimit, Malformed: s.Malformed,
				ExpireRefreshTokens: s.ExpireRefreshTokens, Valid: s.Valid, RevokeGrant: s.RevokeRefreshTokens,
			}
		},
		Entry: func(f *fixture, ttl time.Duration) string {
			return fmt.Sprintf(`  - name: %s
    kind: luca
    client_id: %s
    client_secret: {vault: "providers/luca#client_secret"}
    auth_style: body
    grants: [authorization_code]
    allowed_params: [organisation_number, locale]
    schedule: {min_margin: 1s, fraction: 0.2, default_lifetime: %s}
    settings: {base_url: %q, pkce: false}
`, f.Name, clientID, ttl, f.URL)
		},
		Enroll: func(t *check, h *harness, f *fixture) string {
			t.Helper()
			l, err := h.s.Client.CreateLink(h.ctx, tokenwarden.CreateLinkRequest{
				Provider: f.Name, UserID: f.User, Grant: tokenwarden.GrantAuthorizationCode,
				Params: map[string]string{"organisation_number": "123456789", "locale": "en"},
			}, "")
			if err != nil {
				t.Fatalf("create link: %v", err)
			}
			followAuthorization(t, l.AuthorizationURL)
			return l.ID
		},
		FaultPath:   "/api/v2/oauth2/token",
		SecretError: "invalid_client",
		// The end-user removing the application revokes both tokens.
		RevokeKillsAccess: true,
	})
}
