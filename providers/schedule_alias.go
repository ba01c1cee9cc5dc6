package providers

import "github.com/tokenwarden/tokenwarden/providers/schedule"

// Schedule says when a link refreshes its token (see package schedule,
// which keeps it apart from this package's HTTP code for the workflows).
type Schedule = schedule.Schedule

// Duration is a time.Duration written in YAML as a Go duration string.
type Duration = schedule.Duration

// DefaultSchedule is what a catalog entry without a schedule gets.
func DefaultSchedule() Schedule { return schedule.Default() }
