package simulator

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAdminStrictAndLenient(t *testing.T) {
	for _, strict := range []bool{true, false} {
		var f Faults
		var h Hits
		expired := 0
		a := Admin{Faults: &f, Stats: h.Stats, Strict: strict, Actions: map[string]func(url.Values) error{
			"expire": Do(func() { expired++ }),
		}}
		do := func(method, target string) int {
			w := httptest.NewRecorder()
			a.ServeHTTP(w, httptest.NewRequest(method, target, nil))
			return w.Code
		}
		retry := "/_sim/ratelimit?retry_after=2"
		if strict {
			retry += "s"
		}
		assert.Equal(t, 204, do("POST", "/_sim/fail?status=503&n=2"))
		assert.Equal(t, 204, do("POST", retry))
		assert.Equal(t, 204, do("POST", "/_sim/malformed"))
		assert.Equal(t, 204, do("POST", "/_sim/expire"))
		assert.Equal(t, 1, expired)
		assert.Equal(t, 400, do("POST", "/_sim/fail?status=200"))
		assert.Equal(t, 405, do("GET", "/_sim/fail?status=503"))
		assert.Equal(t, 404, do("POST", "/_sim/nope"))
		assert.Equal(t, 200, do("GET", "/_sim/stats"))
		if strict {
			assert.Equal(t, 400, do("POST", "/_sim/malformed?n=x"))
			assert.Equal(t, 400, do("POST", "/_sim/ratelimit?retry_after=2"))
		} else {
			assert.Equal(t, 204, do("POST", "/_sim/malformed?n=x"), "n unreadable means 1")
		}

		var got []Fault
		for {
			w := httptest.NewRecorder()
			if !f.Take(w, func(_ http.ResponseWriter, ft Fault) { got = append(got, ft) }) {
				break
			}
		}
		want := []Fault{{Status: 503}, {Status: 503}, {Status: 429, RetryAfter: 2 * time.Second, RateLimit: true},
			{Status: 200, Malformed: true}}
		if !strict {
			want = append(want, Fault{Status: 200, Malformed: true})
		}
		assert.Equal(t, want, got, "strict=%v", strict)
	}
}

func TestHitsAndJWT(t *testing.T) {
	var h Hits
	require.NotNil(t, h.Stats(), "stats of no hits encode as {}")
	h.Hit("token")
	h.Hit("token")
	assert.Equal(t, map[string]int{"token": 2}, h.Stats())

	key := RandomBytes(32)
	tok := SignJWT(key, map[string]string{"alg": "HS256"}, map[string]int{"exp": 1})
	payload, ok := VerifyJWT(key, tok)
	require.True(t, ok)
	assert.JSONEq(t, `{"exp":1}`, string(payload))
	_, ok = VerifyJWT(RandomBytes(32), tok)
	assert.False(t, ok)
	assert.True(t, PKCEMatches("plain", "abc", "abc"))
	assert.True(t, PKCEMatches("S256", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"))
	assert.False(t, PKCEMatches("S256", "abc", "abc"))
}
