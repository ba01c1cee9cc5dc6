package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// proxyRelPath is the request's {path}, as the caller escaped it, once
// it is sure to stay under the API base: no dot or empty segments
// (a trailing slash aside), no scheme, and nothing encoded that a server
// might decode into a separator or a dot later (%2F, %5C, %2E, %25, %00).
func proxyRelPath(u *url.URL) (string, error) {
	// "", "v1", "links", id, "proxy", {path}...
	segs := strings.Split(u.EscapedPath(), "/")
	if len(segs) < 6 || segs[1] != "v1" || segs[2] != "links" {
		return "", errBadRequest("the proxy's path is /v1/links/{id}/proxy/{path}")
	}
	if p, err := url.PathUnescape(segs[4]); err != nil || p != "proxy" {
		return "", errBadRequest("the proxy's path is /v1/links/{id}/proxy/{path}")
	}
	rest := segs[5:]
	for i, seg := range rest {
		if why := badSegment(seg, i == 0, i == len(rest)-1); why != "" {
			return "", errBadRequest("the proxied path is refused: " + why +
				"; it must be a plain path under the provider's API base")
		}
	}
	return strings.Join(rest, "/"), nil
}

// badSegment says what is wrong with one escaped path segment, "" if
// nothing.
func badSegment(seg string, first, last bool) string {
	lower := strings.ToLower(seg)
	for _, enc := range []string{"%2f", "%5c", "%2e", "%25", "%00"} {
		if strings.Contains(lower, enc) {
			return "it encodes a slash, backslash, dot, percent sign or NUL (" + strings.ToUpper(enc) + ")"
		}
	}
	dec, err := url.PathUnescape(seg)
	switch {
	case err != nil:
		return "it is not validly escaped"
	case dec == "" && !last:
		return "it has an empty segment (//)"
	case dec == "." || dec == "..":
		return "it has a . or .. segment"
	case first && strings.Contains(dec, ":"):
		return "it looks like an absolute URL (a scheme)"
	}
	for _, r := range dec {
		if r == '\\' || r < 0x20 || r == 0x7f {
			return "it has a backslash or a control character"
		}
	}
	return ""
}

// proxyTarget is base with rel (escaped) and the caller's query. It
// checks once more that the result is under base: same scheme, host and
// port, and base's path as a prefix.
func proxyTarget(base, rel, rawQuery string) (*url.URL, error) {
	b, err := url.Parse(base)
	if err != nil || b.Host == "" {
		return nil, fmt.Errorf("proxy: api base URL of the catalog does not parse")
	}
	prefix := strings.TrimRight(b.EscapedPath(), "/")
	raw := prefix + "/" + rel
	path, err := url.PathUnescape(raw)
	if err != nil {
		return nil, errBadRequest("the proxied path is not validly escaped")
	}
	t := &url.URL{Scheme: b.Scheme, Host: b.Host, Path: path, RawPath: raw, RawQuery: rawQuery}
	if t.Scheme != b.Scheme || t.Host != b.Host || !strings.HasPrefix(t.EscapedPath(), prefix+"/") {
		return nil, errBadRequest("the proxied path leaves the provider's API base")
	}
	return t, nil
}

// neverPassed are headers that Tokenwarden-Proxy-Header-* may not send:
// the proxy sets them itself, or they are the connection's.
var neverPassed = map[string]bool{
	"Authorization": true, "Proxy-Authorization": true, "Host": true, "Content-Length": true,
	"Transfer-Encoding": true, "Connection": true, "Keep-Alive": true, "Proxy-Connection": true,
	"Te": true, "Trailer": true, "Upgrade": true, "Forwarded": true, "Expect": true,
}

// checkProxyHeaders refuses what the proxy will not pass: a protocol
// upgrade (a WebSocket would outlive every check made here), and
// pass-through headers naming one the proxy owns.
func checkProxyHeaders(h http.Header) error {
	if h.Get("Upgrade") != "" {
		return errBadRequest("the proxy does not pass protocol upgrades (Upgrade header)")
	}
	for name := range h {
		k := http.CanonicalHeaderKey(name)
		after, ok := strings.CutPrefix(k, HeaderProxyPass)
		if !ok {
			continue
		}
		target := http.CanonicalHeaderKey(after)
		if target == "" || neverPassed[target] || strings.HasPrefix(target, "Tokenwarden-") || strings.HasPrefix(target, "X-Forwarded-") {
			return errBadRequest(fmt.Sprintf("%s cannot be passed: the proxy sets %q itself or it belongs to the connection", k, target))
		}
	}
	return nil
}
