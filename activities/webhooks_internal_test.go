package activities

import (
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
)

// The delivery workflow's policy: 10 s doubling to an hour, for 24 h.
func TestNoRetryLeft(t *testing.T) {
	policy := &temporal.RetryPolicy{InitialInterval: 10 * time.Second, BackoffCoefficient: 2, MaximumInterval: time.Hour}
	first := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const window = 24 * time.Hour
	for _, tc := range []struct {
		name    string
		p       *temporal.RetryPolicy
		attempt int32
		now     time.Time
		want    bool
	}{
		{"first attempt", policy, 1, first, false},
		{"an hour before the end, backoff capped at an hour", policy, 30, first.Add(23*time.Hour - time.Minute), false},
		{"the next backoff ends past the window", policy, 30, first.Add(23*time.Hour + time.Minute), true},
		{"early attempt near the end: 10 s still fit", policy, 1, first.Add(window - 11*time.Second), false},
		{"early attempt near the end: 10 s do not", policy, 1, first.Add(window - 9*time.Second), true},
		{"huge attempt numbers do not overflow", &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2}, 5000, first.Add(time.Second), true},
		{"attempts used up", &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3}, 3, first, true},
		{"attempts left", &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3}, 2, first, false},
		{"no policy known", nil, 99, first.Add(48 * time.Hour), false},
	} {
		if got := noRetryLeft(tc.p, tc.attempt, first, window, tc.now); got != tc.want {
			t.Errorf("%s: noRetryLeft = %v, want %v", tc.name, got, tc.want)
		}
	}
	if noRetryLeft(policy, 1, time.Time{}, window, first) || noRetryLeft(policy, 1, first, 0, first) {
		t.Error("without the window's facts it must answer false")
	}
}
