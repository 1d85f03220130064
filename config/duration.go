package config

import (
	"fmt"
	"math"
	"time"

	"gopkg.in/yaml.v3"
)

// String formats the duration as time.Duration does ("1.5s").
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML accepts a Go duration string ("1.5s", "200ms", "1m") or a
// bare integer number of seconds (60). Negative durations are rejected.
// A null value leaves d unchanged.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration, got %s", describe(n))
	}
	switch n.ShortTag() {
	case tagNull:
		return nil
	case tagInt:
		var secs int64
		if err := n.Decode(&secs); err != nil {
			return fmt.Errorf("invalid duration %q", n.Value)
		}
		if secs < 0 {
			return fmt.Errorf("duration must not be negative (got %s)", n.Value)
		}
		if secs > math.MaxInt64/int64(time.Second) {
			return fmt.Errorf("duration %s is too large", n.Value)
		}
		*d = Duration(time.Duration(secs) * time.Second)
		return nil
	case tagStr:
		v, err := time.ParseDuration(n.Value)
		if err != nil {
			return fmt.Errorf("invalid duration %q (want e.g. \"1.5s\", \"200ms\", \"1m\" or a whole number of seconds)", n.Value)
		}
		if v < 0 {
			return fmt.Errorf("duration must not be negative (got %q)", n.Value)
		}
		*d = Duration(v)
		return nil
	case tagFloat:
		return fmt.Errorf("invalid duration %s (a bare number must be a whole number of seconds; otherwise write a unit, e.g. \"1.5s\" or \"200ms\")", n.Value)
	default:
		return fmt.Errorf("expected a duration, got %s", describe(n))
	}
}
