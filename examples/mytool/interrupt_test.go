package main

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/testenv"
)

// TestLoginInterrupted sends SIGINT (Ctrl+C) to a real `mytool login` while it
// waits for the browser: it exits 130, its loopback listener is gone, and
// nothing was stored, neither in the (private) keychain nor in a file.
func TestLoginInterrupted(t *testing.T) {
	testenv.RequireKeychain(t)
	be := startBackend(t)
	for _, tc := range []struct {
		name    string
		args    []string
		env     []string
		waiting string // what login prints once it waits
	}{
		// A desktop session: the browser opens and no paste prompt is shown.
		{"browser", []string{"login"}, []string{"DISPLAY=:0", "SSH_CONNECTION=", "SSH_TTY="}, "Waiting for you to sign in in the browser…"},
		{"paste mode", []string{"login", "--no-browser"}, nil, "Paste the URL your browser ended on: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMytool(t, be.URL)
			configHome := t.TempDir()
			m.extra = append(append(m.extra, "XDG_CONFIG_HOME="+configHome), tc.env...)
			before := keychainItems(t, be.URL)

			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := m.command(ctx, tc.args...)
			stdin, err := cmd.StdinPipe() // a pipe that stays open, as a terminal would
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			var errBuf testenv.SyncBuffer
			cmd.Stderr = &errBuf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()

			for deadline := time.Now().Add(30 * time.Second); !strings.Contains(errBuf.String(), tc.waiting); time.Sleep(10 * time.Millisecond) {
				select {
				case err := <-done:
					t.Fatalf("mytool login ended early (%v):\n%s", err, errBuf.String())
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("mytool login never started waiting:\n%s", errBuf.String())
				}
			}
			callback := redirectHost(t, errBuf.String())
			conn, err := net.DialTimeout("tcp", callback, 5*time.Second)
			if err != nil {
				t.Fatalf("the loopback listener %s is not up while login waits: %v", callback, err)
			}
			conn.Close()

			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("mytool login did not stop on SIGINT:\n%s", errBuf.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 130 {
				t.Errorf("exit: %v; want exit code 130\n%s", err, errBuf.String())
			}
			if !strings.HasSuffix(errBuf.String(), "Interrupted.\n") {
				t.Errorf("stderr does not end with \"Interrupted.\":\n%q", errBuf.String())
			}
			if conn, err := net.DialTimeout("tcp", callback, 2*time.Second); err == nil {
				conn.Close()
				t.Errorf("%s still accepts connections after the interrupt", callback)
			}
			if got := keychainItems(t, be.URL); got != before {
				t.Errorf("keychain items for mytool: %d, want %d", got, before)
			}
			_ = filepath.Walk(configHome, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					t.Errorf("a file was stored: %s", p)
				}
				return nil
			})
		})
	}
}

// redirectHost finds the authorization URL login printed and returns the
// host:port of its redirect_uri, the loopback listener.
func redirectHost(t *testing.T, out string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if u, err := url.Parse(strings.TrimSpace(line)); err == nil && u.Query().Get("redirect_uri") != "" {
			r, err := url.Parse(u.Query().Get("redirect_uri"))
			if err != nil {
				t.Fatal(err)
			}
			return r.Host
		}
	}
	t.Fatalf("no authorization URL in the output:\n%s", out)
	return ""
}
