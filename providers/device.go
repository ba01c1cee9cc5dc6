package providers

import "errors"

// GrantTypeDeviceCode is the wire grant_type of the device authorization
// grant (RFC 8628 section 3.4). The catalog calls it GrantDeviceCode.
const GrantTypeDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"

// A device_code Exchange makes one token request per call: the workflow
// waits between polls with its own timers instead of blocking an activity.
// These sentinels, wrapped in an *Error, tell it why there is no token yet.
var (
	// ErrAuthorizationPending: the end-user has not finished yet; poll
	// again after the interval. Class Transient.
	ErrAuthorizationPending = errors.New("authorization pending")
	// ErrSlowDown: polling too fast; add five seconds to the interval
	// (RFC 8628 section 3.5). Class RateLimited, RetryAfter 5s.
	ErrSlowDown = errors.New("slow down")
)
