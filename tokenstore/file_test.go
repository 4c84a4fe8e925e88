//go:build unix

package tokenstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newTestFile(t *testing.T) (*File, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	f, err := NewFile(FileConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return f, dir
}

func TestFileRoundTripAndPermissions(t *testing.T) {
	ctx := t.Context()
	f, dir := newTestFile(t)
	if _, err := f.Load(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load before Save: %v, want ErrNotFound", err)
	}
	if err := f.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	old := syscall.Umask(0) // a permissive umask must not widen the modes
	defer syscall.Umask(old)
	value := []byte("line one\nline two\x00\xff binary")
	if err := f.Save(ctx, "k", value); err != nil {
		t.Fatal(err)
	}
	got, err := f.Load(ctx, "k")
	if err != nil || !bytes.Equal(got, value) {
		t.Fatalf("Load = %q, %v; want %q", got, err, value)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, f.Path("k"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), want)
		}
	}
	if err := f.Save(ctx, "k", []byte("second")); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Load(ctx, "k"); string(got) != "second" {
		t.Fatalf("Load after replace = %q, want second", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries, want only the token file (no temp files left)", len(entries))
	}
	if err := f.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Load(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after Delete: %v, want ErrNotFound", err)
	}
	if loc, _ := f.Locate(ctx, "k"); loc.Kind != KindFile || loc.Path != f.Path("k") {
		t.Errorf("Locate = %+v", loc)
	}
}

func TestFileKeysStayInDir(t *testing.T) {
	ctx := t.Context()
	f, dir := newTestFile(t)
	keys := []string{"../escape", "a/b", `a\b`, "..", ".", "", "A", "a"}
	for i, k := range keys {
		if err := f.Save(ctx, k, []byte{byte(i)}); err != nil {
			t.Fatalf("Save(%q): %v", k, err)
		}
		if filepath.Dir(f.Path(k)) != dir {
			t.Errorf("Path(%q) = %s, outside %s", k, f.Path(k), dir)
		}
	}
	for i, k := range keys { // every key kept its own value: no two share a file
		if got, err := f.Load(ctx, k); err != nil || !bytes.Equal(got, []byte{byte(i)}) {
			t.Errorf("Load(%q) = %v, %v; want [%d]", k, got, err, i)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 1 {
		t.Errorf("files were written next to the store's dir: %d entries", len(entries))
	}
}

func TestFileCorrupt(t *testing.T) {
	ctx := t.Context()
	f, _ := newTestFile(t)
	const secret = "super-secret-token-value"
	if err := f.Save(ctx, "k", []byte(secret)); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(f.Path("k"))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{
		"empty":      {},
		"garbage":    []byte(secret),
		"truncated":  good[:len(good)-3],
		"padded":     append(append([]byte(nil), good...), "x"...),
		"bit flip":   append(append([]byte(nil), good[:len(good)-1]...), good[len(good)-1]^1),
		"bad length": bytes.Replace(good, []byte(" 24 "), []byte(" x "), 1),
		"no header":  []byte("keyloop-token/1\n" + secret),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(f.Path("k"), content, 0o600); err != nil {
				t.Fatal(err)
			}
			v, err := f.Load(ctx, "k")
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load = %q, %v; want ErrCorrupt", v, err)
			}
			if msg := err.Error(); strings.Contains(msg, secret) || !strings.Contains(msg, f.Path("k")) {
				t.Errorf("error %q must name the file and not quote its contents", msg)
			}
		})
	}
}

// TestFileKilledBeforeRename kills a writer process after it wrote and
// synced the temporary file and before the rename: the old value must stay.
func TestFileKilledBeforeRename(t *testing.T) {
	ctx := t.Context()
	f, dir := newTestFile(t)
	if err := f.Save(ctx, "k", []byte("old token")); err != nil {
		t.Fatal(err)
	}
	cmd := helperCmd(t, "kill-before-rename", helperDirEnv+"="+dir, helperArgEnv+"=new token")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("writer ended with %v (stderr %q), want death by SIGKILL", err, stderr.String())
	}
	temps, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	if len(temps) != 1 {
		t.Fatalf("found %d temp files, want the 1 the killed writer left", len(temps))
	}
	if got, err := f.Load(ctx, "k"); err != nil || string(got) != "old token" {
		t.Fatalf("Load after the writer died = %q, %v; want the old token", got, err)
	}
	if err := f.Save(ctx, "k", []byte("newer")); err != nil {
		t.Fatal(err)
	}
	if got, err := f.Load(ctx, "k"); err != nil || string(got) != "newer" {
		t.Fatalf("Load = %q, %v; want newer", got, err)
	}
}

func TestFileLock(t *testing.T) {
	ctx := t.Context()
	f, dir := newTestFile(t)
	unlock, err := f.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "k.lock")); err != nil || fi.Mode() != 0o600 {
		t.Fatalf("lock file: %v, %v; want mode 0600", fi, err)
	}
	// A second store on the same dir (its own lock file handle, as in
	// another process) waits until ctx ends.
	other, _ := NewFile(FileConfig{Dir: dir})
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := other.Lock(short, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while held: %v, want DeadlineExceeded", err)
	}
	// Another key is independent.
	u2, err := other.Lock(ctx, "k2")
	if err != nil {
		t.Fatal(err)
	}
	u2()
	got := make(chan error, 1)
	go func() {
		u, err := other.Lock(ctx, "k")
		if err == nil {
			u()
		}
		got <- err
	}()
	unlock()
	unlock() // idempotent
	if err := <-got; err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
}

// TestParallelProcesses runs several processes that each increment a
// counter kept in one entry, under the store's Locker, and read it without
// the lock in between: no read may be torn or corrupt and no increment may
// be lost.
func TestParallelProcesses(t *testing.T) {
	for _, c := range []struct {
		kind         string
		procs, iters int
	}{
		{"file", 4, 50},
		{"keychain", 3, 6},
	} {
		t.Run(c.kind, func(t *testing.T) {
			if c.kind == "keychain" {
				requireKeychain(t)
			}
			dir := t.TempDir()
			spec := fmt.Sprintf("%s:%d", c.kind, c.iters)
			if c.kind == "keychain" {
				k, _ := NewKeychain(KeychainConfig{Service: helperService})
				if err := k.Delete(t.Context(), "hammer"); err != nil { // left by an aborted run
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = k.Delete(context.Background(), "hammer") })
			}
			errs := make(chan error, c.procs)
			for range c.procs {
				cmd := helperCmd(t, "hammer", helperDirEnv+"="+dir, helperArgEnv+"="+spec)
				go func() {
					out, err := cmd.CombinedOutput()
					if err != nil {
						err = fmt.Errorf("%v: %s", err, out)
					}
					errs <- err
				}()
			}
			for range c.procs {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			var store Store
			if c.kind == "file" {
				store, _ = NewFile(FileConfig{Dir: dir})
			} else {
				store, _ = NewKeychain(KeychainConfig{Service: helperService})
			}
			n, err := readCounter(t.Context(), store, "hammer")
			if err != nil || n != c.procs*c.iters {
				t.Fatalf("final count = %d, %v; want %d (an update was lost)", n, err, c.procs*c.iters)
			}
		})
	}
}

// TestFileTightensOrRefusesDir: an existing directory of the user's with a
// loose mode is tightened to 0700 and a loose token file to 0600; a shared
// directory or one of another user is refused, and so is a token file
// another user planted.
func TestFileTightensOrRefusesDir(t *testing.T) {
	ctx := t.Context()
	t.Run("loose dir and file of ours", func(t *testing.T) {
		f, dir := newTestFile(t)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.Path("k"), encodeFile([]byte("v")), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f.Path("k"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := f.Load(ctx, "k"); err != nil || string(got) != "v" {
			t.Fatalf("Load = %q, %v", got, err)
		}
		for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, f.Path("k"): 0o600} {
			if fi, err := os.Stat(path); err != nil || fi.Mode() != want {
				t.Errorf("%s: %v, %v; want mode %v", path, fi.Mode(), err, want)
			}
		}
	})
	t.Run("shared dir", func(t *testing.T) {
		f, dir := newTestFile(t)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
			t.Fatal(err)
		}
		_, lerr := f.Load(ctx, "k")
		_, kerr := f.Lock(ctx, "k")
		for op, err := range map[string]error{"save": f.Save(ctx, "k", []byte("v")), "load": lerr, "lock": kerr} {
			if !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "shared directory") {
				t.Errorf("%s in a sticky 0777 dir: %v; want a refusal wrapping fs.ErrPermission", op, err)
			}
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("wrote %d files into a shared dir", len(entries))
		}
	})
	t.Run("another user's", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to give files to another user")
		}
		const nobody = 65534
		f, dir := newTestFile(t)
		if err := f.Save(ctx, "k", []byte("ours")); err != nil {
			t.Fatal(err)
		}
		planted := filepath.Join(t.TempDir(), "attacker.token")
		if err := os.WriteFile(planted, encodeFile([]byte("attacker's token")), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(f.Path("k")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(planted, f.Path("k")); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(f.Path("k"), nobody, nobody); err != nil {
			t.Fatal(err)
		}
		if got, err := f.Load(ctx, "k"); !errors.Is(err, os.ErrPermission) {
			t.Errorf("Load of a token file another user planted = %q, %v; want fs.ErrPermission", got, err)
		}
		if err := os.Chown(dir, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		if err := f.Save(ctx, "k", []byte("v")); !errors.Is(err, os.ErrPermission) {
			t.Errorf("Save into another user's dir: %v; want fs.ErrPermission", err)
		}
	})
}
