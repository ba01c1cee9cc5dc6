package generic

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
)

const testNonce = "nonce-0123456789abcdef"

// signingKey is an RSA key with a key ID; RSA keys are slow to make, so
// the tests share two.
type signingKey struct {
	kid  string
	priv *rsa.PrivateKey
}

var (
	keysOnce            sync.Once
	issuerKey, otherKey signingKey
)

func testKeys(t *testing.T) (issuer, other signingKey) {
	t.Helper()
	keysOnce.Do(func() {
		mk := func(kid string) signingKey {
			priv, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			return signingKey{kid: kid, priv: priv}
		}
		issuerKey, otherKey = mk("issuer-key-1"), mk("attacker-key")
	})
	return issuerKey, otherKey
}

func (k signingKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: string(jose.RS256), Use: "sig"}
}

// sign makes a compact JWS of claims with k, under key ID kid.
func (k signingKey) sign(t *testing.T, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: k.priv, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	require.NoError(t, err)
	payload, err := json.Marshal(claims)
	require.NoError(t, err)
	obj, err := signer.Sign(payload)
	require.NoError(t, err)
	raw, err := obj.CompactSerialize()
	require.NoError(t, err)
	return raw
}

// oidcIssuer is a fake OpenID Connect issuer: discovery, JWKS and a
// token endpoint that answers with idToken.
type oidcIssuer struct {
	*httptest.Server
	mu       sync.Mutex
	keys     []jose.JSONWebKey
	jwksDown bool
	jwksHits int
	idToken  string
	noJWKS   bool
}

func newOIDCIssuer(t *testing.T) *oidcIssuer {
	t.Helper()
	k, _ := testKeys(t)
	iss := &oidcIssuer{keys: []jose.JSONWebKey{k.public()}}
	iss.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iss.mu.Lock()
		defer iss.mu.Unlock()
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			doc := map[string]any{
				"issuer":                                iss.URL,
				"authorization_endpoint":                iss.URL + "/auth",
				"token_endpoint":                        iss.URL + "/token",
				"jwks_uri":                              iss.URL + "/jwks",
				"id_token_signing_alg_values_supported": []string{"RS256", "HS256"},
			}
			if iss.noJWKS {
				delete(doc, "jwks_uri")
			}
			writeJSON(w, 200, doc)
		case "/jwks":
			iss.jwksHits++
			if iss.jwksDown {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			writeJSON(w, 200, jose.JSONWebKeySet{Keys: iss.keys})
		case "/token":
			writeJSON(w, 200, tokenReply(map[string]any{"id_token": iss.idToken}))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(iss.Close)
	return iss
}

func (iss *oidcIssuer) set(f func(*oidcIssuer)) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	f(iss)
}

// claims are those of a good ID token for testNonce at fixedNow.
func (iss *oidcIssuer) claims() map[string]any {
	return map[string]any{
		"iss": iss.URL, "aud": "tokenwarden", "sub": "end-user-alice", "nonce": testNonce,
		"iat": fixedNow.Unix(), "exp": fixedNow.Add(time.Hour).Unix(),
	}
}

func openOIDC(t *testing.T, iss *oidcIssuer, scopes ...string) (*OIDCProvider, error) {
	t.Helper()
	e := oidcEntry(iss.URL)
	e.Grants = []string{providers.GrantAuthorizationCode, providers.GrantPassword}
	e.Scopes = scopes
	p, err := open(t, e, nil)
	if err != nil {
		return nil, err
	}
	p.now = func() time.Time { return fixedNow }
	return p, nil
}

func codeGrant() providers.Grant {
	return providers.Grant{Type: providers.GrantAuthorizationCode, Code: authCode, CodeVerifier: verifier, Nonce: testNonce}
}

// TestIDTokenVerification: the ID token of an exchange is verified, and
// each way it can be wrong fails the exchange with a permanent error
// naming what was wrong, never the token.
func TestIDTokenVerification(t *testing.T) {
	good, attacker := testKeys(t)
	tests := []struct {
		name  string
		token func(iss *oidcIssuer) string
		grant func(g *providers.Grant)
		check string
		want  string
	}{
		{name: "forged: signed by another key under the issuer's key ID", check: CheckSignature, want: "signature does not verify",
			token: func(iss *oidcIssuer) string { return attacker.sign(t, good.kid, iss.claims()) }},
		{name: "forged: signed by a key the issuer never published", check: CheckSignature, want: "signature does not verify",
			token: func(iss *oidcIssuer) string { return attacker.sign(t, attacker.kid, iss.claims()) }},
		{name: "forged: alg none", check: CheckMalformed, want: "algorithm the issuer advertises (RS256)",
			token: func(iss *oidcIssuer) string { return jwt(iss.claims()) }},
		{name: "expired", check: CheckExpired, want: "expired at " + fixedNow.Add(-time.Minute).Format(time.RFC3339),
			token: func(iss *oidcIssuer) string {
				c := iss.claims()
				c["exp"] = fixedNow.Add(-time.Minute).Unix()
				return good.sign(t, good.kid, c)
			}},
		{name: "wrong audience", check: CheckAudience, want: `audience "someone-else" does not include this client (client_id "tokenwarden")`,
			token: func(iss *oidcIssuer) string {
				c := iss.claims()
				c["aud"] = "someone-else"
				return good.sign(t, good.kid, c)
			}},
		{name: "wrong authorized party", check: CheckAudience, want: `authorized party (azp) "someone-else"`,
			token: func(iss *oidcIssuer) string {
				c := iss.claims()
				c["aud"], c["azp"] = []string{"tokenwarden", "someone-else"}, "someone-else"
				return good.sign(t, good.kid, c)
			}},
		{name: "wrong issuer", check: CheckIssuer, want: `issued by "https://evil.example.com", not by the provider's issuer`,
			token: func(iss *oidcIssuer) string {
				c := iss.claims()
				c["iss"] = "https://evil.example.com"
				return good.sign(t, good.kid, c)
			}},
		{name: "wrong nonce", check: CheckNonce, want: "nonce is not the one the authorization request sent",
			token: func(iss *oidcIssuer) string {
				c := iss.claims()
				c["nonce"] = "nonce-of-another-sign-in"
				return good.sign(t, good.kid, c)
			}},
		{name: "no nonce", check: CheckNonce, want: "carries no nonce",
			token: func(iss *oidcIssuer) string {
				c := iss.claims()
				delete(c, "nonce")
				return good.sign(t, good.kid, c)
			}},
		{name: "no subject", check: CheckSubject, want: "no sub claim",
			token: func(iss *oidcIssuer) string {
				c := iss.claims()
				delete(c, "sub")
				return good.sign(t, good.kid, c)
			}},
		{name: "subject too long", check: CheckSubject, want: "longer than the 255 characters",
			token: func(iss *oidcIssuer) string {
				c := iss.claims()
				c["sub"] = strings.Repeat("s", 256)
				return good.sign(t, good.kid, c)
			}},
		{name: "no ID token for scope openid", check: CheckMissing, want: "no ID token although scope openid",
			token: func(*oidcIssuer) string { return "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss := newOIDCIssuer(t)
			raw := tt.token(iss)
			iss.set(func(i *oidcIssuer) { i.idToken = raw })
			p, err := openOIDC(t, iss, "openid", "offline_access")
			require.NoError(t, err)
			g := codeGrant()
			if tt.grant != nil {
				tt.grant(&g)
			}
			tok, err := p.Exchange(context.Background(), g)
			assert.True(t, tok == nil, "the exchange handed out a token with a rejected ID token")
			pe := errorClass(t, err)
			assert.Equal(t, providers.Permanent, pe.Class)
			assert.Equal(t, opExchange, pe.Op)
			var ie *IDTokenError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, tt.check, ie.Check)
			assert.ErrorIs(t, err, ErrIDToken)
			assert.Contains(t, err.Error(), "ID token rejected ("+tt.check+")")
			assert.Contains(t, err.Error(), tt.want)
			if raw != "" {
				assert.NotContains(t, err.Error(), raw, "the error quotes the ID token")
			}
			assert.NotContains(t, err.Error(), testNonce, "the error quotes the nonce")
		})
	}
}

func TestIDTokenAccepted(t *testing.T) {
	good, _ := testKeys(t)
	iss := newOIDCIssuer(t)
	iss.set(func(i *oidcIssuer) { i.idToken = good.sign(t, good.kid, i.claims()) })
	p, err := openOIDC(t, iss, "openid")
	require.NoError(t, err)
	tok, err := p.Exchange(context.Background(), codeGrant())
	require.NoError(t, err)
	assert.Equal(t, "end-user-alice", tok.Subject)
	assert.Equal(t, accessTok, tok.AccessToken)
	refreshed, err := p.Refresh(context.Background(), tok)
	require.NoError(t, err)
	assert.Equal(t, "end-user-alice", refreshed.Subject, "a refresh is for the same end-user")

	// A grant from before nonces were sent (an authorization under way
	// at an upgrade) has none to compare; the rest is still checked.
	g := codeGrant()
	g.Nonce = ""
	tok, err = p.Exchange(context.Background(), g)
	require.NoError(t, err)
	assert.Equal(t, "end-user-alice", tok.Subject)

	// Keys are fetched once and cached.
	iss.set(func(i *oidcIssuer) { assert.Equal(t, 1, i.jwksHits) })

	// The issuer rotates its key: a token under a new key ID makes the
	// key set fetch again.
	_, other := testKeys(t)
	iss.set(func(i *oidcIssuer) {
		i.keys = []jose.JSONWebKey{other.public()}
		i.idToken = other.sign(t, other.kid, i.claims())
	})
	tok, err = p.Exchange(context.Background(), codeGrant())
	require.NoError(t, err)
	assert.Equal(t, "end-user-alice", tok.Subject)

	// Without scope openid no ID token is needed; one that comes is still
	// verified.
	iss.set(func(i *oidcIssuer) { i.idToken = "" })
	p, err = openOIDC(t, iss, "offline_access")
	require.NoError(t, err)
	tok, err = p.Exchange(context.Background(), codeGrant())
	require.NoError(t, err)
	assert.Empty(t, tok.Subject)
}

// TestIDTokenKeysUnavailable: keys that cannot be fetched are retried
// within the exchange, then named; the code is spent, so that is
// permanent for it, while a password grant may be exchanged again.
func TestIDTokenKeysUnavailable(t *testing.T) {
	defer func(d time.Duration) { keyFetchWait = d }(keyFetchWait)
	keyFetchWait = 10 * time.Millisecond
	good, _ := testKeys(t)
	iss := newOIDCIssuer(t)
	iss.set(func(i *oidcIssuer) {
		i.idToken = good.sign(t, good.kid, i.claims())
		i.jwksDown = true
	})
	p, err := openOIDC(t, iss, "openid")
	require.NoError(t, err)
	_, err = p.Exchange(context.Background(), codeGrant())
	pe := errorClass(t, err)
	assert.Equal(t, providers.Permanent, pe.Class)
	var ie *IDTokenError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, CheckKeys, ie.Check)
	assert.Contains(t, err.Error(), "signing keys could not be fetched from "+iss.URL+"/jwks")
	iss.set(func(i *oidcIssuer) { assert.Equal(t, keyFetchAttempts, i.jwksHits) })

	_, err = p.Exchange(context.Background(), providers.Grant{Type: providers.GrantPassword, Username: "u", Password: userPassword})
	assert.Equal(t, providers.Transient, errorClass(t, err).Class)

	// Back up: the next exchange verifies.
	iss.set(func(i *oidcIssuer) { i.jwksDown = false })
	_, err = p.Exchange(context.Background(), codeGrant())
	require.NoError(t, err)
}

func TestIDTokenIssuerWithoutKeys(t *testing.T) {
	good, _ := testKeys(t)
	iss := newOIDCIssuer(t)
	iss.set(func(i *oidcIssuer) {
		i.noJWKS = true
		i.idToken = good.sign(t, good.kid, i.claims())
	})
	_, err := openOIDC(t, iss, "openid")
	require.Error(t, err, "an entry asking for openid from an issuer without keys fails at boot")
	assert.Contains(t, err.Error(), "no jwks_uri")
	assert.Contains(t, err.Error(), iss.URL)

	p, err := openOIDC(t, iss, "offline_access")
	require.NoError(t, err)
	_, err = p.Exchange(context.Background(), codeGrant())
	pe := errorClass(t, err)
	assert.Equal(t, providers.Misconfigured, pe.Class)
	assert.Contains(t, err.Error(), "names no jwks_uri")
}

func TestAuthCodeURLNonce(t *testing.T) {
	iss := newOIDCIssuer(t)
	e := oidcEntry(iss.URL)
	e.Grants = []string{providers.GrantAuthorizationCode}
	e.AuthParams = map[string]string{"nonce": "catalog-nonce"}
	e.AllowedParams = []string{"nonce"}
	p, err := open(t, e, nil)
	require.NoError(t, err)
	raw, err := p.AuthCodeURLNonce("state-0123456789abcdef", verifier, testNonce, "https://tw.example.com/cb", nil,
		map[string]string{"nonce": "caller-nonce"})
	require.NoError(t, err)
	u, err := url.Parse(raw)
	require.NoError(t, err)
	assert.Equal(t, []string{testNonce}, u.Query()["nonce"], "no param replaces the nonce the ID token is checked against")

	_, err = p.AuthCodeURLNonce("state-0123456789abcdef", verifier, "", "https://tw.example.com/cb", nil, nil)
	require.Error(t, err)

	raw, err = p.AuthCodeURL("state-0123456789abcdef", verifier, "https://tw.example.com/cb", nil, nil)
	require.NoError(t, err)
	assert.NotContains(t, raw, testNonce)
}

// TestIDTokenErrorIsTyped: callers sort on the type, not the text.
func TestIDTokenErrorIsTyped(t *testing.T) {
	err := error(&providers.Error{Class: providers.Permanent, Op: opExchange, Err: idTokenErr(CheckNonce, "x")})
	var ie *IDTokenError
	assert.True(t, errors.As(err, &ie))
	assert.True(t, errors.Is(err, ErrIDToken))
}
