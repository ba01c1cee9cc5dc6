package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tokenwarden/tokenwarden/internal/iprange"
	"github.com/tokenwarden/tokenwarden/providers"
)

// errInternalAddress refuses a proxy connection to a special-purpose
// address of a provider whose catalog entry does not allow it.
var errInternalAddress = errors.New("the provider API's address is internal (a special-purpose range)")

// proxyState is what the proxy keeps between requests: its two
// transports, per-provider limits, and the 401 refreshes in flight.
type proxyState struct {
	public   http.RoundTripper
	internal http.RoundTripper
	flights  *flights

	mu     sync.Mutex
	limits map[string]*apiLimit
}

func newProxyState() *proxyState {
	return &proxyState{public: newProxyTransport(false), internal: newProxyTransport(true),
		flights: newFlights(), limits: map[string]*apiLimit{}}
}

// newProxyTransport dials providers' APIs. It never uses an HTTP proxy
// (which would dial past the address check), never follows redirects
// (ReverseProxy relays them), and leaves compression to the caller.
func newProxyTransport(allowInternal bool) *http.Transport {
	d := &net.Dialer{Timeout: proxyDialTimeout, KeepAlive: 30 * time.Second}
	if !allowInternal {
		d.Control = iprange.DialControl(errInternalAddress)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = d.DialContext
	t.ResponseHeaderTimeout = proxyHeaderTimeout
	t.DisableCompression = true
	t.MaxIdleConnsPerHost = 32
	return t
}

func (ps *proxyState) transport(allowInternal bool) http.RoundTripper {
	if allowInternal {
		return ps.internal
	}
	return ps.public
}

// apiLimit is one provider's outbound limits on this replica.
type apiLimit struct {
	rate  *rate.Limiter
	slots chan struct{}
}

// admit takes a place for one request to provider, or answers 429 with
// when to come back; release gives the place back.
func (ps *proxyState) admit(provider string, api providers.API, now time.Time) (release func(), err error) {
	l := ps.limit(provider, api)
	r := l.rate.ReserveN(now, 1)
	if !r.OK() {
		return nil, proxyLimited(provider, "rate", time.Second)
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return nil, proxyLimited(provider, "rate", d)
	}
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, nil
	default:
		r.CancelAt(now)
		return nil, proxyLimited(provider, "concurrency", time.Second)
	}
}

func proxyLimited(provider, which string, wait time.Duration) error {
	msg := fmt.Sprintf("too many requests to provider %q through the proxy (its api_rate_limit); slow down", provider)
	if which == "concurrency" {
		msg = fmt.Sprintf("too many requests to provider %q in flight through the proxy (its api_max_concurrent); retry shortly", provider)
	}
	e := newError(http.StatusTooManyRequests, CodeRateLimited, msg)
	e.retryAfter = max(1, int(math.Ceil(wait.Seconds())))
	return e
}

func (ps *proxyState) limit(provider string, api providers.API) *apiLimit {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if l, ok := ps.limits[provider]; ok {
		return l
	}
	// Zero limits (an entry built without the catalog) take the
	// catalog's defaults.
	perSecond, burst, concurrent := api.RateLimit, api.Burst, api.MaxConcurrent
	if perSecond <= 0 {
		perSecond = providers.DefaultAPIRateLimit
	}
	if burst <= 0 {
		burst = providers.DefaultAPIBurst
	}
	if concurrent <= 0 {
		concurrent = providers.DefaultAPIMaxConcurrent
	}
	l := &apiLimit{rate: rate.NewLimiter(rate.Limit(perSecond), burst), slots: make(chan struct{}, concurrent)}
	ps.limits[provider] = l
	return l
}

// flights runs one function per key at a time and lets every caller of
// that key share its outcome: the 401 refreshes of one token.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	err  error
}

func newFlights() *flights { return &flights{m: map[string]*flight{}} }

// do runs fn for key unless a run for key is in flight, and waits for
// the run's outcome or ctx. The run does not end with its first
// caller's context: the others still wait for it (fn gets ctx's values
// without its cancellation and bounds itself).
func (f *flights) do(ctx context.Context, key string, fn func(context.Context) error) error {
	f.mu.Lock()
	fl, ok := f.m[key]
	if !ok {
		fl = &flight{done: make(chan struct{})}
		f.m[key] = fl
		go func() {
			fl.err = fn(context.WithoutCancel(ctx))
			f.mu.Lock()
			delete(f.m, key)
			f.mu.Unlock()
			close(fl.done)
		}()
	}
	f.mu.Unlock()
	select {
	case <-fl.done:
		return fl.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
