package tokenwarden

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

const (
	// MinEarlyRefresh is the least time before a token's expiry at which a
	// TokenSource fetches a new one, so that a request never sets out with
	// a token that dies on the way.
	MinEarlyRefresh = 30 * time.Second
	// earlyFraction of a token's lifetime is kept as margin when that is
	// more than MinEarlyRefresh: a one-hour token is replaced 6 minutes
	// early, which spreads load and leaves room for a gateway hiccup.
	earlyFraction = 0.1
	// requestedTTL is the min_ttl a TokenSource asks for. At twice the
	// least margin, even a token the gateway hands out at the last moment
	// can be reused for a while instead of being fetched again at once.
	requestedTTL = 2 * MinEarlyRefresh
	// retryDelay is how long a TokenSource keeps serving a still valid
	// token after failing to replace it, before it asks the gateway again;
	// it keeps a down gateway from being hit, serially, on every request.
	retryDelay = 5 * time.Second
)

// TokenSource returns a token source for the link, for use with
// oauth2.NewClient or anything else that takes an oauth2.TokenSource. It
// caches the token and asks the gateway again shortly before expiry: at
// MinEarlyRefresh or a tenth of the token's lifetime, whichever is more
// (but never more than half of it). One fetch runs at a time; concurrent
// callers wait for it and share its token.
//
// The tokens it returns report themselves invalid (Token.Valid) from that
// same point on, so an oauth2.ReuseTokenSource around it, as oauth2.NewClient
// adds, honours the margin too.
//
// A gateway that cannot be reached, or answers that it is overloaded or
// down, does not interrupt a caller while the cached token is still
// valid; any other error (*APIError with code link_revoked,
// reauth_required, ...) is returned at once.
//
// Token takes no context, so requests are bounded by the client's
// HTTPClient timeout (DefaultTimeout for a client from NewClient).
func (c *Client) TokenSource(linkID string) oauth2.TokenSource {
	return &linkTokenSource{client: c, linkID: linkID, now: time.Now}
}

type linkTokenSource struct {
	client *Client
	linkID string
	now    func() time.Time // injectable for tests

	mu  sync.Mutex
	tok *oauth2.Token
	// refreshAt is when tok stops being served from the cache; zero for
	// a token without expiry, which oauth2 treats as never expiring.
	refreshAt time.Time
	// nextAttempt holds off a new fetch after a transient failure.
	nextAttempt time.Time
	// lifetime is how long the last token was valid when it arrived.
	lifetime time.Duration
}

// minTTL is the validity to ask the gateway for: requestedTTL, but no
// more than half of what the provider's tokens last, which it could never
// satisfy (every fetch would then make the provider issue a new token).
func (s *linkTokenSource) minTTL() time.Duration {
	if s.lifetime > 0 {
		return min(requestedTTL, s.lifetime/2)
	}
	return requestedTTL
}

func (s *linkTokenSource) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	now := s.now()
	if s.fresh(now) || (s.usable(now) && now.Before(s.nextAttempt)) {
		return s.tok, nil
	}
	tok, err := s.client.Token(context.Background(), s.linkID, s.minTTL())
	if err != nil {
		if s.usable(now) && transient(err) {
			s.nextAttempt = now.Add(retryDelay)
			return s.tok, nil
		}
		return nil, err
	}
	s.tok = tok
	s.refreshAt = time.Time{}
	s.nextAttempt = time.Time{}
	if !tok.Expiry.IsZero() {
		s.lifetime = tok.Expiry.Sub(now)
		margin := earlyMargin(s.lifetime)
		s.refreshAt = tok.Expiry.Add(-margin)
		// ReuseTokenSourceWithExpiry is the only way to set a token's
		// expiry delta, which Token.Valid (and so an outer
		// ReuseTokenSource) uses instead of oauth2's default 10s. The
		// source it returns is not needed.
		_ = oauth2.ReuseTokenSourceWithExpiry(tok, nil, margin)
	}
	return tok, nil
}

// fresh reports whether the cached token may be served without asking.
func (s *linkTokenSource) fresh(now time.Time) bool {
	if s.tok == nil {
		return false
	}
	return s.refreshAt.IsZero() || now.Before(s.refreshAt)
}

// usable reports whether the cached token has not expired yet, margin or
// not: worth serving when no better one can be had.
func (s *linkTokenSource) usable(now time.Time) bool {
	if s.tok == nil {
		return false
	}
	return s.tok.Expiry.IsZero() || now.Before(s.tok.Expiry)
}

// earlyMargin is how long before expiry a token of the given remaining
// lifetime is replaced.
func earlyMargin(lifetime time.Duration) time.Duration {
	if lifetime <= 0 {
		return 0
	}
	m := max(MinEarlyRefresh, time.Duration(float64(lifetime)*earlyFraction))
	// A provider that issues very short tokens would otherwise make every
	// token stale on arrival, and every call a fetch.
	return min(m, lifetime/2)
}

// transient reports whether err may go away by itself: the gateway was not
// reached, or said it is overloaded or down.
func transient(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Temporary()
	}
	// Not an answer from the gateway: a connection error or a timeout. A
	// malformed answer (no access token, bad JSON) lands here too, and is
	// as likely to be a passing fault.
	return true
}
