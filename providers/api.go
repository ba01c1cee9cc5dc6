package providers

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/tokenwarden/tokenwarden/internal/iprange"
)

// API is the provider's API as the gateway's proxy sees it. The proxy
// sends a link's requests under BaseURL only (its scheme, host, port and
// path prefix), with the link's access token, and within the limits
// below, which hold per gateway replica for all the provider's links
// together.
type API struct {
	// BaseURL is an absolute URL without query, fragment or userinfo,
	// its trailing slash removed; https unless AllowInternal.
	BaseURL string `json:"base_url,omitempty"`
	// AllowInternal lets the proxy reach the API at loopback, private
	// and other special-purpose addresses (the dev simulators, tests).
	// Otherwise the address actually dialled is checked, so that neither
	// a catalog typo nor DNS can aim the proxy into the network
	// Tokenwarden runs in.
	AllowInternal bool `json:"allow_internal,omitempty"`
	// RateLimit is requests per second, Burst the bucket above it.
	RateLimit float64 `json:"rate_limit,omitempty"`
	Burst     int     `json:"burst,omitempty"`
	// MaxConcurrent is how many requests may be in flight at once.
	MaxConcurrent int `json:"max_concurrent,omitempty"`
}

// Defaults of an entry's API limits: generous for one replica's share of
// a provider, low enough that a runaway caller cannot get the client
// banned.
const (
	DefaultAPIRateLimit     = 20
	DefaultAPIBurst         = 40
	DefaultAPIMaxConcurrent = 20
)

// Upper bounds of the limits, against typos (a rate of 1e9 is no limit).
const (
	maxAPIRateLimit     = 10000
	maxAPIMaxConcurrent = 10000
)

// loadAPI decodes and checks the api_* fields of an entry. Without
// api_base_url the limits must not be set either: they would limit
// nothing, which is probably a mistake.
func loadAPI(raw rawEntry) (API, []string) {
	a := API{BaseURL: raw.APIBaseURL, AllowInternal: raw.APIAllowInternal,
		RateLimit: raw.APIRateLimit, Burst: raw.APIBurst, MaxConcurrent: raw.APIMaxConcurrent}
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if a.BaseURL == "" {
		if a.AllowInternal || a.RateLimit != 0 || a.Burst != 0 || a.MaxConcurrent != 0 {
			add("api_allow_internal, api_rate_limit, api_burst and api_max_concurrent need api_base_url")
		}
		return API{}, problems
	}
	base, err := normalizeAPIBase(a.BaseURL, a.AllowInternal)
	if err != nil {
		// Not quoted: a URL with credentials in it would put them in a boot error.
		add("api_base_url %v", err)
	}
	a.BaseURL = base
	if a.RateLimit == 0 {
		a.RateLimit = DefaultAPIRateLimit
	}
	if a.Burst == 0 {
		a.Burst = max(DefaultAPIBurst, int(a.RateLimit))
	}
	if a.MaxConcurrent == 0 {
		a.MaxConcurrent = DefaultAPIMaxConcurrent
	}
	if a.RateLimit < 0 || a.RateLimit > maxAPIRateLimit {
		add("api_rate_limit %g must be above 0 and at most %d requests per second", a.RateLimit, maxAPIRateLimit)
	}
	if a.Burst < 1 || float64(a.Burst) > 2*maxAPIRateLimit {
		add("api_burst %d must be from 1 to %d", a.Burst, 2*maxAPIRateLimit)
	}
	if a.MaxConcurrent < 1 || a.MaxConcurrent > maxAPIMaxConcurrent {
		add("api_max_concurrent %d must be from 1 to %d", a.MaxConcurrent, maxAPIMaxConcurrent)
	}
	return a, problems
}

// normalizeAPIBase checks an api_base_url and returns it without its
// trailing slash. The proxy appends caller paths to it, so anything that
// would change where they end up (a query, a fragment, dot segments,
// credentials) is refused here rather than mangled there.
func normalizeAPIBase(raw string, allowInternal bool) (string, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "", errors.New("is not a URL")
	case u.Scheme != "https" && u.Scheme != "http":
		return "", errors.New("must be an absolute https URL")
	case u.Scheme == "http" && !allowInternal:
		return "", errors.New("must be https (http only with api_allow_internal: true, for local simulators)")
	case u.Host == "" || u.Hostname() == "":
		return "", errors.New("has no host")
	case u.User != nil:
		return "", errors.New("must not carry credentials")
	case u.RawQuery != "" || u.ForceQuery:
		return "", errors.New("must not have a query")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "", errors.New("must not have a fragment")
	case u.Opaque != "":
		return "", errors.New("must be an absolute https URL")
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return "", errors.New("must not have . or .. segments")
		}
	}
	if strings.Contains(u.Path, "//") {
		return "", errors.New("must not have empty path segments")
	}
	if !allowInternal && internalHost(u.Hostname()) {
		return "", errors.New("is an internal address (loopback, private, link-local, ...); set api_allow_internal: true only for local simulators")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u.String(), nil
}

// internalHost reports a host that is plainly internal without asking
// DNS: localhost names and special-purpose address literals. Names that
// resolve to such addresses are refused when dialled.
func internalHost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && iprange.SpecialPurpose(ip)
}
