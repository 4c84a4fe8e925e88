package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/keyloop/keyloop/internal/testenv"
)

// TestPasteLoginEndToEnd runs `mytool login --no-browser` against the real
// backend, as over SSH: Chromium signs in and approves, but cannot reach the
// CLI's loopback listener (its requests there fail as on another machine),
// so it ends on a failed page. Its address, read from the browser's history
// like a user copying the address bar, is pasted into the CLI's stdin after
// a wrong paste; the login completes and `mytool status` shows the account.
func TestPasteLoginEndToEnd(t *testing.T) {
	testenv.RequireKeychain(t)
	be := startBackend(t)
	m := newMytool(t, be.URL)
	bctx := testenv.Browser(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := m.command(ctx, "login", "--no-browser", "--timeout", "50s")
	stdin, err := cmd.StdinPipe()
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
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(errBuf.String(), "Paste the URL your browser ended on: "); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no paste prompt:\n%s", errBuf.String())
		}
	}
	out := errBuf.String()
	var authURL string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "    http") {
			authURL = strings.TrimSpace(line)
		}
	}
	callback := "http://" + redirectHost(t, out) + "/callback"
	if strings.Contains(out, "Opening your browser") {
		t.Errorf("--no-browser still opens a browser:\n%s", out)
	}

	// Requests to the loopback listener fail with "connection refused".
	blocked := make(chan struct{}, 1)
	err = chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*fetch.EventRequestPaused); ok {
			select {
			case blocked <- struct{}{}:
			default:
			}
			go func() {
				_, _ = chromedp.Call(bctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: e.RequestID, ErrorReason: network.ErrorReasonConnectionRefused})
			}()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(bctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: callback + "*"}}}); err != nil {
		t.Fatal(err)
	}
	step, cancelStep := context.WithTimeout(bctx, 30*time.Second)
	defer cancelStep()
	err = chromedp.Do(step,
		chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), "paste@example.com"),
		chromedp.Click(`//button[normalize-space()="Sign in"]`),
		chromedp.WaitVisible(`//button[normalize-space()="Authorize"]`),
		chromedp.Click(`//button[normalize-space()="Authorize"]`),
	)
	if err != nil {
		t.Fatalf("sign-in in Chromium: %v\n%s", err, errBuf.String())
	}
	select {
	case <-blocked:
	case <-time.After(20 * time.Second):
		t.Fatal("the browser never tried to reach the loopback listener")
	}
	var final string
	for deadline := time.Now().Add(10 * time.Second); final == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		hist, err := chromedp.Run(step, chromedp.NavigationEntries())
		if err != nil { // while the error page commits
			continue
		}
		if e := hist.Entries[hist.CurrentIndex]; strings.HasPrefix(e.URL, callback+"?") {
			final = e.URL
		}
	}
	if final == "" {
		t.Fatal("the browser did not end on the callback URL")
	}

	fmt.Fprintln(stdin, "http://127.0.0.1:8787/callback?code=nope&state=nope")
	fmt.Fprintln(stdin, final)
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("mytool login did not finish after the paste:\n%s", errBuf.String())
	}
	out = errBuf.String()
	if err != nil {
		t.Fatalf("mytool login: %v\n%s", err, out)
	}
	if !strings.Contains(out, "belongs to another login") || !strings.Contains(out, "✓ Logged in to "+be.URL+" as paste@example.com") {
		t.Errorf("login output:\n%s", out)
	}
	if strings.Contains(out, "code=") {
		t.Errorf("the output repeats an authorization code:\n%s", out)
	}
	status, _, code := m.run(t, "status")
	if code != 0 || !strings.Contains(status, "paste@example.com") {
		t.Errorf("status exit %d:\n%s", code, status)
	}
	if _, errOut, code := m.run(t, "logout"); code != 0 {
		t.Errorf("logout exit %d: %s", code, errOut)
	}
}
