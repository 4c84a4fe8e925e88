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
	// Warn, when set, receives one line the first time in this process
	// that a Save in ModeAuto lands in a file (per directory), saying where
	// and why. Nil means no warning: the store does not print. CLIs show
	// Locate's Location instead, once, where the user looks (cobralogin
	// prints it after login and in status).
	Warn io.Writer
	// KeychainTimeout bounds each keychain call. Zero means
	// DefaultKeychainTimeout.
	KeychainTimeout time.Duration
}

// Open returns the store a CLI uses by default, as chosen by opts.Mode. The
// store implements Locator, reporting KindKeychain or KindFile with the
// file's path and why a file is used, and Locker, across processes through
// lock files in the directory (see File.Lock).
//
// In ModeAuto the keychain is tried first. When it is unavailable (see
// ErrKeychainUnavailable) a Save goes to the File store in opts.Dir
// instead. Precedence between the two:
//
//   - Load returns the file entry when there is one, else the keychain's.
//     A file entry is only written while the keychain is unavailable, so it
//     is never older than the keychain's entry.
//   - Save writes to the keychain when it is available and then removes the
//     file entry, so a token stored in a file while the keychain was away
//     moves to the keychain on the next Save (a login or refresh), and is
//     never lost before it has.
//   - Delete removes both. A keychain that is absent (ErrNoKeychain) holds
//     nothing; one that cannot be reached makes Delete fail with an error
//     wrapping ErrKeychainUnavailable after the file entry is removed,
//     since a value may remain there.
//
// A Load that finds no file entry returns an error wrapping ErrNotFound,
// ErrKeychainUnavailable and ErrNoKeychain when the keychain is absent, and
// one wrapping ErrKeychainUnavailable but not ErrNotFound when it exists
// but cannot be reached: whether a value is stored is then unknown, which a
// caller must not report as "nothing stored".
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
	app    string
	mode   Mode
	kc     *Keychain // nil in ModeFile
	file   *File
	warn   io.Writer             // nil: no warning
	absent atomic.Pointer[error] // why there is no keychain, once seen (ModeAuto)
	// answered holds the keys whose last keychain Load or Save in this
	// process succeeded, so that Locate right after (Status, Login) need
	// not read the keychain again to learn that it answers.
	answered sync.Map
}

// warned holds the directories whose fallback warning this process printed.
var warned sync.Map

// keychain returns the keychain to try, or nil when it is known to be
// absent and the file is to be used.
func (s *autoStore) keychain() *Keychain {
	if s.mode == ModeAuto && s.absent.Load() != nil {
		return nil
	}
	return s.kc
}

// fallback reports whether err lets ModeAuto use the file instead of the
// keychain, and remembers an absent keychain.
func (s *autoStore) fallback(err error) bool {
	if s.mode != ModeAuto || !errors.Is(err, ErrKeychainUnavailable) {
		return false
	}
	if errors.Is(err, ErrNoKeychain) {
		s.absent.CompareAndSwap(nil, &err)
	}
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
		return nil, s.notFoundAbsent(key, *s.absent.Load())
	}
	v, err := kc.Load(ctx, key)
	s.noteAnswer(key, err)
	if err != nil && s.fallback(err) && errors.Is(err, ErrNoKeychain) {
		return nil, s.notFoundAbsent(key, err)
	}
	return v, s.onlyErr(err) // an unreachable keychain: unknown, not "not found"
}

// notFoundAbsent is Load's error when no file entry exists and there is no
// keychain.
func (s *autoStore) notFoundAbsent(key string, why error) error {
	return fmt.Errorf("tokenstore: load %q: %w (%w)", key, ErrNotFound, why)
}

// Save implements Store.
func (s *autoStore) Save(ctx context.Context, key string, value []byte) error {
	var down error
	if kc := s.keychain(); kc != nil {
		err := kc.Save(ctx, key, value)
		s.noteAnswer(key, err)
		if err == nil {
			if s.mode == ModeAuto {
				if err := s.file.Delete(ctx, key); err != nil {
					return fmt.Errorf("tokenstore: saved %q in the keychain but the older file entry %s remains: %w",
						key, s.file.Path(key), err)
				}
			}
			return nil
		}
		if !s.fallback(err) {
			return s.onlyErr(err)
		}
		down = err
	} else if p := s.absent.Load(); p != nil {
		down = *p
	}
	if err := s.file.Save(ctx, key, value); err != nil {
		return err
	}
	if s.warn != nil && s.mode == ModeAuto {
		s.warnOnce(key, down)
	}
	return nil
}

func (s *autoStore) warnOnce(key string, why error) {
	if _, loaded := warned.LoadOrStore(s.file.Dir(), true); loaded {
		return
	}
	fmt.Fprintf(s.warn, "%s: the token is stored in %s, a plain file (mode 0600), because %s.\n",
		s.app, s.file.Path(key), whyFile(why))
}

// whyFile says, for people, why a value went to a file: the keychain
// error's reason.
func whyFile(err error) string {
	var ke *KeychainError
	if errors.As(err, &ke) {
		if ke.Absent {
			return "no OS keychain is available: " + ke.Reason
		}
		return ke.Where + " is unreachable: " + ke.Reason
	}
	return "the OS keychain is unavailable"
}

// noteAnswer records whether the keychain just answered a Load or Save of
// key (err nil) or not.
func (s *autoStore) noteAnswer(key string, err error) {
	if err == nil {
		s.answered.Store(key, struct{}{})
	} else {
		s.answered.Delete(key)
	}
}

// Delete implements Store.
func (s *autoStore) Delete(ctx context.Context, key string) error {
	s.answered.Delete(key)
	if s.mode != ModeKeychainOnly {
		if err := s.file.Delete(ctx, key); err != nil {
			return err
		}
	}
	if kc := s.keychain(); kc != nil {
		if err := kc.Delete(ctx, key); err != nil {
			if s.fallback(err) && errors.Is(err, ErrNoKeychain) {
				return nil // no keychain, so nothing in it
			}
			return s.onlyErr(err)
		}
	}
	return nil
}

// Locate implements Locator. In ModeAuto it asks the keychain whether it
// is available, unless the last Load or Save of key in this process was
// answered by the keychain (and no file entry exists).
func (s *autoStore) Locate(ctx context.Context, key string) (Location, error) {
	fileLoc := Location{Kind: KindFile, Path: s.file.Path(key)}
	switch s.mode {
	case ModeFile:
		fileLoc.Why = "this CLI is set to keep tokens in a file"
		return fileLoc, nil
	case ModeKeychainOnly:
		return Location{Kind: KindKeychain}, nil
	}
	inFile := false
	if _, err := os.Stat(fileLoc.Path); err == nil {
		inFile = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Location{}, fmt.Errorf("tokenstore: locate %q: %w", key, err)
	}
	kc := s.keychain()
	if kc == nil {
		fileLoc.Why = whyFile(*s.absent.Load())
		return fileLoc, nil
	}
	if _, ok := s.answered.Load(key); ok && !inFile {
		return Location{Kind: KindKeychain}, nil
	}
	err := kc.probe(ctx, key)
	switch {
	case err != nil && s.fallback(err):
		fileLoc.Why = whyFile(err)
		return fileLoc, nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return Location{}, fmt.Errorf("tokenstore: locate %q: %w", key, err)
	case inFile:
		fileLoc.Why = "the OS keychain was unavailable when it was stored; the next login or refresh moves it there"
		return fileLoc, nil
	}
	return Location{Kind: KindKeychain}, nil
}

// Lock implements Locker; see File.Lock.
func (s *autoStore) Lock(ctx context.Context, key string) (func(), error) {
	return s.file.Lock(ctx, key)
}
