package gateway

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// A link that is reauth_required, failed or revoked never serves its
// access token. The workflow wipes the token from Vault when it suspends,
// fails or revokes a link, but that write can fail (Vault unreachable
// from the worker, its Vault login expired) or come late, while the
// gateway still reads Vault fine. So the gateway also knows, from
// PostgreSQL, which links must not serve: statusWatch keeps that set in
// memory. The token read stays one Vault read plus a map lookup; only a
// link in the set costs a PostgreSQL read, to confirm (a re-authorized
// link leaves the set then).
//
// How it learns. The links row's trigger announces every status change on
// the token cache's channel (migration 012), and the listener hands it to
// learn: a token read that begins after the notification arrived refuses.
// Notifications arrive in commit order, so a gateway whose token cache
// holds its lease has heard, within that lease (a second by default),
// every status committed before. A poll every StatusPoll (a second by
// default) of the rows changed since the last one is the backstop: for a
// gateway without a token cache, or whose listener is down.
//
// What it relies on: the workflow records a link's new status in
// PostgreSQL (RecordTransition) whether or not the Vault wipe succeeded,
// and keeps retrying the wipe until it does. While PostgreSQL is
// unreachable the set is not refreshed and token reads go on from Vault
// alone, as before: a database outage never stops token serving (and the
// workflow cannot record a status then either; its wipe still works).
const (
	// statusPollInterval is how often the set is re-read by default
	// (Config.StatusPoll).
	statusPollInterval = time.Second
	// statusOverlap: each poll re-reads rows changed this long before the
	// previous poll, since updated_at is a transaction's start time and a
	// transaction may commit after a poll that began later.
	statusOverlap = 30 * time.Second
	// statusWindow is how long a link stays in the set after its row
	// changed, at least; longer while its last token (links.expires_at)
	// is unexpired. After that a token left in Vault by a wipe that never
	// happened would be expired anyway, and an expired token is never
	// served: the gateway asks the workflow, which refuses.
	statusWindow = 24 * time.Hour
	// statusIdle stops the background poll of a gateway that serves no
	// token for this long; the next token read restarts it.
	statusIdle = 5 * time.Minute
	// statusLoadWait bounds how long token reads wait for the first load
	// after a (re)start. A load that fails or takes longer leaves them
	// served from Vault alone.
	statusLoadWait = 2 * time.Second
	// statusQueryTimeout bounds one poll.
	statusQueryTimeout = 5 * time.Second
)

// notServing reports whether a link in status st must not serve a token.
func notServing(st string) bool {
	switch workflows.Status(st) {
	case workflows.StatusReauthRequired, workflows.StatusFailed, workflows.StatusRevoked:
		return true
	}
	return false
}

// statusSource lists links in a status that must not serve a token.
type statusSource interface {
	// changedSince returns those whose row changed after since or, with
	// a zero since, all those changed within window or whose last token
	// is unexpired; and the database's clock at the query.
	changedSince(ctx context.Context, since time.Time, window time.Duration) ([]store.LinkStatusChange, time.Time, error)
}

// storeStatusSource reads the links table (store.LinksNotServing).
type storeStatusSource struct{ st *store.Store }

func (p storeStatusSource) changedSince(ctx context.Context, since time.Time, window time.Duration) ([]store.LinkStatusChange, time.Time, error) {
	return p.st.LinksNotServing(ctx, since, window)
}

type watchedLink struct {
	status string
	// until: the entry is dropped after this (statusWindow, or the
	// token's expiry if later).
	until time.Time
}

// statusWatch is the in-memory set of links that must not serve a token.
type statusWatch struct {
	src      statusSource // nil: disabled (unit tests without a database)
	getLink  func(ctx context.Context, tenant, id string) (store.Link, error)
	log      *slog.Logger
	interval time.Duration

	mu      sync.Mutex
	links   map[string]watchedLink
	running bool
	stop    chan struct{}
	lastUse time.Time
	// loaded is closed once the current run's first load has been tried.
	loaded chan struct{}
	// failing: the last poll failed (logged once per streak).
	failing bool
}

func newStatusWatch(src statusSource, getLink func(ctx context.Context, tenant, id string) (store.Link, error), log *slog.Logger) *statusWatch {
	return &statusWatch{src: src, getLink: getLink, log: log, interval: statusPollInterval,
		links: map[string]watchedLink{}}
}

// refusal is nil when the link may serve its token as far as PostgreSQL
// knows, and otherwise the answer to give.
func (w *statusWatch) refusal(ctx context.Context, tenant, id string) error {
	if w == nil || w.src == nil {
		return nil
	}
	key := tenant + "/" + id
	w.mu.Lock()
	w.lastUse = time.Now()
	if !w.running {
		w.start()
	}
	loaded := w.loaded
	w.mu.Unlock()
	select {
	case <-loaded:
	default:
		// Only after a (re)start: wait, briefly, for the first load.
		t := time.NewTimer(statusLoadWait)
		select {
		case <-loaded:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	w.mu.Lock()
	e, ok := w.links[key]
	w.mu.Unlock()
	if !ok {
		return nil
	}
	// The rare path: confirm with the row, which may have moved on (a
	// re-authorized link is active again).
	link, err := w.getLink(ctx, tenant, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errLinkNotFound()
	case err != nil:
		// Cannot confirm: what we last knew stands.
		if ae := statusError(e.status, ""); ae != nil {
			ae.cause = err
			return ae
		}
		return nil
	}
	if ae := statusError(link.Status, link.LastError); ae != nil && notServing(link.Status) {
		return ae
	}
	w.mu.Lock()
	if cur, ok := w.links[key]; ok && cur == e {
		delete(w.links, key)
	}
	w.mu.Unlock()
	return nil
}

// learn applies a status change that a links row announced: the link
// stops serving at once, or leaves the set once it serves again.
func (w *statusWatch) learn(key, status string) {
	if w == nil || w.src == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if notServing(status) {
		w.links[key] = watchedLink{status: status, until: time.Now().Add(statusWindow)}
		return
	}
	delete(w.links, key)
}

// start runs the poll; w.mu is held.
func (w *statusWatch) start() {
	w.running = true
	w.loaded = make(chan struct{})
	w.stop = make(chan struct{})
	go w.run(w.loaded, w.stop)
}

// close stops the poll.
func (w *statusWatch) close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running {
		close(w.stop)
		w.running = false
	}
}

func (w *statusWatch) run(loaded, stop chan struct{}) {
	var since time.Time // zero: full load
	first := true
	for {
		next, err := w.poll(since)
		if err == nil {
			since = next
		}
		if first {
			close(loaded)
			first = false
		}
		t := time.NewTimer(w.interval)
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		w.mu.Lock()
		if time.Since(w.lastUse) > statusIdle {
			// Idle: stop; the next token read starts over with a full
			// load, since changes meanwhile were not followed.
			if w.running && w.stop == stop {
				w.running = false
			}
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
}

// poll applies the rows changed since since and returns the next since.
func (w *statusWatch) poll(since time.Time) (time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), statusQueryTimeout)
	defer cancel()
	rows, dbNow, err := w.src.changedSince(ctx, since, statusWindow)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		if !w.failing {
			w.log.Warn("cannot read link statuses from PostgreSQL; token reads go on from Vault alone", "error", err.Error())
		}
		w.failing = true
		return since, err
	}
	if w.failing {
		w.log.Info("link statuses readable again")
		w.failing = false
	}
	now := time.Now()
	for k, e := range w.links {
		if now.After(e.until) {
			delete(w.links, k)
		}
	}
	for _, r := range rows {
		until := r.UpdatedAt.Add(statusWindow)
		if r.ExpiresAt != nil && r.ExpiresAt.After(until) {
			until = *r.ExpiresAt
		}
		w.links[r.TenantID+"/"+r.LinkID] = watchedLink{status: r.Status, until: until}
	}
	return dbNow.Add(-statusOverlap), nil
}
