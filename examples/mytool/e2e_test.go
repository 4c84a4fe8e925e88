package main

// End-to-end tests of the example CLI against the example backend: both are
// built and run as real processes, a headless Chromium clicks through the
// sign-in and consent pages, the token lands in the real (private) keychain.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/tokenstore"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds examples/backend and examples/mytool once per test run.
func binaries(t *testing.T) (backend, mytool string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "keyloop-e2e-bin-")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", binDir+"/", "github.com/keyloop/keyloop/examples/backend", "github.com/keyloop/keyloop/examples/mytool").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "backend"), filepath.Join(binDir, "mytool")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// backendProc is a running examples/backend.
type backendProc struct {
	URL    string
	cmd    *exec.Cmd
	stderr *testenv.SyncBuffer // the backend's log
}

// stop stops the backend process (as an outage would).
func (b *backendProc) stop() {
	_ = b.cmd.Process.Kill()
	_ = b.cmd.Wait()
}

func startBackend(t *testing.T, args ...string) *backendProc {
	t.Helper()
	bin, _ := binaries(t)
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0", "-data", t.TempDir()}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &testenv.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	be := &backendProc{cmd: cmd, stderr: stderr}
	t.Cleanup(be.stop)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-lines:
		const prefix = "keyloop backend listening on "
		if !strings.HasPrefix(line, prefix) {
			t.Fatalf("backend's first line = %q; want %q…", line, prefix)
		}
		be.URL = strings.TrimPrefix(line, prefix)
		return be
	case <-time.After(20 * time.Second):
		t.Fatalf("backend did not start; stderr:\n%s", stderr.String())
	}
	return nil
}

// mytoolEnv is the environment for mytool processes: the test's own (with
// the private keyring's bus and XDG dirs) plus a $BROWSER that records the
// URL it is asked to open, so the test can drive Chromium to it.
type mytoolEnv struct {
	bin, server string
	urlFile     string
	extra       []string
}

func newMytool(t *testing.T, server string) *mytoolEnv {
	t.Helper()
	_, bin := binaries(t)
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "opened-url")
	script := filepath.Join(dir, "browser.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s\\n' \"$1\" >> "+urlFile+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return &mytoolEnv{bin: bin, server: server, urlFile: urlFile, extra: []string{"BROWSER=" + script}}
}

func (m *mytoolEnv) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, m.bin, append([]string{"--server", m.server}, args...)...)
	env := []string{}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MYTOOL_") || strings.HasPrefix(kv, "BROWSER=") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, m.extra...)
	return cmd
}

// run runs mytool to completion and returns stdout, stderr and the exit code.
func (m *mytoolEnv) run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := m.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("mytool %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// openedURL waits for mytool to ask $BROWSER to open a URL.
func (m *mytoolEnv) openedURL(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(m.urlFile); err == nil && len(b) > 0 {
			return strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("mytool login never asked $BROWSER to open a URL")
	return ""
}

var codeRE = regexp.MustCompile(`\b[A-Z2-9]{4}-[A-Z2-9]{4}\b`)

// browserLogin runs `mytool login`, signs in as email in Chromium and clicks
// button ("Authorize" or "Deny") on the consent page. It returns the login's
// stderr and exit code and the text of the page the browser ended on.
func browserLogin(t *testing.T, m *mytoolEnv, email, button string) (stderr string, code int, finalPage string) {
	t.Helper()
	bctx := testenv.Browser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_ = os.Remove(m.urlFile) // a URL an earlier login asked to open is not this one's
	cmd := m.command(ctx, "login", "--timeout", "50s")
	var errBuf testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = io.Discard, &errBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	authURL := m.openedURL(t)
	// mytool printed the URL before it ran $BROWSER; the copy from its
	// stderr pipe into errBuf may still be on its way.
	for deadline := time.Now().Add(10 * time.Second); !codeRE.MatchString(errBuf.String()) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(errBuf.String(), authURL) {
		t.Errorf("the URL was not printed before the browser was opened; stderr:\n%s", errBuf.String())
	}
	terminalCode := codeRE.FindString(errBuf.String())
	if terminalCode == "" {
		t.Errorf("the terminal shows no confirmation code; stderr:\n%s", errBuf.String())
	}

	step, cancelStep := context.WithTimeout(bctx, 30*time.Second)
	defer cancelStep()
	// Every request the pages make must stay on this machine: the pages
	// load no external assets.
	if _, err := chromedp.Call(step, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	var reqMu sync.Mutex
	var requests []string
	if err := chromedp.Listen(step, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			reqMu.Lock()
			requests = append(requests, e.Request.URL)
			reqMu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		reqMu.Lock()
		defer reqMu.Unlock()
		if len(requests) == 0 {
			t.Error("saw no network requests at all; the request log does not work")
		}
		for _, u := range requests {
			if !strings.HasPrefix(u, "http://127.0.0.1:") {
				t.Errorf("a page made a request off this machine: %s", u)
			}
		}
	}()
	err := chromedp.Do(step,
		chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.CSS(`input[type=email], input[name=email]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), email),
		chromedp.Click(`//button[normalize-space()="Sign in"]`),
		chromedp.WaitVisible(`//button[normalize-space()="Authorize"]`),
	)
	if err != nil {
		t.Fatalf("sign-in in Chromium: %v; mytool stderr:\n%s", err, errBuf.String())
	}
	consent, err := chromedp.Run(step, chromedp.Text(chromedp.CSS(`body`)))
	if err != nil {
		t.Fatal(err)
	}
	if terminalCode != "" && !strings.Contains(consent, terminalCode) {
		t.Errorf("consent page does not show the terminal's code %s:\n%s", terminalCode, consent)
	}
	if !strings.Contains(consent, email) || !strings.Contains(consent, "mytool") {
		t.Errorf("consent page does not name the account %s and the CLI mytool:\n%s", email, consent)
	}
	if err := chromedp.Do(step, chromedp.Click(fmt.Sprintf(`//button[normalize-space()=%q]`, button))); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("mytool login did not finish; stderr:\n%s", errBuf.String())
	}
	// The CLI answers the browser once the outcome is known.
	_ = chromedp.Do(step, chromedp.WaitReady(chromedp.CSS(`body`)))
	finalPage, _ = chromedp.Run(step, chromedp.Text(chromedp.CSS(`body`)))
	return errBuf.String(), code, finalPage
}

// keychainItems counts the Secret Service items that hold the login of
// mytool for server (its entry and any chunks of it), asking the keyring
// through secret-tool, independently of our code. Other tests share the
// private keyring, so only this server's entry is counted.
func keychainItems(t *testing.T, server string) int {
	t.Helper()
	if _, err := exec.LookPath("secret-tool"); err != nil {
		testenv.Missing(t, "secret-tool", "apt-get install libsecret-tools")
	}
	key := tokenstore.Key("", server, "mytool")
	out, _ := exec.Command("secret-tool", "search", "--all", "service", "mytool").CombinedOutput()
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		user, ok := strings.CutPrefix(strings.TrimSpace(line), "attribute.username = ")
		if ok && (user == key || strings.HasPrefix(user, key+"/")) {
			n++
		}
	}
	return n
}

// verify checks tok against the backend's metadata and JWKS, as a third
// party would, and returns its claims.
func verify(t *testing.T, issuer, tok string) jwt.MapClaims {
	t.Helper()
	resp, err := http.Get(issuer + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		t.Fatal(err)
	}
	kf, err := keyfunc.NewDefaultCtx(t.Context(), []string{md.JWKSURI})
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(tok, claims, kf.Keyfunc,
		jwt.WithIssuer(md.Issuer), jwt.WithExpirationRequired(), jwt.WithValidMethods([]string{"EdDSA", "ES256", "RS256"}))
	if err != nil {
		t.Fatalf("token from `mytool token` does not verify against the backend's JWKS: %v", err)
	}
	return claims
}

func TestBrowserLoginEndToEnd(t *testing.T) {
	testenv.RequireKeychain(t)
	be := startBackend(t)
	m := newMytool(t, be.URL)
	before := keychainItems(t, be.URL)

	stderr, code, page := browserLogin(t, m, "ada@example.com", "Authorize")
	if code != 0 {
		t.Fatalf("mytool login exit %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(strings.ToLower(page), "signed in") && !strings.Contains(strings.ToLower(page), "logged in") && !strings.Contains(strings.ToLower(page), "success") {
		t.Errorf("the browser did not end on a success page:\n%s", page)
	}
	if got := keychainItems(t, be.URL); got != 1 || before != 0 {
		t.Errorf("keychain items for this login: %d before, %d after; want 0 and 1", before, got)
	}

	out, errOut, code := m.run(t, "status")
	if code != 0 || !strings.Contains(out, "ada@example.com") || !strings.Contains(out, "keychain") {
		t.Errorf("status exit %d, stdout:\n%s\nstderr:\n%s\nwant the account and \"keychain\"", code, out, errOut)
	}

	out, errOut, code = m.run(t, "token")
	if code != 0 {
		t.Fatalf("token exit %d: %s", code, errOut)
	}
	tok := strings.TrimSpace(out)
	if strings.Count(out, "\n") != 1 || strings.Count(tok, ".") != 2 {
		t.Fatalf("token printed %q; want one JWT and a newline", out)
	}
	claims := verify(t, be.URL, tok)
	if claims["email"] != "ada@example.com" {
		t.Errorf("token claims %v; want email ada@example.com", claims)
	}
	if strings.Contains(stderr, tok) {
		t.Error("login printed the access token")
	}

	out, errOut, code = m.run(t, "api", "/api/me")
	if code != 0 || !strings.Contains(out, "ada@example.com") {
		t.Errorf("api /api/me exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// MYTOOL_TOKEN as `$(cat file)` leaves it: trimmed.
	env := m.with("MYTOOL_TOKEN=" + tok + "\n")
	if out, errOut, code := env.run(t, "api", "/api/me"); code != 0 || !strings.Contains(out, "ada@example.com") {
		t.Errorf("api with MYTOOL_TOKEN ending in a newline: exit %d, %q, %q", code, out, errOut)
	}
	if out, _, code := env.run(t, "token"); code != 0 || out != tok+"\n" {
		t.Errorf("token with MYTOOL_TOKEN ending in a newline printed %q", out)
	}
	if out, _, code := m.with("MYTOOL_TOKEN=   ").run(t, "status"); code != 0 || !strings.Contains(out, "(keychain)") {
		t.Errorf("status with a blank MYTOOL_TOKEN: exit %d, want the stored login:\n%s", code, out)
	}

	_, errOut, code = m.run(t, "logout")
	if code != 0 {
		t.Fatalf("logout exit %d: %s", code, errOut)
	}
	// The hint carries the --server the user gave.
	if out, _, code := m.run(t, "status"); code != 1 || !strings.Contains(out, "Run `mytool login --server "+be.URL+"` to sign in.") {
		t.Errorf("status after logout exit %d; want 1 and the hint with --server:\n%s", code, out)
	}
	if got := keychainItems(t, be.URL); got != before {
		t.Errorf("keychain items after logout = %d; want %d", got, before)
	}
	// The revoked token no longer opens the API.
	req, _ := http.NewRequest(http.MethodGet, be.URL+"/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("/api/me with the logged-out token: %s; want 401", resp.Status)
		}
	}
}

func TestBrowserLoginDenied(t *testing.T) {
	testenv.RequireKeychain(t)
	be := startBackend(t)
	m := newMytool(t, be.URL)
	before := keychainItems(t, be.URL)

	stderr, code, page := browserLogin(t, m, "bob@example.com", "Deny")
	if code == 0 {
		t.Fatalf("mytool login succeeded after Deny; stderr:\n%s", stderr)
	}
	if !strings.Contains(strings.ToLower(stderr), "denied") {
		t.Errorf("login's message does not say access was denied:\n%s", stderr)
	}
	if !strings.Contains(strings.ToLower(page), "denied") {
		t.Errorf("the browser's final page does not say access was denied:\n%s", page)
	}
	if got := keychainItems(t, be.URL); got != before {
		t.Errorf("keychain items = %d after a denied login; want %d", got, before)
	}
	if _, _, code := m.run(t, "status"); code != 1 {
		t.Errorf("status after a denied login exit %d; want 1", code)
	}
}
