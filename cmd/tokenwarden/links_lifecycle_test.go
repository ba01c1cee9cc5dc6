package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeTrail is a link and its audit trail as the gateway serves them,
// paged as the gateway pages (limit, opaque cursor past a full page), and
// changeable while a command runs.
type fakeTrail struct {
	mu     sync.Mutex
	link   map[string]any
	events []map[string]any
	// down makes every answer a 503 while set.
	down bool
}

func newFakeTrail(status, grant string, n int) *fakeTrail {
	f := &fakeTrail{link: map[string]any{"id": "lnk_1", "provider": "acme", "user_id": "alice", "grant": grant,
		"status": status, "scopes": []string{}, "metadata": map[string]any{}, "refresh_count": 0,
		"expires_at": "2030-01-01T01:00:00Z", "next_refresh_at": "2030-01-01T00:54:00Z",
		"created_at": "2029-01-01T00:00:00Z", "updated_at": "2029-01-01T00:00:00Z"}}
	for range n {
		f.add("refreshed", "active", "active", nil)
	}
	return f
}

// add appends an event, a second after the previous one.
func (f *fakeTrail) add(typ, from, to string, detail map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := len(f.events)
	if detail == nil {
		detail = map[string]any{"expires_at": time.Date(2030, 1, 1, 1, 0, i, 0, time.UTC).Format(time.RFC3339)}
	}
	f.events = append(f.events, map[string]any{"id": fmt.Sprintf("ev%04d", i), "type": typ, "from_status": from, "to_status": to,
		"detail": detail, "occurred_at": time.Date(2029, 6, 1, 0, 0, i, 0, time.UTC).Format(time.RFC3339)})
}

func (f *fakeTrail) set(k string, v any) {
	f.mu.Lock()
	f.link[k] = v
	f.mu.Unlock()
}

func (f *fakeTrail) setDown(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

func (f *fakeTrail) routes() map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"GET /v1/links/lnk_1": func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.down {
				gatewayError(w, http.StatusServiceUnavailable, "unavailable", "PostgreSQL is unavailable")
				return
			}
			b, _ := json.Marshal(f.link)
			answer(200, string(b))(w, r)
		},
		"GET /v1/links/lnk_1/events": func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.down {
				gatewayError(w, http.StatusServiceUnavailable, "unavailable", "PostgreSQL is unavailable")
				return
			}
			limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
			if limit < 1 || limit > 500 {
				limit = 50
			}
			start := 0
			if c := r.URL.Query().Get("cursor"); c != "" {
				start, _ = strconv.Atoi(strings.TrimPrefix(c, "after-"))
			}
			end := min(start+limit, len(f.events))
			next := ""
			if end < len(f.events) {
				next = "after-" + strconv.Itoa(end)
			}
			b, _ := json.Marshal(map[string]any{"events": f.events[start:end], "next_cursor": next})
			answer(200, string(b))(w, r)
		},
	}
}

func TestLinksGetNextStep(t *testing.T) {
	for _, tc := range []struct {
		status, grant string
		want          []string
	}{
		{"active", "client_credentials", []string{"refresh at 2030-01-01T00:54:00Z (", "before the token expires at 2030-01-01T01:00:00Z"}},
		{"degraded", "client_credentials", []string{"retry at 2030-01-01T00:54:00Z", "the provider is failing", "serves its token while it is valid"}},
		{"pending_authorization", "authorization_code", []string{"waiting for the end-user to consent at the authorization_url"}},
		{"pending_authorization", "device_code", []string{"waiting for the end-user to enter the code"}},
		{"reauth_required", "authorization_code", []string{"the end-user must authorize again", "POST /v1/links/lnk_1/reauthorize", "authorization_url"}},
		{"reauth_required", "password", []string{"POST /v1/links/lnk_1/reauthorize", `"credentials"`}},
		{"reauth_required", "client_credentials", []string{"fix its client secret", "POST /v1/links/lnk_1/reauthorize"}},
		{"failed", "authorization_code", []string{"nothing: the link ended without a token", "tokenwarden links create"}},
		{"revoked", "client_credentials", []string{"nothing: the link is revoked for good"}},
	} {
		t.Run(tc.status+"/"+tc.grant, func(t *testing.T) {
			newFakeGateway(t, newFakeTrail(tc.status, tc.grant, 1).routes())
			out, _, err := runCLI(t, "get", "lnk_1")
			require.NoError(t, err)
			var next string
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, "Next: ") {
					next = line
				}
			}
			require.NotEmpty(t, next, out)
			for _, w := range tc.want {
				assert.Contains(t, next, w)
			}
		})
	}
}

func TestLinksGetTimeline(t *testing.T) {
	for _, tc := range []struct {
		name    string
		events  int
		heading string
	}{
		{"none yet", 0, "Recent events: none yet"},
		{"a few, all shown", 3, "Recent events (oldest first):"},
		{"the last ten of many, across pages", 1234, "Recent events (the last 10 of 1234, oldest first;"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGateway(t, newFakeTrail("active", "client_credentials", tc.events).routes())
			out, _, err := runCLI(t, "get", "lnk_1")
			require.NoError(t, err)
			assert.Contains(t, out, tc.heading)
			lines := timelineLines(out)
			require.Len(t, lines, min(tc.events, 10), out)
			if tc.events > 0 {
				// Oldest first, the newest last.
				assert.True(t, strings.HasPrefix(lines[0], "  2029-06-01T"), lines[0])
				assert.Contains(t, lines[len(lines)-1], "token expires 2030-01-01T01:"+fmt.Sprintf("%02d:%02d", (tc.events-1)/60, (tc.events-1)%60)+"Z")
				assert.Contains(t, lines[0], "refreshed")
				assert.Contains(t, lines[0], "active")
			}
			if tc.events > 500 {
				req, _ := g.last(t)
				assert.Equal(t, "500", req.URL.Query().Get("limit"), "a long trail is walked in the largest pages")
				assert.Equal(t, 1+3, g.count(), "the link, then three pages")
			}
		})
	}
}

// timelineLines are the event lines after the "Recent events" heading.
func timelineLines(out string) []string {
	_, after, ok := strings.Cut(out, "Recent events")
	if !ok {
		return nil
	}
	var lines []string
	for _, l := range strings.Split(after, "\n")[1:] {
		if strings.HasPrefix(l, "  ") {
			lines = append(lines, l)
		}
	}
	return lines
}

// An event's detail is provider text (last_error copied by the workflow):
// no terminal escape or line break reaches the terminal.
func TestLinksGetTimelineEscapesDetail(t *testing.T) {
	f := newFakeTrail("reauth_required", "authorization_code", 0)
	f.add("reauth_required", "active", "reauth_required", map[string]any{"message": "invalid_grant: \x1b]0;owned\x07\r\n  2030-01-01T00:00:00Z  revoked"})
	newFakeGateway(t, f.routes())
	out, _, err := runCLI(t, "get", "lnk_1")
	require.NoError(t, err)
	assert.NotContains(t, out, "\x1b")
	assert.NotContains(t, out, "\r")
	lines := timelineLines(out)
	require.Len(t, lines, 1, "no forged line:\n%s", out)
	assert.Contains(t, lines[0], `active -> reauth_required`)
	assert.Contains(t, lines[0], `invalid_grant: \x1b]0;owned\a\r\n  2030-01-01T00:00:00Z  revoked`)
}

// syncBuffer is a buffer a running command writes while the test reads it.
type syncBuffer = e2e.SyncBuffer

// watchRun is a 'links watch' running in the background.
type watchRun struct {
	out, errOut *syncBuffer
	cancel      context.CancelFunc
	done        chan error
}

func startWatch(t *testing.T, args ...string) *watchRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watchRun{out: &syncBuffer{}, errOut: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { w.done <- runLinks(ctx, append([]string{"watch"}, args...), w.out, w.errOut) }()
	t.Cleanup(func() {
		cancel()
		<-w.done
	})
	return w
}

// waitFor polls the buffer until it contains want.
func waitFor(t *testing.T, buf *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(buf.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within 30 s; output so far:\n%s", want, buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop interrupts the watch as Ctrl-C does and returns its error.
func (w *watchRun) stop(t *testing.T) error {
	t.Helper()
	w.cancel()
	select {
	case err := <-w.done:
		w.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not end after its context was cancelled")
		return nil
	}
}

func TestLinksWatchFollowsEventsAndNextSteps(t *testing.T) {
	f := newFakeTrail("active", "client_credentials", 7)
	newFakeGateway(t, f.routes())
	w := startWatch(t, "lnk_1", "--interval", "100ms")
	waitFor(t, w.out, "Watching link lnk_1 (acme, user alice), status active; Ctrl-C to stop.")
	waitFor(t, w.out, "next: refresh at 2030-01-01T00:54:00Z")
	assert.Equal(t, watchContext, strings.Count(w.out.String(), "refreshed"), "the last few events first")

	// A forced refresh: its event appears, with the new next step.
	f.add("refreshed", "active", "active", map[string]any{"expires_at": "2030-01-01T02:00:00Z"})
	f.set("next_refresh_at", "2030-01-01T01:54:00Z")
	waitFor(t, w.out, "token expires 2030-01-01T02:00:00Z")
	waitFor(t, w.out, "next: refresh at 2030-01-01T01:54:00Z")

	// The provider fails: the status change and what it means.
	f.add("refresh_failed", "active", "degraded", map[string]any{"message": "HTTP 503 from the token endpoint"})
	f.set("status", "degraded")
	waitFor(t, w.out, "active -> degraded")
	waitFor(t, w.out, "HTTP 503 from the token endpoint")
	waitFor(t, w.out, "next: retry at 2030-01-01T01:54:00Z")

	// The gateway goes away for a while: said once, then followed again.
	f.setDown(true)
	waitFor(t, w.errOut, "PostgreSQL is unavailable (unavailable); still watching")
	f.add("recovered", "degraded", "active", map[string]any{})
	f.set("status", "active")
	f.setDown(false)
	waitFor(t, w.errOut, "the gateway answers again")
	waitFor(t, w.out, "degraded -> active")
	assert.Equal(t, 1, strings.Count(w.errOut.String(), "still watching"), w.errOut.String())

	require.NoError(t, w.stop(t), "Ctrl-C ends a watch cleanly")
	assert.Equal(t, 1, strings.Count(w.out.String(), "token expires 2030-01-01T02:00:00Z"), "each event once:\n%s", w.out.String())
}

func TestLinksWatchEndsWithTheLink(t *testing.T) {
	f := newFakeTrail("active", "client_credentials", 1)
	newFakeGateway(t, f.routes())
	w := startWatch(t, "lnk_1", "--interval", "100ms")
	waitFor(t, w.out, "Watching link lnk_1")
	f.add("revoked", "active", "revoked", map[string]any{"message": "user left"})
	f.set("status", "revoked")
	select {
	case err := <-w.done:
		w.done <- err
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the watch goes on after the link was revoked")
	}
	out := w.out.String()
	assert.Contains(t, out, "active -> revoked")
	assert.Contains(t, out, "next: nothing: the link is revoked for good")
	assert.Contains(t, out, "The link is revoked: nothing more will happen to it.")
}

func TestLinksWatchJSON(t *testing.T) {
	f := newFakeTrail("active", "client_credentials", 2)
	newFakeGateway(t, f.routes())
	w := startWatch(t, "lnk_1", "--json", "--interval", "100ms")
	waitFor(t, w.out, `"id":"ev0001"`)
	f.add("refresh_failed", "active", "degraded", map[string]any{"message": "boom"})
	waitFor(t, w.out, `"id":"ev0002"`)
	require.NoError(t, w.stop(t))
	for _, line := range strings.Split(strings.TrimSpace(w.out.String()), "\n") {
		var ev map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &ev), "one JSON event per line: %q", line)
		assert.NotEmpty(t, ev["type"])
	}
}

func TestLinksWatchBadInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		noKey bool
		want  []string
	}{
		{"unknown link", []string{"lnk_missing"}, false, []string{"no such link (not_found)", "hint: 'tokenwarden links list' shows the links"}},
		{"no API key", []string{"lnk_1"}, true, []string{"no API key: set TOKENWARDEN_API_KEY or pass --api-key"}},
		{"no link id", nil, false, []string{"give exactly one link id"}},
		{"interval too short", []string{"lnk_1", "--interval", "1ms"}, false, []string{"--interval must be at least 100ms", "--interval 2s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			newFakeGateway(t, newFakeTrail("active", "client_credentials", 1).routes())
			if tc.noKey {
				t.Setenv("TOKENWARDEN_API_KEY", "")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out, errOut bytes.Buffer
			err := runLinks(ctx, append([]string{"watch"}, tc.args...), &out, &errOut)
			require.Error(t, err, "a watch that cannot start fails at once")
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, out.String(), "Watching")
		})
	}
}

// Before its first refresh a link's row has no next_refresh_at; the
// workflow's own view (?live=1) has, and 'links get' shows it.
func TestLinksGetUsesTheWorkflowsView(t *testing.T) {
	f := newFakeTrail("active", "client_credentials", 1)
	f.set("next_refresh_at", nil)
	f.set("live", map[string]any{"status": "degraded", "expires_at": "2030-01-01T01:00:00Z",
		"next_refresh_at": "2030-01-01T00:10:00Z", "failures": 3})
	g := newFakeGateway(t, f.routes())
	out, _, err := runCLI(t, "get", "lnk_1")
	require.NoError(t, err)
	g.mu.Lock()
	first := g.reqs[0]
	g.mu.Unlock()
	assert.Equal(t, "1", first.URL.Query().Get("live"), "the workflow is asked")
	assert.True(t, hasRow(out, "status", "degraded"), out)
	assert.Regexp(t, `(?m)^next refresh\s+2030-01-01T00:10:00Z`, out)
	assert.Contains(t, out, "Next: retry at 2030-01-01T00:10:00Z")
	assert.Contains(t, out, "(3 failed attempts so far)")

	out, _, err = runCLI(t, "get", "lnk_1", "--json")
	require.NoError(t, err)
	req, _ := g.last(t)
	assert.False(t, req.URL.Query().Has("live"), "--json is the stored link, as before")
	assert.NotContains(t, out, "Recent events")
}

// A workflow that cannot be asked (no worker running) leaves the next
// refresh unknown, and says so rather than "nothing scheduled".
func TestLinksGetWithoutTheWorkflowsView(t *testing.T) {
	f := newFakeTrail("active", "client_credentials", 1)
	f.set("next_refresh_at", nil)
	f.set("live_error", "the workflow could not be queried")
	newFakeGateway(t, f.routes())
	out, _, err := runCLI(t, "get", "lnk_1")
	require.NoError(t, err)
	assert.Contains(t, out, "Next: not known: the workflow could not be queried (is a worker running?)")
	assert.True(t, hasRow(out, "next refresh", "-"), out)
}

// A workflow that does not answer one poll does not make the next step
// flip to the stored row's and back.
func TestLinksWatchKeepsTheLastWorkflowView(t *testing.T) {
	f := newFakeTrail("active", "client_credentials", 1)
	f.set("next_refresh_at", nil)
	f.set("live", map[string]any{"status": "active", "expires_at": "2030-01-01T01:00:00Z", "next_refresh_at": "2030-01-01T00:10:00Z"})
	newFakeGateway(t, f.routes())
	w := startWatch(t, "lnk_1", "--interval", "100ms")
	waitFor(t, w.out, "next: refresh at 2030-01-01T00:10:00Z")
	f.set("live", nil)
	f.set("live_error", "the workflow could not be queried")
	f.add("refreshed", "active", "active", map[string]any{"expires_at": "2030-01-01T03:00:00Z"})
	waitFor(t, w.out, "token expires 2030-01-01T03:00:00Z")
	require.NoError(t, w.stop(t))
	assert.Equal(t, 1, strings.Count(w.out.String(), "next:"), w.out.String())
}
