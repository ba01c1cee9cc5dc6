package generic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/tokenwarden/tokenwarden/providers"
)

// Discovery is what Tokenwarden uses of an OpenID Connect discovery
// document (OpenID Connect Discovery 1.0, RFC 8414 field names).
//
// The document is read here rather than by go-oidc's NewProvider, which
// verifies the ID tokens (see idtoken.go): NewProvider wants the issuer
// spelled exactly as the document does (the catalog tolerates a trailing
// slash), puts the reply body into its errors, and reads neither the
// revocation, introspection and end-session endpoints nor the client
// authentication methods, so the document would be parsed twice anyway.
type Discovery struct {
	Issuer   string
	Endpoint providers.Endpoint
	// AuthMethods is token_endpoint_auth_methods_supported.
	AuthMethods []string
	// JWKSURI is where the issuer publishes the keys its ID tokens are
	// signed with; IDTokenAlgs is id_token_signing_alg_values_supported.
	JWKSURI     string
	IDTokenAlgs []string
}

type discoveryDoc struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	DeviceEndpoint        string   `json:"device_authorization_endpoint"`
	RevocationEndpoint    string   `json:"revocation_endpoint"`
	IntrospectionEndpoint string   `json:"introspection_endpoint"`
	UserinfoEndpoint      string   `json:"userinfo_endpoint"`
	EndSessionEndpoint    string   `json:"end_session_endpoint"`
	AuthMethods           []string `json:"token_endpoint_auth_methods_supported"`
	JWKSURI               string   `json:"jwks_uri"`
	IDTokenAlgs           []string `json:"id_token_signing_alg_values_supported"`
}

// Discover fetches issuer's discovery document. The document must name
// the same issuer (OpenID Connect Discovery section 4.3): a mismatch
// usually means a proxy rewrote the URL, and tokens would then carry an
// issuer nobody expects. Errors name the issuer.
func Discover(ctx context.Context, client *http.Client, issuer string) (*Discovery, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("discovery at %s: %s", issuer, fmt.Sprintf(format, args...))
	}
	if client == nil {
		client = &http.Client{Timeout: DefaultDiscoveryTimeout}
	}
	wellKnown := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		return nil, fail("bad issuer URL")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fail("%v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fail("reading reply: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fail("HTTP %d from %s", resp.StatusCode, wellKnown)
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "" && ct != "application/json" {
		return nil, fail("reply is %s, not JSON", ct)
	}
	var doc discoveryDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fail("malformed document")
	}
	if strings.TrimSuffix(doc.Issuer, "/") != strings.TrimSuffix(issuer, "/") {
		return nil, fail("document names issuer %q", doc.Issuer)
	}
	if doc.TokenEndpoint == "" {
		return nil, fail("document has no token_endpoint")
	}
	d := &Discovery{
		Issuer: doc.Issuer,
		Endpoint: providers.Endpoint{
			AuthURL:          doc.AuthorizationEndpoint,
			TokenURL:         doc.TokenEndpoint,
			DeviceAuthURL:    doc.DeviceEndpoint,
			RevocationURL:    doc.RevocationEndpoint,
			IntrospectionURL: doc.IntrospectionEndpoint,
			UserinfoURL:      doc.UserinfoEndpoint,
			LogoutURL:        doc.EndSessionEndpoint,
		},
		AuthMethods: doc.AuthMethods,
		JWKSURI:     doc.JWKSURI,
		IDTokenAlgs: doc.IDTokenAlgs,
	}
	for _, u := range []struct{ name, v string }{
		{"authorization_endpoint", d.Endpoint.AuthURL},
		{"token_endpoint", d.Endpoint.TokenURL},
		{"device_authorization_endpoint", d.Endpoint.DeviceAuthURL},
		{"revocation_endpoint", d.Endpoint.RevocationURL},
		{"introspection_endpoint", d.Endpoint.IntrospectionURL},
		{"userinfo_endpoint", d.Endpoint.UserinfoURL},
		{"end_session_endpoint", d.Endpoint.LogoutURL},
		{"jwks_uri", d.JWKSURI},
	} {
		if !absoluteHTTP(u.v) {
			return nil, fail("%s %q is not an absolute http(s) URL", u.name, u.v)
		}
	}
	return d, nil
}

// authStyle turns the advertised methods into a style for an entry that
// said auto. RFC 8414 makes client_secret_basic the default when the
// document is silent.
func (d *Discovery) authStyle() providers.AuthStyle {
	switch {
	case len(d.AuthMethods) == 0, slices.Contains(d.AuthMethods, "client_secret_basic"):
		return providers.AuthStyleHeader
	case slices.Contains(d.AuthMethods, "client_secret_post"):
		return providers.AuthStyleBody
	}
	return providers.AuthStyleAuto
}

func absoluteHTTP(s string) bool { return s == "" || providers.AbsoluteHTTP(s) }
