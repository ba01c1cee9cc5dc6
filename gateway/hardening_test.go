package gateway

// Tests of issue 12 (hardening after a probe of the running gateway): each
// reproduces an attack of the probe.

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// countingStats counts its queries.
type countingStats struct{ queries atomic.Int64 }

func (c *countingStats) LinkCounts(context.Context) ([]store.LinkCount, error) {
	c.queries.Add(1)
	return []store.LinkCount{{Provider: "fake", Status: "active", Count: 1}}, nil
}

func (c *countingStats) RefreshCounts(context.Context) ([]store.RefreshCount, error) {
	c.queries.Add(1)
	return nil, nil
}

// Point 1: each scrape of /metrics ran two PostgreSQL queries; 64
// parallel scrapers made a database load generator.
func TestMetricsScrapesNeverQueryTheDatabase(t *testing.T) {
	s := newUnitServer(t, Config{})
	src := &countingStats{}
	sc := newStatsCollector(src, s.log)
	s.metrics.registry.MustRegister(sc)
	sc.start(time.Hour)
	t.Cleanup(sc.close)
	require.Eventually(t, func() bool { return src.queries.Load() == 2 }, 5*time.Second, 10*time.Millisecond, "the first poll runs at once")

	for range 50 {
		a := do(s.Handler(), "GET", "/metrics", "", nil)
		require.Equal(t, 200, a.Code)
		require.Contains(t, string(a.Body), `tokenwarden_links{provider="fake",status="active"} 1`)
	}
	assert.EqualValues(t, 2, src.queries.Load(), "scrapes queried PostgreSQL")
}

// Point 1: /metrics can be protected with a token, or moved to a
// listener of its own.
func TestMetricsProtection(t *testing.T) {
	const token = "metrics-token-for-tests"
	s := newUnitServer(t, Config{MetricsToken: token})
	a := do(s.Handler(), "GET", "/metrics", "", nil)
	assert.Equal(t, 401, a.Code)
	assert.Equal(t, CodeUnauthorized, a.errCode(t))
	assert.NotContains(t, string(a.Body), "tokenwarden_http_requests_total")
	assert.Equal(t, 401, do(s.Handler(), "GET", "/metrics", "wrong", nil).Code)
	assert.Equal(t, 401, do(s.Handler(), "GET", "/metrics", unitKey, nil).Code, "an API key is not the metrics token")
	a = do(s.Handler(), "GET", "/metrics", "", nil, "Authorization", "bearer "+token)
	assert.Equal(t, 200, a.Code)
	assert.Contains(t, string(a.Body), "tokenwarden_http_requests_total")

	sep := newUnitServer(t, Config{MetricsSeparate: true})
	assert.Equal(t, 404, do(sep.Handler(), "GET", "/metrics", "", nil).Code, "/metrics stays off the API listener")
	rec := httptest.NewRecorder()
	sep.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	assert.Equal(t, 200, rec.Code)
}

// bodyProbe is a request body that records whether it was read.
type bodyProbe struct{ read atomic.Bool }

func (b *bodyProbe) Read(p []byte) (int, error) {
	b.read.Store(true)
	return 0, io.EOF
}

// Point 3: an unauthenticated request is refused before its body is read,
// and its connection is not kept to drain the rest.
func TestUnauthenticatedBodyIsNotRead(t *testing.T) {
	s := newUnitServer(t, Config{})
	for _, key := range []string{"", "tw_bogus"} {
		body := &bodyProbe{}
		req := httptest.NewRequest("POST", "/v1/links", body)
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		assert.Equal(t, 401, rec.Code)
		assert.False(t, body.read.Load(), "the body of an unauthenticated request was read")
		assert.Equal(t, "close", rec.Header().Get("Connection"))
	}
}

// countingKeys counts API key lookups.
type countingKeys struct {
	*memStore
	lookups atomic.Int64
}

func (c *countingKeys) LookupAPIKey(ctx context.Context, plaintext string) (store.APIKey, error) {
	c.lookups.Add(1)
	return c.memStore.LookupAPIKey(ctx, plaintext)
}

// Point 5: 60 000 bogus keys in 12s were each a PostgreSQL query, none
// refused with 429.
func TestFailedAuthenticationIsLimited(t *testing.T) {
	s := newUnitServer(t, Config{})
	ck := &countingKeys{memStore: s.mem}
	s.store = ck
	attacker := func(key string) answer {
		req := httptest.NewRequest("GET", "/v1/links", nil)
		req.RemoteAddr = "198.51.100.7:4444"
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return answer{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
	}

	// One bogus key again and again: looked up once (negative cache).
	for range 10 {
		require.Equal(t, 401, attacker("tw_same_bogus_key").Code)
	}
	assert.EqualValues(t, 1, ck.lookups.Load(), "an unknown key is remembered briefly")

	// Fresh bogus keys: past the burst, 429 with Retry-After and no lookup.
	var limited answer
	for i := range 200 {
		if a := attacker("tw_bogus_" + strings.Repeat("x", i)); a.Code == 429 {
			limited = a
			break
		}
	}
	require.Equal(t, 429, limited.Code, "failed authentications were never limited")
	assert.Equal(t, CodeRateLimited, limited.errCode(t))
	assert.NotEmpty(t, limited.Header.Get("Retry-After"))
	n := ck.lookups.Load()
	for range 100 {
		require.Equal(t, 429, attacker("tw_bogus_more").Code)
	}
	assert.Equal(t, n, ck.lookups.Load(), "a limited address still costs lookups")
	assert.LessOrEqual(t, n, int64(authFailureBurst+1))

	// Other addresses are not affected, nor is a known key from this one
	// once cached.
	assert.Equal(t, 200, do(s.Handler(), "GET", "/v1/links", unitKey, nil).Code)

	// Time heals.
	s.now = func() time.Time { return time.Now().Add(time.Minute) }
	assert.Equal(t, 401, attacker("tw_bogus_later").Code)
}

// Point 5: the negative cache forgets, so a key created a moment ago
// works soon.
func TestNegativeKeyCacheExpires(t *testing.T) {
	n := newNegativeKeys()
	now := time.Now()
	n.add([32]byte{1}, now)
	assert.True(t, n.has([32]byte{1}, now.Add(apiKeyNegativeTTL-time.Millisecond)))
	assert.False(t, n.has([32]byte{1}, now.Add(apiKeyNegativeTTL)))
}

// Point 8: the callback's error and error_description went raw into the
// workflow's last_error (terminal escapes, CR/LF), and from there into
// API messages.
func TestCallbackErrorIsSanitized(t *testing.T) {
	s := newUnitServer(t, Config{})
	require.NoError(t, s.mem.PutOAuthState(context.Background(), "state-1", store.OAuthState{
		LinkID: "lnk_1", TenantID: "t1", ExpiresAt: time.Now().Add(time.Hour)}))
	evil := "access_denied\x1b[2J\r\nstatus: active"
	desc := "<b>no</b>\x1b]0;owned\x07\r\n" + strings.Repeat("y", 1000)
	a := do(s.Handler(), "GET", CallbackPath+"?state=state-1&error="+urlQuery(evil)+"&error_description="+urlQuery(desc), "", nil)
	require.Equal(t, 400, a.Code)
	s.temp.mu.Lock()
	sent := s.temp.signals[workflows.SignalDenied]
	s.temp.mu.Unlock()
	require.Len(t, sent, 1)
	d := sent[0].(workflows.DeniedRequest)
	for _, v := range []string{d.Error, d.Description} {
		assert.NotContains(t, v, "\x1b")
		assert.NotContains(t, v, "\r")
		assert.NotContains(t, v, "\n")
		assert.NotContains(t, v, "\x07")
	}
	assert.LessOrEqual(t, len(d.Description), maxErrorDescLen)
	assert.Equal(t, "access_denied [2J status: active", d.Error)
	assert.NotContains(t, string(a.Body), "<b>", "the page escapes HTML")

	// A last_error stored raw earlier is cleaned on the way out.
	s.mem.links["t1/lnk_2"] = store.Link{ID: "lnk_2", TenantID: "t1", Provider: "fake", Status: "failed",
		LastError: "authorization denied: \x1b[31mred\r\nforged"}
	a = do(s.Handler(), "GET", "/v1/links/lnk_2", unitKey, nil)
	require.Equal(t, 200, a.Code)
	var v linkView
	a.json(t, &v)
	assert.Equal(t, "authorization denied: [31mred forged", v.LastError)
	a = do(s.Handler(), "GET", "/v1/links/lnk_2/token", unitKey, nil)
	assert.Equal(t, 409, a.Code)
	assert.NotContains(t, string(a.Body), `\u001b`)
	assert.NotContains(t, string(a.Body), `\r\n`)
}

func urlQuery(s string) string {
	r := httptest.NewRequest("GET", "/", nil)
	q := r.URL.Query()
	q.Set("x", s)
	return strings.TrimPrefix(q.Encode(), "x=")
}

func TestProviderText(t *testing.T) {
	assert.Equal(t, "a b c", providerText("a\r\n\tb\x00\x1bc", 100))
	assert.Equal(t, "é", providerText("é\xff", 100))
	assert.Equal(t, "abc", providerText("abcdef", 3))
	assert.Equal(t, "ab", providerText("abé", 3), "never a rune cut in half")
	assert.Equal(t, "", providerText("\x1b\x1b", 10))
}

// Point 11: a replayed Idempotency-Key with new credentials was accepted
// silently (only provider, user id and grant were compared).
func TestIdempotencyKeyReuseWithAnotherBody(t *testing.T) {
	s := newUnitServer(t, Config{})
	first := `{"provider":"fake","user_id":"u","grant":"password","credentials":{"username":"alice","password":"pw-1"}}`
	a := do(s.Handler(), "POST", "/v1/links", unitKey, strings.NewReader(first), "Idempotency-Key", "k-1")
	require.Equal(t, 201, a.Code, string(a.Body))
	var created createLinkResponse
	a.json(t, &created)

	// The same request again: the first link.
	a = do(s.Handler(), "POST", "/v1/links", unitKey, strings.NewReader(
		`{"grant":"password","user_id":"u","provider":"fake","credentials":{"password":"pw-1","username":"alice"},"scopes":[]}`),
		"Idempotency-Key", "k-1")
	require.Equal(t, 200, a.Code, string(a.Body))

	for name, body := range map[string]string{
		"new password": `{"provider":"fake","user_id":"u","grant":"password","credentials":{"username":"alice","password":"pw-2"}}`,
		"new scopes":   `{"provider":"fake","user_id":"u","grant":"password","scopes":["x"],"credentials":{"username":"alice","password":"pw-1"}}`,
		"new provider": `{"provider":"narrow","user_id":"u","grant":"client_credentials"}`,
	} {
		a = do(s.Handler(), "POST", "/v1/links", unitKey, strings.NewReader(body), "Idempotency-Key", "k-1")
		assert.Equal(t, 422, a.Code, "%s: %s", name, a.Body)
		assert.Equal(t, CodeIdempotencyMismatch, a.errCode(t), name)
		assert.NotContains(t, string(a.Body), "pw-")
	}
	g, err := s.sec.ReadGrant(context.Background(), "t1", created.ID)
	require.NoError(t, err)
	assert.Equal(t, "pw-1", g.Value.Password, "the first request's credentials stay")
	l := s.mem.links["t1/"+created.ID]
	assert.Len(t, l.RequestHash, requestHashSaltLen+requestHashKeyLen)
	assert.NotContains(t, string(l.RequestHash), "pw-1")
}

// Point 12: duplicate keys (last wins), case-insensitive names, invalid
// UTF-8 and any Content-Type were accepted.
func TestStrictJSON(t *testing.T) {
	s := newUnitServer(t, Config{})
	post := func(body, contentType string) answer {
		req := httptest.NewRequest("POST", "/v1/links", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+unitKey)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return answer{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
	}
	const ok = `{"provider":"fake","user_id":"u","grant":"client_credentials"}`
	for _, tc := range []struct {
		name, body, ct string
		status         int
		code, msg      string
	}{
		{"duplicate key", `{"provider":"fake","user_id":"u","user_id":"v","grant":"client_credentials"}`, "application/json", 400, CodeInvalidJSON, `"user_id" appears twice`},
		{"duplicate nested key", `{"provider":"fake","user_id":"u","grant":"password","credentials":{"username":"a","password":"b","password":"c"}}`, "application/json", 400, CodeInvalidJSON, "credentials.password"},
		{"case-insensitive name", `{"Provider":"fake","user_id":"u","grant":"client_credentials"}`, "application/json", 400, CodeUnknownField, `"Provider"`},
		{"invalid UTF-8", "{\"provider\":\"fake\",\"user_id\":\"u\xff\",\"grant\":\"client_credentials\"}", "application/json", 400, CodeInvalidJSON, "UTF-8"},
		{"lone surrogate", `{"provider":"fake","user_id":"u\ud800","grant":"client_credentials"}`, "application/json", 400, CodeInvalidJSON, "UTF-16"},
		{"no content type", ok, "", 415, CodeUnsupportedMediaType, "application/json"},
		{"text/plain", ok, "text/plain", 415, CodeUnsupportedMediaType, "application/json"},
		{"form", ok, "application/x-www-form-urlencoded", 415, CodeUnsupportedMediaType, "application/json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := post(tc.body, tc.ct)
			assert.Equal(t, tc.status, a.Code, string(a.Body))
			assert.Equal(t, tc.code, a.errCode(t))
			var e errorBody
			a.json(t, &e)
			assert.Contains(t, e.Error.Message, tc.msg)
		})
	}
	assert.Empty(t, s.mem.links)
	assert.Equal(t, 201, post(ok, "application/json; charset=utf-8").Code)
	// A map's keys are free (params), a struct's are exact.
	assert.Equal(t, 201, post(`{"provider":"fake","user_id":"u2","grant":"client_credentials","params":{"locale":"de"}}`, "application/json").Code)
	// No body needs no Content-Type.
	s.mem.links["t1/lnk_r"] = store.Link{ID: "lnk_r", TenantID: "t1", Status: "revoked"}
}

// refreshServer is a unit server whose "fake" provider limits forced
// refreshes, with one active link.
func refreshServer(t *testing.T, interval time.Duration) *unitServer {
	t.Helper()
	reg := providers.NewRegistry()
	entry := fakeEntry
	entry.ForcedRefreshInterval = interval
	require.NoError(t, reg.Add(entry, &fakeProvider{}))
	s := newUnitServer(t, Config{})
	s.d.Providers = reg
	s.mem.links["t1/lnk_f"] = store.Link{ID: "lnk_f", TenantID: "t1", Provider: "fake", Status: "active"}
	s.sec.tokens["t1/lnk_f"] = secrets.Versioned[providers.Token]{Version: 3,
		Value: providers.Token{AccessToken: "at-current", Expiry: time.Now().Add(time.Hour)}}
	return s
}

// Point 13: 30 sequential forced refreshes made 30 provider refreshes.
func TestForcedRefreshInterval(t *testing.T) {
	s := refreshServer(t, 5*time.Second)
	now := time.Now()
	s.now = func() time.Time { return now }
	for i := range 30 {
		a := do(s.Handler(), "POST", "/v1/links/lnk_f/refresh", unitKey, nil)
		require.Equal(t, 200, a.Code, string(a.Body))
		var r refreshResponse
		a.json(t, &r)
		if i == 0 {
			assert.True(t, r.Refreshed)
			continue
		}
		assert.False(t, r.Refreshed, "force %d", i)
		assert.Equal(t, 3, r.VaultVersion)
		assert.WithinDuration(t, now.Add(time.Hour), r.ExpiresAt, time.Second)
		assert.Equal(t, "5", a.Header.Get("Retry-After"))
		assert.NotContains(t, string(a.Body), "at-current", "the throttled answer carries no token")
	}
	s.temp.mu.Lock()
	updates := s.temp.updates
	s.temp.mu.Unlock()
	assert.Equal(t, 1, updates, "forced refreshes reached the workflow")

	now = now.Add(5 * time.Second)
	a := do(s.Handler(), "POST", "/v1/links/lnk_f/refresh", unitKey, nil)
	var r refreshResponse
	a.json(t, &r)
	assert.True(t, r.Refreshed, "after the interval a force goes through")

	// Another tenant learns nothing about the link.
	s.mem.keys["tw_other"] = store.APIKey{ID: "key_2", TenantID: "t2"}
	assert.Equal(t, 404, do(s.Handler(), "POST", "/v1/links/lnk_f/refresh", "tw_other", nil).Code)
}

func TestForcedRefreshIntervalOff(t *testing.T) {
	s := refreshServer(t, 0)
	for range 3 {
		require.Equal(t, 200, do(s.Handler(), "POST", "/v1/links/lnk_f/refresh", unitKey, nil).Code)
	}
	assert.Equal(t, 3, s.temp.updates)
}

// Point 14: the codec inherited the gateway's 64 KiB limit (batches of 20
// payloads got 413) and took only a case-sensitive "Bearer ".
func TestCodecHasItsOwnBodyLimit(t *testing.T) {
	var got atomic.Int64
	codecH := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got.Store(n)
		w.WriteHeader(200)
	})
	reg, _ := newFakeRegistry()
	s := New(Deps{Temporal: &memTemporal{}, Providers: reg, Codec: codecH,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, Config{})
	big := strings.Repeat("x", 1<<20)
	req := httptest.NewRequest("POST", "/codec/decode", strings.NewReader(big))
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	assert.Equal(t, 200, rec.Code)
	assert.EqualValues(t, len(big), got.Load())

	// The API keeps its limit.
	s.store = newMemStore()
	s.store.(*memStore).keys[unitKey] = store.APIKey{ID: "k", TenantID: "t1"}
	a := do(s.Handler(), "POST", "/v1/links", unitKey, strings.NewReader(big))
	assert.Equal(t, 413, a.Code)
}

func TestCheckAPIKeyAnyCaseBearer(t *testing.T) {
	s := newUnitServer(t, Config{})
	for _, h := range []string{"Bearer " + unitKey, "bearer " + unitKey, "BEARER  " + unitKey} {
		r := httptest.NewRequest("POST", "/codec/decode", nil)
		r.Header.Set("Authorization", h)
		assert.True(t, s.CheckAPIKey(r), h)
	}
	r := httptest.NewRequest("POST", "/codec/decode", nil)
	r.Header.Set("Authorization", "Bearer tw_nope")
	assert.False(t, s.CheckAPIKey(r))
	assert.False(t, s.CheckAPIKey(httptest.NewRequest("POST", "/codec/decode", nil)))
}

// Point 15: /v1/providers showed every tenant the catalog's secret
// references (Vault paths, environment variable names).
func TestProvidersShowOnlyWhatTenantsNeed(t *testing.T) {
	reg := providers.NewRegistry()
	e := fakeEntry
	e.ClientSecret = providers.SecretRef{Vault: "kv/secret-path-of-fake#client_secret"}
	e.Endpoint = providers.Endpoint{TokenURL: "https://internal-idp.example/token"}
	e.TokenParams = map[string]string{"resource": "internal-resource"}
	require.NoError(t, reg.Add(e, &fakeProvider{}))
	e2 := narrowEntry
	e2.ClientSecret = providers.SecretRef{Env: "NARROW_CLIENT_SECRET_ENV"}
	require.NoError(t, reg.Add(e2, plainProvider{}))
	s := newUnitServer(t, Config{})
	s.d.Providers = reg
	a := do(s.Handler(), "GET", "/v1/providers", unitKey, nil)
	require.Equal(t, 200, a.Code)
	body := string(a.Body)
	for _, leak := range []string{"secret-path-of-fake", "NARROW_CLIENT_SECRET_ENV", "client_secret", "internal-idp", "internal-resource", "client-1"} {
		assert.NotContains(t, body, leak)
	}
	var out struct {
		Providers []providerView `json:"providers"`
	}
	a.json(t, &out)
	require.Len(t, out.Providers, 2)
	assert.Equal(t, "fake", out.Providers[0].Name)
	assert.Contains(t, out.Providers[0].Grants, "password")
	assert.Equal(t, []string{"lifetime", "fail_refresh", "locale"}, out.Providers[0].AllowedParams)
}

func TestJSONFieldsFollowsEmbedding(t *testing.T) {
	type inner struct {
		A string `json:"a"`
	}
	type outer struct {
		inner
		B string `json:"b"`
		C string `json:"-"`
		D string
	}
	got := jsonFields(reflect.TypeOf(outer{}))
	assert.ElementsMatch(t, []string{"a", "b", "D"}, slices.Collect(maps.Keys(got)))
	require.NoError(t, checkJSON([]byte(`{"a":"x","b":"y"}`), reflect.TypeOf(&outer{})))
	require.Error(t, checkJSON([]byte(`{"A":"x"}`), reflect.TypeOf(&outer{})))
}
