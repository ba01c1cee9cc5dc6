package providerstest_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/providers/demobank/sim"
)

// TestDemobank: the finAPI Demobank's Keycloak with the public client
// demobank-cli (no client secret, so no secret scenario) and the password
// grant: a dead refresh token ("Token is not active") means logging in
// again with the stored password, a disabled account needs
// re-authorization, revocation is Keycloak's logout.
func TestDemobank(t *testing.T) {
	const mandator = "customer"
	runProvider(t, spec{
		Kind: "demobank",
		NewSim: func(f *fixture, ttl time.Duration) (http.Handler, controls) {
			s := sim.New(sim.Options{Mandator: mandator, Users: map[string]string{f.User: f.Password},
				AccessTTL: ttl, RefreshTTL: 3 * ttl, RevokeRefreshToken: true})
			return s, controls{
				FailNext: s.FailNext, RateLimit: s.RateLimit, Malformed: s.Malformed,
				ExpireRefreshTokens: s.ExpireRefreshTokens, Valid: s.Valid, LockUser: s.LockUser, RefreshValid: s.RefreshValid, RevokeGrant: s.EndSessions,
			}
		},
		Entry: func(f *fixture, ttl time.Duration) string {
			return fmt.Sprintf(`  - name: %s
    kind: demobank
    client_id: %s
    auth_style: none
    grants: [password]
    schedule: {min_margin: 1s, fraction: 0.2, default_lifetime: %s}
    settings: {base_url: %q, mandator: %s}
`, f.Name, sim.ClientID, ttl, f.URL, mandator)
		},
		Enroll: func(t *check, h *harness, f *fixture) string {
			t.Helper()
			l, err := h.s.Client.CreateLink(h.ctx, tokenwarden.CreateLinkRequest{
				Provider: f.Name, UserID: f.User, Grant: tokenwarden.GrantPassword,
				Credentials: &tokenwarden.Credentials{Username: f.User, Password: f.Password},
			}, "")
			if err != nil {
				t.Fatalf("create link: %v", err)
			}
			return l.ID
		},
		FaultPath:   "/realms/" + mandator + "/protocol/openid-connect/token",
		Recovers:    true,
		Reenrolled:  func(x hit) bool { return x.Grant == "password" },
		LockedError: "User disabled",
		RefreshDead: keycloakRefreshDead,
	})
}

// keycloakRefreshDead asks a Keycloak simulator (Everifin's, which the
// Demobank's embeds) whether a refresh token still works.
func keycloakRefreshDead(t *check, f *fixture, refresh string) bool {
	return !f.ctl.RefreshValid(refresh)
}
