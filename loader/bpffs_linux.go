//go:build linux

package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// bpffsRoot is where bpffs is conventionally mounted.
const bpffsRoot = "/sys/fs/bpf"

// ensureBPFFS makes dir a directory on a bpf filesystem, mounting one
// when there is none: at /sys/fs/bpf for a dir below it (as
// `mount -t bpf bpf /sys/fs/bpf` would), else at dir itself. A fresh
// machine often has no bpffs mounted.
func ensureBPFFS(dir string) error {
	existing := dir
	for {
		if _, err := os.Stat(existing); err == nil {
			break
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		existing = parent
	}
	onBPFFS, err := isBPFFS(existing)
	if err != nil {
		return err
	}
	if !onBPFFS {
		mountPoint := dir
		if dir == bpffsRoot || strings.HasPrefix(dir, bpffsRoot+"/") {
			mountPoint = bpffsRoot
		}
		if err := os.MkdirAll(mountPoint, 0o755); err != nil {
			return fmt.Errorf("bpffs: %w", err)
		}
		if err := unix.Mount("bpf", mountPoint, "bpf", 0, ""); err != nil {
			return fmt.Errorf("bpffs: mount -t bpf bpf %s: %w", mountPoint, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("bpffs: %w", err)
	}
	if ok, err := isBPFFS(dir); err != nil || !ok {
		return errors.Join(err, fmt.Errorf("bpffs: %s is not on a bpf filesystem", dir))
	}
	return nil
}

func isBPFFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("bpffs: statfs %s: %w", path, err)
	}
	return st.Type == unix.BPF_FS_MAGIC, nil
}
