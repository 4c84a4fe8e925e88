package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// FileStateConfig configures a FileStateStore.
type FileStateConfig struct {
	// Path is the file the state is kept in. Its directory is created 0700
	// when missing; the file is written 0600. Required.
	Path string
	// Now is the clock for expiry. Nil means time.Now.
	Now func() time.Time
}

// FileStateStore is a StateStore for a single-instance backend that should
// keep its logins across restarts (examples/backend in dev mode). It works
// like MemoryStateStore and rewrites its file atomically (temp file, fsync,
// rename) after every change, so a crash leaves the previous or the new
// state, never a mix. Expired entries are not written back.
//
// It is safe for concurrent use within one process; two processes must not
// share one file. Every change rewrites and syncs the whole file, so its
// cost grows with the number of live logins (about 2 µs per entry, and each
// login keeps entries for up to RefreshTokenMaxLifetime).
//
// Deprecated: use server/boltstate, whose cost per change does not grow
// with the number of logins; boltstate.MigrateFileState moves the logins of
// an existing file into it. FileStateStore stays for programs that cannot
// take the bbolt dependency.
type FileStateStore struct {
	mem  *MemoryStateStore
	path string

	mu sync.Mutex // serializes changes with the writes that persist them
}

// maxStateFile bounds the state file FileStateStore reads.
const maxStateFile = 64 << 20

// stateFile is the file format.
type stateFile struct {
	Version int                       `json:"version"`
	Entries map[string]stateFileEntry `json:"entries"`
}

type stateFileEntry struct {
	Value   []byte    `json:"v"`
	Expires time.Time `json:"exp"`
}

// NewFileStateStore opens the state kept at cfg.Path, or starts empty when
// there is no file yet. A file it cannot read (damaged, readable by others,
// from a newer version) is an error, not an empty state.
func NewFileStateStore(cfg FileStateConfig) (*FileStateStore, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("%w: FileStateConfig.Path is required", ErrInvalidConfig)
	}
	mem := NewMemoryStateStore()
	if cfg.Now != nil {
		mem.now = cfg.Now
	}
	s := &FileStateStore{mem: mem, path: cfg.Path}
	b, err := readPrivateFile(cfg.Path, maxStateFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("server: state file: %w", err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("server: state file %s is damaged (%d bytes); move it away to start afresh", cfg.Path, len(b))
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("server: state file %s has version %d; this program reads version 1", cfg.Path, f.Version)
	}
	now := mem.now()
	for k, e := range f.Entries {
		if now.Before(e.Expires) {
			mem.m[k] = memEntry{value: e.Value, expires: e.Expires}
		}
	}
	return s, nil
}

// StateEntry is one unexpired entry of a StateStore with its absolute
// expiry, as FileStateStore.Entries returns them for moving to another
// store.
type StateEntry struct {
	// Key is the entry's key.
	Key string
	// Value is the stored value.
	Value []byte
	// Expires is when the entry expires (its TTL ends).
	Expires time.Time
}

// Entries returns a copy of the unexpired entries, in no particular order,
// for moving them to another store (boltstate.MigrateFileState).
func (s *FileStateStore) Entries() []StateEntry {
	now := s.mem.now()
	s.mem.mu.Lock()
	defer s.mem.mu.Unlock()
	out := make([]StateEntry, 0, len(s.mem.m))
	for k, e := range s.mem.m {
		if now.Before(e.expires) {
			out = append(out, StateEntry{Key: k, Value: append([]byte{}, e.value...), Expires: e.expires})
		}
	}
	return out
}

// Put implements StateStore.
func (s *FileStateStore) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.mem.Put(ctx, key, value, ttl); err != nil {
		return err
	}
	return s.persist()
}

// Get implements StateStore.
func (s *FileStateStore) Get(ctx context.Context, key string) ([]byte, error) {
	return s.mem.Get(ctx, key)
}

// Take implements StateStore. The entry is gone from the file before Take
// returns it, so a restart cannot hand it out again.
func (s *FileStateStore) Take(ctx context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.mem.Take(ctx, key)
	if err != nil {
		return nil, err
	}
	if err := s.persist(); err != nil {
		return nil, err
	}
	return v, nil
}

// Delete implements StateStore.
func (s *FileStateStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.mem.Delete(ctx, key); err != nil {
		return err
	}
	return s.persist()
}

// CompareAndSwap implements StateStore. A swap is in the file before
// CompareAndSwap reports it.
func (s *FileStateStore) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	swapped, err := s.mem.CompareAndSwap(ctx, key, old, value, ttl)
	if err != nil || !swapped {
		return false, err
	}
	if err := s.persist(); err != nil {
		return false, err
	}
	return true, nil
}

// persist writes the unexpired entries to the file. s.mu must be held.
func (s *FileStateStore) persist() error {
	f := stateFile{Version: 1, Entries: map[string]stateFileEntry{}}
	now := s.mem.now()
	s.mem.mu.Lock()
	for k, e := range s.mem.m {
		if now.Before(e.expires) {
			f.Entries[k] = stateFileEntry{Value: e.value, Expires: e.expires}
		}
	}
	s.mem.mu.Unlock()
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("server: state file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("server: state file: %w", err)
	}
	tmp, err := writeTemp(s.path, b)
	if err != nil {
		return fmt.Errorf("server: state file: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("server: state file: %w", err)
	}
	syncDir(filepath.Dir(s.path))
	return nil
}

// syncDir makes a rename in dir durable where the OS can sync a directory;
// where it cannot (Windows), the rename is still atomic.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
