package gateway

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// TestRefreshAnswersFromTypedLinkStatus: the gateway learns a link's
// status from the workflow's typed error (workflows.ErrTypeLinkStatus and
// its LinkStatus detail), never from the message text, and every
// refresh that produced no token is 503 refresh_failed.
func TestRefreshAnswersFromTypedLinkStatus(t *testing.T) {
	// A message that names no status, or a misleading one: only the
	// type and detail count.
	typed := func(st workflows.Status, lastError, msg string) error {
		return temporal.NewApplicationErrorWithOptions(msg, workflows.ErrTypeLinkStatus, temporal.ApplicationErrorOptions{
			NonRetryable: true, Details: []any{workflows.LinkStatus{Status: st, LastError: lastError}}})
	}
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
		reason string
	}{
		{"failed", typed(workflows.StatusFailed, "invalid_client", "refused"), 409, CodeLinkFailed, "invalid_client"},
		{"failed, message says revoked", typed(workflows.StatusFailed, "", "link already revoked"), 409, CodeLinkFailed, ""},
		{"reauth", workflows.NewLinkStatusError(workflows.StatusReauthRequired, "invalid_grant"), 409, CodeReauthRequired, "invalid_grant"},
		{"revoked", workflows.NewLinkStatusError(workflows.StatusRevoked, ""), 409, CodeLinkRevoked, ""},
		{"pending", workflows.NewLinkStatusError(workflows.StatusPendingAuthorization, ""), 409, CodeLinkPending, ""},
		{"degraded", workflows.NewLinkStatusError(workflows.StatusDegraded, "http_503"), 503, CodeRefreshFailed, "http_503"},
		{"other application error", temporal.NewApplicationError("boom", "Unknown"), 503, CodeRefreshFailed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newUnitServer(t, Config{})
			s.mem.links["t1/lnk_x"] = store.Link{ID: "lnk_x", TenantID: "t1", Status: "active"}
			s.temp.updateErr = tc.err
			a := do(s.Handler(), "POST", "/v1/links/lnk_x/refresh", unitKey, nil)
			assert.Equal(t, tc.status, a.Code, "body %s", a.Body)
			assert.Equal(t, tc.code, a.errCode(t))
			if tc.status == 503 {
				assert.Equal(t, "5", a.Header.Get("Retry-After"))
			}
			if tc.reason != "" {
				var e errorBody
				a.json(t, &e)
				assert.Contains(t, e.Error.Message, tc.reason)
			}
		})
	}
}

// TestRevokeOfRevokedLinkIsOK: the workflow refusing a revoke because the
// link is already revoked is success (revoke is idempotent).
func TestRevokeOfRevokedLinkIsOK(t *testing.T) {
	s := newUnitServer(t, Config{})
	s.mem.links["t1/lnk_x"] = store.Link{ID: "lnk_x", TenantID: "t1", Status: "revoked"}
	s.temp.updateErr = temporal.NewApplicationErrorWithOptions("no", workflows.ErrTypeLinkStatus, temporal.ApplicationErrorOptions{
		Details: []any{workflows.LinkStatus{Status: workflows.StatusRevoked}}})
	a := do(s.Handler(), "DELETE", "/v1/links/lnk_x", unitKey, nil)
	assert.Equal(t, 200, a.Code, "body %s", a.Body)
}

// TestTokenRefreshFailureFallsBackOrAnswers503: a stale token whose
// refresh fails transiently is still served while valid (with the cap
// header), and an expired one gets 503 refresh_failed, not 502.
func TestTokenRefreshFailureFallsBackOrAnswers503(t *testing.T) {
	s := newUnitServer(t, Config{})
	s.mem.links["t1/lnk_x"] = store.Link{ID: "lnk_x", TenantID: "t1", Status: "degraded"}
	now := time.Now()
	s.sec.tokens["t1/lnk_x"] = secrets.Versioned[providers.Token]{Version: 3, Value: providers.Token{
		AccessToken: "at-1", IssuedAt: now.Add(-time.Hour), Expiry: now.Add(10 * time.Second)}}
	s.temp.updateErr = workflows.NewLinkStatusError(workflows.StatusDegraded, "http_503")
	a := do(s.Handler(), "GET", "/v1/links/lnk_x/token?min_ttl=60", unitKey, nil)
	require.Equal(t, 200, a.Code, "body %s", a.Body)
	n, err := strconv.Atoi(a.Header.Get(HeaderMinTTLCapped))
	require.NoError(t, err, "the answer says min_ttl was not met")
	assert.InDelta(t, 9, n, 1)

	s.sec.tokens["t1/lnk_x"] = secrets.Versioned[providers.Token]{Version: 3, Value: providers.Token{
		AccessToken: "at-1", IssuedAt: now.Add(-time.Hour), Expiry: now.Add(-time.Second)}}
	a = do(s.Handler(), "GET", "/v1/links/lnk_x/token", unitKey, nil)
	assert.Equal(t, 503, a.Code, "body %s", a.Body)
	assert.Equal(t, CodeRefreshFailed, a.errCode(t))
}

// TestTokenMinTTLCapped: a min_ttl the provider's tokens cannot give is
// capped at half their lifetime, and the answer says so.
func TestTokenMinTTLCapped(t *testing.T) {
	s := newUnitServer(t, Config{})
	s.mem.links["t1/lnk_x"] = store.Link{ID: "lnk_x", TenantID: "t1", Status: "active"}
	now := time.Now()
	// 20-second tokens, 18 s left: min_ttl up to 10 s is honoured
	// without a refresh, more is capped at 10 s.
	s.sec.tokens["t1/lnk_x"] = secrets.Versioned[providers.Token]{Version: 1, Value: providers.Token{
		AccessToken: "at-1", IssuedAt: now.Add(-2 * time.Second), Expiry: now.Add(18 * time.Second)}}

	a := do(s.Handler(), "GET", "/v1/links/lnk_x/token?min_ttl=60", unitKey, nil)
	require.Equal(t, 200, a.Code, "body %s", a.Body)
	assert.Equal(t, 0, s.temp.updates, "a capped min_ttl the token meets needs no refresh")
	n, err := strconv.Atoi(a.Header.Get(HeaderMinTTLCapped))
	require.NoError(t, err, "header %q", a.Header.Get(HeaderMinTTLCapped))
	assert.InDelta(t, 17, n, 1, "the header gives the seconds the token stays valid")

	for _, q := range []string{"", "?min_ttl=0", "?min_ttl=10"} {
		a = do(s.Handler(), "GET", "/v1/links/lnk_x/token"+q, unitKey, nil)
		require.Equal(t, 200, a.Code, "body %s", a.Body)
		assert.Empty(t, a.Header.Get(HeaderMinTTLCapped), q)
	}
}

// fakeStatusSource is a links table as the status watch reads it.
type fakeStatusSource struct {
	mu   sync.Mutex
	rows []store.LinkStatusChange
	err  error
}

func (f *fakeStatusSource) changedSince(ctx context.Context, since time.Time, window time.Duration) ([]store.LinkStatusChange, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rows, time.Now(), f.err
}

// TestSuspendedLinkNeverServesItsToken: Vault still holds a fresh access
// token (the worker's wipe failed), PostgreSQL says reauth_required: the
// gateway refuses. A link re-authorized since serves again.
func TestSuspendedLinkNeverServesItsToken(t *testing.T) {
	for _, st := range []workflows.Status{workflows.StatusReauthRequired, workflows.StatusFailed, workflows.StatusRevoked} {
		t.Run(string(st), func(t *testing.T) {
			s := newUnitServer(t, Config{})
			src := &fakeStatusSource{rows: []store.LinkStatusChange{{TenantID: "t1", LinkID: "lnk_x", Status: string(st), UpdatedAt: time.Now()}}}
			s.linkStatus = newStatusWatch(src, s.mem.GetLink, s.log)
			s.linkStatus.interval = 10 * time.Millisecond
			t.Cleanup(s.Close)
			s.mem.links["t1/lnk_x"] = store.Link{ID: "lnk_x", TenantID: "t1", Status: string(st), LastError: "invalid_grant"}
			s.mem.links["t1/lnk_y"] = store.Link{ID: "lnk_y", TenantID: "t1", Status: "active"}
			now := time.Now()
			for _, id := range []string{"lnk_x", "lnk_y"} {
				s.sec.tokens["t1/"+id] = secrets.Versioned[providers.Token]{Version: 1, Value: providers.Token{
					AccessToken: "at-" + id, IssuedAt: now, Expiry: now.Add(time.Hour)}}
			}
			want := statusError(string(st), "").code

			a := do(s.Handler(), "GET", "/v1/links/lnk_x/token", unitKey, nil)
			assert.Equal(t, 409, a.Code, "body %s", a.Body)
			assert.Equal(t, want, a.errCode(t))
			assert.False(t, strings.Contains(string(a.Body), "at-lnk_x"), "the token was served")
			a = do(s.Handler(), "GET", "/v1/links/lnk_y/token", unitKey, nil)
			assert.Equal(t, 200, a.Code, "an active link is not held up")

			// PostgreSQL unreachable for the confirmation: still refused.
			s.store = failingGet{s.mem}
			a = do(s.Handler(), "GET", "/v1/links/lnk_x/token", unitKey, nil)
			assert.Equal(t, 409, a.Code, "body %s", a.Body)
			assert.Equal(t, want, a.errCode(t))
			s.store = s.mem

			if st == workflows.StatusReauthRequired {
				// Re-authorized: the row is active again before the
				// poll notices; the confirmation lets it serve.
				s.mem.links["t1/lnk_x"] = store.Link{ID: "lnk_x", TenantID: "t1", Status: "active"}
				a = do(s.Handler(), "GET", "/v1/links/lnk_x/token", unitKey, nil)
				assert.Equal(t, 200, a.Code, "body %s", a.Body)
			}
		})
	}
}

// failingGet is a store whose link reads fail as in a database outage.
type failingGet struct{ *memStore }

func (failingGet) GetLink(ctx context.Context, tenantID, id string) (store.Link, error) {
	return store.Link{}, errors.New("connection refused")
}

// TestStatusWatchPostgresDown: a database that cannot be read never stops
// token reads.
func TestStatusWatchPostgresDown(t *testing.T) {
	s := newUnitServer(t, Config{})
	src := &fakeStatusSource{err: errors.New("connection refused")}
	s.linkStatus = newStatusWatch(src, s.mem.GetLink, s.log)
	t.Cleanup(s.Close)
	s.mem.links["t1/lnk_y"] = store.Link{ID: "lnk_y", TenantID: "t1", Status: "active"}
	now := time.Now()
	s.sec.tokens["t1/lnk_y"] = secrets.Versioned[providers.Token]{Version: 1, Value: providers.Token{
		AccessToken: "at", IssuedAt: now, Expiry: now.Add(time.Hour)}}
	start := time.Now()
	a := do(s.Handler(), "GET", "/v1/links/lnk_y/token", unitKey, nil)
	assert.Equal(t, 200, a.Code, "body %s", a.Body)
	assert.Less(t, time.Since(start), statusLoadWait)
}
