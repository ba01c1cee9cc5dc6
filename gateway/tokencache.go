package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/providers"
)

// The token cache makes a token read cheaper than a Vault read: the access
// token of a link read recently is served from memory, and Vault is read
// again only when PostgreSQL says the link changed.
//
// Invalidation. Every change of a links row (a refresh, a status change,
// a revoke, a deletion) sends a notification on tokenChannel (trigger of
// migration 010), and each gateway LISTENs on it and drops that link's
// entry. The revoke handler also notifies by itself, before it answers,
// in case the workflow's row update is still on its way.
//
// When may the cache serve? A notification reaches a listener some time
// after its commit, and a listener whose connection is slow or broken
// would keep serving a revoked token. So each gateway sends itself a ping
// on the same channel every tokenCachePing, and serves from the cache only
// while it has received, within the last lease, a ping it sent no earlier
// than lease ago. PostgreSQL delivers notifications to a listener in commit
// order: once that ping has arrived, so has every notification committed
// before the ping was sent. The revoke handler answers only a lease after
// its own notification committed; from then on, any gateway serving from
// its cache holds a ping sent after that commit, and so has dropped the
// link. A listener that is down or behind turns the cache off (reads go to
// Vault, as without a cache) within a lease; a reconnected one starts
// empty, since it may have missed notifications.
//
// What it does not change: the token's freshness check (an entry whose
// token nears expiry is read again), the status check of statusWatch, and
// the answer's content.
const (
	tokenChannel   = "tokenwarden_links"
	tokenCachePing = 200 * time.Millisecond
	// tokenCacheMax bounds the entries; beyond it the cache starts over.
	tokenCacheMax = 200_000
)

// tokenCache holds access tokens by tenant/link.
type tokenCache struct {
	pool  *pgxpool.Pool
	lease time.Duration
	log   *slog.Logger
	id    string // this gateway's ping identity

	mu      sync.Mutex
	slots   map[string]*cacheSlot
	epoch   uint64    // bumped when the cache starts over
	live    time.Time // send time of the newest own ping received
	pingSeq uint64
	sentAt  map[uint64]time.Time // own pings in flight
	stop    context.CancelFunc
	done    chan struct{}
	// lag delays the handling of each notification: tests play a
	// listener that falls behind with it.
	lag time.Duration
	// onStatus hears each link's new status (statusWatch.learn).
	onStatus func(key, status string)
}

// cacheSlot is one link's entry. gen moves on each invalidation, so that a
// Vault read that began before it cannot store what it read.
type cacheSlot struct {
	tok *secrets.Versioned[providers.Token]
	gen uint64
}

func newTokenCache(pool *pgxpool.Pool, lease time.Duration, log *slog.Logger) *tokenCache {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &tokenCache{pool: pool, lease: lease, log: log, id: hex.EncodeToString(b),
		slots: map[string]*cacheSlot{}, sentAt: map[uint64]time.Time{}}
}

// start runs the listener and the pings until close.
func (c *tokenCache) start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.stop, c.done = cancel, make(chan struct{})
	go func() {
		defer close(c.done)
		c.run(ctx)
	}()
}

func (c *tokenCache) close() {
	if c == nil || c.stop == nil {
		return
	}
	c.stop()
	<-c.done
}

// usable reports whether the cache may serve now.
func (c *tokenCache) usable(now time.Time) bool {
	return !c.live.IsZero() && now.Sub(c.live) < c.lease
}

// get returns the cached token of key, if the cache may serve it. The
// lease is measured on this process's monotonic clock (never the
// gateway's injectable one): only durations on each machine matter, so
// clock skew between gateways does not.
func (c *tokenCache) get(key string) (secrets.Versioned[providers.Token], bool) {
	if c == nil {
		return secrets.Versioned[providers.Token]{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.slots[key]; s != nil && s.tok != nil && c.usable(time.Now()) {
		return *s.tok, true
	}
	return secrets.Versioned[providers.Token]{}, false
}

// ticket is what a reader holds across its Vault read.
type ticket struct {
	slot  *cacheSlot
	gen   uint64
	epoch uint64
}

// begin is called before a Vault read of key; put stores what was read
// unless key was invalidated meanwhile.
func (c *tokenCache) begin(key string) ticket {
	if c == nil {
		return ticket{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.slots[key]
	if s == nil {
		if len(c.slots) >= tokenCacheMax {
			c.resetLocked()
		}
		s = &cacheSlot{}
		c.slots[key] = s
	}
	return ticket{slot: s, gen: s.gen, epoch: c.epoch}
}

func (c *tokenCache) put(t ticket, tok secrets.Versioned[providers.Token]) {
	if c == nil || t.slot == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch == t.epoch && t.slot.gen == t.gen {
		t.slot.tok = &tok
	}
}

// drop invalidates key in this gateway.
func (c *tokenCache) drop(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.slots[key]; s != nil {
		s.tok = nil
		s.gen++
	}
}

func (c *tokenCache) resetLocked() {
	c.slots = map[string]*cacheSlot{}
	c.epoch++
}

// forget makes sure no gateway serves key's cached token once it returns:
// drop here, notify the others, and wait out the lease (see above). If
// PostgreSQL cannot be told, other gateways drop the link when its row
// changes; their caches are off anyway while PostgreSQL is unreachable
// to them too.
func (c *tokenCache) forget(ctx context.Context, key string) {
	if c == nil {
		return
	}
	c.drop(key)
	if _, err := c.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, tokenChannel, key); err != nil {
		c.log.Warn("token cache: could not notify the other gateways", "link", key, "error", err)
	}
	select {
	case <-time.After(c.lease):
	case <-ctx.Done():
	}
}

// run keeps a listening connection, reconnecting after failures.
func (c *tokenCache) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := c.listen(ctx)
		c.mu.Lock()
		c.live = time.Time{}
		c.resetLocked()
		c.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("token cache off: listener down; reads go to Vault", "error", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// listen holds one connection: LISTEN, then handle notifications while a
// goroutine pings.
func (c *tokenCache) listen(ctx context.Context) error {
	pc, err := c.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	conn := pc.Hijack() // a listening connection never goes back to the pool
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{tokenChannel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go c.ping(lctx)
	for {
		n, err := conn.WaitForNotification(lctx)
		if err != nil {
			return err
		}
		c.mu.Lock()
		lag := c.lag
		c.mu.Unlock()
		time.Sleep(lag)
		c.handle(n.Payload)
	}
}

// handle applies one notification: an own ping renews the lease, a link
// key drops that link, a status change goes to onStatus; other gateways'
// pings are ignored.
func (c *tokenCache) handle(payload string) {
	if rest, ok := strings.CutPrefix(payload, "status:"); ok {
		// "status:<status>:<tenant>/<link>" (migration 012); a status
		// holds no colon.
		if status, key, ok := strings.Cut(rest, ":"); ok && c.onStatus != nil {
			c.onStatus(key, status)
		}
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rest, ok := strings.CutPrefix(payload, "ping:"); ok {
		id, seqText, _ := strings.Cut(rest, ":")
		if id != c.id {
			return
		}
		seq, _ := strconv.ParseUint(seqText, 10, 64)
		if sent, ok := c.sentAt[seq]; ok {
			if sent.After(c.live) {
				c.live = sent
			}
			delete(c.sentAt, seq)
		}
		return
	}
	if s := c.slots[payload]; s != nil {
		s.tok = nil
		s.gen++
	}
}

func (c *tokenCache) ping(ctx context.Context) {
	t := time.NewTicker(tokenCachePing)
	defer t.Stop()
	for {
		c.mu.Lock()
		c.pingSeq++
		seq := c.pingSeq
		c.sentAt[seq] = time.Now()
		for s, at := range c.sentAt { // lost pings
			if time.Since(at) > time.Minute {
				delete(c.sentAt, s)
			}
		}
		c.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, c.lease)
		_, err := c.pool.Exec(pctx, `SELECT pg_notify($1, $2)`, tokenChannel, fmt.Sprintf("ping:%s:%d", c.id, seq))
		cancel()
		if err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
			c.log.Debug("token cache: ping failed", "error", err)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// readAccess is the token read of the hot path: from the cache when it may
// serve, else one Vault read, remembered.
func (s *Server) readAccess(ctx context.Context, tenant, id string) (secrets.Versioned[providers.Token], error) {
	if tok, ok := s.tokens.get(tenant + "/" + id); ok {
		s.metrics.tokenReads.WithLabelValues("cache").Inc()
		return tok, nil
	}
	return s.readAccessFromVault(ctx, tenant, id)
}

// readAccessFromVault reads Vault, and remembers what it read unless the
// link changed meanwhile.
func (s *Server) readAccessFromVault(ctx context.Context, tenant, id string) (secrets.Versioned[providers.Token], error) {
	t := s.tokens.begin(tenant + "/" + id)
	s.metrics.tokenReads.WithLabelValues("vault").Inc()
	tok, err := s.secrets.ReadAccessToken(ctx, tenant, id)
	if err == nil {
		s.tokens.put(t, tok)
	}
	return tok, err
}
