package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/keyloop/keyloop/server"
)

// lockedBuffer collects the backend's usage text and log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// captureStderr sends the backend's usage and log to a buffer for the test.
func captureStderr(t *testing.T) *lockedBuffer {
	t.Helper()
	buf := &lockedBuffer{}
	old := stderr
	stderr = buf
	t.Cleanup(func() { stderr = old })
	return buf
}

// authorizeStatus starts an authorization for clientID and returns the
// status the browser gets (302 to sign-in when the client is served).
func authorizeStatus(t *testing.T, issuer, clientID string) int {
	t.Helper()
	q := url.Values{"client_id": {clientID}, "redirect_uri": {"http://127.0.0.1:9/callback"}, "response_type": {"code"},
		"code_challenge_method": {"S256"}, "code_challenge": {strings.Repeat("a", 43)}, "state": {"s"}}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(issuer + server.AuthorizePath + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// -clients registers the CLIs the backend serves; a CLI with another ID is
// logged with the -clients value that would serve it.
func TestClientsFlag(t *testing.T) {
	logs := captureStderr(t)
	issuer, _ := startRun(t, "-addr", "127.0.0.1:0", "-data", t.TempDir(), "-clients", "mytool, othercli")
	for _, id := range []string{"mytool", "othercli"} {
		if got := authorizeStatus(t, issuer, id); got != http.StatusFound {
			t.Errorf("client %s: authorize answered %d; want 302", id, got)
		}
	}
	if strings.Contains(logs.String(), "-clients") {
		t.Errorf("registered clients were logged as unknown:\n%s", logs.String())
	}
	if got := authorizeStatus(t, issuer, "thirdcli"); got != http.StatusBadRequest {
		t.Errorf("unknown client: %d; want 400", got)
	}
	if !strings.Contains(logs.String(), "restart with -clients mytool,othercli,thirdcli") {
		t.Errorf("the unknown client is not logged with its fix:\n%s", logs.String())
	}

	for _, bad := range []string{"", " , ", "a,a", "bad id"} {
		if err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-data", t.TempDir(), "-clients", bad}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "client") {
			t.Errorf("-clients %q: %v", bad, err)
		}
	}
}

// A busy -addr says so, and how to pick another port.
func TestBusyAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = run(context.Background(), []string{"-addr", ln.Addr().String(), "-data", t.TempDir()}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "-addr 127.0.0.1:PORT") {
		t.Errorf("busy address: %v", err)
	}
}

// -h prints the flags with placeholders that do not read like defaults, and
// is not an error.
func TestHelp(t *testing.T) {
	out := captureStderr(t)
	if err := run(context.Background(), []string{"-h"}, &bytes.Buffer{}); err != nil {
		t.Errorf("-h: %v", err)
	}
	if !strings.Contains(out.String(), "-addr HOST:PORT") || strings.Contains(out.String(), "-addr :0") || !strings.Contains(out.String(), "-clients IDs") {
		t.Errorf("usage:\n%s", out.String())
	}
}
