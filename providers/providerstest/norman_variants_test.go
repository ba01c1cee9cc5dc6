package providerstest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/providers/norman/sim"
)

// TestNormanVariants (issue 11, points 4 and 5): Norman's token replies
// in snake_case and nested one level are read like the guide's; a 2xx in
// a shape nobody reads, or one that is no JSON at all (an HTML page),
// fails the link (failed, a config message) after one request instead of
// degrading it forever; a username that another person's link holds
// never gets that person's Norman user from a strict token/retrieve
// (404), whether users/create answers 400 or 409.
func TestNormanVariants(t *testing.T) {
	runNormanVariants(t, "snake", "nested", "html", "collide", "collide409")
}

// TestNormanLenientRetrieve (issue 11, point 5): a username that another
// person's link holds never gets that person's Norman user from a
// token/retrieve that matches the username alone, whether users/create
// answers 400 or 409: a reply naming the other person is refused
// (user_mismatch), and so is one naming no one (user_unproven).
func TestNormanLenientRetrieve(t *testing.T) {
	runNormanVariants(t, "lenient", "lenient409", "anonymous", "anonymous409")
}

// runNormanVariants runs the named variants against one Tokenwarden. The
// variants are split over two of them because each polls its links: one
// API key polled by all at once would hit the gateway's rate limit.
func runNormanVariants(t *testing.T, only ...string) {
	const institution = "tw-institution"
	secret := "norman-" + randomString(24)
	// The simulators by fixture name: runSeedVariants builds them all
	// before any variant runs.
	sims := map[string]*sim.Server{}
	newSim := func(opts sim.Options) func(f *fixture) (http.Handler, controls) {
		return func(f *fixture) (http.Handler, controls) {
			opts.InstitutionID, opts.SecretKey, opts.AccessTTL, opts.RefreshTTL = institution, secret, longTTL, 10*time.Minute
			s := sim.New(opts)
			sims[f.Name] = s
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
				ExpireRefreshTokens: s.ExpireRefreshTokens, Valid: s.Valid, stats: s.Stats}
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
    # Two forced refreshes in a row: both reach Norman.
    forced_refresh_interval: 0s
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
	// unreadable: Norman starts answering token calls in a way no setting
	// of kind norman reads. A forced refresh fails the link after one
	// request, with last_error saying what came back; it stays failed;
	// and an enrollment meanwhile fails after one users/create.
	unreadable := func(to sim.Shape, wantError ...string) func(t *check, h *harness, f *fixture) {
		return func(t *check, h *harness, f *fixture) {
			id := shape(t, h, f)
			sims[f.Name].SetShape(to)
			before := f.ctl.stats()
			_, _ = h.s.Client.Refresh(h.ctx, id)
			fresh := enroll(t, h, f, "x"+f.User, "x"+f.User+"@example.com", "ext-x"+f.User)
			for _, x := range []struct{ id, what string }{{id, "refreshed"}, {fresh, "enrolled"}} {
				l := h.waitLink(t, x.id, x.what+" link failed", 30*time.Second, isStatus("failed"))
				for _, want := range wantError {
					if !strings.Contains(l.LastError, want) {
						t.Errorf("%s link: last_error %q does not say %q", x.what, l.LastError, want)
					}
				}
			}
			// And stays so: no further attempt however long one waits.
			time.Sleep(5 * time.Second)
			after := f.ctl.stats()
			if n := after["refresh"] - before["refresh"]; n != 1 {
				t.Errorf("%d refresh requests answered so, want 1", n)
			}
			if n := after["create"] - before["create"]; n != 1 {
				t.Errorf("%d users/create requests answered so, want 1", n)
			}
			for _, x := range []string{id, fresh} {
				if l := h.getLink(t, x); l.Status != "failed" {
					t.Errorf("link %s went on to %s", x, l.Status)
				}
			}
		}
	}
	variants := []seedVariant{
		{name: "snake", sim: newSim(sim.Options{Shape: sim.ShapeSnake}), entry: entry, run: func(t *check, h *harness, f *fixture) {
			h.revoke(t, shape(t, h, f))
		}},
		// Norman changes its reply to a shape nobody reads.
		{name: "nested", sim: newSim(sim.Options{Shape: sim.ShapeNested}), entry: entry,
			run: unreadable(sim.ShapeUnknown, "unknown shape")},
		// Norman (or base_url) starts answering with a web page.
		{name: "html", sim: newSim(sim.Options{}), entry: entry,
			run: unreadable(sim.ShapeHTML, "not a JSON object", "text/html", "base_url")},
	}
	// Username collisions: users/create answering 400 or 409,
	// token/retrieve strict or lenient, its reply naming the user or no
	// one (anonymous: SimpleJWT's default claims), each with the code the
	// second link must fail with.
	for _, c := range []struct {
		name string
		opts sim.Options
		code string
	}{
		// A strict token/retrieve: 404 for the second person.
		{"collide", sim.Options{}, "user_exists"},
		{"collide409", sim.Options{ConflictStatus: http.StatusConflict}, "user_exists"},
		// A lenient one, answering for the first person by name or
		// anonymously.
		{"lenient", sim.Options{Retrieve: sim.RetrieveUsername}, "user_mismatch"},
		{"lenient409", sim.Options{Retrieve: sim.RetrieveUsername, ConflictStatus: http.StatusConflict}, "user_mismatch"},
		{"anonymous", sim.Options{Retrieve: sim.RetrieveUsername, Anonymous: true}, "user_unproven"},
		{"anonymous409", sim.Options{Retrieve: sim.RetrieveUsername, Anonymous: true, ConflictStatus: http.StatusConflict}, "user_unproven"},
	} {
		variants = append(variants, seedVariant{name: c.name, sim: newSim(c.opts), entry: entry, run: collision(c.code)})
	}
	variants = slices.DeleteFunc(variants, func(v seedVariant) bool { return !slices.Contains(only, v.name) })
	if len(variants) != len(only) {
		t.Fatalf("%d of the variants %v exist", len(variants), only)
	}
	runSeedVariants(t, "norman", secret, variants)
}
