package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"
)

// The link's messages: refresh and revoke updates, the state query, and
// the signals of the OAuth callback and re-authorization. Each handler
// changes the link's state and pokes the main loop, which does the work.

// registerHandlers wires the messages to the state they change.
func (l *link) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (State, error) {
		return l.st, nil
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRefresh, l.handleRefresh,
		workflow.UpdateHandlerOptions{Validator: l.validateRefresh}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRevoke, l.handleRevoke,
		workflow.UpdateHandlerOptions{Validator: l.validateRevoke}); err != nil {
		return err
	}
	return nil
}

func (l *link) validateRefresh(ctx workflow.Context, req RefreshRequest) error {
	switch {
	case l.st.Status.Terminal():
		return NewLinkStatusError(l.st.Status, l.st.LastError)
	case l.revokeRequested != nil:
		return NewLinkStatusError(StatusRevoked, "")
	case (l.st.Status == StatusPendingAuthorization || l.st.Status == "") && !l.enrolling:
		return NewLinkStatusError(StatusPendingAuthorization, "")
	case l.st.Status == StatusReauthRequired && !l.suspending:
		return NewLinkStatusError(StatusReauthRequired, l.st.LastError)
	}
	return nil
}

// refreshWaiter is one refresh update waiting for the main loop.
type refreshWaiter struct {
	// afterVersion: a forced refresh is satisfied by any token stored
	// after the one current when it asked. until: a bounded one by any
	// token valid past it.
	afterVersion int
	until        time.Time
	// seen is how many attempts had started when it asked.
	seen int
	done bool
	err  error
}

func (w *refreshWaiter) satisfiedBy(st State) bool {
	if w.until.IsZero() {
		return st.VaultVersion > w.afterVersion
	}
	return st.ExpiresAt.After(w.until)
}

// handleRefresh returns at once when the current token already satisfies
// the request, and otherwise waits for the main loop's next attempt. Any
// number of concurrent requests share one provider call: a refresh already
// in flight when a request arrives satisfies it too, since it stores a
// token newer than the one the caller saw.
func (l *link) handleRefresh(ctx workflow.Context, req RefreshRequest) (RefreshResult, error) {
	if l.st.Status == StatusPendingAuthorization || l.st.Status == "" {
		// Accepted while the first token is being obtained (see
		// enrolling): its outcome decides.
		if err := workflow.Await(ctx, func() bool { return !l.enrolling }); err != nil {
			return RefreshResult{}, err
		}
		if l.st.Status != StatusActive && l.st.Status != StatusDegraded {
			return RefreshResult{}, NewLinkStatusError(l.st.Status, l.st.LastError)
		}
	}
	w := &refreshWaiter{afterVersion: max(l.st.VaultVersion, req.SeenVersion), until: req.MinValidUntil, seen: l.attempts}
	if !w.until.IsZero() && w.satisfiedBy(l.st) && l.st.VaultVersion >= req.SeenVersion &&
		(l.st.Status == StatusActive || l.st.Status == StatusDegraded) {
		return RefreshResult{ExpiresAt: l.st.ExpiresAt, VaultVersion: l.st.VaultVersion}, nil
	}
	l.waiters = append(l.waiters, w)
	l.poke()
	if err := workflow.Await(ctx, func() bool { return w.done }); err != nil {
		return RefreshResult{}, err
	}
	if w.err != nil {
		return RefreshResult{}, NewLinkStatusError(l.st.Status, l.st.LastError)
	}
	return RefreshResult{ExpiresAt: l.st.ExpiresAt, VaultVersion: l.st.VaultVersion, Refreshed: true}, nil
}

// settleWaiters answers the waiters after an attempt: those that were
// waiting when it started get its outcome whatever it was; later ones only
// if its token satisfies them (otherwise the next attempt is theirs).
func (l *link) settleWaiters(attempt int, err error) {
	kept := l.waiters[:0]
	for _, w := range l.waiters {
		switch {
		case w.seen < attempt, err != nil, w.satisfiedBy(l.st):
			w.done, w.err = true, err
		default:
			kept = append(kept, w)
		}
	}
	l.waiters = kept
}

func (l *link) validateRevoke(ctx workflow.Context, req RevokeRequest) error {
	if l.st.Status == StatusRevoked {
		return NewLinkStatusError(StatusRevoked, "")
	}
	return nil
}

// handleRevoke asks the main loop to revoke and waits until it has.
func (l *link) handleRevoke(ctx workflow.Context, req RevokeRequest) (State, error) {
	l.requestRevoke(req)
	if err := workflow.Await(ctx, func() bool { return l.revokeDone }); err != nil {
		return State{}, err
	}
	return l.st, nil
}

func (l *link) requestRevoke(req RevokeRequest) {
	if l.revokeRequested == nil {
		l.revokeRequested = &req
	}
	l.poke()
}

// signalChannels are the link's signal channels, opened once per run.
type signalChannels struct {
	revoke, authorized, reauth, denied workflow.ReceiveChannel
}

func openSignals(ctx workflow.Context) signalChannels {
	return signalChannels{
		revoke:     workflow.GetSignalChannel(ctx, SignalRevoke),
		authorized: workflow.GetSignalChannel(ctx, SignalAuthorized),
		reauth:     workflow.GetSignalChannel(ctx, SignalReauthorize),
		denied:     workflow.GetSignalChannel(ctx, SignalDenied),
	}
}

// addSignals makes sel wake for any message and for cancellation (a
// selector does not watch its context by itself).
func (l *link) addSignals(ctx workflow.Context, sel workflow.Selector) {
	sel.AddReceive(l.sig.denied, func(c workflow.ReceiveChannel, _ bool) {
		var req DeniedRequest
		c.Receive(ctx, &req)
		l.onDenied(req)
	})
	sel.AddReceive(l.sig.revoke, func(c workflow.ReceiveChannel, _ bool) {
		var req RevokeRequest
		c.Receive(ctx, &req)
		l.requestRevoke(req)
	})
	sel.AddReceive(l.sig.authorized, func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(ctx, nil)
		l.grantReady = true
	})
	sel.AddReceive(l.sig.reauth, func(c workflow.ReceiveChannel, _ bool) {
		var req ReauthorizeRequest
		c.Receive(ctx, &req)
		l.onReauthorize(req)
	})
	sel.AddReceive(l.wake, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
	sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
}

// drain applies signals that arrived but were not yet received, so that
// continue-as-new loses none of them.
func (l *link) drain() {
	for {
		var req DeniedRequest
		if !l.sig.denied.ReceiveAsync(&req) {
			break
		}
		l.onDenied(req)
	}
	for {
		var req RevokeRequest
		if !l.sig.revoke.ReceiveAsync(&req) {
			break
		}
		l.requestRevoke(req)
	}
	for l.sig.authorized.ReceiveAsync(nil) {
		l.grantReady = true
	}
	for {
		var req ReauthorizeRequest
		if !l.sig.reauth.ReceiveAsync(&req) {
			break
		}
		l.onReauthorize(req)
	}
	for l.wake.ReceiveAsync(nil) {
	}
}

// onDenied: the end-user refused consent. It matters only to a link
// waiting for its first consent; a refusal after that changes nothing.
func (l *link) onDenied(req DeniedRequest) {
	if l.st.Status == "" || l.st.Status == StatusPendingAuthorization {
		l.denied = &req
	}
}

func (l *link) onReauthorize(req ReauthorizeRequest) {
	if req.GrantType != "" {
		l.p.GrantType = req.GrantType
	}
	l.grantReady = true
}
