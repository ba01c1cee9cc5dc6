package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"
)

// What the Temporal UI shows of a link without a query: the current
// details (status, expiry, next step, last error and what to do about it)
// and a summary on each timer. None of it is a secret; like every payload
// it passes through the payload codec.

// showDetails sets the link's current details in the Temporal UI.
func (l *link) showDetails(ctx workflow.Context) {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s** link `%s` of tenant `%s` at **%s** (%s)\n\n", l.st.Status, l.p.LinkID, l.p.TenantID, l.p.Provider, l.p.GrantType)
	if !l.st.ExpiresAt.IsZero() {
		fmt.Fprintf(&b, "- token expires %s\n", clock(l.st.ExpiresAt))
	}
	if !l.st.NextRefreshAt.IsZero() {
		fmt.Fprintf(&b, "- next: %s\n", l.nextStep())
	}
	fmt.Fprintf(&b, "- %s, run %d\n", plural(l.st.Refreshes, "refresh", "refreshes"), l.st.Runs+1)
	if l.st.LastError != "" {
		fmt.Fprintf(&b, "- last error: %s\n", l.st.LastError)
	}
	if todo := operatorAction(l.st.Status); todo != "" {
		fmt.Fprintf(&b, "\n%s\n", todo)
	}
	workflow.SetCurrentDetails(ctx, b.String())
}

// nextStep says when and why the link acts next.
func (l *link) nextStep() string {
	if l.st.Status == StatusDegraded {
		return fmt.Sprintf("retry at %s after %d failed attempts", clock(l.st.NextRefreshAt), l.st.Failures)
	}
	return fmt.Sprintf("refresh at %s (token expires %s)", clock(l.st.NextRefreshAt), clock(l.st.ExpiresAt))
}

// timerSummary labels the sleep until the next refresh in the UI.
func (l *link) timerSummary() string {
	if l.st.Status == StatusDegraded {
		return "retry " + strings.TrimPrefix(l.nextStep(), "retry ") + ": " + l.st.LastError
	}
	return "sleep until " + l.nextStep()
}

// operatorAction is what an operator can do for a link in status st.
func operatorAction(st Status) string {
	switch st {
	case StatusReauthRequired:
		return "The grant is dead: send the end-user through `POST /v1/links/{id}/reauthorize` (or fix the client secret and re-authorize)."
	case StatusDegraded:
		return "The provider is failing; the link retries with backoff and keeps serving its token while valid. Check the provider."
	case StatusPendingAuthorization:
		return "Waiting for the end-user's consent."
	case StatusFailed:
		return "The link ended without a token: create a new one."
	case StatusRevoked:
		return "Revoked: no secret is left."
	}
	return ""
}

// withSummary labels the activity started with the returned context in
// the Temporal UI's timeline: a name like "Refresh" says what ran, the
// summary says for which provider and why.
func withSummary(ctx workflow.Context, summary string) workflow.Context {
	o := workflow.GetActivityOptions(ctx)
	o.Summary = summary
	return workflow.WithActivityOptions(ctx, o)
}

// refreshSummary says why this refresh runs.
func (l *link) refreshSummary() string {
	why := "token expires " + clock(l.st.ExpiresAt)
	switch {
	case len(l.waiters) > 0:
		why = "forced by a request"
	case l.st.Status == StatusDegraded:
		why = fmt.Sprintf("retry after %d failed attempts: %s", l.st.Failures, l.st.LastError)
	case l.st.ExpiresAt.IsZero():
		why = "no expiry known"
	}
	return fmt.Sprintf("refresh at %s (%s)", l.p.Provider, why)
}

func plural[N int | int64](n N, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func clock(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

// StaticSummary is the one line the Temporal UI shows for a link's
// workflow from its start: what the link is. No secret: the user
// reference is the caller's own identifier of its end-user.
func StaticSummary(tenant, linkID, provider, grant, user string) string {
	return fmt.Sprintf("%s link %s of %s (tenant %s, user %s)", provider, linkID, grant, tenant, user)
}
