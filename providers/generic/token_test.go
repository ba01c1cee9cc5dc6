package generic

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
)

func TestParseTokenReply(t *testing.T) {
	jwtExp := fixedNow.Add(45 * time.Minute).Unix()
	tests := []struct {
		name  string
		ctype string
		body  string
		check func(t *testing.T, tok *providers.Token)
	}{
		{
			name: "expires_in",
			body: `{"access_token":"a","expires_in":300}`,
			check: func(t *testing.T, tok *providers.Token) {
				assert.Equal(t, fixedNow.Add(5*time.Minute), tok.Expiry)
			},
		},
		{
			name: "expires_in as string",
			body: `{"access_token":"a","expires_in":"300"}`,
			check: func(t *testing.T, tok *providers.Token) {
				assert.Equal(t, fixedNow.Add(5*time.Minute), tok.Expiry)
			},
		},
		{
			name: "missing expires_in uses JWT exp",
			body: `{"access_token":"` + jwt(map[string]any{"exp": jwtExp, "sub": "x"}) + `"}`,
			check: func(t *testing.T, tok *providers.Token) {
				assert.Equal(t, time.Unix(jwtExp, 0), tok.Expiry)
			},
		},
		{
			name: "expires_in wins over JWT exp",
			body: `{"access_token":"` + jwt(map[string]any{"exp": jwtExp}) + `","expires_in":60}`,
			check: func(t *testing.T, tok *providers.Token) {
				assert.Equal(t, fixedNow.Add(time.Minute), tok.Expiry)
			},
		},
		{
			name: "JWT exp in the past is ignored",
			body: `{"access_token":"` + jwt(map[string]any{"exp": fixedNow.Add(-time.Minute).Unix()}) + `"}`,
			check: func(t *testing.T, tok *providers.Token) {
				assert.True(t, tok.Expiry.IsZero())
			},
		},
		{
			name: "opaque token without expires_in: zero",
			body: `{"access_token":"opaque.not-a.jwt"}`,
			check: func(t *testing.T, tok *providers.Token) {
				assert.True(t, tok.Expiry.IsZero())
				assert.True(t, tok.RefreshExpiry.IsZero())
			},
		},
		{
			name: "refresh_expires_in, and 0 means none (Keycloak offline)",
			body: `{"access_token":"a","refresh_token":"r","refresh_expires_in":1800}`,
			check: func(t *testing.T, tok *providers.Token) {
				assert.Equal(t, fixedNow.Add(30*time.Minute), tok.RefreshExpiry)
			},
		},
		{
			name: "refresh_expires_in 0",
			body: `{"access_token":"a","refresh_token":"r","refresh_expires_in":0}`,
			check: func(t *testing.T, tok *providers.Token) {
				assert.True(t, tok.RefreshExpiry.IsZero())
			},
		},
		{
			name: "Extra keeps scalar non-secret fields only",
			body: `{"access_token":"a","refresh_token":"r","id_token":"i","session_state":"ss","mandator_name":"acme",
				"not-before-policy":0,"upgraded":true,"issued_token_type":"x","my_token_hint":"x","client_secret":"x",
				"api_key":"x","nested":{"a":1},"list":[1],"null":null,"scope":"a b","expires_in":10,"ratio":1.5}`,
			check: func(t *testing.T, tok *providers.Token) {
				assert.Equal(t, map[string]string{
					"session_state": "ss", "mandator_name": "acme", "not-before-policy": "0",
					"upgraded": "true", "ratio": "1.5",
				}, tok.Extra)
				assert.Equal(t, []string{"a", "b"}, tok.Scopes)
				assert.Equal(t, "i", tok.IDToken)
			},
		},
		{
			name:  "form-encoded reply",
			ctype: "application/x-www-form-urlencoded",
			body:  "access_token=a&token_type=bearer&expires_in=120&scope=x+y&refresh_token=r&session_state=s",
			check: func(t *testing.T, tok *providers.Token) {
				assert.Equal(t, "a", tok.AccessToken)
				assert.Equal(t, "r", tok.RefreshToken)
				assert.Equal(t, fixedNow.Add(2*time.Minute), tok.Expiry)
				assert.Equal(t, []string{"x", "y"}, tok.Scopes)
				assert.Equal(t, map[string]string{"session_state": "s"}, tok.Extra)
			},
		},
		{
			name: "absurd expires_in is capped",
			body: `{"access_token":"a","expires_in":1e300}`,
			check: func(t *testing.T, tok *providers.Token) {
				assert.Equal(t, fixedNow.Add(maxLifetime), tok.Expiry)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.ctype
			if ct == "" {
				ct = "application/json; charset=utf-8"
			}
			tok, code, _, err := ParseTokenReply(ct, []byte(tt.body), fixedNow)
			require.NoError(t, err)
			require.Empty(t, code)
			tt.check(t, tok)
		})
	}
}

func TestParseTokenReplyErrors(t *testing.T) {
	_, code, desc, err := ParseTokenReply("application/json", []byte(`{"error":"invalid_grant","error_description":"gone"}`), fixedNow)
	require.NoError(t, err)
	assert.Equal(t, "invalid_grant", code)
	assert.Equal(t, "gone", desc)
	for _, body := range []string{``, `null`, `[]`, `"x"`, `{"access_token":1}`, `{"access_token":"a"`} {
		_, _, _, err := ParseTokenReply("application/json", []byte(body), fixedNow)
		require.ErrorIs(t, err, providers.ErrMalformedReply, "body %q", body)
	}
}

// FuzzTokenResponse: no body makes the parser panic, and whatever it
// returns, Extra never carries a field named like a secret.
func FuzzTokenResponse(f *testing.F) {
	seeds := []string{
		`{"access_token":"a","expires_in":300,"refresh_token":"r","scope":"a b"}`,
		`{"access_token":"a","expires_in":"300","refresh_expires_in":1e400}`,
		`{"access_token":"` + jwt(map[string]any{"exp": 1e20}) + `"}`,
		`{"access_token":"a.eyJleHAiOiJ4In0.c"}`,
		`{"access_token":"a","scope":["a",1,null]}`,
		`{"error":"invalid_grant"}`,
		`access_token=a&expires_in=-1&scope=%zz`,
		`{"access_token":"a","expires_in":-5,"x":{"y":[1,2,{}]}}`,
		`{"access_token":"a","expires_in":NaN}`,
		`{`, ``, `null`, "\x00\xff",
	}
	for _, s := range seeds {
		f.Add("application/json", []byte(s))
		f.Add("application/x-www-form-urlencoded", []byte(s))
	}
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		tok, _, _, err := ParseTokenReply(ctype, body, fixedNow)
		if err != nil || tok == nil {
			return
		}
		if tok.AccessToken == "" {
			t.Fatal("token without access token")
		}
		for k := range tok.Extra {
			if strings.Contains(strings.ToLower(k), "token") {
				t.Fatalf("Extra carries %q", k)
			}
		}
		if _, err := json.Marshal(tok); err != nil {
			t.Fatalf("token does not marshal: %v", err)
		}
	})
}
