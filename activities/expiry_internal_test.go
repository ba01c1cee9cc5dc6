package activities

import (
	"testing"
	"time"
)

func TestConservativeExpiry(t *testing.T) {
	sent := time.Date(2026, 1, 1, 12, 0, 0, 300e6, time.UTC)
	obtained := sent.Add(200 * time.Millisecond)
	// The provider package computed obtained + expires_in (4 s); the
	// server counted from floor(its now) = 12:00:00.
	got := conservativeExpiry(obtained.Add(4*time.Second), sent, obtained)
	if want := sent.Add(3 * time.Second); !got.Equal(want) {
		t.Fatalf("expiry %s, want sent + 4 s - 1 s = %s", got, want)
	}
	if serverExpiry := time.Date(2026, 1, 1, 12, 0, 4, 0, time.UTC); got.After(serverExpiry) {
		t.Fatalf("expiry %s after the server's %s", got, serverExpiry)
	}
}

func TestLease(t *testing.T) {
	var l *lease
	if l.lost(time.Now()) {
		t.Fatal("no lease is never lost")
	}
	l = &lease{}
	if l.lost(time.Now()) {
		t.Fatal("an unlimited lease is never lost")
	}
	now := time.Now()
	l.extend(now.Add(time.Second))
	if l.lost(now) || !l.lost(now.Add(time.Second)) {
		t.Fatal("lease bounds")
	}
	l.extend(now) // never shortened
	if l.lost(now.Add(500 * time.Millisecond)) {
		t.Fatal("extend shortened the lease")
	}
}
