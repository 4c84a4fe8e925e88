package boltstate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/keyloop/keyloop/server"
)

// MigrateFileState moves the logins kept in a server.FileStateStore file
// (the JSON state file, e.g. examples/backend's state.json) into s, each
// entry with the time it had left, and then deletes that file. It returns
// how many entries it moved; a missing file moves nothing and is not an
// error.
//
// The entries and a marker naming the file's content are committed in one
// transaction before the file is deleted, so a crash at any point either
// leaves the file to be migrated again or is finished at the next call.
//
// It refuses (ErrConflict), changing nothing, when s already holds
// unexpired entries that did not come from this file: the two stores then
// disagree and keeping both could bring back a code or refresh token one of
// them had used. A file NewFileStateStore refuses (damaged, from a newer
// version, readable by others) is refused here with its error.
func MigrateFileState(ctx context.Context, s *Store, path string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("boltstate: migrate: %w", err)
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("boltstate: migrate %s: %w", path, err)
	}
	old, err := server.NewFileStateStore(server.FileStateConfig{Path: path, Now: s.now})
	if err != nil {
		return 0, fmt.Errorf("boltstate: cannot migrate the logins of %s: %w", path, err)
	}
	sum := sha256.Sum256(raw)
	entries := old.Entries()
	imported := make([]Entry, len(entries))
	for i, e := range entries {
		imported[i] = Entry{Key: e.Key, Value: e.Value, Expires: e.Expires}
	}
	done := false
	err = s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if bytes.Equal(meta.Get(metaMigrated), sum[:]) {
			done = true // committed before; only the file is left to delete
			return nil
		}
		now := s.now().UnixNano()
		c := tx.Bucket(bucketEntries).Cursor()
		for k, rec := c.First(); k != nil; k, rec = c.Next() {
			if len(rec) >= 8 && expiryOf(rec) > now {
				return fmt.Errorf("%w: %s and %s, and only one can be kept; "+
					"move %s away to keep the logins in %s (the users of the logins in the other sign in again)",
					ErrConflict, path, s.path, path, s.path)
			}
		}
		if err := s.importTx(tx, imported); err != nil {
			return err
		}
		return meta.Put(metaMigrated, sum[:])
	})
	if err != nil {
		if errors.Is(err, ErrConflict) || errors.Is(err, ErrClosed) {
			return 0, err
		}
		return 0, fmt.Errorf("boltstate: migrate %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("boltstate: the logins of %s are in %s, but the old file could not be deleted (delete it yourself): %w", path, s.path, err)
	}
	syncDir(filepath.Dir(path))
	if done {
		return 0, nil
	}
	return len(imported), nil
}

// syncDir makes a removal in dir durable where the OS can sync a directory.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
