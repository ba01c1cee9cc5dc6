package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// The proxy: /v1/links/{id}/proxy/{path} sends the request on to
// {api_base_url}/{path} of the link's provider with the link's access
// token, so that callers never hold a token at all. What it guarantees:
//
//   - The caller's Authorization (its API key), Cookie and hop-by-hop
//     headers never reach the provider, nor does any Tokenwarden-* header;
//     Tokenwarden-Proxy-Header-<Name> passes <Name> where it must pass.
//   - Requests go under the provider's API base only: {path} is refused
//     with dot segments, empty segments, encoded slashes, backslashes,
//     dots or percent signs, and a scheme; the address dialled must not
//     be loopback, private or otherwise special unless the catalog allows
//     it (api_allow_internal).
//   - An upstream 401 forces one refresh through the link's workflow,
//     shared by every request that saw the same token, then one retry,
//     when the body could be kept (proxyReplayBytes); the answer says
//     what happened in Tokenwarden-Proxy-Retry, and the link's status in
//     Tokenwarden-Link-Status. So does a reply that the provider, as a
//     providers.AuthFailureDetector, reads as a refused token (Luca's
//     GraphQL 200 "Unauthenticated."), from its first proxyPeekBytes.
//   - Bodies stream both ways; the upstream's status, headers and body
//     are relayed as they are.

// Headers of the proxy.
const (
	// HeaderLinkStatus is the link's status as the proxy last knew it:
	// on every answer about an existing link, relayed or the gateway's.
	HeaderLinkStatus = "Tokenwarden-Link-Status"
	// HeaderProxySource says who answered: "upstream" (the provider's
	// answer, relayed) or "gateway" (the gateway's own JSON error).
	HeaderProxySource = "Tokenwarden-Proxy-Source"
	// HeaderProxyRetry is set when the provider answered 401, or a reply
	// its AuthFailureDetector reads as a refused token: what the proxy
	// did about it (the proxyRetry* values).
	HeaderProxyRetry = "Tokenwarden-Proxy-Retry"
	// HeaderProxyPass prefixes a header the caller wants sent under the
	// rest of its name (Tokenwarden-Proxy-Header-Cookie: a=b sends
	// Cookie: a=b), for headers the proxy would drop otherwise.
	HeaderProxyPass = "Tokenwarden-Proxy-Header-"
	// HeaderUpstreamRequestID carries the provider's X-Request-Id, since
	// X-Request-ID of the answer is the gateway's own.
	HeaderUpstreamRequestID = "Tokenwarden-Upstream-Request-Id"
)

// Values of HeaderProxyRetry.
const (
	// proxyRetried: a fresh token was obtained and the request sent once
	// more; the answer is the retry's.
	proxyRetried = "retried"
	// proxyNotReplayable: a fresh token was obtained, but the body was
	// larger than proxyReplayBytes and streamed, so it could not be sent
	// again; the answer is the first 401. Send the request again.
	proxyNotReplayable = "body_not_replayable"
	// proxyRefreshFailed: no fresh token (Tokenwarden-Link-Status says
	// why: reauth_required when the grant is dead, degraded when the
	// provider is failing); the answer is the first 401.
	proxyRefreshFailed = "refresh_failed"
	// proxyThrottled: the link was force-refreshed less than its
	// provider's forced_refresh_interval ago, so the provider rejects a
	// fresh token: nothing was retried; the answer is the 401.
	proxyThrottled = "refresh_throttled"
)

const (
	// ProxyRoute is the proxy's route under /v1.
	proxyRoute = "/links/:id/proxy/*path"
	// proxyReplayBytes: request bodies up to this size are kept in memory
	// so that the request can be sent again after a 401; larger ones
	// stream through and are not retried.
	proxyReplayBytes = 1 << 20
	// proxyHeaderTimeout bounds the wait for the provider's answer
	// (headers); the body then streams.
	proxyHeaderTimeout = 30 * time.Second
	// proxyDialTimeout bounds connecting to the provider.
	proxyDialTimeout = 10 * time.Second
	// proxyStreamTimeout replaces the server's read and write timeouts
	// for a proxied request: large bodies take longer than API calls.
	proxyStreamTimeout = 5 * time.Minute
	// proxyDrainBytes is how much of a 401's body is read before the
	// retry, so that its connection can be reused.
	proxyDrainBytes = 64 << 10
	// proxyPeekBytes is how much of a reply is read before it is relayed
	// for a provider that tells refused tokens by the body
	// (providers.AuthFailureDetector): such refusals are small, and the
	// rest of a large reply streams on after what was read.
	proxyPeekBytes = 64 << 10
)

// proxyMethods are the methods the proxy passes. CONNECT and TRACE are
// not proxied.
var proxyMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions}

// isProxyRoute reports a request for the proxy, whose bodies stream past
// the API's body limit.
func isProxyRoute(c *gin.Context) bool { return c.FullPath() == "/v1"+proxyRoute }

// proxyCall is one proxied request.
type proxyCall struct {
	s      *Server
	c      *gin.Context
	tenant string
	id     string
	entry  providers.Entry
	// detector tells refused tokens that are not a 401; nil for most
	// providers.
	detector providers.AuthFailureDetector
	target   *url.URL
	// provider labels the metrics ("unknown" until the link is read).
	provider string
	// status is the link's status for HeaderLinkStatus ("" until known).
	status string
	tok    secrets.Versioned[providers.Token]
	// replay is the body, kept to send again after a 401 when replayable.
	replay     []byte
	replayable bool
	// retry is HeaderProxyRetry's value.
	retry   string
	counted bool
}

// proxyLink is the handler of every method of the proxy route.
func (s *Server) proxyLink(c *gin.Context) {
	p := &proxyCall{s: s, c: c, tenant: tenantOf(c), provider: s.metrics.unknownProvider}
	if err := p.prepare(); err != nil {
		p.fail(err)
		return
	}
	release, err := s.proxy.admit(p.entry.Name, p.entry.API, s.now())
	if err != nil {
		p.fail(err)
		return
	}
	defer release()
	// Large bodies take longer than the API's timeouts allow; a writer
	// that cannot move its deadlines (a test recorder) keeps them.
	rc := http.NewResponseController(c.Writer)
	_ = rc.SetReadDeadline(time.Now().Add(proxyStreamTimeout))
	_ = rc.SetWriteDeadline(time.Now().Add(proxyStreamTimeout))
	if err := p.loadToken(); err != nil {
		p.fail(err)
		return
	}
	if err := p.keepBody(); err != nil {
		p.fail(err)
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      p,
		ModifyResponse: p.relay,
		ErrorHandler:   p.upstreamError,
		FlushInterval:  -1,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	rp.ServeHTTP(c.Writer, c.Request)
}

// prepare checks the request and the link, and finds where to send it.
func (p *proxyCall) prepare() error {
	s, c := p.s, p.c
	p.id = c.Param("id")
	if !validLinkID(p.id) {
		return errLinkNotFound()
	}
	rel, err := proxyRelPath(c.Request.URL)
	if err != nil {
		return err
	}
	if err := checkProxyHeaders(c.Request.Header); err != nil {
		return err
	}
	ctx := c.Request.Context()
	link, err := s.store.GetLink(ctx, p.tenant, p.id)
	if err != nil {
		return storeError(err)
	}
	p.provider, p.status = link.Provider, link.Status
	// A link that must not serve its token cannot use the proxy; a
	// pending one may already have a token (its row is written a moment
	// after the workflow moves on): Vault decides, as for token reads.
	if e := statusError(link.Status, link.LastError); e != nil && notServing(link.Status) {
		return e
	}
	prov, entry, ok := s.d.Providers.Get(link.Provider)
	if !ok || entry.API.BaseURL == "" {
		return errConflict(CodeProxyNotConfigured, fmt.Sprintf(
			"provider %q has no api_base_url in the catalog; the proxy cannot reach its API", link.Provider))
	}
	p.entry = entry
	p.detector, _ = prov.(providers.AuthFailureDetector)
	p.target, err = proxyTarget(entry.API.BaseURL, rel, c.Request.URL.RawQuery)
	return err
}

// loadToken reads the link's access token, refreshed through the
// workflow first when it is about to expire, as token reads do.
func (p *proxyCall) loadToken() error {
	s, ctx := p.s, p.c.Request.Context()
	tok, err := s.readAccess(ctx, p.tenant, p.id)
	if err != nil {
		return s.missingToken(ctx, p.tenant, p.id, err)
	}
	if statusError(p.status, "") != nil {
		// Pending by its row, but with a token: enrolled meanwhile.
		p.status = string(workflows.StatusActive)
	}
	now := s.now()
	need := s.need(tok.Value, 0)
	if fresh(tok.Value, now, need) {
		p.tok = tok
		return nil
	}
	if err := s.syncRefresh(ctx, p.tenant, p.id, now.Add(need), tok.Version); err != nil {
		p.noteStatus(err)
		// A degraded link's token is still good for a while: use it.
		var ae *apiError
		if errors.As(err, &ae) && (ae.code == CodeRefreshFailed || ae.code == CodeUnavailable) && fresh(tok.Value, s.now(), 0) {
			p.tok = tok
			return nil
		}
		return err
	}
	if tok, err = s.readAccessFromVault(ctx, p.tenant, p.id); err != nil {
		return s.missingToken(ctx, p.tenant, p.id, err)
	}
	if !fresh(tok.Value, s.now(), 0) {
		return &apiError{status: http.StatusServiceUnavailable, code: CodeRefreshFailed,
			msg: "the refreshed token is already expired; retry later", retryAfter: retryAfterSeconds}
	}
	p.tok, p.status = tok, string(workflows.StatusActive)
	return nil
}

// keepBody reads a body of up to proxyReplayBytes into memory, so that
// the request can be sent again after a 401; a larger one streams.
func (p *proxyCall) keepBody() error {
	r := p.c.Request
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		p.replayable = true
		return nil
	}
	if r.ContentLength > proxyReplayBytes {
		return nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, proxyReplayBytes+1))
	if err != nil {
		return newError(http.StatusBadRequest, CodeBadRequest, "the request body could not be read to its end")
	}
	if len(buf) > proxyReplayBytes {
		// Chunked and large: what was read goes first, the rest follows.
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
		return nil
	}
	p.replay, p.replayable = buf, true
	r.Body, r.ContentLength, r.TransferEncoding = io.NopCloser(bytes.NewReader(buf)), int64(len(buf)), nil
	return nil
}

// rewrite aims the outgoing request at the provider. httputil has
// already removed hop-by-hop and X-Forwarded-* headers.
func (p *proxyCall) rewrite(pr *httputil.ProxyRequest) {
	u := *p.target
	pr.Out.URL = &u
	pr.Out.Host = ""
	h := pr.Out.Header
	for name := range h {
		if strings.HasPrefix(http.CanonicalHeaderKey(name), "Tokenwarden-") || dropHeaders[http.CanonicalHeaderKey(name)] {
			delete(h, name)
		}
	}
	for name, vals := range pr.In.Header {
		if k := http.CanonicalHeaderKey(name); strings.HasPrefix(k, HeaderProxyPass) {
			h[http.CanonicalHeaderKey(strings.TrimPrefix(k, HeaderProxyPass))] = vals
		}
	}
	h.Set("Authorization", "Bearer "+p.tok.Value.AccessToken)
	if p.replayable && p.replay != nil {
		pr.Out.GetBody = p.body
	}
}

func (p *proxyCall) body() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(p.replay)), nil
}

// dropHeaders are caller headers that never reach the provider (besides
// hop-by-hop ones and Tokenwarden-*): the API key, the gateway's cookies,
// and the caller's address.
var dropHeaders = map[string]bool{
	"Authorization": true, "Proxy-Authorization": true, "Cookie": true,
	"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
	"X-Real-Ip": true,
}

// RoundTrip sends the request; a 401, or a reply the provider reads as
// a refused token, gets one forced refresh and one retry (proxyCall is
// the ReverseProxy's transport for its request). A retry refused again
// is relayed as it is.
func (p *proxyCall) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := p.send(req)
	if err != nil || !p.refused(resp) {
		return resp, err
	}
	tok := p.afterUnauthorized(req.Context())
	p.s.metrics.proxyUnauthorized.WithLabelValues(p.provider, p.retry).Inc()
	if tok == nil || !p.replayable {
		return resp, nil
	}
	_, _ = io.CopyN(io.Discard, resp.Body, proxyDrainBytes)
	_ = resp.Body.Close()
	again := req.Clone(req.Context())
	again.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	if req.Body != nil && req.Body != http.NoBody {
		again.Body, _ = p.body()
	}
	return p.send(again)
}

// refused reports whether resp says the token was not accepted: a 401,
// or what the provider's AuthFailureDetector reads so from the status,
// the headers and the first proxyPeekBytes of the body. What was read is
// put back in front of the rest, so the body is relayed whole.
func (p *proxyCall) refused(resp *http.Response) bool {
	if resp.StatusCode == http.StatusUnauthorized {
		return true
	}
	if p.detector == nil || resp.Body == nil || resp.Body == http.NoBody {
		return false
	}
	peek, err := io.ReadAll(io.LimitReader(resp.Body, proxyPeekBytes))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(peek), resp.Body), resp.Body}
	if err != nil {
		// The rest of the body fails the same way when it is relayed.
		return false
	}
	return p.detector.AuthFailed(resp.StatusCode, resp.Header, peek)
}

func (p *proxyCall) send(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := p.s.proxy.transport(p.entry.API.AllowInternal).RoundTrip(req)
	p.s.metrics.proxyUpstreamDuration.WithLabelValues(p.provider).Observe(time.Since(start).Seconds())
	return resp, err
}

// afterUnauthorized gets a token to retry with after a refusal (a 401),
// or nil, setting p.retry (and p.status) to what happened.
func (p *proxyCall) afterUnauthorized(ctx context.Context) *providers.Token {
	s, seen := p.s, p.tok.Version
	if p.replayable {
		p.retry = proxyRetried
	} else {
		p.retry = proxyNotReplayable
	}
	// Another request, or the schedule, may have refreshed since this
	// token was read: then the newer token is the answer, at no cost.
	if cur, err := s.readAccessFromVault(ctx, p.tenant, p.id); err == nil && cur.Version > seen && fresh(cur.Value, s.now(), 0) {
		return &cur.Value
	}
	interval := p.entry.ForcedRefreshInterval
	err := s.proxy.flights.do(ctx, fmt.Sprintf("%s/%s/%d", p.tenant, p.id, seen), func(ctx context.Context) error {
		// Throttled like POST /refresh: a provider that keeps refusing
		// fresh tokens (a permission problem, not an expiry) must not be
		// hammered with refreshes.
		if interval > 0 {
			if _, ok := s.forced.claim(p.tenant+"/"+p.id, s.now(), interval); !ok {
				return errProxyThrottled
			}
		}
		return s.syncRefresh(ctx, p.tenant, p.id, time.Time{}, seen)
	})
	if errors.Is(err, errProxyThrottled) {
		p.retry = proxyThrottled
		return nil
	}
	if err == nil {
		cur, rerr := s.readAccessFromVault(ctx, p.tenant, p.id)
		if rerr == nil && cur.Version > seen && fresh(cur.Value, s.now(), 0) {
			p.status = string(workflows.StatusActive)
			return &cur.Value
		}
		err = errors.Join(errors.New("no fresh token after the refresh"), rerr)
	}
	p.noteStatus(err)
	p.retry = proxyRefreshFailed
	s.log.Warn("proxy: refresh after the upstream refused the token gave no fresh token", "request_id", requestIDOf(p.c),
		"tenant", p.tenant, "link", p.id, "provider", p.provider, "link_status", p.status, "error", err.Error())
	return nil
}

// errProxyThrottled: the 401's refresh came within the provider's
// forced_refresh_interval of the last forced one.
var errProxyThrottled = errors.New("forced refresh throttled")

// noteStatus learns the link's status from a refresh's failure.
func (p *proxyCall) noteStatus(err error) {
	if ls, ok := workflows.LinkStatusOf(err); ok {
		p.status = string(ls.Status)
		return
	}
	var ae *apiError
	if !errors.As(err, &ae) {
		return
	}
	switch ae.code {
	case CodeReauthRequired:
		p.status = string(workflows.StatusReauthRequired)
	case CodeLinkRevoked:
		p.status = string(workflows.StatusRevoked)
	case CodeLinkFailed:
		p.status = string(workflows.StatusFailed)
	case CodeLinkPending:
		p.status = string(workflows.StatusPendingAuthorization)
	}
}

// relay marks the provider's answer as relayed. The provider cannot set
// the proxy's own headers.
func (p *proxyCall) relay(resp *http.Response) error {
	h := resp.Header
	for name := range h {
		if strings.HasPrefix(http.CanonicalHeaderKey(name), "Tokenwarden-") {
			delete(h, name)
		}
	}
	if v := h.Values("X-Request-Id"); len(v) > 0 {
		h.Del("X-Request-Id")
		h[HeaderUpstreamRequestID] = v
	}
	h.Set(HeaderProxySource, "upstream")
	if p.status != "" {
		h.Set(HeaderLinkStatus, p.status)
	}
	if p.retry != "" {
		h.Set(HeaderProxyRetry, p.retry)
	}
	p.count(strconv.Itoa(resp.StatusCode))
	return nil
}

// upstreamError answers a request the provider never answered.
func (p *proxyCall) upstreamError(_ http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The caller went away: nobody to answer.
		p.count("canceled")
		p.c.Abort()
		return
	}
	e := &apiError{status: http.StatusBadGateway, code: CodeUpstreamUnavailable, retryAfter: retryAfterSeconds, cause: err}
	switch {
	case errors.Is(err, errInternalAddress):
		e.msg = "the provider's API address is internal (loopback, private, link-local, ...); the proxy does not go there"
		e.retryAfter = 0
	default:
		e.msg = "the provider's API did not answer: " + transportProblem(err) + "; retry later"
	}
	p.fail(e)
}

// transportProblem names a transport failure without its URL.
func transportProblem(err error) string {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &dnsErr):
		return "its host name does not resolve"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timed out"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection closed without an answer"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return "connection refused"
	}
	return "the connection failed"
}

// fail answers with the gateway's own error.
func (p *proxyCall) fail(err error) {
	ae := &apiError{}
	if !errors.As(err, &ae) {
		ae = p.s.classify(err)
	}
	p.c.Header(HeaderProxySource, "gateway")
	if p.status != "" {
		p.c.Header(HeaderLinkStatus, p.status)
	}
	p.count(ae.code)
	p.s.fail(p.c, ae)
}

// count adds the request to proxy_requests_total once: by the upstream's
// status, or the gateway's error code when there was no answer.
func (p *proxyCall) count(status string) {
	if p.counted {
		return
	}
	p.counted = true
	p.s.metrics.proxyRequests.WithLabelValues(p.provider, status).Inc()
}
