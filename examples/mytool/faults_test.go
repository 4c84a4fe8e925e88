package main

// End to end: real examples/backend and real mytool processes, with
// a fault-injecting proxy between them. A refresh the server answered is
// never lost, and a login the server ended is marked so and never refreshed
// again.

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/tokenstore"
)

// loginOK runs a browser login and fails the test when it does not succeed.
func loginOK(t *testing.T, m *mytoolEnv) string {
	t.Helper()
	stderr, code, _ := browserLogin(t, m, "ada@example.com", "Authorize")
	if code != 0 {
		t.Fatalf("login exit %d:\n%s", code, stderr)
	}
	return stderr
}

// tokenOf runs `mytool token` and returns the token (trimmed), stderr and
// the exit code.
func tokenOf(t *testing.T, m *mytoolEnv) (string, string, int) {
	t.Helper()
	out, errOut, code := m.run(t, "token")
	return strings.TrimSpace(out), errOut, code
}

// refreshWindow sleeps until tok is in its refresh window (the last quarter
// of its lifetime).
func refreshWindow(t *testing.T, issuer, tok string) {
	t.Helper()
	c := verify(t, issuer, tok)
	iat, exp := claimTime(t, c, "iat"), claimTime(t, c, "exp")
	sleepUntil(exp.Add(-exp.Sub(iat) / 4))
}

// storedRecord reads mytool's login for server from the keychain with
// secret-tool, independently of our code.
func storedRecord(t *testing.T, server string, env ...string) *tokenstore.Record {
	t.Helper()
	if _, err := exec.LookPath("secret-tool"); err != nil {
		testenv.Missing(t, "secret-tool", "apt-get install libsecret-tools")
	}
	cmd := exec.Command("secret-tool", "lookup", "service", "mytool", "username", tokenstore.Key("", server, "mytool"))
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("secret-tool lookup: %v", err)
	}
	rec, err := tokenstore.UnmarshalRecord(out)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// postForm posts form to the server and returns the status code.
func postForm(t *testing.T, u string, form url.Values) int {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// noReuse fails when the backend detected a refresh token presented twice.
func noReuse(t *testing.T, be *backendProc) {
	t.Helper()
	if strings.Contains(be.stderr.String(), "reuse detected") {
		t.Errorf("the backend saw a spent refresh token again:\n%s", be.stderr.String())
	}
}

// rotatedOnce runs `mytool token` (when names the moment, for the failure
// message) and fails unless it serves a verified token other than old,
// after exactly one refresh request, with no refresh token presented twice.
func rotatedOnce(t *testing.T, m *mytoolEnv, p *faultProxy, be *backendProc, old, when string) {
	t.Helper()
	tok, errOut, code := tokenOf(t, m)
	if code != 0 || tok == old {
		t.Fatalf("%s: exit %d, new token=%v:\n%s", when, code, tok != old, errOut)
	}
	verify(t, p.URL, tok)
	if n := len(p.Refreshes()); n != 1 {
		t.Errorf("%d refresh requests; want 1", n)
	}
	noReuse(t, be)
}

// TestRefreshSurvivesKeysOutage: the JWKS answers 503
// once right after the backend rotated the refresh token. The run that
// refreshed keeps the new refresh token; the next run verifies and uses the
// new access token, and the spent refresh token is never presented again.
func TestRefreshSurvivesKeysOutage(t *testing.T) {
	testenv.RequireKeychain(t)
	p := newFaultProxy(t)
	be := startBackendBehind(t, p, "-token-ttl", "8s")
	m := newMytool(t, p.URL)
	loginOK(t, m)
	t1, errOut, code := tokenOf(t, m)
	if code != 0 {
		t.Fatalf("token exit %d: %s", code, errOut)
	}
	refreshWindow(t, p.URL, t1)
	p.FailJWKSAfterRotation.Store(true)
	tok, errOut, code := tokenOf(t, m)
	switch {
	case code == 0 && tok != t1:
		t.Fatalf("the refresh with the keys unavailable served an unverified token")
	case code == 0 && !strings.Contains(errOut, "Warning: could not refresh the token"):
		t.Errorf("the failed verification was not reported:\n%s", errOut)
	case code != 0 && !strings.Contains(errOut, "login is kept"):
		t.Errorf("token exit %d (old token expired meanwhile) without saying the login is kept:\n%s", code, errOut)
	}
	if !strings.Contains(errOut, p.URL+"/oauth/jwks") {
		t.Errorf("the report does not name the JWKS endpoint:\n%s", errOut)
	}
	p.FailJWKSAfterRotation.Store(false)
	rotatedOnce(t, m, p, be, t1, "the next token")
}

// TestRefreshSurvivesInterrupt: Ctrl+C to `mytool token`
// after the backend rotated but before its answer arrived (held 2 s by the
// proxy): mytool exits 130, and the next run works with the rotated token.
func TestRefreshSurvivesInterrupt(t *testing.T) {
	testenv.RequireKeychain(t)
	p := newFaultProxy(t)
	be := startBackendBehind(t, p, "-token-ttl", "8s")
	m := newMytool(t, p.URL)
	loginOK(t, m)
	t1, _, _ := tokenOf(t, m)
	refreshWindow(t, p.URL, t1)
	p.DelayRefresh.Store(int64(2 * time.Second))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := m.command(ctx, "token")
	var errBuf testenv.SyncBuffer
	cmd.Stderr = &errBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.answered: // the backend has rotated; its answer is held back
	case <-time.After(30 * time.Second):
		t.Fatal("mytool token did not refresh")
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Errorf("exit: %v; want 130\n%s", err, errBuf.String())
	}
	p.DelayRefresh.Store(0)
	rotatedOnce(t, m, p, be, t1, "after the interrupt")
}

// TestRefreshDroppedAnswer: the connection drops after
// the backend committed a rotation, so the answer never arrives. No client
// can know the new token; the client must present the old one once more
// (which the backend's grace period honours) and, if it is refused, end
// the login cleanly: marked, explained as a token used twice, never sent
// again.
func TestRefreshDroppedAnswer(t *testing.T) {
	testenv.RequireKeychain(t)
	p := newFaultProxy(t)
	startBackendBehind(t, p, "-token-ttl", "8s")
	m := newMytool(t, p.URL)
	loginOK(t, m)
	t1, _, _ := tokenOf(t, m)
	refreshWindow(t, p.URL, t1)
	p.DropRefresh.Store(true)
	_, errOut, code := tokenOf(t, m)
	if !strings.Contains(errOut, p.URL+"/oauth/token") {
		t.Errorf("token exit %d; the report does not name the token endpoint:\n%s", code, errOut)
	}
	p.DropRefresh.Store(false)

	t2, errOut, code := tokenOf(t, m)
	rts := p.Refreshes()
	if len(rts) != 2 || rts[0] != rts[1] {
		t.Fatalf("refresh tokens presented: %d; want the same one twice", len(rts))
	}
	if code == 0 {
		if t2 == t1 {
			t.Fatal("served the old token")
		}
		verify(t, p.URL, t2)
		return
	}
	// Refused (no grace period at the server): the login ended, and says so.
	if !strings.Contains(errOut, "has ended: its refresh token was used twice") || !strings.Contains(errOut, "Run `mytool login --server "+p.URL+"`") {
		t.Errorf("token exit %d:\n%s", code, errOut)
	}
	out, _, code := m.run(t, "status")
	if code != 1 || !strings.Contains(out, "X The login of ada@example.com") {
		t.Errorf("status exit %d:\n%s", code, out)
	}
	if _, _, code := tokenOf(t, m); code == 0 || len(p.Refreshes()) != 2 {
		t.Errorf("an ended login was refreshed again (exit %d, %d refreshes)", code, len(p.Refreshes()))
	}
}

// TestExpiresInForms: expires_in values real servers
// send cost neither the login nor a refresh. (clilogin's unit tests run
// every form; two of them here, end to end.)
func TestExpiresInForms(t *testing.T) {
	testenv.RequireKeychain(t)
	for _, raw := range []string{`3600.5`, `"abc"`} {
		t.Run(raw, func(t *testing.T) {
			p := newFaultProxy(t)
			p.ExpiresIn.Store(raw)
			be := startBackendBehind(t, p, "-token-ttl", "8s")
			m := newMytool(t, p.URL)
			loginOK(t, m)
			t1, errOut, code := tokenOf(t, m)
			if code != 0 {
				t.Fatalf("token exit %d: %s", code, errOut)
			}
			refreshWindow(t, p.URL, t1)
			t2, errOut, code := tokenOf(t, m)
			if code != 0 || t2 == t1 || errOut != "" {
				t.Fatalf("refresh: exit %d, new=%v, stderr:\n%s", code, t2 != t1, errOut)
			}
			verify(t, p.URL, t2)
			noReuse(t, be)
		})
	}
}

// TestRevokedLoginConcurrentProcesses: the login was
// revoked at the server; 20 `mytool token` processes at a refresh moment
// present the spent refresh token once between them, all say the login
// ended with the command to run, and status exits 1.
func TestRevokedLoginConcurrentProcesses(t *testing.T) {
	testenv.RequireKeychain(t)
	p := newFaultProxy(t)
	startBackendBehind(t, p, "-token-ttl", "8s")
	m := newMytool(t, p.URL)
	loginOK(t, m)
	rec := storedRecord(t, p.URL)
	if code := postForm(t, p.URL+"/oauth/revoke", url.Values{"token": {rec.RefreshToken.Reveal()},
		"token_type_hint": {"refresh_token"}, "client_id": {"mytool"}}); code != http.StatusOK {
		t.Fatalf("revoke: %d", code)
	}
	sleepUntil(rec.Expiry.Add(-rec.Expiry.Sub(rec.IssuedAt) / 4))

	var wg sync.WaitGroup
	codes, errs := make([]int, 20), make([]string, 20)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i], codes[i] = tokenOf(t, m)
		}()
	}
	wg.Wait()
	if n := len(p.Refreshes()); n != 1 {
		t.Errorf("the revoked refresh token was presented %d times; want once", n)
	}
	for i := range codes {
		if codes[i] != 1 || !strings.Contains(errs[i], "has ended") || !strings.Contains(errs[i], "Run `mytool login --server "+p.URL+"` to sign in again.") {
			t.Errorf("process %d: exit %d:\n%s", i, codes[i], errs[i])
		}
	}
	out, _, code := m.run(t, "status")
	if code != 1 || !strings.Contains(out, "X The login of ada@example.com to "+p.URL+" has ended") {
		t.Errorf("status exit %d:\n%s", code, out)
	}
}

// TestSecondLoginRevokesFirst: login, login, logout: the
// first login's refresh token no longer works at the server.
func TestSecondLoginRevokesFirst(t *testing.T) {
	testenv.RequireKeychain(t)
	be := startBackend(t)
	m := newMytool(t, be.URL)
	loginOK(t, m)
	first := storedRecord(t, be.URL)
	loginOK(t, m)
	if _, errOut, code := m.run(t, "logout"); code != 0 {
		t.Fatalf("logout exit %d: %s", code, errOut)
	}
	if code := postForm(t, be.URL+"/oauth/token", url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {first.RefreshToken.Reveal()}, "client_id": {"mytool"}}); code == http.StatusOK {
		t.Error("the first login's refresh token is still honoured after login, login, logout")
	}
}
