package providers

import (
	"errors"
	"fmt"
	"time"
)

// Class sorts provider failures by what the engine should do about them.
type Class int

const (
	// Transient failures (network, timeouts, 5xx, malformed replies) are
	// retried with backoff; the current token may still be good.
	Transient Class = iota
	// RateLimited failures are retried after RetryAfter.
	RateLimited
	// InvalidGrant means the grant material (refresh token, code, password)
	// is no longer accepted. Retrying the same call cannot help.
	InvalidGrant
	// Permanent failures need an operator or the end-user: a wrong client
	// secret, an unauthorized client, a locked user.
	Permanent
	// Misconfigured failures need an operator and not the end-user: the provider
	// answers in a way the catalog entry does not prepare for (a 2xx
	// token reply in a shape no setting of the kind reads). The engine
	// ends the link (failed) rather than asking for re-authorization,
	// which could not help.
	Misconfigured
)

func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case RateLimited:
		return "rate_limited"
	case InvalidGrant:
		return "invalid_grant"
	case Permanent:
		return "permanent"
	case Misconfigured:
		return "config"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Error is a classified provider failure. Its fields are wire facts safe to
// log and to store as a link's last_error: never a token, a body that might
// echo one, or a client secret.
type Error struct {
	Class Class
	// Op names the call: "exchange", "refresh", "revoke", ...
	Op string
	// Status is the HTTP status, 0 when no response arrived.
	Status int
	// Code is the RFC 6749 error code (invalid_grant, ...) or the
	// provider's own, when it gave one.
	Code string
	// Description is the provider's error_description, cut to 200 bytes.
	// Providers do not put tokens there; we still cap it.
	Description string
	// RetryAfter is the provider's Retry-After, for RateLimited.
	RetryAfter time.Duration
	// Unanswered: the request may have reached the provider, but no
	// reply came back (the connection broke or timed out after the
	// request was sent). A refresh may then have rotated the refresh
	// token at the provider with the new one lost on the way.
	Unanswered bool
	// Err is the underlying error (network, decoding). It must not carry a
	// body; wrap only errors whose text is known to be free of secrets.
	Err error
}

func (e *Error) Error() string {
	msg := e.Op + ": " + e.Class.String()
	if e.Status != 0 {
		msg += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Code != "" {
		msg += ": " + e.Code
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// IsUnanswered reports whether err is a call that may have reached the
// provider without its reply reaching us (see Error.Unanswered).
func IsUnanswered(err error) bool {
	var pe *Error
	return errors.As(err, &pe) && pe.Unanswered
}

// ClassOf returns the class of err, Transient for errors that are not an
// *Error: an unknown failure is worth a retry, never a dead link.
func ClassOf(err error) Class {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Class
	}
	return Transient
}

// ErrUnsupported is returned for an operation a provider does not offer.
var ErrUnsupported = errors.New("not supported by this provider")
