package gateway

import (
	"strings"
	"testing"
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
