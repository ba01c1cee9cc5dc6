package workflows

import (
	"hash/fnv"
	"strconv"
	"time"

	"github.com/tokenwarden/tokenwarden/providers/schedule"
)

// Defaults for a provider whose catalog entry sets no schedule.
const (
	DefaultMinMargin = 60 * time.Second
	DefaultFraction  = 0.2
	DefaultJitter    = 0.1
	// minWait keeps a misbehaving provider (tokens that expire on arrival)
	// from turning a link into a tight refresh loop.
	minWait = time.Second
	// Backoff bounds between refresh attempts once the activity's own
	// retries are exhausted and the link is degraded.
	minBackoff = 5 * time.Second
	maxBackoff = 5 * time.Minute
)

func withDefaults(s schedule.Schedule) schedule.Schedule {
	if s.MinMargin <= 0 {
		s.MinMargin = DefaultMinMargin
	}
	if s.Fraction <= 0 || s.Fraction >= 1 {
		s.Fraction = DefaultFraction
	}
	if s.Jitter < 0 || s.Jitter >= 1 {
		s.Jitter = DefaultJitter
	}
	if s.RefreshTokenMargin <= 0 {
		s.RefreshTokenMargin = s.MinMargin
	}
	return s
}

// NextRefresh returns when to refresh a token obtained at obtained that
// expires at expires, and whose refresh token (if refreshExpires is set)
// dies at refreshExpires.
//
// The margin before expiry is max(MinMargin, Fraction × lifetime), never
// more than half the lifetime (a 5-second token with a 60-second margin
// would otherwise be refreshed in a tight loop), scaled by a jitter of
// up to Jitter (it only ever makes a refresh earlier, never later) so
// that links enrolled together do not refresh together. The jitter is
// derived from seed rather than a random source, so replay computes the
// same instant without a side effect in history.
//
// An idle link must not let its refresh token lapse either: when the
// refresh token expires first, the refresh moves before that.
func NextRefresh(s schedule.Schedule, now, obtained, expires, refreshExpires time.Time, seed string) time.Time {
	s = withDefaults(s)
	at := expires.Add(-margin(expires.Sub(obtained), s.MinMargin, s.Fraction, s.Jitter, seed))
	if !refreshExpires.IsZero() {
		rt := refreshExpires.Add(-margin(refreshExpires.Sub(obtained), s.RefreshTokenMargin, s.Fraction, s.Jitter, seed+"/rt"))
		if rt.Before(at) {
			at = rt
		}
	}
	if earliest := now.Add(minWait); at.Before(earliest) {
		at = earliest
	}
	return at
}

func margin(lifetime, minMargin time.Duration, fraction, jitter float64, seed string) time.Duration {
	if lifetime <= 0 {
		return 0
	}
	m := time.Duration(fraction * float64(lifetime))
	if m < minMargin {
		m = minMargin
	}
	if m > lifetime/2 {
		m = lifetime / 2
	}
	return time.Duration(float64(m) * (1 + jitter*unit(seed)))
}

// unit maps seed to a number in [0, 1).
func unit(seed string) float64 {
	h := fnv.New64a()
	h.Write([]byte(seed))
	return float64(h.Sum64()%1_000_000) / 1_000_000
}

// Backoff is the wait before the next refresh attempt after failures
// consecutive failed ones: exponential, capped, and never past the point
// where the current token (if still valid) would be lost for lack of trying.
func Backoff(failures int, now, expires time.Time) time.Duration {
	d := minBackoff
	for i := 1; i < failures && d < maxBackoff; i++ {
		d *= 2
	}
	if d > maxBackoff {
		d = maxBackoff
	}
	// While the token is still valid, try at least twice more before it
	// expires.
	if left := expires.Sub(now) / 2; left > minWait && left < d {
		d = left
	}
	return d
}

func seedFor(linkID string, seq int64) string {
	return linkID + "/" + strconv.FormatInt(seq, 10)
}
