package activities

import (
	"context"
	"errors"
	"net/http"
	"testing"
)

// TestWebhookDialRefusesSpecialPurposeRanges: the dial-time check covers
// every special-purpose range, also those the first list missed
// (carrier-grade NAT 100.64.0.0/10, 192.0.0.0/24, 198.18.0.0/15,
// 240.0.0.0/4, NAT64 and 6to4 prefixes).
func TestWebhookDialRefusesSpecialPurposeRanges(t *testing.T) {
	c := newWebhookClient(false)
	for _, addr := range []string{"100.64.0.1:443", "192.0.0.1:443", "198.18.0.1:443", "240.0.0.1:443", "[64:ff9b::a00:1]:443", "[2002:a00:1::1]:443"} {
		conn, err := c.Transport.(*http.Transport).DialContext(context.Background(), "tcp", addr)
		if err == nil {
			conn.Close()
		}
		if !errors.Is(err, errBlockedAddress) {
			t.Errorf("dial %s: %v, want it refused as internal", addr, err)
		}
	}
}
