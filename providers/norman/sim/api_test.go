package sim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTaxReports: the guide's user API call takes the access token as a
// Bearer header, without the Institution header, and refuses refresh
// tokens, expired and ended sessions with SimpleJWT's 401.
func TestTaxReports(t *testing.T) {
	s := New(Options{})
	srv := httptest.NewServer(s)
	defer srv.Close()
	_, m := call(t, srv, PathCreate, s.Institution(), `{"username":"u1","email":"u1@example.com","external_id":"e1"}`)
	access, refresh := m["accessToken"].(string), m["refreshToken"].(string)
	reports := func(bearer string) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodGet, srv.URL+strings.Replace(PathTaxReports, "{company}", "bec25987", 1), nil)
		require.NoError(t, err)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}

	status, out := reports(access)
	require.Equal(t, http.StatusOK, status)
	assert.EqualValues(t, 1, out["count"])
	first := out["results"].([]any)[0].(map[string]any)
	assert.Equal(t, "bec25987", first["company"])
	assert.Equal(t, "u1", first["created_by"])

	for name, bearer := range map[string]string{"none": "", "refresh token": refresh, "garbage": "x.y.z"} {
		status, out := reports(bearer)
		assert.Equal(t, http.StatusUnauthorized, status, name)
		assert.NotEmpty(t, out["detail"], name)
	}
	s.ExpireAccessTokens()
	status, out = reports(access)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, "token_not_valid", out["code"])
	assert.Equal(t, 5, s.Stats()["tax_reports"], "hits are counted")
}
