package sim

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func call(t *testing.T, srv *httptest.Server, path, institution, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if institution != "" {
		req.Header.Set("Institution", institution)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// The wire shapes of Norman's guide and SimpleJWT.
func TestWireShapes(t *testing.T) {
	s := New(Options{AccessTTL: 5 * time.Minute})
	srv := httptest.NewServer(s)
	defer srv.Close()
	inst := s.Institution()
	user := `{"username":"newuser","email":"n@example.com","external_id":"7573b746"}`

	status, m := call(t, srv, PathCreate, inst, user)
	require.Equal(t, 201, status)
	access, refresh := m["accessToken"].(string), m["refreshToken"].(string)
	require.NotEmpty(t, access)
	require.NotEmpty(t, refresh)

	// Access tokens are JWTs with an exp claim.
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(access, ".")[1])
	require.NoError(t, err)
	var c claims
	require.NoError(t, json.Unmarshal(payload, &c))
	assert.Equal(t, "access", c.TokenType)
	assert.InDelta(t, time.Now().Add(5*time.Minute).Unix(), c.Exp, 2)

	status, m = call(t, srv, PathCreate, inst, user)
	assert.Equal(t, 400, status)
	assert.Contains(t, m["username"], "A user with that username already exists.")

	status, _ = call(t, srv, PathVerify, inst, `{"token":"`+access+`"}`)
	assert.Equal(t, 200, status)
	status, m = call(t, srv, PathVerify, inst, `{"token":"garbage"}`)
	assert.Equal(t, 401, status)
	assert.Equal(t, "token_not_valid", m["code"])

	status, m = call(t, srv, PathRefresh, inst, `{"refresh":"`+refresh+`"}`)
	require.Equal(t, 200, status)
	assert.NotEmpty(t, m["access"])
	rotated := m["refresh"].(string)
	assert.NotEqual(t, refresh, rotated)
	status, _ = call(t, srv, PathRefresh, inst, `{"refresh":"`+refresh+`"}`)
	assert.Equal(t, 401, status, "blacklisted after rotation")
	status, _ = call(t, srv, PathRefresh, inst, `{"refresh":"`+access+`"}`)
	assert.Equal(t, 401, status, "an access token is not a refresh token")

	status, m = call(t, srv, PathRetrieve, inst, user)
	require.Equal(t, 200, status)
	assert.NotEmpty(t, m["accessToken"])

	status, _ = call(t, srv, PathExpire, inst, `{"refresh":"`+rotated+`"}`)
	assert.Equal(t, 200, status)
	status, _ = call(t, srv, PathRefresh, inst, `{"refresh":"`+rotated+`"}`)
	assert.Equal(t, 401, status)

	status, m = call(t, srv, PathVerify, "institution:wrong", `{"token":"x"}`)
	assert.Equal(t, 403, status)
	assert.Contains(t, m, "detail")
	status, _ = call(t, srv, PathVerify, inst, `{"token":`)
	assert.Equal(t, 400, status)
	status, m = call(t, srv, PathRefresh, inst, `{}`)
	assert.Equal(t, 400, status)
	assert.Contains(t, m, "refresh")

	assert.Equal(t, 2, s.Stats()["create"])
	assert.Equal(t, 5, s.Stats()["refresh"])
}
