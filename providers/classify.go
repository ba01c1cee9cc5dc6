package providers

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/oauth2"
)

// ErrMalformedReply is the cause of a Transient *Error for a reply that
// could not be decoded. The reply itself is not kept: it may hold a token.
var ErrMalformedReply = errors.New("malformed reply")

// slowDownStep is what RFC 8628 section 3.5 adds to the polling interval.
const slowDownStep = 5 * time.Second

// Classify turns the failure of a call to a provider into an *Error. It is
// the one place that decides what a failure means, so every provider
// package hands its errors here.
//
// An *oauth2.RetrieveError is reduced to its wire facts: its Error text
// embeds the response body, which can carry a token, so it is never
// wrapped. Network errors keep their cause without the request URL.
// Other errors are wrapped as Transient and must not carry a body.
func Classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		if pe.Op == "" {
			c := *pe
			c.Op = op
			return &c
		}
		return pe
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status, header := 0, http.Header(nil)
		if re.Response != nil {
			status, header = re.Response.StatusCode, re.Response.Header
		}
		if status >= 200 && status < 300 && re.ErrorCode == "" {
			// x/oauth2 reports a bad 2xx body this way.
			return &Error{Class: Transient, Op: op, Status: status, Err: ErrMalformedReply}
		}
		return ResponseError(op, status, header, re.ErrorCode, re.ErrorDescription)
	}
	e := &Error{Class: Transient, Op: op, Unanswered: maybeDelivered(err)}
	var ue *url.Error
	if errors.As(err, &ue) {
		// The URL may carry a query we did not write; the cause suffices.
		err = ue.Err
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se), errors.As(err, &te), isOAuth2DecodeError(err):
		e.Err = ErrMalformedReply
	default:
		e.Err = err
	}
	return e
}

// isOAuth2DecodeError spots x/oauth2's decoding failures, which it formats
// with %v so that errors.As cannot see them.
func isOAuth2DecodeError(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "oauth2: cannot parse") ||
		strings.HasPrefix(s, "oauth2: server response missing access_token")
}

// ResponseError classifies an HTTP reply that failed, from its status,
// headers and RFC 6749 error fields. A 2xx status with an error code is
// an error too: some servers answer that way.
func ResponseError(op string, status int, header http.Header, code, description string) *Error {
	e := &Error{
		Op:          op,
		Status:      status,
		Code:        printable(code, 64),
		Description: printable(description, 200),
	}
	if header != nil {
		if v := header.Get("Retry-After"); v != "" {
			e.RetryAfter, _ = ParseRetryAfter(v, time.Now())
		}
	}
	switch {
	case status == http.StatusTooManyRequests:
		e.Class = RateLimited
	case status >= 500, status == http.StatusRequestTimeout:
		e.Class = Transient
	default:
		e.Class = classifyCode(code, status)
	}
	switch code {
	case "authorization_pending":
		e.Err = ErrAuthorizationPending
	case "slow_down":
		e.Err = ErrSlowDown
		e.RetryAfter = max(e.RetryAfter, slowDownStep)
	}
	return e
}

func classifyCode(code string, status int) Class {
	switch code {
	case "invalid_grant", "expired_token":
		// expired_token is a device code that timed out: the grant
		// material is spent, as with invalid_grant.
		return InvalidGrant
	case "invalid_client", "unauthorized_client", "unsupported_grant_type",
		"invalid_scope", "access_denied", "invalid_request", "unsupported_response_type",
		"unsupported_token_type", "invalid_token":
		return Permanent
	case "temporarily_unavailable", "server_error", "authorization_pending":
		return Transient
	case "slow_down":
		return RateLimited
	}
	if status >= 400 && status < 500 {
		return Permanent
	}
	// An unknown code on a 2xx, or no status at all: worth a retry.
	return Transient
}

// ParseRetryAfter reads a Retry-After header: delay-seconds or an
// HTTP-date (RFC 9110 section 10.2.3). ok is false when v is neither.
// A date in the past gives zero.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		// Cap absurd values rather than overflow: a day is plenty.
		return time.Duration(min(secs, 24*3600)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), 24*time.Hour), true
}

// IsTimeout reports whether err is a timeout of a call to a provider.
func IsTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// maybeDelivered reports whether a failed call may have reached the
// provider: anything but a failure to connect (refused, no route, name
// not found, TLS handshake), which happens before a byte of the request
// is sent. A reset, an EOF or a timeout awaiting the reply may come after
// the provider acted.
func maybeDelivered(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return false
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return false
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return false
	}
	var he tls.RecordHeaderError
	if errors.As(err, &he) {
		return false
	}
	var ce *tls.CertificateVerificationError
	return !errors.As(err, &ce)
}

// IsConnectionError reports whether err is a refused or reset connection.
func IsConnectionError(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// printable keeps s to printable characters and at most n bytes (cut on
// a character boundary, marked with an ellipsis), so a provider's error
// fields cannot forge log lines or flood them.
func printable(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if !unicode.IsPrint(r) {
			r = '?'
		}
		if b.Len()+utf8.RuneLen(r) > n {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
