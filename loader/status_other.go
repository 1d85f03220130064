//go:build !linux

package loader

import (
	"fmt"
	"runtime"
)

// ReadStatus fails: only Linux has a kernel datapath to report on.
func ReadStatus(dir string) (Status, error) {
	return Status{Dir: dir, Mode: ModeUserspace}, fmt.Errorf("the kernel datapath needs Linux (this is %s)", runtime.GOOS)
}
