package tokenstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/zalando/go-keyring"
)

// ErrKeychainUnavailable means the OS keychain cannot be used right now: on
// Linux no D-Bus session bus, no Secret Service provider (such as
// gnome-keyring) on it, a bus that does not connect, a locked collection
// that could not be unlocked, or a keychain that did not answer within the
// timeout. Errors that wrap it carry a *KeychainError saying which and
// where, and wrap the underlying cause too.
var ErrKeychainUnavailable = errors.New("tokenstore: keychain unavailable")

// ErrNoKeychain means there is no keychain in this session at all: on Linux
// no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset and
// $XDG_RUNTIME_DIR/bus does not exist) or a bus without a Secret Service
// provider; elsewhere a platform go-keyring does not support. It always
// comes with ErrKeychainUnavailable. A keychain that exists but cannot be
// reached or used (a bus address that does not connect, a daemon that does
// not answer, a locked collection) is unavailable without being absent:
// what it holds is unknown.
var ErrNoKeychain = errors.New("tokenstore: no keychain")

// KeychainError says why and where the keychain could not be used. It wraps
// ErrKeychainUnavailable, ErrNoKeychain when Absent, and Err.
type KeychainError struct {
	// Where names the keychain for people: "the Secret Service on the
	// D-Bus session bus at unix:path=/run/user/1000/bus", "the macOS
	// Keychain", "the Windows Credential Manager".
	Where string
	// Reason says what went wrong, for people: "the keyring is locked and
	// could not be unlocked".
	Reason string
	// Absent is true when there is no keychain in this session
	// (ErrNoKeychain), false when there is one that could not be reached
	// or used.
	Absent bool
	// Err is the underlying error; nil for a timeout.
	Err error
}

func (e *KeychainError) Error() string {
	s := "keychain unavailable: " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrKeychainUnavailable, ErrNoKeychain when Absent, and Err.
func (e *KeychainError) Unwrap() []error {
	errs := []error{ErrKeychainUnavailable}
	if e.Absent {
		errs = append(errs, ErrNoKeychain)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// DefaultKeychainTimeout bounds each keychain call when
// KeychainConfig.Timeout is zero.
const DefaultKeychainTimeout = 3 * time.Second

// defaultChunkSize is the largest string stored in one entry when
// KeychainConfig.ChunkSize is zero; see there.
func defaultChunkSize() int {
	switch runtime.GOOS {
	case "windows":
		return 2560
	case "darwin":
		return 2000
	}
	return 128 << 10
}

// minChunkSize is the smallest chunk size a Keychain uses; below it the
// manifest itself would not fit.
const minChunkSize = 256

// KeychainConfig configures a Keychain store.
type KeychainConfig struct {
	// Service is the keychain service name entries are filed under, usually
	// the CLI's name. Required.
	Service string
	// Timeout bounds every single keychain call. Zero means
	// DefaultKeychainTimeout.
	Timeout time.Duration
	// ChunkSize is the largest string stored in one keychain entry; larger
	// values are split over several entries (see Keychain). Zero means the
	// platform's default: 2560 bytes on Windows (Credential Manager's limit
	// per credential blob; go-keyring v0.2.8 keyring_windows.go refuses
	// more), 2000 on macOS (go-keyring v0.2.8 keyring_darwin.go base64-encodes
	// the value and refuses a `security -i` command line over 4096 bytes,
	// which also holds the service and account names: 2000 bytes become
	// 2668, leaving room for names of several hundred bytes), and 128 KiB
	// elsewhere (the Secret Service has no hard limit but slows down with
	// large values). A value of exactly ChunkSize bytes is stored in one
	// entry. Values below 256 are raised to 256.
	ChunkSize int
}

// keyringAPI is the part of go-keyring the Keychain uses; tests replace it.
type keyringAPI interface {
	Set(service, user, password string) error
	Get(service, user string) (string, error)
	Delete(service, user string) error
}

type goKeyring struct{}

// The real keyring first makes sure a session bus is there (sessionBus), so
// that go-keyring's D-Bus library never starts one of its own.

func (goKeyring) Set(s, u, p string) error {
	if err := sessionBus(); err != nil {
		return err
	}
	return keyring.Set(s, u, p)
}

func (goKeyring) Get(s, u string) (string, error) {
	if err := sessionBus(); err != nil {
		return "", err
	}
	if v, ok := fastGet(s, u); ok {
		return v, nil
	}
	return keyring.Get(s, u)
}

func (goKeyring) Delete(s, u string) error {
	if err := sessionBus(); err != nil {
		return err
	}
	return keyring.Delete(s, u)
}

// Keychain is a Store in the OS keychain (macOS Keychain, Windows Credential
// Manager, the Secret Service on Linux) through github.com/zalando/go-keyring,
// one entry per key with the key as the account name. Create it with
// NewKeychain. It implements Locator.
//
// Every keychain call runs in its own goroutine and is bounded by the
// configured timeout and by ctx. go-keyring cannot be interrupted, so a call
// that hangs (a keychain waiting on a desktop prompt, a bus that never
// answers) is abandoned: its goroutine stays blocked until the call returns,
// possibly for the life of the process. After one call timed out the
// Keychain fails every later call at once with ErrKeychainUnavailable, since
// go-keyring shares one D-Bus connection whose lock the hung call may hold.
//
// A value that is not valid UTF-8, starts with the manifest prefix, or is
// longer than the chunk size is stored in chunks: the chunks go under
// "<key>/<generation>/<i>" accounts first, then one Set replaces the main
// entry with a small manifest (generation, count, length, SHA-256), then the
// previous generation's chunks are deleted. Load checks the hash, so a
// half-written set of chunks never reads as a token: a Save that fails
// midway leaves the previous value, and a damaged set reads as ErrCorrupt.
// Chunks orphaned by a crash mid-Save are not reclaimed. If the keychain
// refuses a chunk as too big, Save halves the chunk size and tries again.
//
// On Linux a Keychain never starts a D-Bus daemon: with
// DBUS_SESSION_BUS_ADDRESS unset (or "autolaunch:") it sets it to the
// per-user bus $XDG_RUNTIME_DIR/bus (/run/user/UID/bus when XDG_RUNTIME_DIR
// is unset) when that socket exists, and otherwise fails with ErrNoKeychain
// without calling go-keyring, whose D-Bus library would run dbus-launch and
// leave a bus behind.
//
// Readers never see a torn value, but concurrent Saves of one key should be
// serialized with a Locker (as Open's store provides); otherwise the losing
// Save's chunks may be orphaned. A Save abandoned because ctx ended may still
// complete in the keychain afterwards.
type Keychain struct {
	service string
	timeout time.Duration
	chunk   int
	kr      keyringAPI
	hung    atomic.Pointer[error] // set once a call has timed out
}

// NewKeychain returns a Keychain store. It does not contact the keychain.
func NewKeychain(cfg KeychainConfig) (*Keychain, error) {
	if cfg.Service == "" {
		return nil, errors.New("tokenstore: KeychainConfig.Service is empty")
	}
	k := &Keychain{service: cfg.Service, timeout: cfg.Timeout, chunk: cfg.ChunkSize, kr: goKeyring{}}
	if k.timeout <= 0 {
		k.timeout = DefaultKeychainTimeout
	}
	if k.chunk == 0 {
		k.chunk = defaultChunkSize()
	}
	k.chunk = max(k.chunk, minChunkSize)
	return k, nil
}

// manifestPrefix starts a main entry that describes a chunked value.
const manifestPrefix = "keyloop-chunks/1 "

type manifest struct {
	gen    string // 16 hex digits
	n      int    // number of chunks
	length int    // length of the decoded value
	sum    string // hex SHA-256 of the decoded value
	b64    bool   // chunks hold base64 of the value
}

func (m manifest) String() string {
	enc := "raw"
	if m.b64 {
		enc = "b64"
	}
	return fmt.Sprintf("%sgen=%s n=%d len=%d sha256=%s enc=%s", manifestPrefix, m.gen, m.n, m.length, m.sum, enc)
}

func parseManifest(s string) (manifest, error) {
	var m manifest
	for _, f := range strings.Fields(strings.TrimPrefix(s, manifestPrefix)) {
		name, v, _ := strings.Cut(f, "=")
		var err error
		switch name {
		case "gen":
			m.gen = v
		case "n":
			m.n, err = strconv.Atoi(v)
		case "len":
			m.length, err = strconv.Atoi(v)
		case "sha256":
			m.sum = v
		case "enc":
			m.b64 = v == "b64"
		}
		if err != nil {
			return m, fmt.Errorf("%w: keychain chunk manifest is unreadable", ErrCorrupt)
		}
	}
	if len(m.gen) != 16 || m.n < 1 || m.n > 1<<16 || m.length < 0 || len(m.sum) != 64 {
		return m, fmt.Errorf("%w: keychain chunk manifest is unreadable", ErrCorrupt)
	}
	return m, nil
}

func (k *Keychain) chunkAccount(key, gen string, i int) string {
	return key + "/" + gen + "/" + strconv.Itoa(i)
}

// call runs fn with the timeout and ctx, classifying its error.
func (k *Keychain) call(ctx context.Context, fn func() (string, error)) (string, error) {
	if errp := k.hung.Load(); errp != nil {
		return "", *errp
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	type result struct {
		s   string
		err error
	}
	done := make(chan result, 1) // buffered: an abandoned call still finishes
	go func() {
		s, err := fn()
		done <- result{s, err}
	}()
	timer := time.NewTimer(k.timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.s, classify(r.err)
	case <-ctx.Done():
		return "", ctx.Err()
	case <-timer.C:
		var err error = &KeychainError{Where: keychainWhere(), Reason: fmt.Sprintf("the keychain did not answer within %v", k.timeout)}
		k.hung.CompareAndSwap(nil, &err)
		return "", err
	}
}

// errTooBig marks go-keyring's ErrSetDataTooBig inside the Keychain.
var errTooBig = errors.New("value too big for one keychain entry")

// classify maps a go-keyring error onto this package's errors. Anything but
// "not found" and "too big" means the keychain is not usable.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, keyring.ErrNotFound), dbusVanished(err):
		return ErrNotFound
	case errors.Is(err, keyring.ErrSetDataTooBig):
		return fmt.Errorf("%w: %w", errTooBig, err)
	}
	return &KeychainError{Where: keychainWhere(), Reason: reason(err), Absent: absent(err), Err: err}
}

// absent reports whether err means there is no keychain in this session.
func absent(err error) bool {
	msg := err.Error()
	return errors.Is(err, errNoSessionBus) || errors.Is(err, exec.ErrNotFound) ||
		errors.Is(err, keyring.ErrUnsupportedPlatform) ||
		strings.Contains(msg, "dbus-launch") || strings.Contains(msg, "couldn't determine address of session bus") ||
		dbusAbsent(err)
}

// errNoSessionBus is sessionBus's error when there is no bus to talk to.
var errNoSessionBus = errors.New("no D-Bus session bus")

// reason describes why the keychain failed, for people.
func reason(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, errNoSessionBus):
		return "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset and $XDG_RUNTIME_DIR/bus does not exist)"
	case errors.Is(err, keyring.ErrUnsupportedPlatform):
		return "this system has no keychain go-keyring supports"
	case errors.Is(err, exec.ErrNotFound) || strings.Contains(msg, "dbus-launch"):
		return "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset and dbus-launch is not installed)"
	case strings.Contains(msg, "couldn't determine address of session bus"):
		return "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset)"
	}
	if r := dbusReason(err); r != "" {
		return r
	}
	switch {
	case strings.Contains(msg, "unlock"):
		return "the keyring is locked and could not be unlocked"
	case strings.Contains(msg, "prompt"):
		return "the keychain asked for a prompt that was dismissed"
	}
	return "the keychain failed"
}

// Load implements Store. A chunked value whose chunks are missing or do not
// match the manifest's hash reads as ErrCorrupt, unless the main entry
// changed meanwhile (a concurrent Save or Delete): then Load reads again.
func (k *Keychain) Load(ctx context.Context, key string) ([]byte, error) {
	main, err := k.call(ctx, func() (string, error) { return k.kr.Get(k.service, key) })
	for range 5 {
		if err != nil {
			return nil, wrapOp("load", key, err)
		}
		v, lerr := k.decode(ctx, key, main)
		if !errors.Is(lerr, ErrCorrupt) {
			return v, wrapOp("load", key, lerr)
		}
		var cur string
		cur, err = k.call(ctx, func() (string, error) { return k.kr.Get(k.service, key) })
		if err == nil && cur == main {
			return nil, wrapOp("load", key, lerr) // damaged, not merely replaced
		}
		main = cur // or err: a concurrent Delete reads as ErrNotFound
	}
	return nil, wrapOp("load", key, fmt.Errorf("%w: the value kept changing while it was read", ErrCorrupt))
}

func wrapOp(op, key string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("tokenstore: keychain %s %q: %w", op, key, err)
}

// decode returns the value whose main entry is main, reading its chunks when
// main is a manifest.
func (k *Keychain) decode(ctx context.Context, key, main string) ([]byte, error) {
	if !strings.HasPrefix(main, manifestPrefix) {
		return []byte(main), nil
	}
	m, err := parseManifest(main)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for i := range m.n {
		c, err := k.call(ctx, func() (string, error) { return k.kr.Get(k.service, k.chunkAccount(key, m.gen, i)) })
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: keychain chunk %d of %d is missing", ErrCorrupt, i+1, m.n)
		}
		if err != nil {
			return nil, err
		}
		b.WriteString(c)
	}
	v := []byte(b.String())
	if m.b64 {
		if v, err = base64.StdEncoding.DecodeString(b.String()); err != nil {
			return nil, fmt.Errorf("%w: keychain chunks do not decode", ErrCorrupt)
		}
	}
	sum := sha256.Sum256(v)
	if len(v) != m.length || hex.EncodeToString(sum[:]) != m.sum {
		return nil, fmt.Errorf("%w: keychain chunks do not match their manifest", ErrCorrupt)
	}
	return v, nil
}

// Save implements Store; see Keychain for how large values are stored.
func (k *Keychain) Save(ctx context.Context, key string, value []byte) error {
	old, _ := k.oldManifest(ctx, key)
	var err error
	for size := k.chunk; size >= minChunkSize; size /= 2 {
		if err = k.save(ctx, key, value, size); !errors.Is(err, errTooBig) {
			break
		}
	}
	if err != nil {
		return wrapOp("save", key, err)
	}
	if old != nil {
		k.deleteChunks(ctx, key, *old)
	}
	return nil
}

// oldManifest returns the manifest now under key, if the entry is chunked.
func (k *Keychain) oldManifest(ctx context.Context, key string) (*manifest, error) {
	main, err := k.call(ctx, func() (string, error) { return k.kr.Get(k.service, key) })
	if err != nil || !strings.HasPrefix(main, manifestPrefix) {
		return nil, err
	}
	m, err := parseManifest(main)
	if err != nil {
		return nil, err
	}
	return &m, nil
}

func (k *Keychain) save(ctx context.Context, key string, value []byte, size int) error {
	s := string(value)
	inline := len(s) <= size && utf8.ValidString(s) && !strings.HasPrefix(s, manifestPrefix)
	if inline {
		_, err := k.call(ctx, func() (string, error) { return "", k.kr.Set(k.service, key, s) })
		return err
	}
	sum := sha256.Sum256(value)
	m := manifest{length: len(value), sum: hex.EncodeToString(sum[:])}
	var gen [8]byte
	_, _ = rand.Read(gen[:])
	m.gen = hex.EncodeToString(gen[:])
	if !utf8.ValidString(s) {
		s, m.b64 = base64.StdEncoding.EncodeToString(value), true
	}
	var parts []string
	for len(s) > 0 {
		n := min(size, len(s))
		for n < len(s) && n > 0 && !utf8.RuneStart(s[n]) { // do not split a rune
			n--
		}
		parts = append(parts, s[:n])
		s = s[n:]
	}
	if len(parts) == 0 {
		parts = []string{""}
	}
	m.n = len(parts)
	for i, p := range parts {
		if _, err := k.call(ctx, func() (string, error) { return "", k.kr.Set(k.service, k.chunkAccount(key, m.gen, i), p) }); err != nil {
			m.n = i
			k.deleteChunks(ctx, key, m)
			return err
		}
	}
	if _, err := k.call(ctx, func() (string, error) { return "", k.kr.Set(k.service, key, m.String()) }); err != nil {
		// When the call was abandoned (ctx ended, timeout) the manifest may
		// still land; its chunks must then be there.
		if ctx.Err() != nil || k.hung.Load() != nil {
			return err
		}
		// A Set can fail after it stored the value; only chunks the main
		// entry does not point to may go.
		cur, gerr := k.call(ctx, func() (string, error) { return k.kr.Get(k.service, key) })
		switch {
		case gerr == nil && cur == m.String():
			return nil
		case gerr == nil || errors.Is(gerr, ErrNotFound):
			k.deleteChunks(ctx, key, m)
		}
		return err // when the main entry cannot be read, the chunks stay: orphans, never a lost value
	}
	return nil
}

// deleteChunks removes m's chunks, best effort: a chunk left behind is
// unreachable garbage, never read as a value. Each call is still bounded by
// the timeout.
func (k *Keychain) deleteChunks(ctx context.Context, key string, m manifest) {
	ctx = context.WithoutCancel(ctx) // clean up even after the caller gave up
	for i := range m.n {
		_, _ = k.call(ctx, func() (string, error) { return "", k.kr.Delete(k.service, k.chunkAccount(key, m.gen, i)) })
	}
}

// Delete implements Store. It removes the main entry first, so a Delete cut
// short leaves either the whole value or none.
func (k *Keychain) Delete(ctx context.Context, key string) error {
	old, err := k.oldManifest(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return wrapOp("delete", key, err)
	}
	if _, err := k.call(ctx, func() (string, error) { return "", k.kr.Delete(k.service, key) }); err != nil && !errors.Is(err, ErrNotFound) {
		return wrapOp("delete", key, err)
	}
	if old != nil {
		k.deleteChunks(ctx, key, *old)
	}
	return nil
}

// Locate implements Locator: values are always in the keychain.
func (k *Keychain) Locate(context.Context, string) (Location, error) {
	return Location{Kind: KindKeychain}, nil
}

// probe reads key's main entry, to learn whether the keychain answers.
func (k *Keychain) probe(ctx context.Context, key string) error {
	_, err := k.call(ctx, func() (string, error) { return k.kr.Get(k.service, key) })
	return err
}
