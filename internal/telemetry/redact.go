package telemetry

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// redactor rewrites the attributes a span starts with that may carry a
// secret: a URL's query (an OAuth callback's code, a provider URL with a
// key in it) and userinfo. It runs before any exporter sees the span.
// Attributes set after the start escape it: otelhttp's client sets the
// URL so, which urlScrubber handles.
type redactor struct{}

// Attribute keys that hold a whole URL or target, in current and older
// semantic conventions.
var (
	urlKeys   = []attribute.Key{semconv.URLFullKey, "http.url"}
	queryKeys = []attribute.Key{semconv.URLQueryKey}
	// http.target is path and query of older conventions.
	targetKeys = []attribute.Key{"http.target"}
)

// redacted replaces a value that is dropped.
const redacted = "[redacted]"

func (redactor) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) {
	var fixes []attribute.KeyValue
	for _, kv := range s.Attributes() {
		switch {
		case hasKey(urlKeys, kv.Key):
			fixes = append(fixes, kv.Key.String(stripURL(kv.Value.AsString())))
		case hasKey(queryKeys, kv.Key):
			fixes = append(fixes, kv.Key.String(redacted))
		case hasKey(targetKeys, kv.Key):
			path, _, _ := strings.Cut(kv.Value.AsString(), "?")
			fixes = append(fixes, kv.Key.String(path))
		}
	}
	if len(fixes) > 0 {
		s.SetAttributes(fixes...)
	}
}

func (redactor) OnEnd(sdktrace.ReadOnlySpan)          {}
func (redactor) Shutdown(context.Context) error       { return nil }
func (redactor) ForceFlush(ctx context.Context) error { return nil }

func hasKey(keys []attribute.Key, k attribute.Key) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// stripURL is u without userinfo, query and fragment; a value that does
// not parse is dropped whole.
func stripURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return redacted
	}
	p.User, p.RawQuery, p.ForceQuery, p.Fragment, p.RawFragment = nil, "", false, "", ""
	return p.String()
}

// routeMatcher finds the route template of a request path, in gin's
// syntax: ":name" matches one segment, "*name" the rest.
type routeMatcher struct {
	routes [][]string
	raw    []string
}

// unmatched is the route of a path no template matches: the path itself
// is not recorded, as a caller may have put anything in it.
const unmatched = "(unmatched route)"

func newRouteMatcher(routes []string) *routeMatcher {
	m := &routeMatcher{}
	for _, r := range routes {
		m.routes = append(m.routes, strings.Split(strings.Trim(r, "/"), "/"))
		m.raw = append(m.raw, r)
	}
	return m
}

// match returns the first template matching path, preferring one with
// fewer parameters, as gin prefers static segments.
func (m *routeMatcher) match(path string) string {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	best, bestParams := -1, 0
	for i, r := range m.routes {
		if n, ok := matchSegments(r, segs); ok && (best < 0 || n < bestParams) {
			best, bestParams = i, n
		}
	}
	if best < 0 {
		return unmatched
	}
	return m.raw[best]
}

// matchSegments reports whether the template segments match, and how
// many parameters it took.
func matchSegments(tpl, segs []string) (int, bool) {
	params := 0
	for i, t := range tpl {
		if strings.HasPrefix(t, "*") {
			return params + 1, true
		}
		if i >= len(segs) {
			return 0, false
		}
		switch {
		case strings.HasPrefix(t, ":"):
			if segs[i] == "" {
				return 0, false
			}
			params++
		case t != segs[i]:
			return 0, false
		}
	}
	return params, len(segs) == len(tpl)
}

// routeTagger records the route of a request on its server span, in
// place of the path as sent: an OAuth state travels in a callback's path.
type routeTagger struct {
	next   http.Handler
	routes *routeMatcher
}

func (h routeTagger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route := h.routes.match(r.URL.Path)
	trace.SpanFromContext(r.Context()).SetAttributes(semconv.HTTPRoute(route), semconv.URLPath(route))
	h.next.ServeHTTP(w, r)
}

// urlScrubber sits under otelhttp's transport, which records the request
// URL on the client span after starting it: it records the URL again
// without query and userinfo (a provider URL may carry a key), before
// anything is sent.
type urlScrubber struct {
	next http.RoundTripper
}

func (t urlScrubber) RoundTrip(r *http.Request) (*http.Response, error) {
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		span.SetAttributes(semconv.URLFull(stripURL(r.URL.String())))
	}
	return t.next.RoundTrip(r)
}
