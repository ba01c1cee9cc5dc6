package providers

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func TestScheduleDefaultsAndJSON(t *testing.T) {
	s := DefaultSchedule()
	require.NoError(t, s.Validate())
	assert.Equal(t, 60*time.Second, s.MinMargin)
	assert.Equal(t, time.Hour, s.DefaultLifetime)

	var overlaid Schedule = DefaultSchedule()
	require.NoError(t, yaml.Unmarshal([]byte("{min_margin: 90s, jitter: 0}"), &overlaid))
	assert.Equal(t, 90*time.Second, overlaid.MinMargin)
	assert.Equal(t, 0.0, overlaid.Jitter, "an explicit zero is kept")
	assert.Equal(t, 0.2, overlaid.Fraction)

	b, err := json.Marshal(overlaid)
	require.NoError(t, err)
	var back Schedule
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, overlaid, back)
}

func TestScheduleNext(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := DefaultSchedule()
	tests := []struct {
		name                  string
		expiry, refreshExpiry time.Time
		u                     float64
		want                  time.Time
	}{
		{"fraction of an hour", now.Add(time.Hour), time.Time{}, 0, now.Add(48 * time.Minute)},
		{"min margin for short tokens", now.Add(2 * time.Minute), time.Time{}, 0, now.Add(time.Minute)},
		{"jitter only earlier", now.Add(time.Hour), time.Time{}, 0.5, now.Add(48*time.Minute - 36*time.Second)},
		{"unknown expiry uses the default lifetime", time.Time{}, time.Time{}, 0, now.Add(48 * time.Minute)},
		{"refresh token dies first", now.Add(time.Hour), now.Add(10 * time.Minute), 0, now.Add(9 * time.Minute)},
		{"already late", now.Add(30 * time.Second), time.Time{}, 0, now},
		{"already expired", now.Add(-time.Hour), time.Time{}, 0.9, now},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, s.Next(now, tt.expiry, tt.refreshExpiry, tt.u))
		})
	}
}
