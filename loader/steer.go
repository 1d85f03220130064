package loader

import (
	"fmt"
	"net/netip"
	"net/url"
	"path/filepath"
)

// SteerSubdir is the directory under datapath.bpffs that holds the pins
// of the l4 listeners' connection steering, one directory per listener
// (SteerPinDir).
const SteerSubdir = "steer"

// SteerPinDir is where the connection steering of the l4 listener named
// listener pins its objects: bpffs/steer/NAME, the name escaped so that
// it is one path element.
func SteerPinDir(bpffs, listener string) string {
	name := url.PathEscape(listener)
	if name == "." || name == ".." {
		name = url.PathEscape(name[:len(name)-1]) + "%2E"
	}
	return filepath.Join(bpffs, SteerSubdir, name)
}

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
