package sim

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const ann = `{"username":"ann","email":"ann@example.com","external_id":"e-ann"}`
const otherAnn = `{"username":"ann","email":"other@example.com","external_id":"e-other"}`

// Shapes: snake_case, nested, unknown; SetShape switches later replies.
func TestShapes(t *testing.T) {
	s := New(Options{Shape: ShapeSnake})
	srv := httptest.NewServer(s)
	defer srv.Close()
	_, m := call(t, srv, PathCreate, s.Institution(), ann)
	assert.Contains(t, m, "access_token")
	assert.Contains(t, m, "refresh_token")
	assert.Contains(t, m, "user")
	s.SetShape(ShapeNested)
	_, m = call(t, srv, PathRetrieve, s.Institution(), ann)
	assert.Contains(t, m["data"], "accessToken")
	s.SetShape(ShapeUnknown)
	_, m = call(t, srv, PathRetrieve, s.Institution(), ann)
	assert.Contains(t, m["jwt"], "a")
	assert.NotContains(t, m, "accessToken")

	// ShapeHTML: a complete 200 web page, for every token call.
	s.SetShape(ShapeHTML)
	for _, path := range []string{PathRetrieve, PathCreate} {
		body := ann
		if path == PathCreate {
			body = `{"username":"bea","email":"bea@example.com","external_id":"e-bea"}`
		}
		req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Institution", s.Institution())
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		page, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err, "the page arrives whole")
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
		assert.True(t, strings.HasPrefix(string(page), "<!DOCTYPE html>"))
		assert.False(t, json.Valid(page))
	}
	assert.True(t, s.HasUser("bea"), "users/create still acts behind the page")
}

// Anonymous: token replies and JWTs name no user (SimpleJWT's default
// claims), and the tokens still work.
func TestAnonymous(t *testing.T) {
	s := New(Options{Anonymous: true, Retrieve: RetrieveUsername})
	srv := httptest.NewServer(s)
	defer srv.Close()
	code, m := call(t, srv, PathCreate, s.Institution(), ann)
	require.Equal(t, http.StatusCreated, code)
	assert.NotContains(t, m, "user")
	code, m = call(t, srv, PathRetrieve, s.Institution(), otherAnn)
	require.Equal(t, http.StatusOK, code, "the lenient service answers for the first ann")
	assert.NotContains(t, m, "user")
	access, refresh := m["accessToken"].(string), m["refreshToken"].(string)
	for _, tok := range []string{access, refresh} {
		payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		require.NoError(t, err)
		var c map[string]any
		require.NoError(t, json.Unmarshal(payload, &c))
		assert.NotContains(t, c, "username")
		assert.NotContains(t, c, "email")
		assert.NotContains(t, c, "external_id")
		assert.Contains(t, c, "user_id")
	}
	assert.True(t, s.Valid(access))
	code, m = call(t, srv, PathRefresh, s.Institution(), `{"refresh":"`+refresh+`"}`)
	require.Equal(t, http.StatusOK, code)
	assert.True(t, s.Valid(m["access"].(string)))
}

// A taken username: 400 or 409; retrieve strict (all fields) or by
// username alone.
func TestCollisionModes(t *testing.T) {
	strict := New(Options{})
	srv := httptest.NewServer(strict)
	defer srv.Close()
	call(t, srv, PathCreate, strict.Institution(), ann)
	code, _ := call(t, srv, PathCreate, strict.Institution(), otherAnn)
	assert.Equal(t, http.StatusBadRequest, code)
	code, _ = call(t, srv, PathRetrieve, strict.Institution(), otherAnn)
	assert.Equal(t, http.StatusNotFound, code)

	lenient := New(Options{Retrieve: RetrieveUsername, ConflictStatus: http.StatusConflict})
	srv2 := httptest.NewServer(lenient)
	defer srv2.Close()
	call(t, srv2, PathCreate, lenient.Institution(), ann)
	code, _ = call(t, srv2, PathCreate, lenient.Institution(), otherAnn)
	assert.Equal(t, http.StatusConflict, code)
	code, m := call(t, srv2, PathRetrieve, lenient.Institution(), otherAnn)
	assert.Equal(t, http.StatusOK, code, "the lenient service answers for the first ann")
	assert.Equal(t, "ann@example.com", m["user"].(map[string]any)["email"])
}
