package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
)

// verifyAnswer is the part of GET /v1/links/{id} that ?verify=1 adds;
// Verified is a pointer so that "absent" and "false" differ.
type verifyAnswer struct {
	Verified    *bool  `json:"verified"`
	VerifyError string `json:"verify_error"`
}

func TestGetLinkVerify(t *testing.T) {
	s := newUnitServer(t, Config{})
	p, _, ok := s.d.Providers.Get("fake")
	require.True(t, ok)
	fp := p.(*fakeProvider)
	h := s.Handler()

	addLink := func(provider string, tok *providers.Token) string {
		id := store.NewLinkID()
		_, _, err := s.mem.CreateLink(context.Background(), store.Link{ID: id, TenantID: "t1", Provider: provider,
			UserID: "u", GrantType: providers.GrantClientCredentials, Status: "active"})
		require.NoError(t, err)
		if tok != nil {
			s.sec.tokens["t1/"+id] = secrets.Versioned[providers.Token]{Value: *tok, Version: 1}
		}
		return id
	}
	secret := randomSecret("at-")
	good := addLink("fake", &providers.Token{AccessToken: secret, Expiry: time.Now().Add(time.Hour)})
	suspended := addLink("fake", &providers.Token{RefreshToken: randomSecret("rt-")})
	pending := addLink("fake", nil)
	narrow := addLink("narrow", &providers.Token{AccessToken: randomSecret("at-")})
	gone := addLink("retired", &providers.Token{AccessToken: randomSecret("at-")})

	get := func(id, query string) (answer, verifyAnswer) {
		t.Helper()
		a := do(h, "GET", "/v1/links/"+id+query, unitKey, nil)
		require.Equal(t, 200, a.Code, string(a.Body))
		// Whatever the outcome, the token never appears in the answer.
		require.False(t, strings.Contains(string(a.Body), secret), "the access token is in the answer")
		var v verifyAnswer
		a.json(t, &v)
		return a, v
	}

	// Without verify=1 (or with 0) nothing is added and nobody is asked.
	for _, q := range []string{"", "?verify=0", "?verify=false"} {
		a, v := get(good, q)
		assert.Nil(t, v.Verified, q)
		assert.NotContains(t, string(a.Body), "verify", q)
	}
	assert.Zero(t, fp.verifyCount())

	_, v := get(good, "?verify=1")
	require.NotNil(t, v.Verified)
	assert.True(t, *v.Verified)
	assert.Empty(t, v.VerifyError)
	assert.Equal(t, 1, fp.verifyCount())

	fp.setRejectVerify(true)
	_, v = get(good, "?verify=true")
	require.NotNil(t, v.Verified)
	assert.False(t, *v.Verified)
	assert.Contains(t, v.VerifyError, "invalid_token")
	assert.Contains(t, v.VerifyError, "HTTP 401")
	fp.setRejectVerify(false)

	for name, id := range map[string]string{"suspended": suspended, "pending": pending} {
		_, v = get(id, "?verify=1")
		require.NotNil(t, v.Verified, name)
		assert.False(t, *v.Verified, name)
		assert.Equal(t, verifyNoToken, v.VerifyError, name)
	}

	s.sec.mu.Lock()
	s.sec.down = true
	s.sec.mu.Unlock()
	_, v = get(good, "?verify=1")
	require.NotNil(t, v.Verified)
	assert.False(t, *v.Verified)
	assert.Equal(t, verifyVaultDown, v.VerifyError)
	s.sec.mu.Lock()
	s.sec.down = false
	s.sec.mu.Unlock()

	// A provider without a Verifier: "verified" is absent, not false.
	a, v := get(narrow, "?verify=1")
	assert.Nil(t, v.Verified)
	assert.NotContains(t, string(a.Body), `"verified"`)
	assert.Equal(t, "the provider offers no verification", v.VerifyError)
	a, v = get(gone, "?verify=1")
	assert.Nil(t, v.Verified)
	assert.NotContains(t, string(a.Body), `"verified"`)
	assert.Equal(t, verifyNoProvider, v.VerifyError)

	calls := fp.verifyCount()
	for _, q := range []string{"?verify=maybe", "?verify=2", "?verify=1&live=maybe", "?live=1&verify=yes"} {
		a := do(h, "GET", "/v1/links/"+good+q, unitKey, nil)
		assert.Equal(t, 400, a.Code, q)
		assert.Equal(t, CodeBadRequest, a.errCode(t), q)
	}
	assert.Equal(t, calls, fp.verifyCount(), "a bad request reaches no provider")
	a = do(h, "GET", "/v1/links/lnk_missing?verify=1", unitKey, nil)
	assert.Equal(t, 404, a.Code)

	assert.False(t, strings.Contains(s.logs.String(), secret), "the access token reached the logs")
}

// fakeStats is a statsSource in memory.
type fakeStats struct {
	links     []store.LinkCount
	refreshes []store.RefreshCount
	err       error
}

func (f *fakeStats) LinkCounts(context.Context) ([]store.LinkCount, error) {
	return f.links, f.err
}

func (f *fakeStats) RefreshCounts(context.Context) ([]store.RefreshCount, error) {
	return f.refreshes, f.err
}

func TestStatsCollector(t *testing.T) {
	s := newUnitServer(t, Config{})
	src := &fakeStats{
		links: []store.LinkCount{{Provider: "fake", Status: "active", Count: 3}, {Provider: "fake", Status: "degraded", Count: 1}},
		refreshes: []store.RefreshCount{{Provider: "fake", Outcome: store.RefreshOutcomeOK, Count: 7},
			{Provider: "fake", Outcome: store.RefreshOutcomeReauth, Count: 2},
			// Not UTF-8: skipped, never a panic.
			{Provider: "\xff", Outcome: store.RefreshOutcomeOK, Count: 1}},
	}
	sc := newStatsCollector(src, s.log)
	s.metrics.registry.MustRegister(sc)
	sc.poll()

	body := string(do(s.Handler(), "GET", "/metrics", "", nil).Body)
	assert.Contains(t, body, "# TYPE tokenwarden_links gauge")
	assert.Contains(t, body, `tokenwarden_links{provider="fake",status="active"} 3`)
	assert.Contains(t, body, `tokenwarden_links{provider="fake",status="degraded"} 1`)
	assert.Contains(t, body, "# TYPE tokenwarden_refreshes_total counter")
	assert.Contains(t, body, `tokenwarden_refreshes_total{outcome="ok",provider="fake"} 7`)
	assert.Contains(t, body, `tokenwarden_refreshes_total{outcome="reauth_required",provider="fake"} 2`)
	assert.Contains(t, body, "tokenwarden_store_stats_up 1")

	// A database that fails leaves the rest of /metrics intact.
	src.err = errors.New("connection refused")
	sc.poll()
	a := do(s.Handler(), "GET", "/metrics", "", nil)
	require.Equal(t, 200, a.Code)
	body = string(a.Body)
	assert.NotContains(t, body, "tokenwarden_links{")
	assert.NotContains(t, body, "tokenwarden_refreshes_total{")
	assert.Contains(t, body, "tokenwarden_store_stats_up 0")
	assert.Contains(t, body, "tokenwarden_http_requests_total")
}

// A gateway without a store (tests of input handling) has no stats
// collector, and its registry still gathers.
func TestNoStatsWithoutStore(t *testing.T) {
	s := newUnitServer(t, Config{})
	mfs, err := s.Registry().Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		assert.NotEqual(t, "tokenwarden_store_stats_up", mf.GetName())
	}
}
