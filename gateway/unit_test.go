package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/internal/health"
	"github.com/tokenwarden/tokenwarden/internal/store"
)

const unitKey = "tw_unit_key"

// unitServer is a gateway on in-memory dependencies: enough for input
// handling, middleware and the callback, without the test stack.
type unitServer struct {
	*Server
	mem  *memStore
	sec  *memSecrets
	temp *memTemporal
	logs *bytes.Buffer
}

func newUnitServer(t testing.TB, cfg Config, checks ...health.Check) *unitServer {
	t.Helper()
	reg, _ := newFakeRegistry()
	logs := &bytes.Buffer{}
	temp := &memTemporal{}
	if cfg.AllowedReturnOrigins == nil {
		cfg.AllowedReturnOrigins = []string{"https://app.example"}
	}
	s := New(Deps{Temporal: temp, Providers: reg, Checks: checks,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))}, cfg)
	mem, sec := newMemStore(), newMemSecrets()
	mem.keys[unitKey] = store.APIKey{ID: "key_1", TenantID: "t1"}
	s.store, s.secrets = mem, sec
	return &unitServer{Server: s, mem: mem, sec: sec, temp: temp, logs: logs}
}

type answer struct {
	Code   int
	Header http.Header
	Body   []byte
}

func (a answer) errCode(t testing.TB) string {
	t.Helper()
	var e errorBody
	require.NoError(t, json.Unmarshal(a.Body, &e), "body: %s", a.Body)
	assert.NotEmpty(t, e.Error.RequestID)
	assert.NotEmpty(t, e.Error.Message)
	return e.Error.Code
}

func (a answer) json(t testing.TB, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(a.Body, v), "body: %s", a.Body)
}

func do(h http.Handler, method, target, key string, body io.Reader, hdr ...string) answer {
	req := httptest.NewRequest(method, target, body)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return answer{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}

func TestHealthzAndReadyz(t *testing.T) {
	ok := health.Check{Name: "vault", Probe: func(context.Context) error { return nil }}
	bad := health.Check{Name: "postgres", Probe: func(context.Context) error { return errors.New("PostgreSQL at x is down") }}

	s := newUnitServer(t, Config{}, ok)
	a := do(s.Handler(), "GET", "/healthz", "", nil)
	assert.Equal(t, 200, a.Code)
	assert.JSONEq(t, `{"status":"ok"}`, string(a.Body))
	assert.NotEmpty(t, a.Header.Get("X-Request-ID"))

	a = do(s.Handler(), "GET", "/readyz", "", nil)
	assert.Equal(t, 200, a.Code, string(a.Body))

	s = newUnitServer(t, Config{}, ok, bad)
	a = do(s.Handler(), "GET", "/readyz", "", nil)
	assert.Equal(t, 503, a.Code)
	assert.Equal(t, "5", a.Header.Get("Retry-After"))
	var body struct {
		Status  string   `json:"status"`
		Failing []string `json:"failing"`
	}
	a.json(t, &body)
	assert.Equal(t, "unavailable", body.Status)
	assert.Equal(t, []string{"postgres"}, body.Failing)
	// Issue 12 point 10: no key needed here, so no address and no error
	// text; the log has them.
	assert.NotContains(t, string(a.Body), "PostgreSQL at x is down")
	assert.NotContains(t, string(a.Body), "vault", "a healthy dependency is not even named")
	assert.Contains(t, s.logs.String(), "PostgreSQL at x is down")
}

func TestRequestIDEchoedOrReplaced(t *testing.T) {
	s := newUnitServer(t, Config{})
	a := do(s.Handler(), "GET", "/healthz", "", nil, "X-Request-ID", "abc-123")
	assert.Equal(t, "abc-123", a.Header.Get("X-Request-ID"))
	a = do(s.Handler(), "GET", "/healthz", "", nil, "X-Request-ID", "evil\ninjected")
	assert.NotEqual(t, "evil\ninjected", a.Header.Get("X-Request-ID"))
	assert.Len(t, a.Header.Get("X-Request-ID"), 24)
}

func TestAuthentication(t *testing.T) {
	s := newUnitServer(t, Config{})
	for _, tc := range []struct{ name, header string }{
		{"missing", ""},
		{"wrong scheme", "Basic dXNlcjpwYXNz"},
		{"empty bearer", "Bearer "},
		{"unknown key", "Bearer tw_nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := do(s.Handler(), "GET", "/v1/links", "", nil, "Authorization", tc.header)
			assert.Equal(t, 401, a.Code)
			assert.Equal(t, CodeUnauthorized, a.errCode(t))
		})
	}
	a := do(s.Handler(), "GET", "/v1/providers", unitKey, nil)
	assert.Equal(t, 200, a.Code, string(a.Body))
	assert.Contains(t, string(a.Body), `"name":"fake"`)
}

func TestAPIKeyCacheExpires(t *testing.T) {
	kc := newKeyCache(30 * time.Second)
	now := time.Now()
	sum := [32]byte{1}
	kc.put(sum, store.APIKey{ID: "k"}, now)
	_, ok := kc.get(sum, now.Add(29*time.Second), 0)
	assert.True(t, ok)
	_, ok = kc.get(sum, now.Add(30*time.Second), 0)
	assert.False(t, ok, "a cached key must be looked up again after the TTL")
	// While PostgreSQL is down, a key seen recently is honoured a while
	// longer, then no more.
	_, ok = kc.get(sum, now.Add(10*time.Minute), apiKeyStaleGrace)
	assert.True(t, ok)
	_, ok = kc.get(sum, now.Add(30*time.Second+apiKeyStaleGrace), apiKeyStaleGrace)
	assert.False(t, ok)
}

func TestRateLimit(t *testing.T) {
	s := newUnitServer(t, Config{RateLimit: 0.001, RateBurst: 2})
	for range 2 {
		require.Equal(t, 200, do(s.Handler(), "GET", "/v1/providers", unitKey, nil).Code)
	}
	a := do(s.Handler(), "GET", "/v1/providers", unitKey, nil)
	assert.Equal(t, 429, a.Code)
	assert.Equal(t, CodeRateLimited, a.errCode(t))
	assert.NotEmpty(t, a.Header.Get("Retry-After"))
}

// TestRateLimitPerKey: a key with its own rate (apikey create --rate) is
// limited by it, other keys by the gateway's default.
func TestRateLimitPerKey(t *testing.T) {
	s := newUnitServer(t, Config{RateLimit: 1000, RateBurst: 1000})
	s.store.(*memStore).keys["tw_slow_key"] = store.APIKey{ID: "key_slow", TenantID: "t1", RateLimit: 0.001}
	require.Equal(t, 200, do(s.Handler(), "GET", "/v1/providers", "tw_slow_key", nil).Code, "burst of one")
	a := do(s.Handler(), "GET", "/v1/providers", "tw_slow_key", nil)
	assert.Equal(t, 429, a.Code, "the key's own rate")
	assert.NotEmpty(t, a.Header.Get("Retry-After"))
	for range 5 {
		require.Equal(t, 200, do(s.Handler(), "GET", "/v1/providers", unitKey, nil).Code, "the default rate")
	}
}

func TestRecoveryHidesPanic(t *testing.T) {
	s := newUnitServer(t, Config{})
	s.engine.GET("/boom", func(*gin.Context) { panic("secret detail tw_abc") })
	a := do(s.Handler(), "GET", "/boom", "", nil)
	assert.Equal(t, 500, a.Code)
	assert.Equal(t, CodeInternal, a.errCode(t))
	assert.NotContains(t, string(a.Body), "secret detail")
	assert.NotContains(t, string(a.Body), "goroutine")
}

func TestUnknownRoute(t *testing.T) {
	s := newUnitServer(t, Config{})
	a := do(s.Handler(), "GET", "/v2/nothing", "", nil)
	assert.Equal(t, 404, a.Code)
	assert.Equal(t, CodeNotFound, a.errCode(t))
}

func TestCreateLinkValidation(t *testing.T) {
	s := newUnitServer(t, Config{MaxBodyBytes: 1024})
	for _, tc := range []struct {
		name, body string
		status     int
		code, msg  string
	}{
		{"empty body", ``, 400, CodeInvalidJSON, "empty"},
		{"malformed", `{"provider":`, 400, CodeInvalidJSON, ""},
		{"not an object", `[1,2]`, 400, CodeInvalidJSON, ""},
		{"wrong type", `{"provider":"fake","user_id":"u","grant":"client_credentials","scopes":"a b"}`, 400, CodeInvalidJSON, `"scopes"`},
		{"trailing data", `{"provider":"fake","user_id":"u","grant":"client_credentials"} {}`, 400, CodeInvalidJSON, "after"},
		{"unknown field", `{"provider":"fake","user_id":"u","grant":"client_credentials","colour":"red"}`, 400, CodeUnknownField, `"colour"`},
		{"unknown nested field", `{"provider":"fake","user_id":"u","grant":"password","credentials":{"username":"a","password":"b","otp":"1"}}`, 400, CodeUnknownField, `"credentials.otp"`},
		{"unknown provider", `{"provider":"nope","user_id":"u","grant":"client_credentials"}`, 400, CodeUnknownProvider, "fake, narrow"},
		{"missing provider", `{"user_id":"u","grant":"client_credentials"}`, 400, CodeBadRequest, "provider"},
		{"grant not offered", `{"provider":"narrow","user_id":"u","grant":"password","credentials":{"username":"a","password":"b"}}`, 400, CodeUnsupportedGrant, "client_credentials"},
		{"made-up grant", `{"provider":"fake","user_id":"u","grant":"implicit"}`, 400, CodeUnsupportedGrant, ""},
		{"missing grant", `{"provider":"fake","user_id":"u"}`, 400, CodeBadRequest, "grant"},
		{"empty user", `{"provider":"fake","user_id":"","grant":"client_credentials"}`, 400, CodeBadRequest, "user_id"},
		{"long user", `{"provider":"fake","user_id":"` + strings.Repeat("u", 201) + `","grant":"client_credentials"}`, 400, CodeBadRequest, "user_id"},
		{"control char user", `{"provider":"fake","user_id":"a\u0000b","grant":"client_credentials"}`, 400, CodeBadRequest, "user_id"},
		{"password without credentials", `{"provider":"fake","user_id":"u","grant":"password"}`, 400, CodeBadRequest, "credentials"},
		{"password with empty password", `{"provider":"fake","user_id":"u","grant":"password","credentials":{"username":"a"}}`, 400, CodeBadRequest, "credentials"},
		{"credentials on other grant", `{"provider":"fake","user_id":"u","grant":"client_credentials","credentials":{"username":"a","password":"b"}}`, 400, CodeBadRequest, "credentials"},
		{"bad scope", `{"provider":"fake","user_id":"u","grant":"client_credentials","scopes":["a b"]}`, 400, CodeBadRequest, "scope"},
		{"param not allowed", `{"provider":"fake","user_id":"u","grant":"client_credentials","params":{"audience":"x"}}`, 400, CodeBadRequest, `"audience"`},
		{"return_url other origin", `{"provider":"fake","user_id":"u","grant":"authorization_code","return_url":"https://evil.example/cb"}`, 400, CodeBadRequest, "return_url"},
		{"return_url suffix trick", `{"provider":"fake","user_id":"u","grant":"authorization_code","return_url":"https://app.example.evil.com/cb"}`, 400, CodeBadRequest, "return_url"},
		{"return_url userinfo trick", `{"provider":"fake","user_id":"u","grant":"authorization_code","return_url":"https://app.example@evil.example/cb"}`, 400, CodeBadRequest, "return_url"},
		{"return_url other port", `{"provider":"fake","user_id":"u","grant":"authorization_code","return_url":"https://app.example:8443/cb"}`, 400, CodeBadRequest, "return_url"},
		{"return_url http downgrade", `{"provider":"fake","user_id":"u","grant":"authorization_code","return_url":"http://app.example/cb"}`, 400, CodeBadRequest, "return_url"},
		{"return_url scheme-relative", `{"provider":"fake","user_id":"u","grant":"authorization_code","return_url":"//evil.example/cb"}`, 400, CodeBadRequest, "return_url"},
		{"return_url javascript", `{"provider":"fake","user_id":"u","grant":"authorization_code","return_url":"javascript:alert(1)"}`, 400, CodeBadRequest, "return_url"},
		{"return_url on client_credentials", `{"provider":"fake","user_id":"u","grant":"client_credentials","return_url":"https://app.example/cb"}`, 400, CodeBadRequest, "return_url"},
		{"oversized", `{"provider":"fake","user_id":"u","grant":"client_credentials","params":{"locale":"` + strings.Repeat("x", 2000) + `"}}`, 413, CodeBodyTooLarge, "1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := do(s.Handler(), "POST", "/v1/links", unitKey, strings.NewReader(tc.body))
			assert.Equal(t, tc.status, a.Code, string(a.Body))
			assert.Equal(t, tc.code, a.errCode(t))
			var e errorBody
			a.json(t, &e)
			assert.Contains(t, e.Error.Message, tc.msg)
		})
	}
	assert.Empty(t, s.mem.links, "a rejected request must leave nothing behind")
	assert.Empty(t, s.temp.started)
}

func TestCreateLinkNeverEchoesPassword(t *testing.T) {
	s := newUnitServer(t, Config{})
	body := `{"provider":"fake","user_id":"u","grant":"password","credentials":{"username":"alice","password":"hunter2-secret"},"colour":1}`
	a := do(s.Handler(), "POST", "/v1/links", unitKey, strings.NewReader(body))
	assert.Equal(t, 400, a.Code)
	assert.NotContains(t, string(a.Body), "hunter2-secret")

	body = `{"provider":"fake","user_id":"u","grant":"password","credentials":{"username":"alice","password":"hunter2-secret"}}`
	a = do(s.Handler(), "POST", "/v1/links", unitKey, strings.NewReader(body))
	require.Equal(t, 201, a.Code, string(a.Body))
	assert.NotContains(t, string(a.Body), "hunter2-secret")
	assert.NotContains(t, s.logs.String(), "hunter2-secret")
	var resp createLinkResponse
	a.json(t, &resp)
	g, err := s.sec.ReadGrant(context.Background(), "t1", resp.ID)
	require.NoError(t, err)
	assert.Equal(t, "hunter2-secret", g.Value.Password, "the password goes to the secret store")
	require.Len(t, s.temp.started, 1)
	assert.Equal(t, "link/t1/"+resp.ID, s.temp.started[0].ID)
}

func TestTokenVaultDownIs503(t *testing.T) {
	s := newUnitServer(t, Config{})
	s.sec.down = true
	a := do(s.Handler(), "GET", "/v1/links/lnk_abc/token", unitKey, nil)
	assert.Equal(t, 503, a.Code)
	assert.Equal(t, CodeUnavailable, a.errCode(t))
	assert.Equal(t, "5", a.Header.Get("Retry-After"))
}

func TestLinkIDsAreChecked(t *testing.T) {
	s := newUnitServer(t, Config{})
	for _, id := range []string{"..", "a.b", "x%2F..%2Fy", strings.Repeat("a", 65)} {
		a := do(s.Handler(), "GET", "/v1/links/"+id+"/token", unitKey, nil)
		assert.Equal(t, 404, a.Code, id)
		assert.Equal(t, CodeNotFound, a.errCode(t), id)
	}
}

func TestNormalizeOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://App.Example":       "https://app.example:443",
		"https://app.example:443/x": "https://app.example:443",
		"http://127.0.0.1:8080":     "http://127.0.0.1:8080",
		"http://[::1]:3000/cb":      "http://[::1]:3000",
	} {
		got, ok := normalizeOrigin(in)
		assert.True(t, ok, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"ftp://a.example", "javascript:alert(1)", "/relative", ""} {
		_, ok := normalizeOrigin(in)
		assert.False(t, ok, in)
	}
}

func TestCallbackPagesEscape(t *testing.T) {
	s := newUnitServer(t, Config{})
	ctx := context.Background()
	s.mem.links["t1/lnk_x"] = store.Link{ID: "lnk_x", TenantID: "t1", Status: "pending"}
	require.NoError(t, s.mem.PutOAuthState(ctx, "st-1", store.OAuthState{LinkID: "lnk_x", TenantID: "t1", ExpiresAt: time.Now().Add(time.Hour)}))
	q := url.Values{"state": {"st-1"}, "error": {"<script>alert(1)</script>"}}
	a := do(s.Handler(), "GET", CallbackPath+"?"+q.Encode(), "", nil)
	assert.Equal(t, 400, a.Code)
	assert.Contains(t, a.Header.Get("Content-Type"), "text/html")
	assert.NotContains(t, string(a.Body), "<script>")
	assert.Contains(t, string(a.Body), "&lt;script&gt;")
	assert.NotContains(t, s.logs.String(), "st-1", "the state must not be logged")

	a = do(s.Handler(), "GET", CallbackPath, "", nil)
	assert.Equal(t, 400, a.Code)
	assert.Contains(t, string(a.Body), "Invalid sign-in link")
}

func TestRoutes(t *testing.T) {
	s := newUnitServer(t, Config{})
	got := s.Routes()
	for _, want := range []Route{
		{"GET", "/healthz"}, {"GET", "/readyz"}, {"GET", "/metrics"}, {"GET", "/openapi.json"}, {"GET", "/docs"},
		{"GET", CallbackPath}, {"GET", CallbackPath + "/{state}"}, {"GET", StartPath + "/{state}"}, {"GET", "/v1/providers"}, {"POST", "/v1/links"}, {"GET", "/v1/links"},
		{"GET", "/v1/links/{id}"}, {"DELETE", "/v1/links/{id}"}, {"GET", "/v1/links/{id}/token"},
		{"POST", "/v1/links/{id}/refresh"}, {"POST", "/v1/links/{id}/revoke"}, {"POST", "/v1/links/{id}/reauthorize"},
		{"GET", "/v1/links/{id}/events"}, {"GET", "/v1/webhook"}, {"PUT", "/v1/webhook"}, {"DELETE", "/v1/webhook"},
		{"POST", "/v1/webhook/rotate-secret"},
		{"GET", ConnectPath}, {"POST", ConnectPath}, {"GET", connectCSSPath}, {"POST", "/v1/connect/sessions"},
	} {
		assert.Contains(t, got, want)
	}
	for _, m := range proxyMethods {
		assert.Contains(t, got, Route{m, "/v1/links/{id}/proxy/{path}"})
	}
	assert.Len(t, got, 26+len(proxyMethods))
}

func TestMetricsEndpoint(t *testing.T) {
	s := newUnitServer(t, Config{})
	do(s.Handler(), "GET", "/healthz", "", nil)
	a := do(s.Handler(), "GET", "/metrics", "", nil)
	require.Equal(t, 200, a.Code)
	assert.Contains(t, string(a.Body), `tokenwarden_http_requests_total{code="200",method="GET",route="/healthz"} 1`)
	assert.Contains(t, string(a.Body), "tokenwarden_http_request_duration_seconds_bucket")
	assert.Same(t, s.metrics.registry, s.Registry())
}

// FuzzCreateLink posts arbitrary bodies: no input may panic or answer
// with a server error. The dependencies are in memory, so valid bodies
// get through to 201 as well.
func FuzzCreateLink(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `null`, `[]`, `"x"`, `{"provider":null}`,
		`{"provider":"fake","user_id":"u","grant":"client_credentials"}`,
		`{"provider":"fake","user_id":"u","grant":"authorization_code","scopes":["openid"],"return_url":"https://app.example/x"}`,
		`{"provider":"fake","user_id":"u","grant":"password","credentials":{"username":"a","password":"b"}}`,
		`{"provider":"fake","user_id":"u","grant":"device_code","params":{"locale":"de"}}`,
		`{"provider":"narrow","user_id":"u","grant":"authorization_code"}`,
		`{"provider":"fake","user_id":"u","grant":"authorization_code","params":{"locale":"\ud800"}}`,
		`{"provider":"fake","user_id":"u","grant":"password","credentials":null}`,
		`{"provider":"fake","user_id":"\u00e9","grant":"client_credentials","scopes":[""]}`,
		`{"provider":"fake","user_id":"u","grant":"client_credentials","params":{"lifetime":1}}`,
		`{"provider":"fake","user_id":"u","grant":"client_credentials","return_url":"https://app.example"}`,
		"{\"provider\":\"fake\",\"user_id\":\"u\",\"grant\":\"authorization_code\",\"return_url\":\"https://app.example\\u0000@evil\"}",
	} {
		f.Add(seed)
	}
	s := newUnitServer(f, Config{})
	f.Fuzz(func(t *testing.T, body string) {
		a := do(s.Handler(), "POST", "/v1/links", unitKey, strings.NewReader(body))
		if a.Code >= 500 {
			t.Fatalf("body %q: status %d: %s", body, a.Code, a.Body)
		}
		if a.Code >= 400 {
			var e errorBody
			if err := json.Unmarshal(a.Body, &e); err != nil || e.Error.Code == "" {
				t.Fatalf("body %q: error answer is not the JSON error shape: %s", body, a.Body)
			}
		}
	})
}
