package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/store"
)

func TestValidWebhook(t *testing.T) {
	for _, tc := range []struct {
		url    string
		events []string
		ok     bool
	}{
		{"https://hooks.example/tw?k=v", nil, true},
		{"http://127.0.0.1:8080/hook", []string{"link.revoked", "link.active"}, true},
		{"http://localhost/hook", nil, true},
		{"http://[::1]:9/hook", nil, true},
		{"http://hooks.example/hook", nil, false},
		{"https://user:pw@hooks.example/", nil, false},
		{"https://hooks.example/#frag", nil, false},
		{"ftp://hooks.example/", nil, false},
		{"javascript:alert(1)", nil, false},
		{"//hooks.example/", nil, false},
		{"/relative", nil, false},
		{"", nil, false},
		{"https://" + strings.Repeat("a", 2000) + ".example/", nil, false},
		{"https://hooks.example/", []string{"link.refreshed"}, false},
		{"https://hooks.example/", []string{"link.active", "link.active"}, false},
		// What the probe registered: internal targets over https.
		{"https://169.254.169.254/latest/meta-data", nil, false},
		{"https://10.0.0.1/", nil, false},
		{"https://100.64.0.1/", nil, false},
		{"https://[fd00::1]/", nil, false},
		{"https://[::ffff:10.0.0.1]/", nil, false},
		{"https://metadata.google.internal/computeMetadata/v1/", nil, false},
		{"https://93.184.215.14/hook", nil, true},
	} {
		err := validWebhook(&webhookRequest{URL: tc.url, Events: tc.events})
		if (err == nil) != tc.ok {
			t.Errorf("%.60q %v: err %v, want ok=%v", tc.url, tc.events, err, tc.ok)
		}
		if err != nil && tc.url != "" && strings.Contains(err.Error(), tc.url) {
			t.Errorf("%.60q: the error echoes the URL", tc.url)
		}
	}
}

// The delivery status as GET /v1/webhook shows it: null before the first
// attempt, and a problem kept to printable text however the row was
// written.
func TestWebhookViewDeliveryStatus(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		d    store.WebhookDelivery
		want string
	}{
		{"nothing attempted", store.WebhookDelivery{},
			`"last_delivery":null,"last_success_at":null,"failures_since_last_success":0`},
		{"refused", store.WebhookDelivery{FailuresSinceSuccess: 2, Last: &store.DeliveryAttempt{At: at, EventID: "evt_1",
			EventType: "link.active", Problem: "refused:\x1b[2J internal\r\naddress"}},
			`"last_delivery":{"at":"2030-01-02T03:04:05Z","event":"link.active","event_id":"evt_1","ok":false,"retrying":false,` +
				`"problem":"refused: [2J internal address"},"last_success_at":null,"failures_since_last_success":2`},
		{"delivered", store.WebhookDelivery{LastSuccessAt: &at, Last: &store.DeliveryAttempt{At: at, EventID: "evt_2",
			EventType: "link.revoked", OK: true}},
			`"last_delivery":{"at":"2030-01-02T03:04:05Z","event":"link.revoked","event_id":"evt_2","ok":true,"retrying":false,` +
				`"problem":""},"last_success_at":"2030-01-02T03:04:05Z","failures_since_last_success":0`},
	} {
		b, err := json.Marshal(webhookViewOf(store.Webhook{URL: "https://hooks.example/", Delivery: tc.d}))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), tc.want) {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, b, tc.want)
		}
	}
}
