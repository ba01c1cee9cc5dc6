package providerstest_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/providers/everifin/sim"
)

// TestEverifin: an authorization_code link with PKCE at Everifin's
// Keycloak realm (the simulator requires S256 and approves at once); every
// refresh rotates the refresh token and spends the old one. A dead refresh
// token or a disabled user needs re-authorization; revocation is
// Keycloak's logout, which kills the refresh token (the access token runs
// out by itself).
func TestEverifin(t *testing.T) {
	const clientID, realm = "tw-everifin-client", "tw-realm"
	secret := "everifin-" + randomString(24)
	runProvider(t, spec{
		Kind:   "everifin",
		Secret: secret,
		NewSim: func(f *fixture, ttl time.Duration) (http.Handler, controls) {
			s := sim.New(sim.Options{Realm: realm, Clients: []sim.Client{{ID: clientID, Secret: secret}},
				Users: map[string]string{f.User: f.Password}, AccessTTL: ttl, RefreshTTL: 3 * ttl,
				RevokeRefreshToken: true, RequirePKCE: true, AutoApprove: true})
			return s, controls{
				FailNext: s.FailNext, RateLimit: s.RateLimit, Malformed: s.Malformed,
				ExpireRefreshTokens: s.ExpireRefreshTokens, Valid: s.Valid, LockUser: s.LockUser,
				RefreshValid: s.RefreshValid, RevokeGrant: s.EndSessions,
			}
		},
		Entry: func(f *fixture, ttl time.Duration) string {
			return fmt.Sprintf(`  - name: %s
    kind: everifin
    client_id: %s
    client_secret: {vault: "providers/everifin#client_secret"}
    auth_style: body
    grants: [authorization_code]
    schedule: {min_margin: 1s, fraction: 0.2, default_lifetime: %s}
    settings: {base_url: %q, realm: %s}
`, f.Name, clientID, ttl, f.URL, realm)
		},
		Enroll: func(t *check, h *harness, f *fixture) string {
			t.Helper()
			l, err := h.s.Client.CreateLink(h.ctx, tokenwarden.CreateLinkRequest{
				Provider: f.Name, UserID: f.User, Grant: tokenwarden.GrantAuthorizationCode,
			}, "")
			if err != nil {
				t.Fatalf("create link: %v", err)
			}
			followAuthorization(t, l.AuthorizationURL)
			return l.ID
		},
		FaultPath:   "/auth/realms/" + realm + "/protocol/openid-connect/token",
		LockedError: "User disabled",
		SecretError: "unauthorized_client",
		RefreshDead: keycloakRefreshDead,
	})
}
