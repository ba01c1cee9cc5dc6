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
	log.add(call{start: at(0), end: at(400), rt: "rt-a"})       // a: in flight at the kill at 300
	log.add(call{start: at(0), end: at(50), rt: "rt-b"})        // b: stored long before it
	log.add(call{start: at(250), end: at(350), rt: "rt-other"}) // someone else's, in flight
	log.add(call{start: at(900), end: at(960), rt: "rt-c"})     // c: reply back 40 ms before the kill at 1000
	kills := []time.Time{at(300), at(1000)}
	spent := map[string]string{"a": "rt-a", "b": "rt-b", "c": "rt-c"}
	got := log.unexplained([]string{"a", "b", "c", "d"}, spent, kills)
	if want := []string{"b", "d"}; !slices.Equal(got, want) {
		t.Errorf("unexplained = %v, want %v", got, want)
	}
	if n := log.inFlight(at(300), killGrace); n != 2 {
		t.Errorf("in flight at the first kill: %d, want 2 (the old check excused any loss up to that count, b's too)", n)
	}
}
