package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// A link is bound to the end-user who first consented: the sub claim of
// the ID token its provider verified (providers.IDTokenVerifier), kept in
// the links table. A re-authorization by anyone else is refused unless
// its grant allows the change (the gateway's allow_subject_change), so a
// consent URL that reaches the wrong person cannot hand them the link.
// Links enrolled before subjects were kept, and providers without ID
// tokens, have none: their first verified ID token binds them.

// boundSubject reads who the link is bound to, for providers that verify
// ID tokens. It runs before the grant is spent: a read failing after the
// exchange could only be retried by spending the grant again.
func (a *Activities) boundSubject(ctx context.Context, ref workflows.LinkRef, p providers.Provider) (string, error) {
	if _, ok := p.(providers.IDTokenVerifier); !ok {
		return "", nil
	}
	sub, err := a.Store.LinkSubject(ctx, ref.TenantID, ref.LinkID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// A link started without the gateway has no row: nothing bound.
		return "", nil
	case err != nil:
		return "", temporal.NewApplicationError("enroll "+ref.LinkID+": "+err.Error(), "StoreUnavailable")
	}
	return sub, nil
}

// discardTimeout bounds the revocation of a token that is refused.
const discardTimeout = 10 * time.Second

// checkSubject refuses tok when it was issued to another end-user than
// the link is bound to and g does not allow that. The refused token is
// never stored; it is revoked at the provider where possible, so that
// the other end-user's grant does not outlive the refusal.
func (a *Activities) checkSubject(ctx context.Context, ref workflows.LinkRef, p providers.Provider, bound string,
	g providers.Grant, tok *providers.Token) error {
	if bound == "" || tok.Subject == "" || tok.Subject == bound || g.AllowSubjectChange {
		return nil
	}
	if r, ok := p.(providers.Revoker); ok {
		rctx, cancel := context.WithTimeout(ctx, discardTimeout)
		if err := r.Revoke(rctx, tok); err != nil {
			activity.GetLogger(ctx).Info("could not revoke the refused token at the provider", "link", ref.LinkID,
				"class", providers.ClassOf(err).String())
		}
		cancel()
	}
	// Neither subject is named: they identify people at the provider.
	return temporal.NewNonRetryableApplicationError("enroll "+ref.LinkID+
		": re-authorization refused: the ID token names another end-user (sub) than the one this link is enrolled for; "+
		"nothing was stored and the link keeps its tokens. To hand the link to the new end-user, "+
		"re-authorize with allow_subject_change", workflows.ErrTypeSubjectChanged, nil)
}

// bindSubject records the subject of the token just stored (or adopted)
// as the link's. A failure is retried: the retry adopts the stored token
// (enrolledEarlier) and records it then.
func (a *Activities) bindSubject(ctx context.Context, ref workflows.LinkRef, subject string) error {
	if subject == "" {
		return nil
	}
	err := a.Store.SetLinkSubject(ctx, ref.TenantID, ref.LinkID, subject)
	switch {
	case errors.Is(err, store.ErrNotFound):
		activity.GetLogger(ctx).Warn("link row missing; its subject is not recorded", "link", ref.LinkID)
		return nil
	case err != nil:
		return temporal.NewApplicationError("enroll "+ref.LinkID+": "+err.Error(), "StoreUnavailable")
	}
	return nil
}
