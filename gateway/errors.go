package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgconn"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
)

// Error codes of the API. They are stable: clients switch on them, so a
// code is never renamed, only added.
const (
	// CodeBadRequest: a parameter or field is invalid (400).
	CodeBadRequest = "bad_request"
	// CodeInvalidJSON: the body is not the JSON the endpoint takes (400).
	CodeInvalidJSON = "invalid_json"
	// CodeUnknownField: the body has a field the endpoint does not know
	// (400); the message names it.
	CodeUnknownField = "unknown_field"
	// CodeBodyTooLarge: the body exceeds the size limit (413).
	CodeBodyTooLarge = "body_too_large"
	// CodeUnsupportedMediaType: a request body without Content-Type
	// application/json (415).
	CodeUnsupportedMediaType = "unsupported_media_type"
	// CodeIdempotencyMismatch: the Idempotency-Key was used before with a
	// different request (422); the first request's link is unchanged.
	CodeIdempotencyMismatch = "idempotency_mismatch"
	// CodeUnauthorized: no API key, or one that is unknown or revoked (401).
	CodeUnauthorized = "unauthorized"
	// CodeNotFound: no such link in the caller's tenant, or no such
	// endpoint (404).
	CodeNotFound = "not_found"
	// CodeUnknownProvider: the provider is not in the catalog (400).
	CodeUnknownProvider = "unknown_provider"
	// CodeUnsupportedGrant: the provider does not offer the grant (400).
	CodeUnsupportedGrant = "unsupported_grant"
	// CodeLinkRevoked: the link was revoked (409).
	CodeLinkRevoked = "link_revoked"
	// CodeReauthRequired: the grant is dead; the end-user must consent
	// again through POST /v1/links/{id}/reauthorize (409).
	CodeReauthRequired = "reauth_required"
	// CodeLinkPending: the link has no token yet (409).
	CodeLinkPending = "link_pending"
	// CodeLinkFailed: the link ended without a token (409).
	CodeLinkFailed = "link_failed"
	// CodeInsufficientScope: a token read asked for scopes (?scopes=)
	// the link's token was not granted (409); the answer names them
	// (missing_scopes) and, when asked (connect=1), carries a connect_url
	// for the end-user's consent.
	CodeInsufficientScope = "insufficient_scope"
	// CodeRateLimited: too many requests for this API key (429).
	CodeRateLimited = "rate_limited"
	// CodeUnavailable: Vault, Temporal or PostgreSQL is unreachable (503,
	// with Retry-After).
	CodeUnavailable = "unavailable"
	// CodeRefreshFailed: a refresh could not produce a fresh token in time,
	// whether the provider failed or the refresh is still running (503,
	// with Retry-After); the link's workflow keeps retrying.
	CodeRefreshFailed = "refresh_failed"
	// CodeConflict: the request contradicts the link's state or an earlier
	// request with the same Idempotency-Key (409).
	CodeConflict = "conflict"
	// CodeInternal: a bug. The message says nothing; the log says more
	// under the request ID.
	CodeInternal = "internal"
	// CodeProxyNotConfigured: the link's provider has no api_base_url in
	// the catalog, so the proxy has nowhere to send the request (409).
	CodeProxyNotConfigured = "proxy_not_configured"
	// CodeUpstreamUnavailable: the proxy could not get an answer from the
	// provider's API (unreachable, timed out, or an internal address the
	// catalog does not allow) (502).
	CodeUpstreamUnavailable = "upstream_unavailable"
)

// codeStatus is the one HTTP status of each error code. README's error
// table and openapi.json say the same, and every answer the code builds
// uses it (TestErrorCodeStatuses checks all three).
var codeStatus = map[string]int{
	CodeBadRequest:           http.StatusBadRequest,
	CodeInvalidJSON:          http.StatusBadRequest,
	CodeUnknownField:         http.StatusBadRequest,
	CodeBodyTooLarge:         http.StatusRequestEntityTooLarge,
	CodeUnsupportedMediaType: http.StatusUnsupportedMediaType,
	CodeIdempotencyMismatch:  http.StatusUnprocessableEntity,
	CodeUnauthorized:         http.StatusUnauthorized,
	CodeNotFound:             http.StatusNotFound,
	CodeUnknownProvider:      http.StatusBadRequest,
	CodeUnsupportedGrant:     http.StatusBadRequest,
	CodeLinkRevoked:          http.StatusConflict,
	CodeReauthRequired:       http.StatusConflict,
	CodeLinkPending:          http.StatusConflict,
	CodeLinkFailed:           http.StatusConflict,
	CodeInsufficientScope:    http.StatusConflict,
	CodeRateLimited:          http.StatusTooManyRequests,
	CodeUnavailable:          http.StatusServiceUnavailable,
	CodeRefreshFailed:        http.StatusServiceUnavailable,
	CodeConflict:             http.StatusConflict,
	CodeInternal:             http.StatusInternalServerError,
	CodeProxyNotConfigured:   http.StatusConflict,
	CodeUpstreamUnavailable:  http.StatusBadGateway,
}

// apiError is an error with its HTTP answer. Messages are shown to
// callers, so they never carry a secret or a raw upstream error.
type apiError struct {
	status     int
	code       string
	msg        string
	retryAfter int
	// cause is logged, never shown.
	cause error
	// missingScopes and connectURL complete an insufficient_scope answer.
	missingScopes []string
	connectURL    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }
func (e *apiError) Unwrap() error { return e.cause }

func newError(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, msg: msg}
}

func errBadRequest(msg string) *apiError { return newError(http.StatusBadRequest, CodeBadRequest, msg) }
func errNotFound(msg string) *apiError   { return newError(http.StatusNotFound, CodeNotFound, msg) }
func errConflict(code, msg string) *apiError {
	return newError(http.StatusConflict, code, msg)
}

func errUnavailable(what string, cause error) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable,
		msg: what + " is unavailable; retry later", retryAfter: retryAfterSeconds, cause: cause}
}

func errLinkNotFound() *apiError { return errNotFound("no such link") }

// errorBody is the JSON shape of every error answer.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code          string   `json:"code"`
	Message       string   `json:"message"`
	RequestID     string   `json:"request_id"`
	MissingScopes []string `json:"missing_scopes,omitempty"`
	ConnectURL    string   `json:"connect_url,omitempty"`
}

// fail answers with err: an *apiError as it says, a dependency outage as
// 503, anything else as an internal error whose details go to the log
// only.
func (s *Server) fail(c *gin.Context, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = s.classify(err)
	}
	if ae.status >= 500 {
		attrs := []any{"request_id", requestIDOf(c), "route", routeOf(c), "code", ae.code}
		if ae.cause != nil {
			attrs = append(attrs, "error", ae.cause.Error())
		} else if ae != err {
			attrs = append(attrs, "error", err.Error())
		}
		s.log.Error("request failed", attrs...)
	}
	if ae.retryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(ae.retryAfter))
	}
	c.AbortWithStatusJSON(ae.status, errorBody{Error: errorDetail{
		Code: ae.code, Message: ae.msg, RequestID: requestIDOf(c),
		MissingScopes: ae.missingScopes, ConnectURL: ae.connectURL,
	}})
}

// classify turns an error from a dependency into an answer.
func (s *Server) classify(err error) *apiError {
	switch {
	case errors.Is(err, secrets.ErrUnavailable):
		return errUnavailable("Vault", err)
	case isTemporalDown(err):
		return errUnavailable("Temporal", err)
	case isPostgresDown(err):
		return errUnavailable("PostgreSQL", err)
	case errors.Is(err, context.DeadlineExceeded):
		return errUnavailable("a dependency", err)
	}
	return &apiError{status: http.StatusInternalServerError, code: CodeInternal,
		msg: "internal error; quote the request ID when reporting it", cause: err}
}

// isPostgresDown reports connection-level failures: the database is
// unreachable, restarting or refusing connections, as opposed to a query
// that is wrong.
func isPostgresDown(err error) bool {
	if err == nil {
		return false
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) || pgconn.Timeout(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 57P01-57P03: shutdown,
		// crash shutdown, cannot connect now; 53300: too many clients.
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P") || pgErr.Code == "53300"
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr)
}

// isTemporalDown reports that the Temporal frontend could not be reached
// or is overloaded.
func isTemporalDown(err error) bool {
	if err == nil {
		return false
	}
	var unavailable *serviceerror.Unavailable
	var deadline *serviceerror.DeadlineExceeded
	var exhausted *serviceerror.ResourceExhausted
	if errors.As(err, &unavailable) || errors.As(err, &deadline) || errors.As(err, &exhausted) {
		return true
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
			return true
		}
	}
	return false
}

// storeError maps the store's sentinel errors; the rest goes to classify.
func storeError(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errLinkNotFound()
	case errors.Is(err, store.ErrBadCursor):
		return errBadRequest("cursor is not one this API returned")
	case errors.Is(err, store.ErrIdempotencyConflict):
		return errConflict(CodeConflict, "Idempotency-Key was already used for a link with a different provider, user_id or grant")
	}
	return err
}
