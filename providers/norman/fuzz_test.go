package norman

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/providers"
)

// fuzzNow is the provider's clock in the fuzz tests, so that seeds with
// JWT expiries mean the same on every run.
var fuzzNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func fuzzProvider(t testing.TB) *Provider {
	p, err := NewProvider("https://norman.invalid", institutionID, secretKey, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time { return fuzzNow }
	return p
}

// fuzzJWT is an unsigned JWT whose payload is claims.
func fuzzJWT(claims string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(claims)) + ".c2ln"
}

// FuzzToken feeds arbitrary bodies to the decoder of Norman's token
// replies (create, retrieve, refresh). It must never panic, and a token
// comes out only when the body is a JSON object naming a non-empty
// access token. Everything else is an error whose text depends on the
// body only through its kind, so it cannot echo one: Transient
// malformed-reply for a JSON value cut short, Misconfigured for any
// other body (not JSON, not an object, an object without a token).
func FuzzToken(f *testing.F) {
	exp := fuzzNow.Add(30 * time.Minute).Unix()
	access := fuzzJWT(fmt.Sprintf(`{"exp":%d,"token_type":"access"}`, exp))
	refresh := fuzzJWT(fmt.Sprintf(`{"exp":%d}`, fuzzNow.Add(24*time.Hour).Unix()))
	for _, seed := range []string{
		// Well-formed, in both spellings.
		`{"accessToken":"` + access + `","refreshToken":"` + refresh + `"}`,
		`{"access":"` + access + `","refresh":"` + refresh + `"}`,
		`{"access":"` + access + `"}`,
		`{"accessToken":"opaque-access","refreshToken":"opaque-refresh"}`,
		`{"accessToken":"","access":"second-spelling"}`,
		`{"access_token":"snake","refresh_token":"snake-r","expires_in":600}`,
		`{"data":{"accessToken":"nested","refreshToken":"nested-r"}}`,
		`{"tokens":{"access":"nested-2"},"user":{"username":"x"}}`,
		`{"a":{"access_token":"deep"},"b":{"accessToken":"other"}}`,
		`{"data":{"data":{"accessToken":"too-deep"}}}`,
		`{"jwt":{"a":"x","r":"y"}}`,
		// JWTs with claims that must not be believed.
		`{"access":"` + fuzzJWT(`{"exp":1}`) + `"}`,
		`{"access":"` + fuzzJWT(`{"exp":1e308}`) + `"}`,
		`{"access":"` + fuzzJWT(`{"exp":"NaN"}`) + `"}`,
		`{"access":"` + fuzzJWT(`{"exp":-9223372036854775808}`) + `"}`,
		`{"access":"a.!!!.c"}`, `{"access":"a..c"}`, `{"access":"..."}`,
		// Garbage.
		``, ` `, `null`, `[]`, `{}`, `"accessToken"`, `0`, `true`, `{`, `}{`,
		`{"accessToken":null}`, `{"accessToken":123}`, `{"accessToken":["x"]}`, `{"accessToken":{"x":"y"}}`,
		`{"access":""}`, `{"accessToken":"x"} trailing`, `{"accessToken":"x"}{"access":"y"}`,
		`<html>502 Bad Gateway</html>`, "\x00\xff\xfe", `{"detail":"Token is invalid or expired","code":"token_not_valid"}`,
		// Cut short.
		`{"access": "`, `{"accessToken":"x","refreshToken":`, `[{"a":1},`, `"abc`, `tru`, `{"a":1} {`,
	} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	p := fuzzProvider(f)
	// The error for a body cut short, whatever the body was, and those
	// for bodies that are no JSON object, one per kind.
	errText := func(body string) string {
		_, err := p.token(opRefresh, &reply{status: http.StatusOK, body: []byte(body)}, nil)
		if err == nil {
			f.Fatalf("%q gave a token", body)
		}
		return err.Error()
	}
	cutErr := errText(`{"access": "`)
	notJSONErrs := map[string]bool{errText(""): true, errText("<"): true, errText("[]"): true, errText("x"): true}

	f.Fuzz(func(t *testing.T, body string, withPrev bool) {
		var prev *providers.Token
		if withPrev {
			prev = &providers.Token{AccessToken: "prev-access", RefreshToken: "prev-refresh",
				RefreshExpiry: fuzzNow.Add(time.Hour)}
		}
		tok, err := p.token(opRefresh, &reply{status: http.StatusOK, body: []byte(body)}, prev)

		// What the reply says, decoded independently of p.token: the
		// first object holding an access token in any spelling, the top
		// level first, then the wrappers, then other object values by key.
		var fields map[string]any
		isObject := json.Unmarshal([]byte(body), &fields) == nil && fields != nil
		str := func(m map[string]any, names ...string) string {
			for _, n := range names {
				if s, ok := m[n].(string); ok && s != "" {
					return s
				}
			}
			return ""
		}
		var pair map[string]any
		if isObject {
			candidates := []any{fields}
			for _, k := range []string{"tokens", "token", "data", "result", "auth"} {
				candidates = append(candidates, fields[k])
			}
			keys := make([]string, 0, len(fields))
			for k := range fields {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				candidates = append(candidates, fields[k])
			}
			for _, c := range candidates {
				if m, ok := c.(map[string]any); ok && str(m, "accessToken", "access_token", "access") != "" {
					pair = m
					break
				}
			}
		}
		wantAccess := str(pair, "accessToken", "access_token", "access")

		if err != nil {
			if tok != nil {
				t.Fatal("both a token and an error")
			}
			var pe *providers.Error
			if !errors.As(err, &pe) {
				t.Fatalf("want a *providers.Error, got %T (%v)", err, err)
			}
			var v any
			cut := errors.Is(json.NewDecoder(strings.NewReader(body)).Decode(&v), io.ErrUnexpectedEOF)
			switch {
			case !isObject && cut:
				if pe.Class != providers.Transient || !errors.Is(err, providers.ErrMalformedReply) {
					t.Fatalf("want a Transient malformed-reply error for a body cut short, got %v", err)
				}
				if err.Error() != cutErr {
					t.Fatalf("error text depends on the body: %q", err.Error())
				}
			case !isObject:
				if pe.Class != providers.Misconfigured || !errors.Is(err, ErrNotJSON) {
					t.Fatalf("want a Misconfigured not-JSON error for a body that is no JSON object, got %v", err)
				}
				if !notJSONErrs[err.Error()] {
					t.Fatalf("error text depends on the body: %q", err.Error())
				}
			case pe.Class != providers.Misconfigured || !errors.Is(err, ErrUnknownReplyShape):
				t.Fatalf("want a Misconfigured unknown-shape error for a JSON object, got %v", err)
			}
			if wantAccess != "" {
				t.Fatal("a reply naming an access token was refused")
			}
			return
		}
		if tok == nil {
			t.Fatal("neither a token nor an error")
		}
		if !isObject || wantAccess == "" {
			t.Fatal("a token came out of a reply without an access token")
		}
		if tok.AccessToken != wantAccess {
			t.Fatal("the access token is not the one the reply named")
		}
		if tok.TokenType != "Bearer" {
			t.Fatalf("token type %q", tok.TokenType)
		}
		// An expiry always comes out, in the future and believable.
		if !tok.Expiry.After(fuzzNow) || tok.Expiry.After(fuzzNow.Add(maxLifetime)) {
			t.Fatalf("access expiry %v not in (now, now+%v]", tok.Expiry, maxLifetime)
		}
		if !tok.RefreshExpiry.IsZero() && (!tok.RefreshExpiry.After(fuzzNow) || tok.RefreshExpiry.After(fuzzNow.Add(maxLifetime))) {
			t.Fatalf("refresh expiry %v not in (now, now+%v]", tok.RefreshExpiry, maxLifetime)
		}
		wantRefresh := str(pair, "refreshToken", "refresh_token", "refresh")
		switch {
		case wantRefresh != "":
			if tok.RefreshToken != wantRefresh {
				t.Fatal("the refresh token is not the one the reply named")
			}
		case prev != nil:
			// A refresh reply without a refresh token keeps the old one.
			if tok.RefreshToken != prev.RefreshToken || !tok.RefreshExpiry.Equal(prev.RefreshExpiry) {
				t.Fatal("the previous refresh token was not kept")
			}
		default:
			if tok.RefreshToken != "" || !tok.RefreshExpiry.IsZero() {
				t.Fatal("a refresh token out of nowhere")
			}
		}
	})
}

// FuzzFailure feeds arbitrary error replies to Norman's error decoder:
// never a panic, always an error, and never InvalidGrant (which sends a
// link to re-enrollment) for a status that means "try again".
func FuzzFailure(f *testing.F) {
	for _, seed := range []struct {
		status int
		body   string
	}{
		{401, `{"detail":"Token is invalid or expired","code":"token_not_valid"}`},
		{401, `{"detail":{"x":1},"code":"token_not_valid"}`},
		{429, `{"detail":"Request was throttled.","code":"token_not_valid"}`},
		{400, `{"username":["A user with that username already exists."]}`},
		{403, `{"detail":"Invalid institution credentials."}`},
		{500, `<html>oops</html>`},
		{503, ``}, {400, `null`}, {400, `{"code":7}`}, {400, `{"code":"token_not_valid","code":7}`},
		{502, `{"error":"invalid_grant","code":"token_not_valid"}`}, {200, `{"code":"token_not_valid"}`}, {0, "\xff"},
	} {
		f.Add(seed.status, seed.body)
	}
	p := fuzzProvider(f)
	f.Fuzz(func(t *testing.T, status int, body string) {
		e := p.failure(opRefresh, &reply{status: status, header: http.Header{}, body: []byte(body)})
		if e == nil {
			t.Fatal("no error")
		}
		// A struggling server (5xx, 408, 429) is retried, never taken as
		// a spent token, whatever its body says.
		retryable := status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
		if e.Class == providers.InvalidGrant && retryable {
			t.Fatalf("InvalidGrant for status %d", status)
		}
		// SimpleJWT's token_not_valid on any other 4xx is InvalidGrant.
		if status >= 400 && status < 500 && !retryable && e.Code == CodeTokenNotValid && e.Class != providers.InvalidGrant {
			t.Fatalf("token_not_valid on %d is %v", status, e.Class)
		}
		_ = e.Error()
	})
}
