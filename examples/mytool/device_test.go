package main

// End to end: `mytool login --device` on a machine with no browser and no
// terminal on stdin, the user approving in Chromium "on another device",
// against examples/backend in dev mode and in Clerk mode (the fake Clerk).

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/server/clerk/clerktest"
)

// headlessMytool is mytool on a machine with no browser at all: no
// $BROWSER, no display, not over SSH; stdin is not a terminal (exec gives
// it /dev/null).
func headlessMytool(t *testing.T, server string, env ...string) *mytoolEnv {
	t.Helper()
	_, bin := binaries(t)
	return &mytoolEnv{bin: bin, server: server, extra: append([]string{
		"DISPLAY=", "WAYLAND_DISPLAY=", "SSH_CONNECTION=", "SSH_TTY=", "XDG_CONFIG_HOME=" + t.TempDir(),
	}, env...)}
}

var (
	deviceCodeRE = regexp.MustCompile(`(?m)^ +([BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4})$`)
	deviceURIRE  = regexp.MustCompile(`(?m)^ +(http://127\.0\.0\.1:[0-9]+/oauth/device)$`)
	completeRE   = regexp.MustCompile(`(?m)^ +(http://127\.0\.0\.1:[0-9]+/oauth/device\?user_code=[A-Z-]+)$`)
)

// deviceProc is a running `mytool login` in the device flow.
type deviceProc struct {
	stderr                 *testenv.SyncBuffer
	done                   chan error
	cmd                    *exec.Cmd
	uri, code, uriComplete string
}

// startDevice starts `mytool login args…` and waits until it prints the
// URL and the code and starts waiting.
func startDevice(t *testing.T, m *mytoolEnv, args ...string) *deviceProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := m.command(ctx, append([]string{"login"}, args...)...)
	p := &deviceProc{stderr: &testenv.SyncBuffer{}, done: make(chan error, 1), cmd: cmd}
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(p.stderr.String(), "Waiting for you to approve"); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-p.done:
			t.Fatalf("mytool login ended early (%v):\n%s", err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mytool login never started waiting:\n%s", p.stderr.String())
		}
	}
	out := p.stderr.String()
	u, c, cu := deviceURIRE.FindStringSubmatch(out), deviceCodeRE.FindStringSubmatch(out), completeRE.FindStringSubmatch(out)
	if u == nil || c == nil || cu == nil || strings.Index(out, u[1]) > strings.Index(out, c[1]) {
		t.Fatalf("mytool login did not print the URL, then the code, then the URL with the code:\n%s", out)
	}
	p.uri, p.code, p.uriComplete = u[1], c[1], cu[1]
	return p
}

// wait waits for the process and returns its exit code.
func (p *deviceProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.done:
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &ee):
			return ee.ExitCode()
		}
		t.Fatal(err)
	case <-time.After(60 * time.Second):
		t.Fatalf("mytool login did not finish:\n%s", p.stderr.String())
	}
	return -1
}

// approveInChromium plays the other device: it opens u, types typed into the
// code field when not empty (after a wrong code when wrongFirst), signs in
// as email when a sign-in page shows, checks the consent page names the
// code, and clicks button.
func approveInChromium(t *testing.T, bctx context.Context, p *deviceProc, u, typed string, wrongFirst bool, email, button string) {
	t.Helper()
	step, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	fail := func(what string, err error) {
		t.Helper()
		page, _ := chromedp.Run(step, chromedp.Text(chromedp.CSS(`body`)))
		t.Fatalf("%s in Chromium: %v\npage:\n%s\nmytool:\n%s", what, err, page, p.stderr.String())
	}
	if err := chromedp.Do(step, chromedp.Navigate(u)); err != nil {
		fail("open "+u, err)
	}
	field := chromedp.CSS(`input[name=user_code]`)
	if wrongFirst {
		if err := chromedp.Do(step,
			chromedp.WaitVisible(field),
			chromedp.SendKeys(field, "BBBB-BBBB"),
			chromedp.Click(`//button[normalize-space()="Continue"]`),
			chromedp.WaitVisible(`//*[@id="device-error"][contains(., "not valid or has expired")]`),
			chromedp.Navigate(u), // an empty form again
		); err != nil {
			fail("a wrong code", err)
		}
	}
	if typed != "" {
		if err := chromedp.Do(step,
			chromedp.WaitVisible(field),
			chromedp.SendKeys(field, typed),
			chromedp.Click(`//button[normalize-space()="Continue"]`),
		); err != nil {
			fail("enter the code", err)
		}
	}
	authorize := `//button[normalize-space()="Authorize"]`
	if email != "" {
		if err := chromedp.Do(step,
			chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)),
			chromedp.SendKeys(chromedp.CSS(`input[name=email]`), email),
			chromedp.Click(`//button[normalize-space()="Sign in"]`),
		); err != nil {
			fail("sign in", err)
		}
	}
	if err := chromedp.Do(step, chromedp.WaitVisible(authorize)); err != nil {
		fail("reach the consent page", err)
	}
	consent, _ := chromedp.Run(step, chromedp.Text(chromedp.CSS(`body`)))
	if !strings.Contains(consent, p.code) || !strings.Contains(consent, "mytool") {
		t.Errorf("the consent page does not show the terminal's code %s and the CLI:\n%s", p.code, consent)
	}
	if err := chromedp.Do(step,
		chromedp.Click(`//button[normalize-space()="`+button+`"]`),
		chromedp.WaitVisible(`//h1[normalize-space()="Device signed in" or normalize-space()="Request denied"]`),
	); err != nil {
		fail("click "+button, err)
	}
}

// The done-when of the device flow, in dev mode: no browser and no stdin;
// `mytool login --device` prints a URL and a code; the user mistypes once,
// then types the code their way, signs in and approves in Chromium; the CLI
// is logged in (keychain), its token refreshes, and logout revokes it.
func TestDeviceLoginEndToEnd(t *testing.T) {
	testenv.RequireKeychain(t)
	bctx := testenv.Browser(t)
	be := startBackend(t, "-token-ttl", "8s")
	m := headlessMytool(t, be.URL)
	before := keychainItems(t, be.URL)

	p := startDevice(t, m, "--device", "--timeout", "90s")
	typed := strings.ToLower(strings.ReplaceAll(p.code, "-", ""))
	approveInChromium(t, bctx, p, p.uri, typed, true, "ada@example.com", "Authorize")
	if code := p.wait(t); code != 0 {
		t.Fatalf("mytool login --device exit %d:\n%s", code, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "Logged in to "+be.URL+" as ada@example.com") {
		t.Errorf("login did not say who is logged in:\n%s", p.stderr.String())
	}
	if got := keychainItems(t, be.URL); got != before+1 {
		t.Errorf("keychain items: %d before, %d after", before, got)
	}
	if out, errOut, code := m.run(t, "api", "/api/me"); code != 0 || !strings.Contains(out, "ada@example.com") {
		t.Fatalf("api /api/me exit %d: %s %s", code, out, errOut)
	}

	// It refreshes like any login.
	t1, errOut, code := tokenOf(t, m)
	if code != 0 {
		t.Fatalf("token exit %d: %s", code, errOut)
	}
	refreshWindow(t, be.URL, t1)
	t2, errOut, code := tokenOf(t, m)
	if code != 0 || t2 == t1 || be.refreshes() != 1 {
		t.Fatalf("token in the refresh window: exit %d, refreshed %v, refreshes %d: %s", code, t2 != t1, be.refreshes(), errOut)
	}
	if c := verify(t, be.URL, t2); c["email"] != "ada@example.com" {
		t.Fatalf("refreshed token claims %v", c)
	}

	// And logs out like any login: revoked at the server.
	if _, errOut, code := m.run(t, "logout"); code != 0 {
		t.Fatalf("logout exit %d: %s", code, errOut)
	}
	if got := keychainItems(t, be.URL); got != before {
		t.Errorf("keychain items after logout: %d; want %d", got, before)
	}
	if st := apiStatus(t, be.URL, t2); st != 401 {
		t.Errorf("/api/me with the logged-out token: %d; want 401", st)
	}
}

// Without --device, a login that can neither open a browser nor take a
// paste ($CI set, no terminal) uses the device flow by itself; the URL with
// the code takes the user straight to sign-in.
func TestDeviceLoginChosenAutomatically(t *testing.T) {
	testenv.RequireKeychain(t)
	bctx := testenv.Browser(t)
	be := startBackend(t)
	m := headlessMytool(t, be.URL, "CI=true")
	p := startDevice(t, m, "--timeout", "90s")
	approveInChromium(t, bctx, p, p.uriComplete, "", false, "grace@example.com", "Authorize")
	if code := p.wait(t); code != 0 {
		t.Fatalf("mytool login exit %d:\n%s", code, p.stderr.String())
	}
	if out, _, code := m.run(t, "status"); code != 0 || !strings.Contains(out, "grace@example.com") {
		t.Errorf("status exit %d:\n%s", code, out)
	}
}

// A denial ends the login with exit 1 and a sentence; nothing is stored.
func TestDeviceLoginDenied(t *testing.T) {
	testenv.RequireKeychain(t)
	bctx := testenv.Browser(t)
	be := startBackend(t)
	m := headlessMytool(t, be.URL)
	before := keychainItems(t, be.URL)
	p := startDevice(t, m, "--device")
	approveInChromium(t, bctx, p, p.uri, p.code, false, "bob@example.com", "Deny")
	if code := p.wait(t); code != 1 {
		t.Fatalf("exit %d after Deny:\n%s", code, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "The sign-in was denied on the other device, so nothing was stored.") || strings.Contains(p.stderr.String(), "clilogin:") {
		t.Errorf("stderr after Deny:\n%s", p.stderr.String())
	}
	if got := keychainItems(t, be.URL); got != before {
		t.Errorf("keychain items: %d; want %d", got, before)
	}
}

// Ctrl+C while polling: exit 130, nothing stored; --timeout: exit 1 and what
// to run.
func TestDeviceLoginInterruptedOrTimedOut(t *testing.T) {
	testenv.RequireKeychain(t)
	be := startBackend(t)
	t.Run("interrupt", func(t *testing.T) {
		m := headlessMytool(t, be.URL)
		before := keychainItems(t, be.URL)
		p := startDevice(t, m, "--device")
		if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t); code != 130 || !strings.HasSuffix(p.stderr.String(), "Interrupted.\n") {
			t.Errorf("exit %d:\n%s", code, p.stderr.String())
		}
		if got := keychainItems(t, be.URL); got != before {
			t.Errorf("keychain items: %d; want %d", got, before)
		}
		noFiles(t, m)
	})
	t.Run("timeout", func(t *testing.T) {
		m := headlessMytool(t, be.URL)
		p := startDevice(t, m, "--device", "--timeout", "3s")
		code := p.wait(t)
		want := "No approval arrived within 3s (--timeout). Run `mytool login --server " + be.URL + " --device` again and approve the code on the other device in time."
		if code != 1 || !strings.Contains(p.stderr.String(), want) {
			t.Errorf("exit %d; want 1 and %q:\n%s", code, want, p.stderr.String())
		}
		noFiles(t, m)
	})
}

// noFiles fails when mytool stored a file under its XDG_CONFIG_HOME.
func noFiles(t *testing.T, m *mytoolEnv) {
	t.Helper()
	for _, kv := range m.extra {
		if dir, ok := strings.CutPrefix(kv, "XDG_CONFIG_HOME="); ok {
			_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					t.Errorf("a file was stored: %s", p)
				}
				return nil
			})
		}
	}
}

// The done-when in Clerk mode: the verification route signs the user in
// through (the fake) Clerk, and the CLI stores and uses the Clerk-minted
// token.
func TestDeviceLoginClerkMode(t *testing.T) {
	testenv.RequireKeychain(t)
	bctx := testenv.Browser(t)
	fake := clerktest.New(t, clerktest.Options{})
	for k, v := range map[string]string{
		"CLERK_SECRET_KEY": fake.SecretKey, "CLERK_PUBLISHABLE_KEY": fake.PublishableKey,
		"CLERK_FRONTEND_API_URL": fake.FrontendAPIURL, "CLERK_API_URL": fake.APIURL,
		"CLERK_WEBHOOK_SECRET": "", "CLERK_JWT_TEMPLATE": "", "CLERK_AUDIENCE": "",
	} {
		t.Setenv(k, v)
	}
	be := startBackend(t)
	m := headlessMytool(t, be.URL)
	p := startDevice(t, m, "--device", "--timeout", "90s")
	approveInChromium(t, bctx, p, p.uri, p.code, false, "ada@example.com", "Authorize")
	if code := p.wait(t); code != 0 {
		t.Fatalf("mytool login --device exit %d:\n%s", code, p.stderr.String())
	}
	user, ok := fake.UserByEmail("ada@example.com")
	out, errOut, code := m.run(t, "api", "/api/me")
	if !ok || code != 0 || !strings.Contains(out, user.ID) {
		t.Fatalf("api /api/me exit %d: %s %s", code, out, errOut)
	}
}

// apiStatus calls the backend's /api/me with tok and returns the status.
func apiStatus(t *testing.T, issuer, tok string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, issuer+"/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
