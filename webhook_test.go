package tokenwarden

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"testing"
	"time"
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
