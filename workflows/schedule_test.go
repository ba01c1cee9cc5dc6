package workflows

import (
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/providers"
)

func TestNextRefresh(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	def := providers.Schedule{MinMargin: time.Minute, Fraction: 0.2, Jitter: 0}
	tests := []struct {
		name           string
		s              providers.Schedule
		now            time.Time
		expires        time.Duration // after t0
		refreshExpires time.Duration // after t0; 0: none
		want           time.Duration // after t0
	}{
		{"one-hour token: 20% margin", def, t0, time.Hour, 0, 48 * time.Minute},
		{"five-minute token: min margin wins", def, t0, 5 * time.Minute, 0, 4 * time.Minute},
		{"90-second token: margin capped at half the lifetime", def, t0, 90 * time.Second, 0, 45 * time.Second},
		{"5-second token never loops", def, t0, 5 * time.Second, 0, 2500 * time.Millisecond},
		{"refresh token dies first", def, t0, time.Hour, 10 * time.Minute, 8 * time.Minute},
		{"Keycloak 15/30 minutes: access token decides", def, t0, 15 * time.Minute, 30 * time.Minute, 12 * time.Minute},
		{"already expired: at least a second from now", def, t0.Add(2 * time.Hour), time.Hour, 0, 2*time.Hour + time.Second},
		{"zero schedule gets defaults", providers.Schedule{Jitter: 0.0000001}, t0, time.Hour, 0, 48 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rexp time.Time
			if tt.refreshExpires > 0 {
				rexp = t0.Add(tt.refreshExpires)
			}
			got := NextRefresh(tt.s, tt.now, t0, t0.Add(tt.expires), rexp, "seed")
			if d := got.Sub(t0.Add(tt.want)); d < -time.Second || d > time.Second {
				t.Fatalf("NextRefresh = t0+%s, want t0+%s", got.Sub(t0), tt.want)
			}
		})
	}
}

func TestNextRefreshJitterOnlyEarlierAndSpread(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	s := providers.Schedule{MinMargin: time.Minute, Fraction: 0.2, Jitter: 0.1}
	nominal := t0.Add(48 * time.Minute)
	seen := map[time.Time]bool{}
	for i := 0; i < 200; i++ {
		at := NextRefresh(s, t0, t0, t0.Add(time.Hour), time.Time{}, seedFor("lnk", int64(i)))
		if at.After(nominal) {
			t.Fatalf("jitter made a refresh later than nominal: %s", at.Sub(nominal))
		}
		if nominal.Sub(at) > 72*time.Second+time.Millisecond { // 10 % of a 12-minute margin
			t.Fatalf("jitter beyond 10%% of the margin: %s", nominal.Sub(at))
		}
		seen[at] = true
		// Deterministic: the same seed, the same instant (replay).
		if again := NextRefresh(s, t0, t0, t0.Add(time.Hour), time.Time{}, seedFor("lnk", int64(i))); !again.Equal(at) {
			t.Fatal("NextRefresh is not deterministic")
		}
	}
	if len(seen) < 150 {
		t.Fatalf("jitter spreads 200 links over only %d instants", len(seen))
	}
}

func TestBackoff(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	far := now.Add(24 * time.Hour)
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		if got := Backoff(i+1, now, far); got != w {
			t.Errorf("Backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	// A token still valid for 30 s gets tried again within 15 s.
	if got := Backoff(6, now, now.Add(30*time.Second)); got != 15*time.Second {
		t.Errorf("Backoff near expiry = %s, want 15s", got)
	}
}
