package main

// End to end: storage failures are a state of their own, no D-Bus
// daemon is ever started, and a headless session with a failing $BROWSER
// still gets the paste prompt. The file fallback is one
// line at login and in status, never on a token refresh.

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/testenv"
)

// with returns a copy of m with more environment variables.
func (m *mytoolEnv) with(env ...string) *mytoolEnv {
	cp := *m
	cp.extra = append(append([]string(nil), m.extra...), env...)
	return &cp
}

// TestKeychainUnreachable: with the keychain that
// holds the login unreachable, status and token say they cannot tell (exit
// 2), not "not logged in", and logout does not claim success.
func TestKeychainUnreachable(t *testing.T) {
	testenv.RequireKeychain(t)
	be := startBackend(t)
	m := newMytool(t, be.URL)
	loginOK(t, m)
	dead := m.with("DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent", "XDG_CONFIG_HOME="+t.TempDir())

	out, errOut, code := dead.run(t, "status")
	if code != 2 || strings.Contains(out, "Not logged in") ||
		!strings.Contains(out, "? Cannot tell whether you are logged in: the Secret Service on the D-Bus session bus at unix:path=/nonexistent is unreachable") {
		t.Errorf("status exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if _, errOut, code := dead.run(t, "token"); code != 2 || !strings.Contains(errOut, "unix:path=/nonexistent is unreachable") {
		t.Errorf("token exit %d:\n%s", code, errOut)
	}
	_, errOut, code = dead.run(t, "logout")
	if code != 2 || strings.Contains(errOut, "nothing to do") || strings.Contains(errOut, "Logged out") ||
		!strings.Contains(errOut, "Run `mytool logout` again") {
		t.Errorf("logout exit %d:\n%s", code, errOut)
	}
	if out, _, code := m.run(t, "status"); code != 0 || !strings.Contains(out, "ada@example.com") {
		t.Errorf("with the keychain back, status exit %d:\n%s", code, out)
	}
}

// TestKeychainPaused: with the keyring daemon paused, a
// second login falls back to a file and says why; logout removes the file
// but says the keychain's login may remain (exit 2) instead of "Logged
// out"; once the daemon resumes, status shows that login and logout ends
// it at the server.
func TestKeychainPaused(t *testing.T) {
	kr := testenv.StartKeyring(t)
	be := startBackend(t)
	m := newMytool(t, be.URL).with("DBUS_SESSION_BUS_ADDRESS="+kr.Addr, "XDG_CONFIG_HOME="+t.TempDir())
	loginOK(t, m)
	first := storedRecord(t, be.URL, "DBUS_SESSION_BUS_ADDRESS="+kr.Addr)

	kr.Pause(t)
	resumed := false
	defer func() {
		if !resumed {
			kr.Resume(t)
		}
	}()
	stderr := loginOK(t, m)
	if strings.Count(stderr, "plain file") != 1 || !strings.Contains(stderr, "is unreachable: the keychain did not answer within 3s") {
		t.Errorf("login with the keyring paused:\n%s", stderr)
	}
	_, errOut, code := m.run(t, "logout")
	if code != 2 || strings.Contains(errOut, "Logged out") || !strings.Contains(errOut, "Removed the login from ") ||
		!strings.Contains(errOut, "A login stored there may remain.") {
		t.Errorf("logout with the keyring paused: exit %d:\n%s", code, errOut)
	}
	kr.Resume(t)
	resumed = true

	if out, _, code := m.run(t, "status"); code != 0 || !strings.Contains(out, "(keychain)") {
		t.Errorf("status with the keyring back: exit %d:\n%s", code, out)
	}
	if _, errOut, code := m.run(t, "logout"); code != 0 || !strings.Contains(errOut, "✓ Logged out") {
		t.Errorf("logout with the keyring back: exit %d:\n%s", code, errOut)
	}
	if code := postForm(t, be.URL+"/oauth/token", url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {first.RefreshToken.Reveal()}, "client_id": {"mytool"}}); code == 200 {
		t.Error("the first login's refresh token is still honoured after the final logout")
	}
}

// noBusEnv is the environment of a headless box without a session bus: no
// DBUS_SESSION_BUS_ADDRESS, an empty XDG_RUNTIME_DIR, and a dbus-launch on
// PATH that records that it ran. It returns the record file.
func noBusEnv(t *testing.T) ([]string, string) {
	t.Helper()
	bin := t.TempDir()
	marker := filepath.Join(t.TempDir(), "dbus-launch-ran")
	script := "#!/bin/sh\necho ran >> " + marker + "\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "dbus-launch"), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return []string{"DBUS_SESSION_BUS_ADDRESS=", "XDG_RUNTIME_DIR=" + t.TempDir(), "XDG_CONFIG_HOME=" + t.TempDir(),
		"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}, marker
}

// TestNoDBusLaunched: without a session bus, status
// and token never start one.
func TestNoDBusLaunched(t *testing.T) {
	env, marker := noBusEnv(t)
	m := newMytool(t, "http://127.0.0.1:1").with(env...)
	for _, cmd := range []string{"status", "token"} {
		out, errOut, code := m.run(t, cmd)
		if code != 1 || !strings.Contains(out+errOut, "ot logged in") {
			t.Errorf("%s exit %d:\n%s%s", cmd, code, out, errOut)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("dbus-launch was run: a D-Bus daemon would be left behind")
	}
}

// TestFileFallbackOneLine: on a box without a keychain,
// the plain-file fallback is one clear line at login and in status, and
// nothing at all when `token` refreshes.
func TestFileFallbackOneLine(t *testing.T) {
	env, marker := noBusEnv(t)
	be := startBackend(t, "-token-ttl", "8s")
	m := newMytool(t, be.URL).with(env...)
	stderr := loginOK(t, m)
	if strings.Count(stderr, "plain file") != 1 || strings.Contains(stderr, "WARNING") || strings.Contains(stderr, "dbus-launch") ||
		!strings.Contains(stderr, "because no OS keychain is available: no D-Bus session bus") {
		t.Errorf("login's output:\n%s", stderr)
	}
	out, errOut, code := m.run(t, "status")
	if code != 0 || strings.Count(out+errOut, "plain file") != 1 {
		t.Errorf("status exit %d:\n%s%s", code, out, errOut)
	}
	t1, _, _ := tokenOf(t, m)
	refreshWindow(t, be.URL, t1)
	t2, errOut, code := tokenOf(t, m)
	if code != 0 || t2 == t1 || errOut != "" {
		t.Errorf("token after the refresh: exit %d, refreshed=%v, stderr %q; want a new token and nothing on stderr", code, t2 != t1, errOut)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("dbus-launch was run")
	}
}

// TestSSHFailingBrowserOffersPaste: over SSH with a
// $BROWSER that fails, login offers the paste prompt.
func TestSSHFailingBrowserOffersPaste(t *testing.T) {
	be := startBackend(t)
	m := newMytool(t, be.URL).with("BROWSER=false", "SSH_CONNECTION=10.0.0.1 5000 10.0.0.2 22", "DISPLAY=", "WAYLAND_DISPLAY=",
		"XDG_CONFIG_HOME="+t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := m.command(ctx, "login")
	stdin, err := cmd.StdinPipe() // stays open, as a terminal would
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	var errBuf testenv.SyncBuffer
	cmd.Stderr = &errBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(errBuf.String(), "Paste the URL your browser ended on: "); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no paste prompt:\n%s", errBuf.String())
		}
	}
}
