package main

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/testenv"
)

// refreshes counts the refresh grants the backend answered, from its log.
func (b *backendProc) refreshes() int {
	return strings.Count(b.stderr.String(), "grant_type=refresh_token")
}

// claimTime returns a NumericDate claim as a time.
func claimTime(t *testing.T, c map[string]any, name string) time.Time {
	t.Helper()
	v, ok := c[name].(float64)
	if !ok {
		t.Fatalf("token has no numeric %q claim: %v", name, c)
	}
	return time.Unix(int64(v), 0)
}

// sleepUntil sleeps until at, plus a little.
func sleepUntil(at time.Time) { time.Sleep(time.Until(at) + 300*time.Millisecond) }

// The refresh behaviour, end to end with short-lived tokens:
// `mytool token` refreshes in the last quarter of the lifetime and not
// before; concurrent processes in the window cause one refresh; with the
// backend down a still-valid token is served; an expired one needs a login.
func TestRefreshEndToEnd(t *testing.T) {
	testenv.RequireKeychain(t)
	be := startBackend(t, "-token-ttl", "8s")
	m := newMytool(t, be.URL)
	if stderr, code, _ := browserLogin(t, m, "ada@example.com", "Authorize"); code != 0 {
		t.Fatalf("login exit %d:\n%s", code, stderr)
	}

	token := func() (string, string, int) {
		out, errOut, code := m.run(t, "token")
		return strings.TrimSpace(out), errOut, code
	}
	t1, errOut, code := token()
	if code != 0 {
		t.Fatalf("token exit %d: %s", code, errOut)
	}
	c1 := verify(t, be.URL, t1)
	iat, exp := claimTime(t, c1, "iat"), claimTime(t, c1, "exp")
	if again, _, _ := token(); again != t1 || be.refreshes() != 0 {
		t.Fatalf("token refreshed before the last quarter of its lifetime (refreshes: %d)", be.refreshes())
	}

	// In the last quarter: four processes at once, one refresh.
	sleepUntil(exp.Add(-exp.Sub(iat) / 4))
	var wg sync.WaitGroup
	got := make([]string, 4)
	codes := make([]int, 4)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _, codes[i] = token()
		}()
	}
	wg.Wait()
	for i := range got {
		if codes[i] != 0 || got[i] == t1 || got[i] != got[0] {
			t.Fatalf("concurrent `mytool token` %d: exit %d, refreshed=%v, same as the others=%v", i, codes[i], got[i] != t1, got[i] == got[0])
		}
	}
	if n := be.refreshes(); n != 1 {
		t.Fatalf("%d refreshes for 4 concurrent processes; want 1", n)
	}
	t2 := got[0]
	c2 := verify(t, be.URL, t2)
	if c2["sub"] != c1["sub"] {
		t.Fatalf("refreshed token is for %v, not %v", c2["sub"], c1["sub"])
	}
	if again, _, _ := token(); again != t2 {
		t.Fatal("the refreshed token was not stored")
	}

	// Backend down, token still valid but due for refresh: served anyway.
	be.stop()
	iat2, exp2 := claimTime(t, c2, "iat"), claimTime(t, c2, "exp")
	sleepUntil(exp2.Add(-exp2.Sub(iat2) / 4))
	t3, errOut, code := token()
	if code != 0 || t3 != t2 {
		t.Fatalf("with the backend down, a still-valid token: exit %d, same token=%v, stderr:\n%s", code, t3 == t2, errOut)
	}
	if !strings.Contains(errOut, "could not refresh") || !strings.Contains(errOut, "Cannot reach the token endpoint "+be.URL+"/oauth/token") {
		t.Errorf("the failed refresh was not reported on stderr, naming the endpoint:\n%s", errOut)
	}

	// Expired, and the backend down: the message names the endpoint that
	// did not answer and keeps the login (a new login needs the server too).
	sleepUntil(exp2)
	out, errOut, code := token()
	if code == 0 || out != "" {
		t.Fatalf("expired token, backend down: exit %d, printed %q", code, out)
	}
	if !strings.Contains(errOut, "Cannot reach the token endpoint "+be.URL+"/oauth/token") || !strings.Contains(errOut, "login is kept") {
		t.Errorf("the error does not name the token endpoint:\n%s", errOut)
	}
	if strings.Contains(errOut, t2) {
		t.Error("the error message contains the token")
	}

	// Logout with the backend down still removes the token, and says the
	// server could not be told.
	_, errOut, code = m.run(t, "logout")
	if code != 0 || !strings.Contains(errOut, "on this machine") || !strings.Contains(errOut, "could not revoke") ||
		!strings.Contains(errOut, be.URL+"/oauth/revoke") {
		t.Errorf("logout with the backend down: exit %d, stderr:\n%s", code, errOut)
	}
	if got := keychainItems(t, be.URL); got != 0 {
		t.Errorf("%d keychain items left after logout with the backend down", got)
	}
	if _, _, code := m.run(t, "status"); code != 1 {
		t.Errorf("status after logout exit %d; want 1", code)
	}
}
