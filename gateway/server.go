// Package gateway is Tokenwarden's REST API: callers create links, fetch
// fresh access tokens and revoke links here, and end-users' browsers come
// back here from the provider's consent page.
//
// The gateway holds no token state of its own. Reading a token is one Vault
// read; anything that changes a link goes to the link's workflow, which is
// the only refresher, so the gateway can run as many replicas as needed.
package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	"golang.org/x/time/rate"

	"github.com/tokenwarden/tokenwarden/internal/health"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
)

// Providers is the provider catalog as the gateway sees it;
// *providers.Registry satisfies it.
type Providers interface {
	Get(name string) (providers.Provider, providers.Entry, bool)
	Entries() []providers.Entry
}

// Deps are the gateway's collaborators.
type Deps struct {
	Temporal  client.Client
	Store     *store.Store
	Secrets   *secrets.Store
	Providers Providers
	// Checks are probed by /readyz.
	Checks []health.Check
	// Logger nil discards logs.
	Logger *slog.Logger
	// Codec, when set, serves the payload codec endpoints under /codec/
	// for the Temporal UI (it does its own CORS and authentication).
	Codec http.Handler
}

// Config tunes the gateway. Zero values get the defaults documented on
// each field.
type Config struct {
	// PublicURL is where browsers reach the gateway; the OAuth redirect
	// URL is PublicURL + CallbackPath. Default http://127.0.0.1:8080.
	PublicURL string
	// AllowedReturnOrigins lists the origins (scheme://host[:port]) a
	// link's return_url may point to. Empty allows no return_url at all,
	// so the callback can never be turned into an open redirect.
	AllowedReturnOrigins []string
	// AuthorizationTimeout is how long an authorization link (its state)
	// stays valid; default 1h. It is also the workflow's wait for consent.
	AuthorizationTimeout time.Duration
	// TokenMargin: a stored token expiring sooner than this is refreshed
	// before it is served; default 30s.
	TokenMargin time.Duration
	// RefreshWait bounds a synchronous refresh on the token path; default
	// 15s.
	RefreshWait time.Duration
	// RateLimit and RateBurst limit requests per API key; default 50/s,
	// burst 100.
	RateLimit rate.Limit
	RateBurst int
	// MaxBodyBytes caps request bodies; default 64 KiB. The codec has
	// its own limit.
	MaxBodyBytes int64
	// StatsInterval is how often link and refresh counts are read from
	// PostgreSQL for /metrics; default DefaultStatsInterval. Scrapes
	// never query the database.
	StatsInterval time.Duration
	// MetricsToken, when set, is the bearer token /metrics requires.
	MetricsToken string
	// MetricsSeparate leaves /metrics off the API's handler: serve
	// MetricsHandler on a listener of its own (an address only the
	// monitoring network reaches).
	MetricsSeparate bool
	// TokenCacheLease is how long the token cache may go without word
	// from PostgreSQL before it stops serving (tokencache.go), and how
	// long a revoke waits before it answers; default 1s. Negative turns
	// the cache off: every token read is one Vault read.
	TokenCacheLease time.Duration
	// StatusPoll is how often the gateway re-reads which links must not
	// serve a token (linkstatus.go); default 1s. It is the backstop: a
	// gateway whose token cache listens learns each status change from
	// its notification, at once.
	StatusPoll time.Duration
}

// Defaults of Config.
const (
	DefaultPublicURL            = "http://127.0.0.1:8080"
	DefaultAuthorizationTimeout = time.Hour
	DefaultTokenMargin          = 30 * time.Second
	DefaultRefreshWait          = 15 * time.Second
	DefaultRateLimit            = rate.Limit(50)
	DefaultRateBurst            = 100
	DefaultMaxBodyBytes         = 64 << 10
	DefaultTokenCacheLease      = time.Second

	// CallbackPath is the OAuth redirect endpoint, relative to PublicURL.
	CallbackPath = "/v1/oauth/callback"
	// codecPrefix is where Deps.Codec is mounted.
	codecPrefix = "/codec/"

	// revokeWait bounds a revoke: the provider call and the Vault wipe.
	revokeWait = 30 * time.Second
	// readyTimeout bounds each dependency probe of /readyz.
	readyTimeout = 2 * time.Second
	// retryAfterSeconds is what 503 answers ask callers to wait.
	retryAfterSeconds = 5
)

func (c Config) withDefaults() Config {
	if c.PublicURL == "" {
		c.PublicURL = DefaultPublicURL
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.AuthorizationTimeout <= 0 {
		c.AuthorizationTimeout = DefaultAuthorizationTimeout
	}
	if c.TokenMargin <= 0 {
		c.TokenMargin = DefaultTokenMargin
	}
	if c.RefreshWait <= 0 {
		c.RefreshWait = DefaultRefreshWait
	}
	if c.RateLimit <= 0 {
		c.RateLimit = DefaultRateLimit
	}
	if c.RateBurst <= 0 {
		c.RateBurst = DefaultRateBurst
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.StatsInterval <= 0 {
		c.StatsInterval = DefaultStatsInterval
	}
	if c.TokenCacheLease == 0 {
		c.TokenCacheLease = DefaultTokenCacheLease
	}
	if c.StatusPoll <= 0 {
		c.StatusPoll = statusPollInterval
	}
	return c
}

// LongestWait is the longest a handler waits for a link's workflow (a
// forced refresh, a revoke, a token read's synchronous refresh): the HTTP
// server's write timeout must exceed it.
func (c Config) LongestWait() time.Duration {
	c = c.withDefaults()
	return max(c.RefreshWait, forcedRefreshWait, revokeWait)
}

// linkStore is what the gateway uses of *store.Store; an interface so
// that tests of input handling need no database.
type linkStore interface {
	LookupAPIKey(ctx context.Context, plaintext string) (store.APIKey, error)
	CreateLink(ctx context.Context, l store.Link) (store.Link, bool, error)
	GetLink(ctx context.Context, tenantID, id string) (store.Link, error)
	ListLinks(ctx context.Context, tenantID string, f store.ListFilter) ([]store.Link, string, error)
	PutOAuthState(ctx context.Context, state string, st store.OAuthState) error
	ConsumeOAuthState(ctx context.Context, state string, now time.Time) (store.OAuthState, error)
	RecordTransition(ctx context.Context, st store.LinkState, e store.Event) error
}

// secretStore is what the gateway uses of *secrets.Store: the reads its
// Vault policy (deployments/vault/tokenwarden-gateway-policy.hcl) allows,
// never a refresh token or stored grant material.
type secretStore interface {
	TokenPath(tenant, link string) string
	ReadAccessToken(ctx context.Context, tenant, link string) (secrets.Versioned[providers.Token], error)
	ReadGrantRequest(ctx context.Context, tenant, link string) (secrets.Versioned[providers.Grant], error)
	WriteGrant(ctx context.Context, tenant, link string, g providers.Grant, cas int) (int, error)
	DeleteLink(ctx context.Context, tenant, link string) error
}

// Route is one registered endpoint, its path in OpenAPI syntax.
type Route struct {
	Method string
	Path   string
}

// Server is the HTTP API. Create it with New; it is safe for concurrent
// use.
type Server struct {
	d        Deps
	store    linkStore
	secrets  secretStore
	cfg      Config
	log      *slog.Logger
	engine   *gin.Engine
	origins  map[string]bool
	callback string
	metrics  *metrics
	stats    *statsCollector
	keys     *keyCache
	badKeys  *negativeKeys
	forced   *forcedRefreshes
	authFail *authFailures
	limits   *limiters
	linkProv *providerCache
	// linkStatus knows which links must not serve a token (nil without
	// a database).
	linkStatus *statusWatch
	// tokens caches access tokens (nil without a database, or off).
	tokens *tokenCache
	proxy  *proxyState
	now    func() time.Time
}

var ginMode sync.Once

// New builds the server and its routes.
func New(d Deps, cfg Config) *Server {
	// Gin's debug mode prints every route at start-up and warns on stdout;
	// release mode is the only mode we run in.
	ginMode.Do(func() { gin.SetMode(gin.ReleaseMode) })
	cfg = cfg.withDefaults()
	logger := d.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		d:        d,
		store:    d.Store,
		secrets:  d.Secrets,
		cfg:      cfg,
		log:      logger,
		origins:  make(map[string]bool),
		callback: cfg.PublicURL + CallbackPath,
		metrics:  newMetrics(),
		keys:     newKeyCache(apiKeyCacheTTL),
		badKeys:  newNegativeKeys(),
		forced:   newForcedRefreshes(),
		authFail: newAuthFailures(),
		limits:   newLimiters(cfg.RateLimit, cfg.RateBurst),
		linkProv: newProviderCache(),
		proxy:    newProxyState(),
		now:      time.Now,
	}
	for _, o := range cfg.AllowedReturnOrigins {
		if n, ok := normalizeOrigin(o); ok {
			s.origins[n] = true
		} else {
			logger.Warn("ignoring malformed allowed return origin", "origin", o)
		}
	}
	if d.Store != nil {
		s.stats = newStatsCollector(d.Store, logger)
		s.metrics.registry.MustRegister(s.stats)
		s.stats.start(cfg.StatsInterval)
		s.linkStatus = newStatusWatch(storeStatusSource{d.Store}, func(ctx context.Context, tenant, id string) (store.Link, error) {
			return s.store.GetLink(ctx, tenant, id)
		}, logger)
		s.linkStatus.interval = cfg.StatusPoll
		if cfg.TokenCacheLease > 0 {
			s.tokens = newTokenCache(d.Store.Pool(), cfg.TokenCacheLease, logger)
			s.tokens.onStatus = s.linkStatus.learn
			s.tokens.start()
		}
	}
	s.engine = s.routes()
	return s
}

// Close stops the gateway's background work: the stats poll, and the link
// status poll (which otherwise stops by itself once no token has been
// read for a while).
func (s *Server) Close() {
	s.linkStatus.close()
	s.tokens.close()
	s.stats.close()
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.engine }

// Registry is the Prometheus registry the gateway's metrics live in;
// the worker's collectors may join it.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.registry }

// Routes lists the registered endpoints, sorted by path then method,
// with gin's :param written as OpenAPI's {param}.
func (s *Server) Routes() []Route {
	var out []Route
	for _, r := range s.engine.Routes() {
		segs := strings.Split(r.Path, "/")
		for i, seg := range segs {
			if strings.HasPrefix(seg, ":") || strings.HasPrefix(seg, "*") {
				segs[i] = "{" + seg[1:] + "}"
			}
		}
		out = append(out, Route{Method: r.Method, Path: strings.Join(segs, "/")})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

func (s *Server) routes() *gin.Engine {
	e := gin.New()
	e.HandleMethodNotAllowed = false
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	// Gin must not believe X-Forwarded-For blindly; nothing here depends
	// on the client address anyway.
	_ = e.SetTrustedProxies(nil)

	e.Use(s.requestID, s.accessLog, s.recovery, s.limitBody)
	e.NoRoute(func(c *gin.Context) { s.fail(c, errNotFound("no such endpoint")) })

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	if !s.cfg.MetricsSeparate {
		e.GET("/metrics", gin.WrapH(s.MetricsHandler()))
	}
	e.GET("/openapi.json", serveOpenAPI)
	e.GET("/docs", serveDocs)
	if s.d.Codec != nil {
		e.Any(codecPrefix+"*op", gin.WrapH(s.d.Codec))
	}

	// The browser comes back here from the provider: no API key.
	e.GET(CallbackPath, s.oauthCallback)
	e.GET(CallbackPath+"/:state", s.oauthCallback)
	e.GET(StartPath+"/:state", s.oauthStart)
	// The connect page: the session token in its link is the credential.
	e.GET(ConnectPath, s.connectPage)
	e.POST(ConnectPath, s.connectSubmit)
	e.GET(connectCSSPath, s.serveConnectCSS)

	v1 := e.Group("/v1", s.authenticate, s.rateLimit)
	v1.GET("/providers", s.listProviders)
	v1.POST("/links", s.createLink)
	v1.GET("/links", s.listLinks)
	v1.GET("/links/:id", s.getLink)
	v1.DELETE("/links/:id", s.revokeLink)
	v1.GET("/links/:id/token", s.getToken)
	v1.POST("/links/:id/refresh", s.refreshLink)
	v1.POST("/links/:id/revoke", s.revokeLink)
	v1.POST("/links/:id/reauthorize", s.reauthorizeLink)
	v1.GET("/links/:id/events", s.listEvents)
	v1.POST("/connect/sessions", s.createConnectSession)
	for _, m := range proxyMethods {
		v1.Handle(m, proxyRoute, s.proxyLink)
	}
	v1.GET("/webhook", s.getWebhook)
	v1.PUT("/webhook", s.putWebhook)
	v1.DELETE("/webhook", s.deleteWebhook)
	v1.POST("/webhook/rotate-secret", s.rotateWebhookSecret)
	return e
}

func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz answers without a key, so it names the failing dependencies and
// nothing more: their addresses and error texts go to the log.
func (s *Server) readyz(c *gin.Context) {
	results := health.Run(c.Request.Context(), readyTimeout, s.d.Checks...)
	failing := []string{}
	for _, r := range results {
		if !r.OK {
			failing = append(failing, r.Name)
			s.log.Warn("readiness check failed", "request_id", requestIDOf(c), "check", r.Name, "error", r.Error)
		}
	}
	if len(failing) > 0 {
		c.Header("Retry-After", strconv.Itoa(retryAfterSeconds))
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "failing": failing})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ok", "failing": failing})
}

// providerView is a catalog entry as tenants see it: what they need to
// create links. Endpoints, client credentials and where secrets live stay
// with the operator.
type providerView struct {
	Name          string   `json:"name"`
	Kind          string   `json:"kind"`
	Grants        []string `json:"grants"`
	Scopes        []string `json:"scopes"`
	AllowedParams []string `json:"allowed_params"`
	PKCE          bool     `json:"pkce"`
}

func (s *Server) listProviders(c *gin.Context) {
	out := []providerView{}
	for _, e := range s.d.Providers.Entries() {
		v := providerView{Name: e.Name, Kind: e.Kind, Grants: e.Grants, Scopes: e.Scopes,
			AllowedParams: e.AllowedParams, PKCE: e.PKCE}
		if v.Grants == nil {
			v.Grants = []string{}
		}
		if v.Scopes == nil {
			v.Scopes = []string{}
		}
		if v.AllowedParams == nil {
			v.AllowedParams = []string{}
		}
		out = append(out, v)
	}
	c.JSON(http.StatusOK, gin.H{"providers": out})
}
