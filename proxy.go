package tokenwarden

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Error codes of the gateway's proxy (/v1/links/{id}/proxy/...).
const (
	// CodeProxyNotConfigured: the link's provider has no API the proxy
	// may call (no api_base_url in the catalog).
	CodeProxyNotConfigured = "proxy_not_configured"
	// CodeUpstreamUnavailable: the provider's API gave no answer.
	CodeUpstreamUnavailable = "upstream_unavailable"
)

// Headers of the proxy's answers.
const (
	// HeaderLinkStatus is the link's status after the request (active,
	// degraded, reauth_required, ...).
	HeaderLinkStatus = "Tokenwarden-Link-Status"
	// HeaderProxySource is "upstream" on the provider's answer, relayed,
	// and "gateway" on the gateway's own error (see ProxyError).
	HeaderProxySource = "Tokenwarden-Proxy-Source"
	// HeaderProxyRetry is set when the provider answered 401 (or a reply its
	// provider reads as a refused token, such as Luca's GraphQL errors): retried,
	// body_not_replayable, refresh_failed or refresh_throttled.
	HeaderProxyRetry = "Tokenwarden-Proxy-Retry"
	// HeaderProxyPass prefixes a header to send under the rest of its
	// name, for one the proxy would otherwise drop (Cookie).
	HeaderProxyPass = "Tokenwarden-Proxy-Header-"
)

// ProxyClient returns an HTTP client that calls the API of link linkID's
// provider through the gateway's proxy, which adds the link's access
// token: the caller never holds it. Requests name a path under the
// provider's API base, without scheme or host:
//
//	api := tw.ProxyClient("lnk_...")
//	resp, err := api.Get("/companies/42/taxes/reports/")
//
// Answers are the provider's, relayed, except the gateway's own errors
// (ProxyError reads those). Redirects are returned, not followed. The
// client's timeout is the Client's HTTPClient's.
func (c *Client) ProxyClient(linkID string) *http.Client {
	hc := &http.Client{
		Transport: c.ProxyTransport(linkID),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	if c.HTTPClient != nil {
		hc.Timeout = c.HTTPClient.Timeout
	}
	return hc
}

// ProxyTransport is the RoundTripper of ProxyClient, to wrap or to put
// into a client of one's own. It sends each request, whose URL must be a
// path (and query) relative to the provider's API base, to the gateway's
// proxy route of linkID with the API key; any Authorization header of the
// request is replaced, since the gateway would not forward it anyway.
func (c *Client) ProxyTransport(linkID string) http.RoundTripper {
	return &proxyTransport{c: c, linkID: linkID}
}

type proxyTransport struct {
	c      *Client
	linkID string
}

func (t *proxyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	u, err := t.target(req.URL)
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	out := req.Clone(req.Context())
	out.URL, out.Host = u, ""
	out.Header.Del("Authorization")
	if t.c.APIKey != "" {
		out.Header.Set("Authorization", "Bearer "+t.c.APIKey)
	}
	base := http.DefaultTransport
	if t.c.HTTPClient != nil && t.c.HTTPClient.Transport != nil {
		base = t.c.HTTPClient.Transport
	}
	return base.RoundTrip(out)
}

// target is the gateway URL that proxies path-only URL p.
func (t *proxyTransport) target(p *url.URL) (*url.URL, error) {
	if p.Scheme != "" || p.Host != "" || p.Opaque != "" {
		return nil, errors.New("tokenwarden: a proxy request takes a path relative to the provider's API (e.g. /companies/42/), not an absolute URL")
	}
	route, err := linkPath(t.linkID, "proxy")
	if err != nil {
		return nil, err
	}
	base, err := url.Parse(strings.TrimRight(t.c.BaseURL, "/"))
	if err != nil || base.Host == "" {
		return nil, errors.New("tokenwarden: client has no valid BaseURL")
	}
	escaped := base.EscapedPath() + route + "/" + strings.TrimPrefix(p.EscapedPath(), "/")
	path, err := url.PathUnescape(escaped)
	if err != nil {
		return nil, errors.New("tokenwarden: the proxy request's path is not validly escaped")
	}
	return &url.URL{Scheme: base.Scheme, Host: base.Host, Path: path, RawPath: escaped, RawQuery: p.RawQuery}, nil
}

// ProxyError returns the gateway's own error carried by a proxy answer
// (Tokenwarden-Proxy-Source: gateway) as an *APIError, reading and
// closing resp.Body; for the provider's answers it returns nil and leaves
// the body alone, whatever their status.
func ProxyError(resp *http.Response) error {
	if resp == nil || resp.Header.Get(HeaderProxySource) != "gateway" {
		return nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	return parseAPIError(resp, body)
}
