package tokenstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/zalando/go-keyring"
)

func TestOpenValidates(t *testing.T) {
	for _, app := range []string{"", ".", "..", "a/b", `a\b`} {
		if _, err := Open(Options{App: app, Mode: ModeFile, Dir: t.TempDir()}); err == nil {
			t.Errorf("Open(App %q) succeeded", app)
		}
	}
	if _, err := Open(Options{App: "x", Mode: Mode(9)}); err == nil {
		t.Error("Open with an unknown mode succeeded")
	}
	for s, want := range map[string]Mode{"": ModeAuto, "auto": ModeAuto, "Keychain": ModeKeychainOnly, " file": ModeFile} {
		if m, err := ParseMode(s); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", s, m, err, want)
		}
		if m, _ := ParseMode(want.String()); m != want {
			t.Errorf("ParseMode(%v.String()) = %v", want, m)
		}
	}
	if _, err := ParseMode("plaintext"); err == nil {
		t.Error("ParseMode(plaintext) succeeded")
	}
}

func TestOpenFileModeDefaultDir(t *testing.T) {
	ctx := t.Context()
	config := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", config)
	s, err := Open(Options{App: "mytool", Mode: ModeFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(config, "mytool", "k.token")
	if loc, err := s.(Locator).Locate(ctx, "k"); err != nil || loc.Kind != KindFile || loc.Path != want {
		t.Fatalf("Locate = %+v, %v; want file at %s", loc, err, want)
	}
	if fi, err := os.Stat(want); err != nil || fi.Mode() != 0o600 {
		t.Fatalf("token file: %v, %v", fi, err)
	}
	if got, err := s.Load(ctx, "k"); err != nil || string(got) != "v" {
		t.Fatalf("Load = %q, %v", got, err)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(want); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Delete left the file: %v", err)
	}
}

// downKeyring fails like a Linux box without a session bus.
type downKeyring struct{}

var errNoBus = errNoSessionBus

func (downKeyring) Set(string, string, string) error   { return errNoBus }
func (downKeyring) Get(string, string) (string, error) { return "", errNoBus }
func (downKeyring) Delete(string, string) error        { return errNoBus }

// countingKeyring counts the reads it passes on to keyringAPI.
type countingKeyring struct {
	keyringAPI
	gets atomic.Int32
}

func (c *countingKeyring) Get(s, u string) (string, error) {
	c.gets.Add(1)
	return c.keyringAPI.Get(s, u)
}

func openWith(t *testing.T, mode Mode, kr keyringAPI, dir string, warn *bytes.Buffer) *autoStore {
	t.Helper()
	s, err := Open(Options{App: "mytool", Mode: mode, Dir: dir, Warn: warn})
	if err != nil {
		t.Fatal(err)
	}
	as := s.(*autoStore)
	if kr != nil {
		as.kc.kr = kr
	}
	return as
}

func TestOpenAutoFallsBackWithOneWarning(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	var warn bytes.Buffer
	s := openWith(t, ModeAuto, downKeyring{}, dir, &warn)
	if _, err := s.Load(ctx, "k"); !errors.Is(err, ErrNotFound) || !errors.Is(err, ErrKeychainUnavailable) {
		t.Fatalf("Load with nothing stored: %v, want ErrNotFound and ErrKeychainUnavailable", err)
	}
	if warn.Len() != 0 {
		t.Errorf("warned before anything was written to a file: %q", warn.String())
	}
	for _, v := range []string{"one", "two"} {
		if err := s.Save(ctx, "k", []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "k.token")
	w := warn.String()
	if strings.Count(w, "\n") != 1 || !strings.Contains(w, path) || !strings.Contains(w, "no D-Bus session bus") ||
		strings.Count(w, "unavailable") > 1 || strings.Contains(w, "dbus-launch") {
		t.Errorf("warning = %q; want one line, once, naming %s and the reason without raw errors", w, path)
	}
	if strings.Contains(w, "one") || strings.Contains(w, "two") {
		t.Errorf("warning quotes the token: %q", w)
	}
	// A second store on the same dir in this process does not warn again.
	var warn2 bytes.Buffer
	s2 := openWith(t, ModeAuto, downKeyring{}, dir, &warn2)
	if err := s2.Save(ctx, "k", []byte("three")); err != nil || warn2.Len() != 0 {
		t.Errorf("second store: Save = %v, warning %q; want no second warning", err, warn2.String())
	}
	if got, err := s.Load(ctx, "k"); err != nil || string(got) != "three" {
		t.Fatalf("Load = %q, %v", got, err)
	}
	if loc, err := s.Locate(ctx, "k"); err != nil || loc.Kind != KindFile || loc.Path != path || !strings.Contains(loc.Why, "no D-Bus session bus") {
		t.Errorf("Locate = %+v, %v; want the file and why", loc, err)
	}
	if loc, err := s.Locate(ctx, "none"); err != nil || loc.Kind != KindFile {
		t.Errorf("Locate(none) = %+v, %v; want the file the next Save would write", loc, err)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete with the keychain down: %v", err)
	}
	if _, err := s.Load(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after Delete: %v", err)
	}
}

func TestOpenKeychainOnlyRefusesFile(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := openWith(t, ModeKeychainOnly, downKeyring{}, dir, nil)
	for op, err := range map[string]error{
		"save":   s.Save(ctx, "k", []byte("v")),
		"load":   func() error { _, err := s.Load(ctx, "k"); return err }(),
		"delete": s.Delete(ctx, "k"),
	} {
		if !errors.Is(err, ErrKeychainUnavailable) || !strings.Contains(err.Error(), "file storage is disabled") {
			t.Errorf("%s: %v; want ErrKeychainUnavailable saying file storage is disabled", op, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("keychain-only mode wrote %d files", len(entries))
	}
	if loc, _ := s.Locate(ctx, "k"); loc.Kind != KindKeychain {
		t.Errorf("Locate = %+v", loc)
	}
}

// TestOpenAutoRealKeychain uses the real keyring: values go to the keychain,
// no file and no warning.
func TestOpenAutoRealKeychain(t *testing.T) {
	requireKeychain(t)
	ctx := t.Context()
	dir := t.TempDir()
	var warn bytes.Buffer
	s := openWith(t, ModeAuto, nil, dir, &warn)
	key := "tokenstore-test-" + testenv.RandomString(6)
	t.Cleanup(func() { _ = keyring.Delete("mytool", key) })
	if err := s.Save(ctx, key, []byte("v")); err != nil {
		t.Fatal(err)
	}
	if raw, err := keyring.Get("mytool", key); err != nil || raw != "v" {
		t.Fatalf("keychain holds %q, %v", raw, err)
	}
	if loc, err := s.Locate(ctx, key); err != nil || loc.Kind != KindKeychain {
		t.Errorf("Locate = %+v, %v", loc, err)
	}
	// Locate after a Save or Load the keychain answered does not read it
	// again (Login and Status each did a second keychain read for it).
	kr := &countingKeyring{keyringAPI: goKeyring{}}
	s.kc.kr = kr
	if v, err := s.Load(ctx, key); err != nil || string(v) != "v" {
		t.Fatalf("Load = %q, %v", v, err)
	}
	if loc, err := s.Locate(ctx, key); err != nil || loc.Kind != KindKeychain {
		t.Errorf("Locate after Load = %+v, %v", loc, err)
	}
	if n := kr.gets.Load(); n != 1 {
		t.Errorf("Load then Locate read the keychain %d times; want 1", n)
	}
	if _, err := os.Stat(filepath.Join(dir, key+".token")); !errors.Is(err, os.ErrNotExist) || warn.Len() != 0 {
		t.Errorf("a file was written (%v) or a warning printed (%q)", err, warn.String())
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := keyring.Get("mytool", key); !errors.Is(err, keyring.ErrNotFound) {
		t.Errorf("Delete left the keychain entry: %v", err)
	}
}

// TestOpenAutoFileThenKeychain stores a token while the keychain is
// unreachable (in a process with a dead bus), then opens the same store
// with the real keychain working: the file entry wins over an older
// keychain entry, and the next Save moves it into the keychain.
func TestOpenAutoFileThenKeychain(t *testing.T) {
	requireKeychain(t)
	ctx := t.Context()
	dir := t.TempDir()
	key := "k" // the helper's key
	if _, err := keyring.Get("mytool", key); err == nil {
		t.Skip("the keyring already holds mytool/k; not touching it")
	}
	t.Cleanup(func() { _ = keyring.Delete("mytool", key) })
	if err := keyring.Set("mytool", key, "stale keychain token"); err != nil {
		t.Fatal(err)
	}

	res := runHelperProcess(t, "auto", helperDirEnv+"="+dir, helperArgEnv+"=file token",
		"DBUS_SESSION_BUS_ADDRESS=unix:path="+filepath.Join(t.TempDir(), "gone"))
	path := filepath.Join(dir, "k.token")
	for _, op := range res.Ops {
		// A key with no file entry is unknown, not "not found": the
		// unreachable keychain may hold it.
		want := op.Op == "load-missing"
		if (op.Err != "") != want || want && (op.NotFound || !op.Unavailable) {
			t.Errorf("helper %s: %q (not found %v, unavailable %v)", op.Op, op.Err, op.NotFound, op.Unavailable)
		}
	}
	if res.Load != "file token" || res.Kind != KindFile || res.Path != path {
		t.Errorf("helper loaded %q, located %s %s; want the file token at %s", res.Load, res.Kind, res.Path, path)
	}
	if strings.Count(res.Warn, "\n") != 1 || !strings.Contains(res.Warn, path) ||
		!strings.Contains(res.Warn, "cannot connect to the D-Bus session bus") || !strings.Contains(res.Warn, "unreachable") {
		t.Errorf("helper warned %q", res.Warn)
	}

	var warn bytes.Buffer
	s := openWith(t, ModeAuto, nil, dir, &warn)
	if got, err := s.Load(ctx, key); err != nil || string(got) != "file token" {
		t.Fatalf("Load with the keychain back = %q, %v; want the newer file token", got, err)
	}
	if loc, _ := s.Locate(ctx, key); loc.Kind != KindFile {
		t.Errorf("Locate = %+v, want the file", loc)
	}
	if err := s.Save(ctx, key, []byte("refreshed")); err != nil {
		t.Fatal(err)
	}
	if raw, _ := keyring.Get("mytool", key); raw != "refreshed" {
		t.Errorf("keychain holds %q after Save, want refreshed", raw)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file entry survived a Save to the keychain: %v", err)
	}
	if loc, _ := s.Locate(ctx, key); loc.Kind != KindKeychain {
		t.Errorf("Locate = %+v, want the keychain", loc)
	}
	if warn.Len() != 0 {
		t.Errorf("warned with a working keychain: %q", warn.String())
	}
}

// TestOpenKeychainOnlyDeadBus checks keychain-only mode against a real
// dead bus in a fresh process.
func TestOpenKeychainOnlyDeadBus(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "app")
	res := runHelperProcess(t, "keychain-only", helperDirEnv+"="+dir,
		"DBUS_SESSION_BUS_ADDRESS=unix:path="+filepath.Join(t.TempDir(), "gone"))
	for _, op := range res.Ops {
		if !op.Unavailable || !strings.Contains(op.Err, "file storage is disabled") {
			t.Errorf("%s: %q, want ErrKeychainUnavailable saying file storage is disabled", op.Op, op.Err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("keychain-only mode created %s: %v", dir, err)
	}
}

func TestOpenLocker(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{App: "mytool", Mode: ModeFile, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := s.(Locker).Lock(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	f, _ := NewFile(FileConfig{Dir: dir})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	if _, err := f.Lock(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a File on the same dir got the lock Open's store holds: %v", err)
	}
}
