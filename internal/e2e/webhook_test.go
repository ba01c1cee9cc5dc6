package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// hookReceiver is a tenant's webhook endpoint.
type hookReceiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []hookRequest
}

type hookRequest struct {
	sig, eventID string
	body         []byte
	event        tokenwarden.WebhookEvent
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		h := hookRequest{sig: req.Header.Get(tokenwarden.HeaderWebhookSignature), eventID: req.Header.Get(tokenwarden.HeaderWebhookEventID), body: body}
		if err := json.Unmarshal(body, &h.event); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.got = append(r.got, h)
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// wait polls until an event of type typ for link arrived.
func (r *hookReceiver) wait(t *testing.T, link, typ string) hookRequest {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, h := range r.got {
			if h.event.Type == typ && h.event.Data.LinkID == link {
				r.mu.Unlock()
				return h
			}
		}
		r.mu.Unlock()
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no %s webhook for link %s within 60 s", typ, link)
	return hookRequest{}
}

func TestRevokeSendsSignedWebhook(t *testing.T) {
	t.Parallel()
	peer := oidcpeer.StartT(t, oidcpeer.Options{AccessTokenTTL: time.Hour})
	s := e2e.Start(t, e2e.PeerClientCredentials(peer))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	recv := newHookReceiver(t)

	hook, err := s.Client.SetWebhook(ctx, recv.srv.URL+"/tw", []string{tokenwarden.EventLinkActive, tokenwarden.EventLinkRevoked})
	if err != nil {
		t.Fatalf("set webhook: %v", err)
	}
	if !strings.HasPrefix(hook.Secret, "whsec_") {
		t.Fatal("creating the webhook did not return its secret")
	}
	s.Remember(hook.Secret)
	shown, err := s.Client.GetWebhook(ctx)
	if err != nil || shown.Secret != "" || shown.URL != recv.srv.URL+"/tw" {
		t.Fatalf("get webhook: err %v, url %q, secret shown %v", err, shown.URL, shown.Secret != "")
	}
	again, err := s.Client.SetWebhook(ctx, recv.srv.URL+"/tw", []string{tokenwarden.EventLinkActive, tokenwarden.EventLinkRevoked})
	if err != nil || again.Secret != "" {
		t.Fatalf("replacing the webhook: err %v, secret shown again %v", err, again.Secret != "")
	}

	link, err := s.Client.CreateLink(ctx, tokenwarden.CreateLinkRequest{Provider: "peer", UserID: "svc", Grant: tokenwarden.GrantClientCredentials}, "")
	if err != nil {
		t.Fatalf("create link: %v", err)
	}
	s.WaitFor(ctx, link.ID, "active", e2e.Status(workflows.StatusActive))
	active := recv.wait(t, link.ID, tokenwarden.EventLinkActive)
	if err := tokenwarden.VerifyWebhook(hook.Secret, active.sig, active.body, time.Minute); err != nil {
		t.Fatalf("link.active signature: %v", err)
	}

	// Rotate: later deliveries are signed with the new secret only.
	rotated, err := s.Client.RotateWebhookSecret(ctx)
	if err != nil || rotated.Secret == "" || rotated.Secret == hook.Secret {
		t.Fatalf("rotate: err %v, new secret returned %v", err, rotated != nil && rotated.Secret != "" && rotated.Secret != hook.Secret)
	}
	s.Remember(rotated.Secret)

	if err := s.Client.Revoke(ctx, link.ID, "e2e"); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	revoked := recv.wait(t, link.ID, tokenwarden.EventLinkRevoked)
	if err := tokenwarden.VerifyWebhook(rotated.Secret, revoked.sig, revoked.body, time.Minute); err != nil {
		t.Fatalf("link.revoked signature: %v", err)
	}
	if err := tokenwarden.VerifyWebhook(hook.Secret, revoked.sig, revoked.body, time.Minute); err == nil {
		t.Fatal("the rotated-out secret still verifies")
	}
	ev := revoked.event
	if revoked.eventID != ev.ID || !strings.HasPrefix(ev.ID, "evt_") || ev.ID == active.event.ID {
		t.Errorf("event ids: header %q, body %q, active %q", revoked.eventID, ev.ID, active.event.ID)
	}
	if ev.Data.TenantID != e2e.Tenant || ev.Data.Provider != "peer" || ev.Data.Status != "revoked" || ev.CreatedAt.IsZero() {
		t.Errorf("link.revoked data = %+v", ev)
	}

	// The audit trail tells the same story, a page at a time.
	var types []string
	cursor := ""
	for page := 0; ; page++ {
		p, err := s.Client.Events(ctx, link.ID, cursor, 2)
		if err != nil {
			t.Fatalf("events: %v", err)
		}
		if len(p.Events) > 2 {
			t.Fatalf("page of %d events, asked for 2", len(p.Events))
		}
		for _, e := range p.Events {
			types = append(types, e.Type)
		}
		if cursor = p.NextCursor; cursor == "" || page > 10 {
			break
		}
	}
	if len(types) < 2 || types[0] != "enrolled" || types[len(types)-1] != "revoked" {
		t.Errorf("audit trail = %v, want enrolled ... revoked", types)
	}

	// No routine refresh or other type was delivered, and nothing
	// holds the secrets but Vault.
	recv.mu.Lock()
	for _, h := range recv.got {
		if h.event.Type != tokenwarden.EventLinkActive && h.event.Type != tokenwarden.EventLinkRevoked {
			t.Errorf("unsubscribed event %s delivered", h.event.Type)
		}
	}
	recv.mu.Unlock()
	assertNotInPostgres(t, s, hook.Secret, rotated.Secret)

	if err := s.Client.DeleteWebhook(ctx); err != nil {
		t.Fatalf("delete webhook: %v", err)
	}
	if _, err := s.Client.GetWebhook(ctx); tokenwarden.ErrorCode(err) != tokenwarden.CodeNotFound {
		t.Fatalf("webhook after delete: %v", err)
	}
	if _, err := s.Secrets.ReadWebhookSecret(ctx, e2e.Tenant); err == nil {
		t.Fatal("the signing secret outlived its webhook")
	}
}

// assertNotInPostgres fails if any table of the stack's schema holds one
// of secrets. (ScanForSecrets would also replay the delivery workflows as
// link workflows, so this test checks the tables itself.)
func assertNotInPostgres(t *testing.T, s *e2e.Stack, secrets ...string) {
	t.Helper()
	ctx := context.Background()
	rows, err := s.Pool.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1`, s.Schema)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		_ = rows.Scan(&name)
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) < 5 {
		t.Fatalf("only %d tables in the schema", len(tables))
	}
	for _, tbl := range tables {
		var dump string
		if err := s.Pool.QueryRow(ctx, fmt.Sprintf(`SELECT coalesce(string_agg(t::text, E'\n'), '') FROM %q t`, tbl)).Scan(&dump); err != nil {
			t.Fatal(err)
		}
		for _, sec := range secrets {
			if strings.Contains(dump, sec) {
				t.Errorf("a webhook secret leaked into table %s", tbl)
			}
		}
	}
	for _, sec := range secrets {
		if strings.Contains(s.Logs.String(), sec) {
			t.Error("a webhook secret leaked into the logs")
		}
	}
}
