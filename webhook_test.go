package tokenwarden

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func sign(secret string, t time.Time, body string) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + body))
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

func TestVerifyWebhook(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	body := `{"id":"evt_1","type":"link.revoked"}`
	good := sign("whsec_a", now, body)
	for _, tc := range []struct {
		name, secret, header, body string
		ok                         bool
	}{
		{"valid", "whsec_a", good, body, true},
		{"valid among several signatures", "whsec_a", good + ",v1=" + hex.EncodeToString(make([]byte, 32)), body, true},
		{"wrong secret", "whsec_b", good, body, false},
		{"tampered body", "whsec_a", good, body + " ", false},
		{"too old", "whsec_a", sign("whsec_a", now.Add(-10*time.Minute), body), body, false},
		{"from the future", "whsec_a", sign("whsec_a", now.Add(10*time.Minute), body), body, false},
		{"timestamp swapped", "whsec_a", "t=" + strconv.FormatInt(now.Unix()-1, 10) + good[len("t=1900000000"):], body, false},
		{"no signature", "whsec_a", "t=1900000000", body, false},
		{"empty header", "whsec_a", "", body, false},
		{"empty secret", "", good, body, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := verifyWebhook(tc.secret, tc.header, []byte(tc.body), 5*time.Minute, now)
			if tc.ok && err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrWebhookSignature) {
				t.Fatalf("accepted or wrong error: %v", err)
			}
		})
	}
}

func TestGetWebhookDeliveryStatus(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       Webhook
	}{
		{"nothing attempted", `{"url":"https://hooks.example/","events":[],"created_at":"2030-01-01T00:00:00Z","updated_at":"2030-01-01T00:00:00Z",
			"last_delivery":null,"last_success_at":null,"failures_since_last_success":0}`,
			Webhook{URL: "https://hooks.example/", Events: []string{}, CreatedAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), UpdatedAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"refused", `{"url":"https://hooks.example/","events":["link.active"],"created_at":"2030-01-01T00:00:00Z","updated_at":"2030-01-01T00:00:00Z",
			"last_delivery":{"at":"2030-01-02T00:00:00Z","event":"link.active","event_id":"evt_1","ok":false,"retrying":false,"problem":"refused: internal address"},
			"last_success_at":"2030-01-01T12:00:00Z","failures_since_last_success":3}`,
			Webhook{URL: "https://hooks.example/", Events: []string{EventLinkActive}, CreatedAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), UpdatedAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
				LastDelivery:  &WebhookDelivery{At: time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC), Event: EventLinkActive, EventID: "evt_1", Problem: "refused: internal address"},
				LastSuccessAt: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC), FailuresSinceLastSuccess: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.URL.Path != "/v1/webhook" {
					writeError(w, http.StatusNotFound, "not_found", "no route")
					return
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, tc.body)
			})
			got, err := g.client().GetWebhook(context.Background())
			require.NoError(t, err)
			require.Equal(t, tc.want, *got)
		})
	}
}
