package tokenstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FileConfig configures a File store.
type FileConfig struct {
	// Dir is the directory that holds the files. Required. It is created
	// with mode 0700 when missing. On Unix an existing directory of the
	// user's that others can read or enter is tightened to 0700, and one
	// that belongs to another user or is shared (sticky bit, as /tmp) is
	// refused with an error wrapping fs.ErrPermission, since others could
	// plant or swap files in it. A token file others can read is tightened
	// to 0600 when it is read; one that belongs to another user is refused.
	Dir string
}

// File is a Store that keeps each key's value in its own file under one
// directory, in plain text (mode 0600): the fallback when no keychain is
// available. Create it with NewFile.
//
// Saves are atomic: the value goes to a temporary file in the same
// directory, which is synced and renamed over the old file, and the
// directory is synced; a crash at any point leaves the old value or the new
// one, never a mix. Each file carries the value's length and SHA-256, so a
// damaged file reads as ErrCorrupt rather than as a wrong token.
//
// File implements Locker across processes (see Lock) and Locator.
type File struct {
	dir  string
	lock *dirLocker
}

// fileMagic starts every file File writes, followed by the length and
// SHA-256 of the value and a newline, then the value.
const fileMagic = "keyloop-token/1"

// fileTestHook, when set (by tests only), runs after the temporary file is
// written and synced and before it is renamed into place.
var fileTestHook func(tmp string)

// NewFile returns a File store in cfg.Dir. It does not touch the disk until
// the first call.
func NewFile(cfg FileConfig) (*File, error) {
	if cfg.Dir == "" {
		return nil, errors.New("tokenstore: FileConfig.Dir is empty")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("tokenstore: file store dir: %w", err)
	}
	f := &File{dir: dir}
	f.lock = &dirLocker{dir: dir, local: NewMemory(), ready: func() error { return f.prepareDir(true) }}
	return f, nil
}

// prepareDir makes sure the directory is fit for tokens (see
// FileConfig.Dir), creating it when create is set; a missing directory
// otherwise gives an error wrapping fs.ErrNotExist.
func (f *File) prepareDir(create bool) error {
	if create {
		if err := os.MkdirAll(f.dir, 0o700); err != nil {
			return err
		}
	}
	fi, err := os.Stat(f.dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("tokenstore: %s is not a directory", f.dir)
	}
	return secureDir(f.dir, fi)
}

// Path returns the file that holds key's value.
func (f *File) Path(key string) string { return filepath.Join(f.dir, fileName(key)+".token") }

// Dir returns the store's directory.
func (f *File) Dir() string { return f.dir }

// Load implements Store.
func (f *File) Load(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tokenstore: load: %w", err)
	}
	path := f.Path(key)
	b, err := f.read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("tokenstore: load %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("tokenstore: load %q: %w", key, err)
	}
	v, err := decodeFile(b)
	if err != nil {
		return nil, fmt.Errorf("tokenstore: load %q from %s: %w", key, path, err)
	}
	return v, nil
}

// read returns the contents of path after making sure that the directory
// and the file are the user's alone.
func (f *File) read(path string) ([]byte, error) {
	if err := f.prepareDir(false); err != nil {
		return nil, err
	}
	lfi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if err := secureFile(path, lfi); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// decodeFile checks and strips the header written by encodeFile. Its errors
// wrap ErrCorrupt and never quote the contents.
func decodeFile(b []byte) ([]byte, error) {
	header, value, ok := bytes.Cut(b, []byte("\n"))
	fields := strings.Fields(string(header))
	if !ok || len(fields) != 3 || fields[0] != fileMagic {
		return nil, fmt.Errorf("%w: not a keyloop token file (%d bytes)", ErrCorrupt, len(b))
	}
	n, err := strconv.Atoi(fields[1])
	if err != nil || n != len(value) {
		return nil, fmt.Errorf("%w: token file is truncated or padded (%d of %s bytes)", ErrCorrupt, len(value), fields[1])
	}
	sum := sha256.Sum256(value)
	if hex.EncodeToString(sum[:]) != fields[2] {
		return nil, fmt.Errorf("%w: token file fails its checksum", ErrCorrupt)
	}
	return value, nil
}

func encodeFile(value []byte) []byte {
	sum := sha256.Sum256(value)
	header := fmt.Sprintf("%s %d %s\n", fileMagic, len(value), hex.EncodeToString(sum[:]))
	return append([]byte(header), value...)
}

// Save implements Store.
func (f *File) Save(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tokenstore: save: %w", err)
	}
	if err := f.writeAtomic(f.Path(key), encodeFile(value)); err != nil {
		return fmt.Errorf("tokenstore: save %q: %w", key, err)
	}
	return nil
}

func (f *File) writeAtomic(path string, data []byte) (err error) {
	if err := f.prepareDir(true); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(f.dir, "."+filepath.Base(path)+".tmp-*") // CreateTemp uses mode 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if fileTestHook != nil {
		fileTestHook(tmp.Name())
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(f.dir)
}

// Delete implements Store.
func (f *File) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tokenstore: delete: %w", err)
	}
	err := os.Remove(f.Path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil {
		err = syncDir(f.dir)
	}
	if err != nil {
		return fmt.Errorf("tokenstore: delete %q: %w", key, err)
	}
	return nil
}

// Locate implements Locator.
func (f *File) Locate(_ context.Context, key string) (Location, error) {
	return Location{Kind: KindFile, Path: f.Path(key)}, nil
}

// Lock implements Locker across processes with an exclusive lock on the file
// <Dir>/<key's file name>.lock, polled until it is free or ctx ends. Lock
// files are never removed.
func (f *File) Lock(ctx context.Context, key string) (func(), error) { return f.lock.Lock(ctx, key) }
