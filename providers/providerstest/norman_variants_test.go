package providerstest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/providers/norman/sim"
)

// TestNormanVariants (issue 11, points 4 and 5): Norman's token replies
// in snake_case and nested one level are read like the guide's; a 2xx in
// a shape nobody reads fails the link (failed, a config message) after
// one refresh request instead of degrading it forever; a username that
// another person's link holds never gets that person's Norman user,
// whether users/create answers 400 or 409, and whether token/retrieve is
// strict (404) or matches the username alone.
func TestNormanVariants(t *testing.T) {
	const institution = "tw-institution"
	secret := "norman-" + randomString(24)
	newSim := func(opts sim.Options) func(f *fixture) (http.Handler, controls) {
		return func(f *fixture) (http.Handler, controls) {
			opts.InstitutionID, opts.SecretKey, opts.AccessTTL, opts.RefreshTTL = institution, secret, longTTL, 10*time.Minute
			s := sim.New(opts)
			// The unknown shape's tokens are under keys the wire does not
			// know: collect them for the leak scan here.
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, r)
				var reply struct {
					JWT map[string]string `json:"jwt"`
				}
				if json.Unmarshal(rec.Body.Bytes(), &reply) == nil {
					for _, v := range reply.JWT {
						f.wire.collect(v)
					}
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				_, _ = w.Write(rec.Body.Bytes())
			})
			return h, controls{FailNext: s.FailNext, RateLimit: s.RateLimit, Malformed: s.Malformed,
				ExpireRefreshTokens: s.ExpireRefreshTokens, Valid: s.Valid,
				// SetShape rides on RevokeGrant's slot: nothing else here
				// needs it.
				RevokeGrant: func() { s.SetShape(sim.ShapeUnknown) }}
		}
	}
	entry := func(f *fixture) string {
		return fmt.Sprintf(`  - name: %s
    kind: norman
    client_id: %s
    client_secret: {vault: "providers/norman#client_secret"}
    grants: [norman_user]
    allowed_params: [username, email, external_id]
    schedule: {min_margin: 1s, fraction: 0.2, default_lifetime: %s}
    settings: {base_url: %q, access_token_lifetime: %s}
`, f.Name, institution, longTTL, f.URL, longTTL)
	}
	enroll := func(t *check, h *harness, f *fixture, user, email, ext string) string {
		return h.createLink(t, tokenwarden.CreateLinkRequest{Provider: f.Name, UserID: user + "-" + ext, Grant: "norman_user",
			Params: map[string]string{"username": user, "email": email, "external_id": ext}})
	}
	// shape: enrollment and a forced refresh in the variant's shape, the
	// tokens served valid at the simulator.
	shape := func(t *check, h *harness, f *fixture) string {
		id := enroll(t, h, f, f.User, f.User+"@example.com", "ext-"+f.User)
		h.waitLink(t, id, "enrolled", 30*time.Second, isStatus("active"))
		first := h.token(t, id, f)
		if _, err := h.s.Client.Refresh(h.ctx, id); err != nil {
			t.Fatalf("forced refresh: %v", err)
		}
		if next := h.token(t, id, f); next.AccessToken == first.AccessToken {
			t.Error("the forced refresh served the old token")
		}
		return id
	}
	// collision: two people, one username.
	collision := func(wantCode string) func(t *check, h *harness, f *fixture) {
		return func(t *check, h *harness, f *fixture) {
			a := enroll(t, h, f, f.User, "first@example.com", "ext-first")
			h.waitLink(t, a, "first enrolled", 30*time.Second, isStatus("active"))
			b := enroll(t, h, f, f.User, "second@example.com", "ext-second")
			l := h.waitLink(t, b, "second failed", 30*time.Second, isStatus("failed"))
			if !strings.Contains(l.LastError, wantCode) {
				t.Errorf("last_error %q does not name %s", l.LastError, wantCode)
			}
			h.wantTokenError(t, b, http.StatusConflict, tokenwarden.CodeLinkFailed)
			// The first link is untouched and keeps refreshing.
			h.token(t, a, f)
			if _, err := h.s.Client.Refresh(h.ctx, a); err != nil {
				t.Fatalf("forced refresh of the first link: %v", err)
			}
			h.token(t, a, f)
			h.revoke(t, a)
		}
	}
	runSeedVariants(t, "norman", secret, []seedVariant{
		{name: "snake", sim: newSim(sim.Options{Shape: sim.ShapeSnake}), entry: entry, run: func(t *check, h *harness, f *fixture) {
			h.revoke(t, shape(t, h, f))
		}},
		{name: "nested", sim: newSim(sim.Options{Shape: sim.ShapeNested}), entry: entry, run: func(t *check, h *harness, f *fixture) {
			id := shape(t, h, f)
			// Norman changes its reply to a shape nobody reads.
			f.ctl.RevokeGrant()
			before := f.wire.count(func(x hit) bool { return x.Path == sim.PathRefresh })
			_, _ = h.s.Client.Refresh(h.ctx, id)
			l := h.waitLink(t, id, "failed", 30*time.Second, isStatus("failed"))
			if !strings.Contains(l.LastError, "unknown shape") {
				t.Errorf("last_error %q does not say the reply's shape is unknown", l.LastError)
			}
			// And stays so: no further attempt however long one waits.
			time.Sleep(5 * time.Second)
			if n := f.wire.count(func(x hit) bool { return x.Path == sim.PathRefresh }) - before; n != 1 {
				t.Errorf("%d refresh requests answered in the unknown shape, want 1", n)
			}
			if l := h.getLink(t, id); l.Status != "failed" {
				t.Errorf("the link went on to %s", l.Status)
			}
		}},
		{name: "collide", sim: newSim(sim.Options{}), entry: entry, run: collision("user_exists")},
		{name: "lenient", sim: newSim(sim.Options{Retrieve: sim.RetrieveUsername}), entry: entry, run: collision("user_mismatch")},
		{name: "lenient409", sim: newSim(sim.Options{Retrieve: sim.RetrieveUsername, ConflictStatus: http.StatusConflict}),
			entry: entry, run: collision("user_mismatch")},
	})
}
