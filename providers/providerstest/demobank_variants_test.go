package providerstest_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/providers/demobank/sim"
)

// TestDemobankVariants (issue 11, point 10): an entry without client_id
// gets demobank-cli, the client finAPI fixes, and its links work; an
// entry with another client_id loads (with a warning, see
// providers/demobank TestClientIDDefaultAndWarning) and its links fail
// with invalid_client against a realm that knows only demobank-cli.
func TestDemobankVariants(t *testing.T) {
	const mandator = "customer"
	newSim := func(f *fixture) (http.Handler, controls) {
		s := sim.New(sim.Options{Mandator: mandator, Users: map[string]string{f.User: f.Password}, AccessTTL: longTTL})
		return s, controls{FailNext: s.FailNext, RateLimit: s.RateLimit, Malformed: s.Malformed,
			ExpireRefreshTokens: s.ExpireRefreshTokens, Valid: s.Valid}
	}
	entry := func(clientID string) func(f *fixture) string {
		return func(f *fixture) string {
			line := ""
			if clientID != "" {
				line = "    client_id: " + clientID + "\n"
			}
			return fmt.Sprintf(`  - name: %s
    kind: demobank
%s    grants: [password]
    schedule: {min_margin: 1s, fraction: 0.2, default_lifetime: %s}
    settings: {base_url: %q, mandator: %s}
`, f.Name, line, longTTL, f.URL, mandator)
		}
	}
	enroll := func(t *check, h *harness, f *fixture) string {
		return h.createLink(t, tokenwarden.CreateLinkRequest{Provider: f.Name, UserID: f.User, Grant: tokenwarden.GrantPassword,
			Credentials: &tokenwarden.Credentials{Username: f.User, Password: f.Password}})
	}
	runSeedVariants(t, "demobank", "", []seedVariant{
		{name: "defaultclient", sim: newSim, entry: entry(""), run: func(t *check, h *harness, f *fixture) {
			// The realm knows only demobank-cli: a link that works is
			// one that used it.
			id := enroll(t, h, f)
			h.waitLink(t, id, "enrolled", 30*time.Second, isStatus("active"))
			h.token(t, id, f)
			h.revoke(t, id)
		}},
		{name: "otherclient", sim: newSim, entry: entry("my-cli"), run: func(t *check, h *harness, f *fixture) {
			id := enroll(t, h, f)
			l := h.waitLink(t, id, "failed", 30*time.Second, isStatus("failed"))
			if !strings.Contains(l.LastError, "invalid_client") {
				t.Errorf("last_error %q does not name invalid_client", l.LastError)
			}
		}},
	})
}
