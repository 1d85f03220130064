package loader

import (
	"fmt"
	"net/netip"
)

// steerRange checks a steering range.
func steerRange(prefix netip.Prefix, portLo, portHi uint16) error {
	if !prefix.IsValid() {
		return fmt.Errorf("steering: invalid prefix %v", prefix)
	}
	if portLo == 0 || portLo > portHi {
		return fmt.Errorf("steering: bad port range %d-%d", portLo, portHi)
	}
	return nil
}
