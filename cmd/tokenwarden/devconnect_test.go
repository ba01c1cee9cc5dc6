package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The dev stack prints a connect URL once the gateway answers: a gateway
// still starting (503) is waited for; one that refuses says so in the log
// and prints nothing.
func TestPrintConnectURL(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answers  []int
		printed  bool
		requests int64
	}{
		{"gateway starting", []int{http.StatusServiceUnavailable, http.StatusCreated}, true, 2},
		{"gateway refuses", []int{http.StatusBadRequest}, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := n.Add(1) - 1
				body, _ := io.ReadAll(r.Body)
				if r.URL.Path != "/v1/connect/sessions" || !strings.Contains(string(body), `"user_id":"`+devConnectUser+`"`) ||
					!strings.Contains(string(body), `"expires_in":3600`) {
					t.Errorf("unexpected request %s %s", r.URL.Path, body)
				}
				status := tc.answers[min(int(i), len(tc.answers)-1)]
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				if status == http.StatusCreated {
					_, _ = w.Write([]byte(`{"id":"cs_1","token":"cst_x","connect_url":"http://127.0.0.1:8080/connect?session=cst_x","expires_at":"2026-01-01T10:00:00Z"}`))
					return
				}
				_, _ = w.Write([]byte(`{"error":{"code":"x","message":"no"}}`))
			}))
			defer gw.Close()
			var out, logs bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			printConnectURL(ctx, &out, gw.URL, "key", slog.New(slog.NewTextHandler(&logs, nil)))
			if got := strings.Contains(out.String(), "Connect page  http://127.0.0.1:8080/connect?session=cst_x"); got != tc.printed {
				t.Fatalf("printed %q, want a connect URL: %v", out.String(), tc.printed)
			}
			if n.Load() != tc.requests {
				t.Fatalf("%d requests, want %d", n.Load(), tc.requests)
			}
			if !tc.printed && !strings.Contains(logs.String(), "connect page: no session") {
				t.Fatalf("log %q says nothing", logs.String())
			}
		})
	}
}

// devConnectPageWorks: `tokenwarden dev` printed a connect URL, and its
// page offers the dev catalog's providers that have a consent page or a
// password form.
func devConnectPageWorks(t *testing.T, urls <-chan string) {
	t.Helper()
	var u string
	select {
	case u = <-urls:
	case <-time.After(60 * time.Second):
		t.Error("tokenwarden dev printed no connect page")
		return
	}
	if !strings.HasPrefix(u, "http://127.0.0.1:") || !strings.Contains(u, "/connect?session=cst_") {
		t.Errorf("the printed connect page is not the gateway's (%d characters)", len(u))
		return
	}
	resp, err := http.Get(strings.Fields(u)[0])
	if err != nil {
		t.Errorf("GET the connect page: %v", err)
		return
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"Connect an account", "Connect oidc-peer", "Connect finapi", "Connect luca", "Connect everifin", "Connect finapi-demobank"} {
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), want) {
			t.Errorf("the connect page (HTTP %d) lacks %q", resp.StatusCode, want)
		}
	}
	if strings.Contains(string(page), "Connect norman") {
		t.Error("the connect page offers norman, which has neither a consent page nor a password grant")
	}
}
