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

// requireKeychain makes sure the private test keyring answers (see
// scripts/with-keyring).
func requireKeychain(t *testing.T) {
	t.Helper()
	testenv.RequireKeychain(t)
}

// newTestKeychain returns a Keychain on the real keyring under a
// per-test service name, emptied when the test ends.
func newTestKeychain(t *testing.T, chunk int) *Keychain {
	t.Helper()
	requireKeychain(t)
	service := "keyloop-tokenstore-" + testenv.RandomString(6)
	k, err := NewKeychain(KeychainConfig{Service: service, ChunkSize: chunk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keyring.DeleteAll(service) })
	return k
}

// countEntries counts the entries of service whose account starts with key.
// go-keyring cannot list, so it probes the chunk accounts of generation gen.
func chunkExists(k *Keychain, key, gen string, i int) bool {
	_, err := keyring.Get(k.service, k.chunkAccount(key, gen, i))
	return err == nil
}

func mainManifest(t *testing.T, k *Keychain, key string) (manifest, bool) {
	t.Helper()
	raw, err := keyring.Get(k.service, key)
	if err != nil {
		t.Fatalf("raw Get(%q): %v", key, err)
	}
	if !strings.HasPrefix(raw, manifestPrefix) {
		return manifest{}, false
	}
	m, err := parseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m, true
}

func TestKeychainRoundTrip(t *testing.T) {
	ctx := t.Context()
	k := newTestKeychain(t, 0)
	if _, err := k.Load(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load before Save: %v, want ErrNotFound", err)
	}
	if err := k.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	if err := k.Save(ctx, "k", []byte(`{"access_token":"a"}`)); err != nil {
		t.Fatal(err)
	}
	if raw, _ := keyring.Get(k.service, "k"); raw != `{"access_token":"a"}` {
		t.Errorf("a small value is stored as is, got %q", raw) // readable with secret-tool
	}
	if got, err := k.Load(ctx, "k"); err != nil || string(got) != `{"access_token":"a"}` {
		t.Fatalf("Load = %q, %v", got, err)
	}
	if err := k.Save(ctx, "k", []byte("replaced")); err != nil {
		t.Fatal(err)
	}
	if got, err := k.Load(ctx, "k"); err != nil || string(got) != "replaced" {
		t.Fatalf("Load = %q, %v", got, err)
	}
	if err := k.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Load(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after Delete: %v, want ErrNotFound", err)
	}
}

func TestKeychainProfiles(t *testing.T) {
	ctx := t.Context()
	k := newTestKeychain(t, 0)
	const iss = "https://auth.example.com"
	keys := []string{Key("", iss, "mytool"), Key("work", iss, "mytool"), Key("", "https://other.example", "mytool")}
	for _, key := range keys {
		if err := k.Save(ctx, key, []byte("token for "+key)); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Delete(ctx, keys[1]); err != nil {
		t.Fatal(err)
	}
	for i, key := range keys {
		got, err := k.Load(ctx, key)
		if i == 1 {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("deleted profile: Load = %q, %v", got, err)
			}
			continue
		}
		if err != nil || string(got) != "token for "+key {
			t.Errorf("Load(%q) = %q, %v", key, got, err)
		}
	}
}

func TestKeychainChunks(t *testing.T) {
	ctx := t.Context()
	k := newTestKeychain(t, 256)
	big := []byte(strings.Repeat("héllo wörld 0123456789 ", 300)) // ~7 KB, multi-byte runes across chunk edges
	binary := make([]byte, 1000)
	for i := range binary {
		binary[i] = byte(i * 7)
	}
	for name, value := range map[string][]byte{
		"big":             big,
		"binary":          binary,
		"looks like ours": []byte(manifestPrefix + "gen=0 n=1"),
		"empty":           {},
		"exactly a chunk": bytes.Repeat([]byte("x"), 256),
	} {
		t.Run(name, func(t *testing.T) {
			if err := k.Save(ctx, name, value); err != nil {
				t.Fatal(err)
			}
			got, err := k.Load(ctx, name)
			if err != nil || !bytes.Equal(got, value) {
				t.Fatalf("Load = %d bytes, %v; want the %d bytes saved", len(got), err, len(value))
			}
		})
	}
	m, chunked := mainManifest(t, k, "big")
	if !chunked || m.n < 20 || !chunkExists(k, "big", m.gen, m.n-1) {
		t.Fatalf("big value: manifest %+v, chunked %v; want ≥ 20 chunks stored", m, chunked)
	}
	// Replacing a chunked value deletes the old generation's chunks.
	if err := k.Save(ctx, "big", append(big, '!')); err != nil {
		t.Fatal(err)
	}
	m2, _ := mainManifest(t, k, "big")
	if m2.gen == m.gen || chunkExists(k, "big", m.gen, 0) || chunkExists(k, "big", m.gen, m.n-1) {
		t.Errorf("old generation %s still stored after replace", m.gen)
	}
	if err := k.Save(ctx, "big", []byte("small")); err != nil {
		t.Fatal(err)
	}
	if _, chunked := mainManifest(t, k, "big"); chunked || chunkExists(k, "big", m2.gen, 0) {
		t.Errorf("a small value replacing a chunked one must be inline, with the chunks gone")
	}
	if err := k.Save(ctx, "big", big); err != nil {
		t.Fatal(err)
	}
	m3, _ := mainManifest(t, k, "big")
	if err := k.Delete(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	if chunkExists(k, "big", m3.gen, 0) {
		t.Error("Delete left chunks behind")
	}
}

func TestKeychainDamagedChunks(t *testing.T) {
	ctx := t.Context()
	k := newTestKeychain(t, 256)
	value := []byte(strings.Repeat("0123456789", 100))
	for name, damage := range map[string]func(m manifest){
		"missing chunk":  func(m manifest) { _ = keyring.Delete(k.service, k.chunkAccount("k", m.gen, 2)) },
		"altered chunk":  func(m manifest) { _ = keyring.Set(k.service, k.chunkAccount("k", m.gen, 1), strings.Repeat("9", 256)) },
		"bad manifest":   func(manifest) { _ = keyring.Set(k.service, "k", manifestPrefix+"gen=zz") },
		"wrong checksum": func(m manifest) { m.sum = strings.Repeat("0", 64); _ = keyring.Set(k.service, "k", m.String()) },
	} {
		t.Run(name, func(t *testing.T) {
			if err := k.Save(ctx, "k", value); err != nil {
				t.Fatal(err)
			}
			m, _ := mainManifest(t, k, "k")
			damage(m)
			got, err := k.Load(ctx, "k")
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load = %d bytes, %v; want ErrCorrupt", len(got), err)
			}
			if err := k.Delete(ctx, "k"); err != nil {
				t.Fatalf("Delete of a damaged value: %v", err)
			}
			if _, err := k.Load(ctx, "k"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Load after Delete: %v", err)
			}
		})
	}
}

// faultyKeyring passes calls to the real keyring but fails the failAt'th
// Set (counting from 1), or refuses Sets above tooBig bytes.
type faultyKeyring struct {
	sets    atomic.Int32
	failAt  int32
	tooBig  int
	blockAt int32         // the Set that waits for unblock before it runs
	blocked chan struct{} // closed when that Set starts waiting
	unblock chan struct{}
	landed  chan struct{} // closed when that Set has run
	// landThenFail is the Set that stores its value and then reports an
	// error anyway, like a reply lost after the write.
	landThenFail int32
}

var errInjected = errors.New("injected failure")

func (f *faultyKeyring) Set(s, u, p string) error {
	if f.tooBig > 0 && len(p) > f.tooBig {
		return keyring.ErrSetDataTooBig
	}
	n := f.sets.Add(1)
	if n == f.failAt {
		return errInjected
	}
	if n == f.landThenFail {
		if err := keyring.Set(s, u, p); err != nil {
			return err
		}
		return errInjected
	}
	if n == f.blockAt {
		close(f.blocked)
		<-f.unblock
		defer close(f.landed)
	}
	return keyring.Set(s, u, p)
}
func (f *faultyKeyring) Get(s, u string) (string, error) { return keyring.Get(s, u) }
func (f *faultyKeyring) Delete(s, u string) error        { return keyring.Delete(s, u) }

// TestKeychainHalfWritten fails a Save at each of its keychain writes: the
// previous value must stay readable, whole.
func TestKeychainHalfWritten(t *testing.T) {
	ctx := t.Context()
	k := newTestKeychain(t, 256)
	old := []byte(strings.Repeat("old-", 200))  // 4 chunks
	next := []byte(strings.Repeat("new-", 200)) // 4 chunks + manifest = 5 Sets
	for failAt := int32(1); failAt <= 5; failAt++ {
		k.kr = goKeyring{}
		if err := k.Save(ctx, "k", old); err != nil {
			t.Fatal(err)
		}
		k.kr = &faultyKeyring{failAt: failAt}
		if err := k.Save(ctx, "k", next); err == nil {
			t.Fatalf("Save with write %d failing succeeded", failAt)
		}
		got, err := k.Load(ctx, "k")
		if err != nil || !bytes.Equal(got, old) {
			t.Fatalf("write %d failed: Load = %d bytes, %v; want the old value", failAt, len(got), err)
		}
	}
}

// TestKeychainManifestLandedDespiteError: a manifest Set that reports an
// error after it stored the manifest must not take the chunks it points to
// with it.
func TestKeychainManifestLandedDespiteError(t *testing.T) {
	ctx := t.Context()
	k := newTestKeychain(t, 256)
	if err := k.Save(ctx, "k", []byte(strings.Repeat("old-", 200))); err != nil {
		t.Fatal(err)
	}
	next := []byte(strings.Repeat("new-", 200)) // 4 chunks, the manifest is Set 5
	k.kr = &faultyKeyring{landThenFail: 5}
	if err := k.Save(ctx, "k", next); err != nil {
		t.Fatalf("Save whose manifest landed = %v, want success", err)
	}
	k.kr = goKeyring{}
	if got, err := k.Load(ctx, "k"); err != nil || !bytes.Equal(got, next) {
		t.Fatalf("Load = %d bytes, %v; want the new value", len(got), err)
	}
}

// racingKeyring runs race once, right before the first chunk is read.
type racingKeyring struct {
	goKeyring
	race func()
}

func (r *racingKeyring) Get(s, u string) (string, error) {
	if strings.Contains(u, "/") && r.race != nil {
		race := r.race
		r.race = nil
		race()
	}
	return keyring.Get(s, u)
}

// TestKeychainLoadRacesSave has another writer replace or delete a chunked
// value between a Load's read of the manifest and of the chunks: the Load
// must return what is stored afterwards, not ErrCorrupt.
func TestKeychainLoadRacesSave(t *testing.T) {
	ctx := t.Context()
	k := newTestKeychain(t, 256)
	other, _ := NewKeychain(KeychainConfig{Service: k.service, ChunkSize: 256})
	chunked := []byte(strings.Repeat("new-", 200))
	for name, c := range map[string]struct {
		race func() error
		want []byte // nil: ErrNotFound
	}{
		"replaced by a small value":   {func() error { return other.Save(ctx, "k", []byte("small")) }, []byte("small")},
		"replaced by a chunked value": {func() error { return other.Save(ctx, "k", chunked) }, chunked},
		"deleted":                     {func() error { return other.Delete(ctx, "k") }, nil},
	} {
		t.Run(name, func(t *testing.T) {
			k.kr = goKeyring{}
			if err := k.Save(ctx, "k", []byte(strings.Repeat("old-", 200))); err != nil {
				t.Fatal(err)
			}
			var raceErr error
			k.kr = &racingKeyring{race: func() { raceErr = c.race() }}
			got, err := k.Load(ctx, "k")
			if raceErr != nil {
				t.Fatal(raceErr)
			}
			if c.want == nil {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Load = %d bytes, %v; want ErrNotFound", len(got), err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, c.want) {
				t.Fatalf("Load = %d bytes, %v; want the %d bytes the racing Save stored", len(got), err, len(c.want))
			}
		})
	}
}

// TestKeychainAbandonedManifest cancels a Save while its manifest write is
// in flight; the write lands afterwards and must find its chunks.
func TestKeychainAbandonedManifest(t *testing.T) {
	k := newTestKeychain(t, 256)
	value := []byte(strings.Repeat("new-", 200)) // 4 chunks, the manifest is Set 5
	f := &faultyKeyring{blockAt: 5, blocked: make(chan struct{}), unblock: make(chan struct{}), landed: make(chan struct{})}
	k.kr = f
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-f.blocked; cancel() }()
	if err := k.Save(ctx, "k", value); !errors.Is(err, context.Canceled) {
		t.Fatalf("Save = %v, want context.Canceled", err)
	}
	close(f.unblock)
	<-f.landed
	if got, err := k.Load(t.Context(), "k"); err != nil || !bytes.Equal(got, value) {
		t.Fatalf("Load after the abandoned manifest landed = %d bytes, %v; want the whole new value", len(got), err)
	}
}

func TestKeychainTooBigHalvesChunks(t *testing.T) {
	ctx := t.Context()
	k := newTestKeychain(t, 4096)
	k.kr = &faultyKeyring{tooBig: 700} // a platform limit lower than configured
	value := []byte(strings.Repeat("abcdefghij", 300))
	if err := k.Save(ctx, "k", value); err != nil {
		t.Fatal(err)
	}
	if got, err := k.Load(ctx, "k"); err != nil || !bytes.Equal(got, value) {
		t.Fatalf("Load = %d bytes, %v", len(got), err)
	}
	if m, _ := mainManifest(t, k, "k"); m.n != 6 {
		t.Errorf("stored in %d chunks, want 6 of 512 bytes", m.n)
	}
}

// blockingKeyring never answers until released.
type blockingKeyring struct{ release chan struct{} }

func (b blockingKeyring) Set(string, string, string) error   { <-b.release; return nil }
func (b blockingKeyring) Get(string, string) (string, error) { <-b.release; return "", nil }
func (b blockingKeyring) Delete(string, string) error        { <-b.release; return nil }

func TestKeychainTimeoutAndCancel(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	k, _ := NewKeychain(KeychainConfig{Service: "s", Timeout: 20 * time.Millisecond})
	k.kr = blockingKeyring{release}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := k.Load(ctx, "k"); !errors.Is(err, context.Canceled) || errors.Is(err, ErrKeychainUnavailable) {
		t.Fatalf("Load with a cancelled ctx: %v, want context.Canceled", err)
	}
	err := k.Save(t.Context(), "k", []byte("v"))
	if !errors.Is(err, ErrKeychainUnavailable) || !strings.Contains(err.Error(), "did not answer within 20ms") {
		t.Fatalf("Save on a hung keychain: %v, want ErrKeychainUnavailable with the reason", err)
	}
	// From now on every call fails at once, even with a long timeout left.
	k.timeout = time.Hour
	if _, err := k.Load(t.Context(), "k"); !errors.Is(err, ErrKeychainUnavailable) {
		t.Fatalf("Load after a timeout: %v, want ErrKeychainUnavailable", err)
	}
}

func TestClassify(t *testing.T) {
	if err := classify(keyring.ErrNotFound); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrKeychainUnavailable) {
		t.Errorf("classify(ErrNotFound) = %v", err)
	}
	if err := classify(errors.New(`exec: "dbus-launch": executable file not found in $PATH`)); !errors.Is(err, ErrKeychainUnavailable) ||
		!strings.Contains(err.Error(), "no D-Bus session bus") {
		t.Errorf("classify(no dbus-launch) = %v", err)
	}
	if err := classify(errors.New("failed to unlock correct collection '/org/freedesktop/secrets/aliases/default'")); !errors.Is(err, ErrKeychainUnavailable) ||
		!strings.Contains(err.Error(), "locked") {
		t.Errorf("classify(locked) = %v", err)
	}
}

// fakeDBusLaunch puts a dbus-launch on PATH that records that it ran (and
// fails), and returns the file it writes. godbus runs dbus-launch when it
// finds no session bus; the Keychain must never let it.
func fakeDBusLaunch(t *testing.T) (pathEnv, marker string) {
	t.Helper()
	bin := t.TempDir()
	marker = filepath.Join(t.TempDir(), "dbus-launch-ran")
	script := "#!/bin/sh\necho ran >> " + marker + "\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "dbus-launch"), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return "PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"), marker
}

// TestKeychainUnavailable runs the Keychain in fresh processes against
// buses that cannot serve it: each call must fail, promptly, with
// ErrKeychainUnavailable and a reason a person understands, and say
// whether there is no keychain at all (ErrNoKeychain) or one that cannot be
// reached. No case may run dbus-launch.
func TestKeychainUnavailable(t *testing.T) {
	cases := []struct {
		name   string
		env    func(t *testing.T) []string
		reason string
		absent bool
	}{
		{"no bus address", func(t *testing.T) []string {
			return []string{"DBUS_SESSION_BUS_ADDRESS=", "XDG_RUNTIME_DIR=" + t.TempDir()}
		}, "no D-Bus session bus", true},
		{"autolaunch address", func(t *testing.T) []string {
			return []string{"DBUS_SESSION_BUS_ADDRESS=autolaunch:", "XDG_RUNTIME_DIR=" + t.TempDir()}
		}, "no D-Bus session bus", true},
		{"dead socket", func(t *testing.T) []string {
			return []string{"DBUS_SESSION_BUS_ADDRESS=unix:path=" + t.TempDir() + "/gone"}
		}, "cannot connect to the D-Bus session bus", false},
		{"bus without Secret Service", func(t *testing.T) []string {
			return []string{"DBUS_SESSION_BUS_ADDRESS=" + testenv.StartBus(t)}
		}, "no Secret Service provider", true},
		{"runtime dir bus without Secret Service", func(t *testing.T) []string {
			addr := testenv.StartBus(t) // listens on <dir>/bus
			return []string{"DBUS_SESSION_BUS_ADDRESS=", "XDG_RUNTIME_DIR=" + filepath.Dir(strings.TrimPrefix(addr, "unix:path="))}
		}, "no Secret Service provider", true},
		{"locked keyring", func(t *testing.T) []string {
			return []string{"DBUS_SESSION_BUS_ADDRESS=" + testenv.StartLockedKeyring(t)}
		}, "the keyring is locked", false},
		{"bus that never answers", func(t *testing.T) []string {
			return []string{"DBUS_SESSION_BUS_ADDRESS=" + startSilentSocket(t)}
		}, "did not answer within 500ms", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path, marker := fakeDBusLaunch(t)
			res := runHelperProcess(t, "keychain", append(c.env(t), path)...)
			if len(res.Ops) != 3 {
				t.Fatalf("helper reported %+v", res)
			}
			for _, op := range res.Ops {
				if !op.Unavailable || !strings.Contains(op.Err, c.reason) {
					t.Errorf("%s: %q (unavailable=%v), want ErrKeychainUnavailable saying %q", op.Op, op.Err, op.Unavailable, c.reason)
				}
				if op.Absent != c.absent {
					t.Errorf("%s: %q: ErrNoKeychain = %v, want %v", op.Op, op.Err, op.Absent, c.absent)
				}
				if strings.Contains(op.Err, "secret-value") {
					t.Errorf("%s: error quotes the value: %q", op.Op, op.Err)
				}
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("dbus-launch was run: a D-Bus daemon would be left behind")
			}
		})
	}
}
