package generic

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/tokenwarden/tokenwarden/providers"
)

// OIDCProvider is the provider of kind oidc: a Provider whose grant
// exchanges verify the ID token of the reply, and whose authorization
// URLs carry a nonce for it to echo.
//
// go-oidc verifies the signature against the issuer's JWKS (cached, and
// fetched again when a token names a key it has not seen, so the issuer
// may rotate keys), the algorithm against those the issuer advertises,
// the issuer, the audience and the expiry. The nonce, the authorized
// party and the presence of a subject are checked here: go-oidc leaves
// them to its caller.
//
// ID tokens of refreshes are kept but not verified: nothing reads them,
// and who the end-user is was settled at the exchange.
type OIDCProvider struct {
	*Provider
	ids *idTokens
}

// Capabilities, checked at compile time (the rest come with *Provider).
var (
	_ providers.IDTokenVerifier = (*OIDCProvider)(nil)
	_ providers.Revoker         = (*OIDCProvider)(nil)
)

// ErrIDToken is wrapped by every ID token rejection (errors.Is).
var ErrIDToken = errors.New("ID token rejected")

// Checks an ID token can fail, as IDTokenError.Check.
const (
	CheckMissing   = "missing"   // scope openid was asked for and no ID token came
	CheckMalformed = "malformed" // not a JWS, or an algorithm the issuer does not advertise
	CheckSignature = "signature" // no key of the issuer verifies it: forged
	CheckIssuer    = "issuer"
	CheckAudience  = "audience" // aud or azp do not name this client
	CheckExpired   = "expired"
	CheckClaims    = "claims" // other claims go-oidc refused (nbf in the future)
	CheckNonce     = "nonce"
	CheckSubject   = "subject" // no sub claim, or one too long
	CheckKeys      = "keys"    // the issuer's keys could not be fetched
	CheckConfig    = "config"  // the issuer publishes no keys
)

// IDTokenError is an ID token that failed a check. Reason is built from
// the issuer's metadata and the token's claims, never from the token.
type IDTokenError struct {
	Check  string
	Reason string
}

func (e *IDTokenError) Error() string { return "ID token rejected (" + e.Check + "): " + e.Reason }

func (e *IDTokenError) Unwrap() error { return ErrIDToken }

func idTokenErr(check, reason string) error { return &IDTokenError{Check: check, Reason: reason} }

// newOIDC wraps p, built from the discovery document d, with ID token
// verification. An entry that asks for scope openid from an issuer that
// publishes no keys fails here, at boot, naming the issuer.
func newOIDC(p *Provider, d *Discovery) (*OIDCProvider, error) {
	ids := &idTokens{issuer: d.Issuer, clientID: p.e.ClientID, jwksURI: d.JWKSURI, algs: signingAlgs(d.IDTokenAlgs)}
	if d.JWKSURI == "" {
		if slices.Contains(p.e.Scopes, "openid") {
			return nil, fmt.Errorf("discovery at %s: document has no jwks_uri, so the ID tokens scope openid asks for cannot be verified", p.e.Issuer)
		}
		return &OIDCProvider{Provider: p, ids: ids}, nil
	}
	remote := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), p.client), d.JWKSURI)
	ids.verifier = oidc.NewVerifier(d.Issuer, keySet{remote}, &oidc.Config{
		ClientID:             p.e.ClientID,
		SupportedSigningAlgs: ids.algs,
		// p.now is read at each check, so tests can move the clock.
		Now: func() time.Time { return p.now() },
	})
	return &OIDCProvider{Provider: p, ids: ids}, nil
}

// signingAlgs keeps the advertised algorithms go-oidc can verify. None
// left means OpenID Connect's mandatory RS256.
func signingAlgs(advertised []string) []string {
	known := []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
		oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA}
	var out []string
	for _, a := range advertised {
		if slices.Contains(known, a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		out = []string{oidc.RS256}
	}
	return out
}

// AuthCodeURLNonce is AuthCodeURL with an OpenID Connect nonce, which
// the ID token of the exchange must carry back (Grant.Nonce).
func (p *OIDCProvider) AuthCodeURLNonce(state, verifier, nonce, redirectURL string, scopes []string, params map[string]string) (string, error) {
	if nonce == "" {
		return "", refused(opAuthURL, errors.New("nonce is required"))
	}
	return p.authCodeURL(state, verifier, nonce, redirectURL, scopes, params)
}

// Exchange is Provider.Exchange, then the verification of the reply's ID
// token, whose sub becomes Token.Subject. A rejected ID token is an
// *IDTokenError inside a *providers.Error, and the token is dropped.
func (p *OIDCProvider) Exchange(ctx context.Context, g providers.Grant) (*providers.Token, error) {
	tok, err := p.Provider.Exchange(ctx, g)
	if err != nil {
		return nil, err
	}
	scopes := g.Scopes
	if len(scopes) == 0 {
		scopes = p.e.Scopes
	}
	// OpenID Connect Core 3.1.3.3: an authentication request (scope
	// openid) is answered with an ID token. A reply without one says
	// nothing about who consented, so it is not taken.
	required := g.Type == providers.GrantAuthorizationCode && slices.Contains(scopes, "openid")
	sub, err := p.ids.verify(ctx, tok.IDToken, g.Nonce, required)
	if err != nil {
		return nil, &providers.Error{Class: idTokenClass(err, g.Type), Op: opExchange, Err: err}
	}
	tok.Subject = sub
	return tok, nil
}

// idTokenClass: a rejected ID token is permanent, an issuer without keys
// a misconfiguration. Keys that could not be fetched are an outage, but
// a retry helps only grants that can be exchanged again: a code or
// device code was spent on the exchange that brought the ID token.
func idTokenClass(err error, grantType string) providers.Class {
	var ie *IDTokenError
	errors.As(err, &ie)
	switch {
	case ie == nil:
		return providers.Permanent
	case ie.Check == CheckConfig:
		return providers.Misconfigured
	case ie.Check == CheckKeys && (grantType == providers.GrantPassword || grantType == providers.GrantClientCredentials):
		return providers.Transient
	}
	return providers.Permanent
}

// idTokens checks the ID tokens of one issuer for one client.
type idTokens struct {
	issuer   string
	clientID string
	jwksURI  string
	algs     []string
	// verifier is nil when the issuer publishes no keys.
	verifier *oidc.IDTokenVerifier
}

// Key fetching is retried within the exchange, since the exchange itself
// usually cannot be (see idTokenClass).
const (
	keyFetchAttempts = 3
	keyFetchTimeout  = 10 * time.Second
)

// maxSubject is OpenID Connect Core's limit on sub (section 2); the
// links table holds no more.
const maxSubject = 255

// keyFetchWait is the pause before the second fetch, doubled for the
// third; tests shorten it.
var keyFetchWait = time.Second

// verify checks raw and returns its subject. nonce, when not empty, is
// what the authorization request sent. required: a missing ID token is
// an error rather than "nothing to check".
func (v *idTokens) verify(ctx context.Context, raw, nonce string, required bool) (string, error) {
	if raw == "" {
		if required {
			return "", idTokenErr(CheckMissing, "the token reply has no ID token although scope openid was requested")
		}
		return "", nil
	}
	if v.verifier == nil {
		return "", idTokenErr(CheckConfig, fmt.Sprintf("the discovery document of %s names no jwks_uri, so the ID token cannot be verified", v.issuer))
	}
	idt, err := v.verifyJWT(ctx, raw)
	if err != nil {
		return "", err
	}
	if nonce != "" && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		if idt.Nonce == "" {
			return "", idTokenErr(CheckNonce, "it carries no nonce, and the authorization request sent one")
		}
		return "", idTokenErr(CheckNonce, "its nonce is not the one the authorization request sent (an ID token replayed or injected from another sign-in)")
	}
	// OpenID Connect Core 3.1.3.7, step 5.
	var azp struct {
		Azp string `json:"azp"`
	}
	if err := idt.Claims(&azp); err == nil && azp.Azp != "" && azp.Azp != v.clientID {
		return "", idTokenErr(CheckAudience, fmt.Sprintf("its authorized party (azp) %s is not this client (client_id %s)", quoteClaim(azp.Azp), quoteClaim(v.clientID)))
	}
	switch {
	case idt.Subject == "":
		return "", idTokenErr(CheckSubject, "it has no sub claim")
	case len(idt.Subject) > maxSubject:
		return "", idTokenErr(CheckSubject, fmt.Sprintf("its sub claim is longer than the %d characters OpenID Connect allows", maxSubject))
	}
	return idt.Subject, nil
}

// verifyJWT runs go-oidc's verification, fetching the keys again (up to
// keyFetchAttempts) when they could not be fetched.
func (v *idTokens) verifyJWT(ctx context.Context, raw string) (*oidc.IDToken, error) {
	for attempt := 1; ; attempt++ {
		check := &sigCheck{}
		actx, cancel := context.WithTimeout(context.WithValue(ctx, sigCheckKey{}, check), keyFetchTimeout)
		idt, err := v.verifier.Verify(actx, raw)
		cancel()
		if err == nil {
			return idt, nil
		}
		if !check.fetchFailed || attempt == keyFetchAttempts {
			return nil, v.diagnose(err, check)
		}
		select {
		case <-ctx.Done():
			return nil, v.diagnose(err, check)
		case <-time.After(keyFetchWait * time.Duration(attempt)):
		}
	}
}

// diagnose names the check go-oidc's error stands for. Its messages are
// formatted text, so the signature stage is told by what the key set saw
// (sigCheck) and the claims stage from the verified claims themselves.
func (v *idTokens) diagnose(err error, c *sigCheck) error {
	var expired *oidc.TokenExpiredError
	switch {
	case c.fetchFailed:
		return idTokenErr(CheckKeys, fmt.Sprintf("the issuer's signing keys could not be fetched from %s", v.jwksURI))
	case !c.called:
		// go-oidc parses the JWS and checks its algorithm before it asks
		// the key set.
		return idTokenErr(CheckMalformed, fmt.Sprintf("it is not a JWS signed with an algorithm the issuer advertises (%s)", strings.Join(v.algs, ", ")))
	case !c.verified:
		return idTokenErr(CheckSignature, "its signature does not verify with any of the issuer's keys (forged, or signed by another party)")
	case errors.As(err, &expired):
		return idTokenErr(CheckExpired, "it expired at "+expired.Expiry.UTC().Format(time.RFC3339))
	}
	var claims struct {
		Iss string          `json:"iss"`
		Aud json.RawMessage `json:"aud"`
	}
	if json.Unmarshal(c.payload, &claims) != nil {
		return idTokenErr(CheckMalformed, "its claims are not a JSON object")
	}
	if claims.Iss != v.issuer {
		return idTokenErr(CheckIssuer, fmt.Sprintf("it was issued by %s, not by the provider's issuer %s", quoteClaim(claims.Iss), quoteClaim(v.issuer)))
	}
	if aud := audience(claims.Aud); !slices.Contains(aud, v.clientID) {
		return idTokenErr(CheckAudience, fmt.Sprintf("its audience %s does not include this client (client_id %s)",
			quoteClaim(strings.Join(aud, " ")), quoteClaim(v.clientID)))
	}
	return idTokenErr(CheckClaims, "its claims were refused (a not-before time in the future, or claims of the wrong type)")
}

// audience reads aud, a string or an array of strings (RFC 7519 4.1.3).
func audience(raw json.RawMessage) []string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(raw, &many)
	return many
}

// quoteClaim quotes a claim for a message, cut short.
func quoteClaim(s string) string {
	const max = 100
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "..."
	}
	return strconv.Quote(s)
}

// sigCheckKey carries a *sigCheck through go-oidc to keySet.
type sigCheckKey struct{}

// sigCheck is what the key set saw during one verification.
type sigCheck struct {
	called      bool // go-oidc got as far as the signature
	verified    bool // a key verified it; payload holds the claims
	fetchFailed bool // the keys could not be fetched
	payload     []byte
}

// keySet is go-oidc's RemoteKeySet, recording what go-oidc's error text
// no longer tells apart once its verifier has formatted it: keys that
// could not be fetched (an outage) and a signature no key verifies (a
// forgery). RemoteKeySet wraps (%w) the failures of fetching keys, and
// only those; a signature that no key verifies is a plain error.
type keySet struct{ remote *oidc.RemoteKeySet }

func (k keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.remote.VerifySignature(ctx, jwt)
	if c, ok := ctx.Value(sigCheckKey{}).(*sigCheck); ok {
		c.called = true
		c.verified = err == nil
		c.fetchFailed = err != nil && errors.Unwrap(err) != nil
		c.payload = payload
	}
	return payload, err
}
