package providers

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// HTTPClient is client ready for provider calls: nil means a new client
// with DefaultHTTPTimeout, and a client without a timeout is copied with
// that timeout.
func HTTPClient(client *http.Client) *http.Client {
	if client == nil {
		return &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if client.Timeout == 0 {
		cp := *client
		cp.Timeout = DefaultHTTPTimeout
		return &cp
	}
	return client
}

// AbsoluteHTTP reports whether s is an absolute http(s) URL with a host.
func AbsoluteHTTP(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// CheckBaseURL checks a kind's settings.base_url under which it builds
// its endpoints: required, an absolute http(s) URL, without query or
// fragment.
func CheckBaseURL(s string) error {
	if s == "" {
		return errors.New("settings.base_url is required")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("settings.base_url %q is not an absolute http(s) URL without query", s)
	}
	return nil
}

// Or returns e with its empty URLs taken from d: the URLs a catalog entry
// sets win over derived or discovered ones.
func (e Endpoint) Or(d Endpoint) Endpoint {
	pick := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	return Endpoint{
		AuthURL:          pick(e.AuthURL, d.AuthURL),
		TokenURL:         pick(e.TokenURL, d.TokenURL),
		DeviceAuthURL:    pick(e.DeviceAuthURL, d.DeviceAuthURL),
		RevocationURL:    pick(e.RevocationURL, d.RevocationURL),
		IntrospectionURL: pick(e.IntrospectionURL, d.IntrospectionURL),
		UserinfoURL:      pick(e.UserinfoURL, d.UserinfoURL),
		LogoutURL:        pick(e.LogoutURL, d.LogoutURL),
	}
}

// MaxReplyBody caps what is read of a provider's reply, as x/oauth2 does.
const MaxReplyBody = 1 << 20

// Send does req with client and reads up to MaxReplyBody of the reply,
// whose body it closes. Transport and read errors come back classified
// under op.
func Send(client *http.Client, op string, req *http.Request) (*http.Response, []byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, Classify(op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxReplyBody))
	if err != nil {
		return nil, nil, Classify(op, err)
	}
	return resp, body, nil
}
