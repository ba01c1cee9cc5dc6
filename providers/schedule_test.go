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
