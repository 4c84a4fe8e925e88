package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mode chooses where Open's store keeps values.
type Mode int

// The storage modes.
const (
	// ModeAuto keeps values in the OS keychain and, when the keychain is
	// unavailable, in files under Options.Dir, with a loud warning.
	ModeAuto Mode = iota
	// ModeKeychainOnly keeps values in the OS keychain only. When it is
	// unavailable every call fails with an error wrapping
	// ErrKeychainUnavailable; nothing is ever written to a file.
	ModeKeychainOnly
	// ModeFile keeps values in files under Options.Dir only; the keychain
	// is never contacted.
	ModeFile
)

// String returns "auto", "keychain" or "file", the names ParseMode reads.
func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeKeychainOnly:
		return "keychain"
	case ModeFile:
		return "file"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode reads a Mode from its String form, for a CLI flag or
// environment variable; "" is ModeAuto.
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return ModeAuto, nil
	case "keychain":
		return ModeKeychainOnly, nil
	case "file":
		return ModeFile, nil
	}
	return 0, fmt.Errorf("tokenstore: unknown storage mode %q (want auto, keychain or file)", s)
}

// Options configures Open.
type Options struct {
	// App is the CLI's name: the keychain service name and the name of its
	// directory under the user's config directory. Required; it must be a
	// single path element.
	App string
	// Mode chooses the storage; the zero value is ModeAuto.
	Mode Mode
	// Dir holds the fallback files and the lock files. Empty means
	// os.UserConfigDir()/App, i.e. $XDG_CONFIG_HOME/App (~/.config/App) on
	// Linux, ~/Library/Application Support/App on macOS and %AppData%\App
	// on Windows.
	Dir string
	// Warn receives the one-time warning printed when ModeAuto falls back
	// to a file. Nil means os.Stderr.
	Warn io.Writer
	// KeychainTimeout bounds each keychain call. Zero means
	// DefaultKeychainTimeout.
	KeychainTimeout time.Duration
}

// Open returns the store a CLI uses by default, as chosen by opts.Mode. The
// store implements Locator, reporting KindKeychain or KindFile with the
// file's path, and Locker, across processes through lock files in the
// directory (see File.Lock).
//
// In ModeAuto the keychain is tried first. When it is unavailable (see
// ErrKeychainUnavailable) the store uses the File store in opts.Dir from
// then on, and the first Save that lands in a file prints a warning to
// opts.Warn, once per process and directory, saying where the token is and
// why. Precedence between the two:
//
//   - Load returns the file entry when there is one, else the keychain's.
//     A file entry is only written while the keychain is unavailable, so it
//     is never older than the keychain's entry.
//   - Save writes to the keychain when it is available and then removes the
//     file entry, so a token stored in a file while the keychain was away
//     moves to the keychain on the next Save (a login or refresh), and is
//     never lost before it has.
//   - Delete removes both; a keychain entry that cannot be reached is left
//     alone.
//
// A Load that finds nothing while the keychain is unavailable returns an
// error that wraps both ErrNotFound and ErrKeychainUnavailable.
func Open(opts Options) (Store, error) {
	if opts.App == "" || opts.App == "." || opts.App == ".." || strings.ContainsAny(opts.App, `/\`) {
		return nil, fmt.Errorf("tokenstore: Options.App %q is not a valid name (one path element, not empty)", opts.App)
	}
	dir := opts.Dir
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return nil, fmt.Errorf("tokenstore: no directory for the token files: %w", err)
		}
		dir = filepath.Join(base, opts.App)
	}
	file, err := NewFile(FileConfig{Dir: dir})
	if err != nil {
		return nil, err
	}
	s := &autoStore{app: opts.App, mode: opts.Mode, file: file, warn: opts.Warn}
	if s.warn == nil {
		s.warn = os.Stderr
	}
	switch opts.Mode {
	case ModeAuto, ModeKeychainOnly:
		if s.kc, err = NewKeychain(KeychainConfig{Service: opts.App, Timeout: opts.KeychainTimeout}); err != nil {
			return nil, err
		}
	case ModeFile:
	default:
		return nil, fmt.Errorf("tokenstore: unknown %v", opts.Mode)
	}
	return s, nil
}

// autoStore is the Store Open returns.
type autoStore struct {
	app  string
	mode Mode
	kc   *Keychain // nil in ModeFile
	file *File
	warn io.Writer
	down atomic.Pointer[error] // why the keychain is unavailable, once seen (ModeAuto)
}

// warned holds the directories whose fallback warning this process printed.
var warned sync.Map

// keychain returns the keychain to try, or nil when the file is to be used.
func (s *autoStore) keychain() *Keychain {
	if s.mode == ModeAuto && s.down.Load() != nil {
		return nil
	}
	return s.kc
}

// keychainFailed records err when it means the keychain is unavailable in
// ModeAuto, and reports whether the file should be used instead.
func (s *autoStore) keychainFailed(err error) bool {
	if s.mode != ModeAuto || !errors.Is(err, ErrKeychainUnavailable) {
		return false
	}
	s.down.CompareAndSwap(nil, &err)
	return true
}

func (s *autoStore) onlyErr(err error) error {
	if s.mode == ModeKeychainOnly && errors.Is(err, ErrKeychainUnavailable) {
		return fmt.Errorf("%w (file storage is disabled: keychain-only mode)", err)
	}
	return err
}

// Load implements Store.
func (s *autoStore) Load(ctx context.Context, key string) ([]byte, error) {
	if s.mode != ModeKeychainOnly {
		v, err := s.file.Load(ctx, key)
		if !errors.Is(err, ErrNotFound) || s.mode == ModeFile {
			return v, err
		}
	}
	kc := s.keychain()
	if kc == nil {
		return nil, s.notFoundDown(key)
	}
	v, err := kc.Load(ctx, key)
	if s.keychainFailed(err) {
		return nil, s.notFoundDown(key)
	}
	return v, s.onlyErr(err)
}

func (s *autoStore) notFoundDown(key string) error {
	return fmt.Errorf("tokenstore: load %q: %w (%w)", key, ErrNotFound, *s.down.Load())
}

// Save implements Store.
func (s *autoStore) Save(ctx context.Context, key string, value []byte) error {
	if kc := s.keychain(); kc != nil {
		err := kc.Save(ctx, key, value)
		if err == nil {
			if s.mode == ModeAuto {
				if err := s.file.Delete(ctx, key); err != nil {
					return fmt.Errorf("tokenstore: saved %q in the keychain but the older file entry %s remains: %w",
						key, s.file.Path(key), err)
				}
			}
			return nil
		}
		if !s.keychainFailed(err) {
			return s.onlyErr(err)
		}
	}
	if err := s.file.Save(ctx, key, value); err != nil {
		return err
	}
	if s.mode == ModeAuto {
		s.warnOnce(key)
	}
	return nil
}

func (s *autoStore) warnOnce(key string) {
	if _, loaded := warned.LoadOrStore(s.file.Dir(), true); loaded {
		return
	}
	fmt.Fprintf(s.warn, "WARNING: %s: the system keychain is unavailable: %v\n"+
		"WARNING: %s: your login token is stored UNENCRYPTED in %s (readable only by you).\n"+
		"WARNING: %s: start a keychain (e.g. gnome-keyring with a D-Bus session) to keep it there instead.\n",
		s.app, *s.down.Load(), s.app, s.file.Path(key), s.app)
}

// Delete implements Store.
func (s *autoStore) Delete(ctx context.Context, key string) error {
	if s.mode != ModeKeychainOnly {
		if err := s.file.Delete(ctx, key); err != nil {
			return err
		}
	}
	if kc := s.keychain(); kc != nil {
		if err := kc.Delete(ctx, key); err != nil && !s.keychainFailed(err) {
			return s.onlyErr(err)
		}
	}
	return nil
}

// Locate implements Locator. In ModeAuto it may ask the keychain whether it
// is available.
func (s *autoStore) Locate(ctx context.Context, key string) (Location, error) {
	fileLoc := Location{Kind: KindFile, Path: s.file.Path(key)}
	switch s.mode {
	case ModeFile:
		return fileLoc, nil
	case ModeKeychainOnly:
		return Location{Kind: KindKeychain}, nil
	}
	if _, err := os.Stat(fileLoc.Path); err == nil {
		return fileLoc, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Location{}, fmt.Errorf("tokenstore: locate %q: %w", key, err)
	}
	kc := s.keychain()
	if kc == nil {
		return fileLoc, nil
	}
	if err := kc.probe(ctx, key); err != nil && !errors.Is(err, ErrNotFound) {
		if s.keychainFailed(err) {
			return fileLoc, nil
		}
		return Location{}, fmt.Errorf("tokenstore: locate %q: %w", key, err)
	}
	return Location{Kind: KindKeychain}, nil
}

// Lock implements Locker; see File.Lock.
func (s *autoStore) Lock(ctx context.Context, key string) (func(), error) {
	return s.file.Lock(ctx, key)
}
