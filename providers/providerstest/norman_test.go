package providerstest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/providers/norman/sim"
)

// TestNorman: a norman_user link creates the user; a dead refresh token
// is replaced through token/retrieve; revocation is token/expire, which
// ends the session (refresh and access token). Norman has no locked users.
func TestNorman(t *testing.T) {
	const institution = "tw-institution"
	secret := "norman-" + randomString(24)
	runProvider(t, spec{
		Kind:   "norman",
		Secret: secret,
		NewSim: func(f *fixture, ttl time.Duration) (http.Handler, controls) {
			s := sim.New(sim.Options{InstitutionID: institution, SecretKey: secret, AccessTTL: ttl, RefreshTTL: 10 * time.Minute})
			return s, controls{
				FailNext: s.FailNext, RateLimit: s.RateLimit, Malformed: s.Malformed,
				ExpireRefreshTokens: s.ExpireRefreshTokens, Valid: s.Valid,
			}
		},
		Entry: func(f *fixture, ttl time.Duration) string {
			return fmt.Sprintf(`  - name: %s
    kind: norman
    client_id: %s
    client_secret: {vault: "providers/norman#client_secret"}
    grants: [norman_user]
    allowed_params: [username, email, external_id]
    schedule: {min_margin: 1s, fraction: 0.2, default_lifetime: %s}
    settings: {base_url: %q, access_token_lifetime: %s}
`, f.Name, institution, ttl, f.URL, ttl)
		},
		Enroll: func(t *check, h *harness, f *fixture) string {
			t.Helper()
			l, err := h.s.Client.CreateLink(h.ctx, tokenwarden.CreateLinkRequest{
				Provider: f.Name, UserID: f.User, Grant: "norman_user",
				Params: map[string]string{"username": f.User, "email": f.User + "@example.com", "external_id": "ext-" + f.User},
			}, "")
			if err != nil {
				t.Fatalf("create link: %v", err)
			}
			return l.ID
		},
		FaultPath:   sim.PathRefresh,
		Recovers:    true,
		Reenrolled:  func(x hit) bool { return x.Path == sim.PathRetrieve },
		SecretError: "HTTP 403",
		RefreshDead: func(t *check, f *fixture, refresh string) bool {
			t.Helper()
			// token/verify answers 401 token_not_valid for a dead token.
			body, _ := json.Marshal(map[string]string{"token": refresh})
			req, _ := http.NewRequest(http.MethodPost, f.URL+sim.PathVerify, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Institution", institution+":"+secret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("verify at the simulator: %v", err)
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusUnauthorized
		},
		AccessDiesOnRevoke: true,
	})
}
