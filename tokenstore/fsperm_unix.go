//go:build !windows

package tokenstore

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// ownedByOther reports whether fi belongs to a user other than this
// process's effective user.
func ownedByOther(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) != os.Geteuid()
}

// secureDir refuses a directory that other users control (another user
// owns it, or it is a shared directory with the sticky bit such as /tmp)
// and tightens one of ours that others can read, enter or write to 0700.
func secureDir(dir string, fi fs.FileInfo) error {
	switch {
	case ownedByOther(fi):
		return fmt.Errorf("tokenstore: %s belongs to another user; refusing to keep tokens there: %w", dir, fs.ErrPermission)
	case fi.Mode()&fs.ModeSticky != 0:
		return fmt.Errorf("tokenstore: %s is a shared directory (mode %v); refusing to keep tokens there: %w", dir, fi.Mode(), fs.ErrPermission)
	case fi.Mode().Perm()&0o077 != 0:
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("tokenstore: restrict %s to mode 0700: %w", dir, err)
		}
	}
	return nil
}

// secureFile refuses a token file another user owns (planted, or a symlink
// planted before the directory was ours alone) and tightens a token file
// of ours that others can read to 0600. lfi is from Lstat.
func secureFile(path string, lfi fs.FileInfo) error {
	if ownedByOther(lfi) {
		return fmt.Errorf("tokenstore: %s belongs to another user; refusing to read it: %w", path, fs.ErrPermission)
	}
	if lfi.Mode().IsRegular() && lfi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("tokenstore: restrict %s to mode 0600: %w", path, err)
		}
	}
	return nil
}
