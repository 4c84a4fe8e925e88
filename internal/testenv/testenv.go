// Package testenv gives tests the real parts they need (the OS keychain, a
// headless Chromium) or explains what to install.
//
// A real part that is missing makes the test fail when CI=true (.ci/run
// installed it), and skip with an install hint elsewhere.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/zalando/go-keyring"
)

// InCI reports whether the tests run in CI, where every real part must be
// present.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing fails the test in CI and skips it elsewhere, saying what to install.
func Missing(t testing.TB, what, hint string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is missing in CI: %s", what, hint)
	}
	t.Skipf("%s is not available (%s)", what, hint)
}

// PrivateKeyringEnv is set by scripts/with-keyring when it runs the tests
// against a private, throw-away gnome-keyring. Tests touch the keychain only
// when it is set, so a developer's own keyring is never written.
const PrivateKeyringEnv = "KEYLOOP_TEST_KEYRING"

// RequireKeychain makes sure the test runs against a private, unlocked
// Secret Service (see scripts/with-keyring) and that it answers.
func RequireKeychain(t testing.TB) {
	t.Helper()
	const hint = "apt-get install gnome-keyring, then run the tests through `make test` (scripts/with-keyring)"
	if os.Getenv(PrivateKeyringEnv) != "1" {
		Missing(t, "a private Secret Service", hint)
		return
	}
	service := "keyloop-testenv-probe"
	user := RandomString(8)
	errc := make(chan error, 1)
	go func() {
		if err := keyring.Set(service, user, "probe"); err != nil {
			errc <- err
			return
		}
		errc <- keyring.Delete(service, user)
	}()
	select {
	case err := <-errc:
		if err != nil {
			Missing(t, "a working Secret Service", hint+": "+err.Error())
		}
	case <-time.After(10 * time.Second):
		Missing(t, "a responsive Secret Service", hint)
	}
}

// ChromiumPath returns the Chromium executable to drive, from
// $KEYLOOP_CHROMIUM or the usual install locations, or "".
func ChromiumPath() string {
	if p := os.Getenv("KEYLOOP_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Browser starts a headless Chromium for the test and returns a chromedp
// context for one tab. The browser stops when the test ends. Give each step
// its own timeout with context.WithTimeout on the returned context, never on
// the first Run (that would kill the browser).
func Browser(t testing.TB) context.Context {
	t.Helper()
	path := ChromiumPath()
	if path == "" {
		Missing(t, "Chromium", "apt-get install chromium, or set KEYLOOP_CHROMIUM")
		return nil
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	if err := chromedp.Do(ctx); err != nil { // start the browser on an untimed context
		t.Fatalf("start Chromium at %s: %v", path, err)
	}
	return ctx
}

// RandomString returns n random bytes, hex-encoded.
func RandomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("testenv: %v", err))
	}
	return hex.EncodeToString(b)
}

// SyncBuffer is a bytes.Buffer that is safe for concurrent writes and
// reads, for capturing a process's or a goroutine's output while a test
// reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
