// Package schedule holds the refresh schedule of a provider: a plain value
// that the catalog reads from YAML and that travels into link workflows.
// It imports nothing that does I/O, so that the deterministic workflow
// package can use it without pulling in HTTP clients.
package schedule

import (
	"errors"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Schedule says when a link refreshes its token. It is a plain value that
// travels into workflows, so it holds no secret and serialises to JSON
// (durations as nanoseconds, like time.Duration).
type Schedule struct {
	// MinMargin is the least time before expiry at which to refresh.
	MinMargin time.Duration `json:"min_margin"`
	// Fraction of the token's lifetime to keep as margin when that is more
	// than MinMargin: 0.2 refreshes a one-hour token 12 minutes early.
	Fraction float64 `json:"fraction"`
	// Jitter spreads refreshes of tokens issued together: the margin grows
	// by up to this fraction of itself. It only ever makes refreshes
	// earlier, never later.
	Jitter float64 `json:"jitter"`
	// DefaultLifetime is assumed when neither the reply, the token nor
	// introspection says when a token expires.
	DefaultLifetime time.Duration `json:"default_lifetime"`
	// RefreshTokenMargin is how long before a refresh token's own expiry
	// (refresh_expires_in) to refresh at the latest, so that an idle link
	// does not lose its refresh token.
	RefreshTokenMargin time.Duration `json:"refresh_token_margin"`
}

// Default is what an entry without a schedule gets; an entry that sets
// only some fields gets these for the rest.
func Default() Schedule {
	return Schedule{
		MinMargin:          60 * time.Second,
		Fraction:           0.2,
		Jitter:             0.1,
		DefaultLifetime:    time.Hour,
		RefreshTokenMargin: 60 * time.Second,
	}
}

// Validate lists every problem of s.
func (s Schedule) Validate() error {
	var errs []error
	if s.MinMargin < 0 {
		errs = append(errs, errors.New("schedule.min_margin must not be negative"))
	}
	if s.RefreshTokenMargin < 0 {
		errs = append(errs, errors.New("schedule.refresh_token_margin must not be negative"))
	}
	if s.DefaultLifetime <= 0 {
		errs = append(errs, errors.New("schedule.default_lifetime must be positive"))
	} else if s.MinMargin >= s.DefaultLifetime {
		errs = append(errs, fmt.Errorf("schedule.min_margin (%s) must be shorter than default_lifetime (%s)", s.MinMargin, s.DefaultLifetime))
	}
	// The negated form also rejects NaN.
	if !(s.Fraction > 0 && s.Fraction < 1) {
		errs = append(errs, fmt.Errorf("schedule.fraction must be in (0,1), got %g", s.Fraction))
	}
	if !(s.Jitter >= 0 && s.Jitter < 1) {
		errs = append(errs, fmt.Errorf("schedule.jitter must be in [0,1), got %g", s.Jitter))
	}
	return errors.Join(errs...)
}

// YAML is the catalog form of a Schedule: durations as strings. Pointers
// tell a field that was left out (keep the default) from one set to zero
// (validate it). Its fields are the keys a catalog may use.
type YAML struct {
	MinMargin          *Duration `yaml:"min_margin"`
	Fraction           *float64  `yaml:"fraction"`
	Jitter             *float64  `yaml:"jitter"`
	DefaultLifetime    *Duration `yaml:"default_lifetime"`
	RefreshTokenMargin *Duration `yaml:"refresh_token_margin"`
}

// UnmarshalYAML overlays the fields present in the catalog on s, so
// decode into a Default() to get defaults for the others.
func (s *Schedule) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: schedule must be a mapping", n.Line)
	}
	var y YAML
	if err := n.Decode(&y); err != nil {
		return err
	}
	if y.MinMargin != nil {
		s.MinMargin = time.Duration(*y.MinMargin)
	}
	if y.Fraction != nil {
		s.Fraction = *y.Fraction
	}
	if y.Jitter != nil {
		s.Jitter = *y.Jitter
	}
	if y.DefaultLifetime != nil {
		s.DefaultLifetime = time.Duration(*y.DefaultLifetime)
	}
	if y.RefreshTokenMargin != nil {
		s.RefreshTokenMargin = time.Duration(*y.RefreshTokenMargin)
	}
	return nil
}

// Duration is a time.Duration written in YAML as a Go duration string
// ("60s", "1h30m"). Kinds use it for their settings too.
type Duration time.Duration

// UnmarshalYAML rejects bare numbers: "60" could mean seconds or
// nanoseconds, and guessing wrong is a silent outage.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration like \"60s\"", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like \"60s\"", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

func (d Duration) String() string { return time.Duration(d).String() }
