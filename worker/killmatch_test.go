package worker_test

import (
	"slices"
	"testing"
	"time"
)

// TestKillMatchingExplainsOnlyOwnRequests plants what the kill test's
// matching must tell apart: a lost link whose own refresh was in flight at
// a kill (explained), one whose refresh finished before any kill while
// another link's was in flight (not explained: that is how the old count
// excused losses), one whose reply had just come back (explained: it was
// not stored yet), and one with no token left to match (not explained).
func TestKillMatchingExplainsOnlyOwnRequests(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	log := &callLog{}
	log.add(call{start: at(0), end: at(800), rt: "rt-a"})       // a: in flight at the kill at 700
	log.add(call{start: at(0), end: at(50), rt: "rt-b"})        // b: stored long before it
	log.add(call{start: at(650), end: at(750), rt: "rt-other"}) // someone else's, in flight
	log.add(call{start: at(1900), end: at(1960), rt: "rt-c"})   // c: reply back 40 ms before the kill at 2000
	kills := []time.Time{at(700), at(2000)}
	spent := map[string]string{"a": "rt-a", "b": "rt-b", "c": "rt-c"}
	got := log.unexplained([]string{"a", "b", "c", "d"}, spent, kills)
	if want := []string{"b", "d"}; !slices.Equal(got, want) {
		t.Errorf("unexplained = %v, want %v", got, want)
	}
	if n := log.inFlight(at(700), killGrace); n != 2 {
		t.Errorf("in flight at the first kill: %d, want 2 (the old check excused any loss up to that count, b's too)", n)
	}
}

// TestDeadReplaysCountOnlyLostTokens: the rejections a lost link explains
// are the requests with its stored, spent refresh token after the one
// that rotated it, twice when a kill took the first rejection's answer;
// a living link's requests explain none.
func TestDeadReplaysCountOnlyLostTokens(t *testing.T) {
	for _, tc := range []struct {
		name  string
		calls []string // refresh tokens spent, in order
		spent map[string]string
		want  int
	}{
		{"no loss", []string{"rt-1", "rt-2"}, map[string]string{}, 0},
		{"lost, found once", []string{"rt-1", "rt-2", "rt-2"}, map[string]string{"a": "rt-2"}, 1},
		{"lost, the rejection's answer killed", []string{"rt-2", "rt-2", "rt-2"}, map[string]string{"a": "rt-2"}, 2},
		{"a living link's replay is not explained", []string{"rt-1", "rt-1", "rt-2", "rt-2"}, map[string]string{"a": "rt-2"}, 1},
		{"lost before any replay", []string{"rt-2"}, map[string]string{"a": "rt-2"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &callLog{}
			for _, rt := range tc.calls {
				log.add(call{rt: rt})
			}
			if got := log.deadReplays(tc.spent); got != tc.want {
				t.Errorf("deadReplays = %d, want %d", got, tc.want)
			}
		})
	}
}
