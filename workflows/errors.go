package workflows

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
)

// ErrTypeLinkStatus is the application error type of a refresh or revoke
// request the link cannot serve in its current status: a refused update
// (validator) or a refresh attempt that ended the link's grant. Its one
// detail is a LinkStatus, so callers switch on a typed status rather than
// on message text.
const ErrTypeLinkStatus = "LinkStatus"

// LinkStatus is the detail of an ErrTypeLinkStatus error: where the link
// stands and why (last_error, built from wire facts only).
type LinkStatus struct {
	Status    Status `json:"status"`
	LastError string `json:"last_error,omitempty"`
}

// NewLinkStatusError reports that the link is in status st and cannot do
// what was asked. It is not retryable: asking again changes nothing until
// the link's status does.
func NewLinkStatusError(st Status, lastError string) error {
	msg := fmt.Sprintf("link is %s", st)
	if lastError != "" {
		msg += ": " + lastError
	}
	return temporal.NewApplicationErrorWithOptions(msg, ErrTypeLinkStatus, temporal.ApplicationErrorOptions{
		NonRetryable: true,
		Details:      []any{LinkStatus{Status: st, LastError: lastError}},
	})
}

// LinkStatusOf returns the status an error reports, if it is (or wraps) an
// ErrTypeLinkStatus error.
func LinkStatusOf(err error) (LinkStatus, bool) {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypeLinkStatus {
		return LinkStatus{}, false
	}
	var ls LinkStatus
	if appErr.HasDetails() && appErr.Details(&ls) == nil && ls.Status != "" {
		return ls, true
	}
	return LinkStatus{}, false
}
