package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tokenwarden/tokenwarden"
)

// The lifecycle views of the CLI: 'links get' ends with the next step and
// a timeline of recent events, 'links watch' follows a link live. Both
// read the same two routes as everything else (GET /v1/links/{id} and its
// /events); the gateway has no push or long-poll route, so watch polls.

// recentEvents is how many events 'links get' shows.
const recentEvents = 10

// Pages of the audit trail. The trail is oldest first and a link that
// refreshes often has a long one: its end is found in big pages, then
// followed in small ones, so that each poll of a watch costs little.
const (
	walkPageSize   = 500 // the gateway's largest
	followPageSize = 50
	// maxWalkPages bounds a walk, in case a gateway's cursors never end.
	maxWalkPages = 1000
	// seenCap bounds the event IDs a tail remembers.
	seenCap = 4 * walkPageSize
)

// eventTail follows a link's audit trail from its end. The gateway's
// cursors are opaque and only point past a full page, so the tail keeps
// the cursor of the page holding the newest events (pos) and the IDs it
// has already seen, and reads that page again on every poll.
type eventTail struct {
	g        *gatewayFlags
	id       string
	pageSize int
	pos      string
	seen     map[string]bool
	order    []string // seen's IDs, oldest first, to forget the oldest
}

func newEventTail(g *gatewayFlags, id string) *eventTail {
	return &eventTail{g: g, id: id, pageSize: walkPageSize, seen: map[string]bool{}}
}

// poll reads the trail from the tail's position to its end and returns
// the events not seen before, oldest first: the last keep of them (all if
// keep <= 0), and how many there were in all.
func (t *eventTail) poll(ctx context.Context, keep int) ([]tokenwarden.Event, int, error) {
	var fresh []tokenwarden.Event
	total := 0
	for pages := 0; ; pages++ {
		if pages == maxWalkPages {
			return nil, 0, fmt.Errorf("the audit trail of %s did not end after %d pages; see it with 'tokenwarden links events %s'", t.id, maxWalkPages, t.id)
		}
		page, err := t.page(ctx)
		if err != nil {
			return nil, 0, err
		}
		for _, e := range page.Events {
			if t.seen[e.ID] {
				continue
			}
			t.remember(e.ID)
			total++
			fresh = append(fresh, e)
			if keep > 0 && len(fresh) > keep {
				fresh = fresh[1:]
			}
		}
		if page.NextCursor == "" {
			return fresh, total, nil
		}
		if page.NextCursor == t.pos {
			return nil, 0, errors.New("the gateway's audit trail cursor does not advance; see the trail with 'tokenwarden links events " + t.id + "'")
		}
		t.pos = page.NextCursor
	}
}

// page reads one page at the tail's position. A long walk may outrun the
// API key's rate limit: it then waits a second and goes on.
func (t *eventTail) page(ctx context.Context) (tokenwarden.EventPage, error) {
	q := url.Values{"limit": {strconv.Itoa(t.pageSize)}}
	if t.pos != "" {
		q.Set("cursor", t.pos)
	}
	path := "/v1/links/" + url.PathEscape(t.id) + "/events?" + q.Encode()
	for waits := 0; ; waits++ {
		raw, err := t.g.call(ctx, http.MethodGet, path, nil, nil)
		if tokenwarden.ErrorCode(err) == tokenwarden.CodeRateLimited && waits < maxRateWaits {
			if err := sleep(ctx, time.Second); err != nil {
				return tokenwarden.EventPage{}, err
			}
			continue
		}
		if err != nil {
			return tokenwarden.EventPage{}, err
		}
		var page tokenwarden.EventPage
		return page, decode(raw, &page)
	}
}

// maxRateWaits bounds the seconds a walk waits out the rate limit per page.
const maxRateWaits = 30

func sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

func (t *eventTail) remember(id string) {
	t.seen[id] = true
	t.order = append(t.order, id)
	if len(t.order) > seenCap {
		delete(t.seen, t.order[0])
		t.order = t.order[1:]
	}
}

// printTimeline prints the events of link id as the "Recent events"
// section.
func printTimeline(w io.Writer, id string, events []tokenwarden.Event, total int) {
	switch {
	case total == 0:
		fmt.Fprintln(w, "\nRecent events: none yet")
		return
	case total > len(events):
		fmt.Fprintf(w, "\nRecent events (the last %d of %d, oldest first; 'tokenwarden links events %s' pages through all):\n", len(events), total, termSafe(id))
	default:
		fmt.Fprintln(w, "\nRecent events (oldest first):")
	}
	for _, e := range events {
		fmt.Fprintln(w, "  "+eventLine(e))
	}
}

// eventLine is one event on one line: when, what, the status it moved
// between, and a short detail, each made safe for a terminal.
func eventLine(e tokenwarden.Event) string {
	line := fmt.Sprintf("%-20s  %-22s  %-32s", e.OccurredAt.UTC().Format(time.RFC3339), termSafe(e.Type), termSafe(statusMove(e)))
	if d := eventDetail(e); d != "" {
		line += "  " + termSafe(d)
	}
	return strings.TrimRight(line, " ")
}

// statusMove is "from -> to", or one status when it did not change.
func statusMove(e tokenwarden.Event) string {
	switch {
	case e.FromStatus == "" && e.ToStatus == "":
		return "-"
	case e.FromStatus == "" || e.FromStatus == e.ToStatus:
		return e.ToStatus
	case e.ToStatus == "":
		return e.FromStatus + " -> ?"
	}
	return e.FromStatus + " -> " + e.ToStatus
}

// maxDetail bounds an event's detail on its line.
const maxDetail = 160

// eventDetail is the short detail of an event: its message (the error or
// the reason), else the expiry of the token it left.
func eventDetail(e tokenwarden.Event) string {
	if msg, _ := e.Detail["message"].(string); msg != "" {
		if len(msg) > maxDetail {
			msg = strings.ToValidUTF8(msg[:maxDetail], "") + "…"
		}
		return msg
	}
	if s, _ := e.Detail["expires_at"].(string); s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return "token expires " + t.UTC().Format(time.RFC3339)
		}
	}
	return ""
}

// linkLive is a link with its workflow's own view (GET ?live=1), which
// knows the next refresh before the first one is recorded in the links
// table.
type linkLive struct {
	tokenwarden.Link
	Live *struct {
		Status        string    `json:"status"`
		ExpiresAt     time.Time `json:"expires_at"`
		NextRefreshAt time.Time `json:"next_refresh_at"`
		Failures      int       `json:"failures"`
	} `json:"live"`
	// LiveError says why the gateway could not ask the workflow.
	LiveError string `json:"live_error"`
}

// current is the link as its workflow sees it now; the stored row when
// the workflow could not be asked (the gateway says why in live_error).
func (l linkLive) current() (tokenwarden.Link, int) {
	c := l.Link
	if l.Live == nil {
		return c, 0
	}
	if l.Live.Status != "" {
		c.Status = l.Live.Status
	}
	c.ExpiresAt, c.NextRefreshAt = l.Live.ExpiresAt, l.Live.NextRefreshAt
	return c, l.Live.Failures
}

// nextStep says what happens to the link next, or what someone must do
// for it to go on; failures counts a degraded link's failed attempts,
// liveErr says why the workflow's own view is missing, if it is.
func nextStep(l tokenwarden.Link, failures int, liveErr string) string {
	reauth := "POST /v1/links/" + l.ID + "/reauthorize on the gateway"
	switch l.Status {
	case "active":
		if l.NextRefreshAt.IsZero() && liveErr != "" {
			return "not known: " + liveErr + " (is a worker running?)"
		}
		if l.NextRefreshAt.IsZero() {
			return "nothing scheduled: the token has no known expiry"
		}
		s := "refresh at " + formatTime(l.NextRefreshAt)
		if !l.ExpiresAt.IsZero() {
			s += ", before the token expires at " + l.ExpiresAt.UTC().Format(time.RFC3339)
		}
		return s
	case "refreshing":
		return "a refresh is running now"
	case "degraded":
		s := "the provider is failing; the link retries with backoff and serves its token while it is valid"
		if !l.NextRefreshAt.IsZero() {
			s = "retry at " + formatTime(l.NextRefreshAt) + ": " + s
		}
		if failures > 0 {
			s += fmt.Sprintf(" (%d failed attempts so far)", failures)
		}
		return s
	case "pending_authorization":
		switch l.Grant {
		case tokenwarden.GrantAuthorizationCode:
			return "waiting for the end-user to consent at the authorization_url 'tokenwarden links create' printed; if it expired, create the link again"
		case tokenwarden.GrantDeviceCode:
			return "waiting for the end-user to enter the code 'tokenwarden links create' printed"
		}
		return "enrolling: the link obtains its first token"
	case "reauth_required":
		switch l.Grant {
		case tokenwarden.GrantAuthorizationCode:
			return "the grant is dead: the end-user must authorize again; " + reauth + " returns an authorization_url for their browser"
		case tokenwarden.GrantPassword:
			return "the grant is dead: " + reauth + ` with {"credentials":{"username":"...","password":"..."}} gives the link new credentials`
		case tokenwarden.GrantClientCredentials:
			return "the provider refused the client: fix its client secret (in Vault, see last error), then " + reauth
		}
		return "the grant is dead: create a new link with 'tokenwarden links create'"
	case "failed":
		return "nothing: the link ended without a token; create a new one with 'tokenwarden links create' once the cause (last error) is fixed"
	case "revoked":
		return "nothing: the link is revoked for good and holds no secret; create a new one with 'tokenwarden links create'"
	}
	return ""
}

// finalStatus: nothing will ever happen to a link in it again.
func finalStatus(s string) bool { return s == "revoked" || s == "failed" }

// printLifecycle ends 'links get': the next step, then the recent events.
func (g *gatewayFlags) printLifecycle(ctx context.Context, stdout io.Writer, ll linkLive) error {
	l, failures := ll.current()
	if next := nextStep(l, failures, ll.LiveError); next != "" {
		fmt.Fprintf(stdout, "\nNext: %s\n", termSafe(next))
	}
	events, total, err := newEventTail(g, l.ID).poll(ctx, recentEvents)
	if err != nil {
		return err
	}
	printTimeline(stdout, l.ID, events, total)
	return nil
}

// watchContext is how many past events 'links watch' shows first.
const watchContext = 5

func linksWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, g := newLinksCommand("watch", stderr)
	interval := fs.Duration("interval", 2*time.Second, "how often to ask the gateway")
	id, err := g.parseLinkID(fs, args)
	if err != nil {
		return err
	}
	if *interval < 100*time.Millisecond {
		return fmt.Errorf("--interval must be at least 100ms, got %s (e.g. --interval 2s)", *interval)
	}
	w := &watcher{g: g, id: id, out: stdout, errOut: stderr, tail: newEventTail(g, id)}
	err = w.run(ctx, *interval)
	if ctx.Err() != nil {
		// Ctrl-C is how a watch ends.
		return nil
	}
	return err
}

// watcher follows one link: its new events, and its next step when that
// changes.
type watcher struct {
	g           *gatewayFlags
	id          string
	out, errOut io.Writer
	tail        *eventTail
	link        tokenwarden.Link
	failures    int
	liveErr     string
	nextKey     string
	// failing is the gateway's last transient failure, shown once.
	failing string
}

func (w *watcher) run(ctx context.Context, interval time.Duration) error {
	if err := w.getLink(ctx); err != nil {
		return err
	}
	past, _, err := w.tail.poll(ctx, watchContext)
	if err != nil {
		return err
	}
	w.tail.pageSize = followPageSize
	if !w.g.json {
		fmt.Fprintf(w.out, "Watching link %s (%s, user %s), status %s; Ctrl-C to stop.\n",
			termSafe(w.id), termSafe(w.link.Provider), termSafe(w.link.UserID), termSafe(w.link.Status))
	}
	w.printEvents(past)
	w.printNext()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for !finalStatus(w.link.Status) {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		if err := w.step(ctx); err != nil {
			return err
		}
	}
	if !w.g.json {
		fmt.Fprintf(w.out, "The link is %s: nothing more will happen to it.\n", w.link.Status)
	}
	return nil
}

// step polls once. A gateway that is down or overloaded is waited for
// (said once on stderr); any other error ends the watch.
func (w *watcher) step(ctx context.Context) error {
	err := w.getLink(ctx)
	var events []tokenwarden.Event
	if err == nil {
		events, _, err = w.tail.poll(ctx, 0)
	}
	if err != nil {
		if ctx.Err() != nil || !transient(err) {
			return err
		}
		if msg := strings.SplitN(err.Error(), "\n", 2)[0]; msg != w.failing {
			fmt.Fprintf(w.errOut, "%s; still watching\n", msg)
			w.failing = msg
		}
		return nil
	}
	if w.failing != "" {
		fmt.Fprintln(w.errOut, "the gateway answers again")
		w.failing = ""
	}
	w.printEvents(events)
	w.printNext()
	return nil
}

// transient: trying again later may work (the gateway is down, restarting
// or overloaded), as opposed to a wrong key or an unknown link.
func transient(err error) bool {
	var apiErr *tokenwarden.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Temporary()
	}
	var ce *cliError
	return errors.As(err, &ce) // "cannot reach the gateway"
}

func (w *watcher) getLink(ctx context.Context) error {
	raw, err := w.g.call(ctx, http.MethodGet, "/v1/links/"+url.PathEscape(w.id)+"?live=1", nil, nil)
	if err != nil {
		return err
	}
	var ll linkLive
	if err := decode(raw, &ll); err != nil {
		return err
	}
	prev := w.link
	w.link, w.failures = ll.current()
	if ll.Live == nil && ll.LiveError != "" && prev.Status == w.link.Status {
		// The workflow did not answer this once: keep what it said
		// last rather than flip the next step back and forth.
		w.link.NextRefreshAt, w.link.ExpiresAt = prev.NextRefreshAt, prev.ExpiresAt
	}
	w.liveErr = ll.LiveError
	return nil
}

func (w *watcher) printEvents(events []tokenwarden.Event) {
	for _, e := range events {
		if w.g.json {
			b, _ := json.Marshal(e) // plain types: cannot fail
			fmt.Fprintln(w.out, string(b))
			continue
		}
		fmt.Fprintln(w.out, eventLine(e))
	}
}

// printNext prints the next step when it changed (not when only the time
// left to it did).
func (w *watcher) printNext() {
	l := w.link
	key := l.Status + "|" + l.NextRefreshAt.String() + "|" + l.ExpiresAt.String()
	if key == w.nextKey || w.g.json {
		return
	}
	w.nextKey = key
	if next := nextStep(l, w.failures, w.liveErr); next != "" {
		fmt.Fprintf(w.out, "%-20s  next: %s\n", time.Now().UTC().Format(time.RFC3339), termSafe(next))
	}
}
