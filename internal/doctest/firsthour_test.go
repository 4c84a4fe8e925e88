package doctest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keyloop/keyloop/internal/testenv"
)

// quickStart returns the README's whole-file Go block of a section.
func quickStart(t *testing.T, section string) string {
	t.Helper()
	for _, s := range readmeSnippets(t) {
		if s.Section == section && s.isFile() && strings.Contains(s.Code, "package main") {
			return s.Code
		}
	}
	t.Fatalf("README.md has no main package under %q", section)
	return ""
}

// TestFirstHour is a newcomer's first hour: a CLI and a backend built only
// from the README's two quick starts, in a fresh module outside the
// repository, log in against each other on the first try — the browser
// sign-in in headless Chromium, the token in the (private) OS keychain —
// and the CLI's own command calls the backend's API with it.
func TestFirstHour(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two programs and drives a browser")
	}
	testenv.RequireKeychain(t)
	bctx := testenv.Browser(t)

	// A newcomer's module starts on an older go line; adding keyloop raises
	// it to keyloop's own, never to a patch release of our toolchain.
	dir := tempModule(t, "1.22")
	for name, section := range map[string]string{"mytool": "Quick start for CLI authors", "myapi": "Quick start for backend authors"} {
		os.MkdirAll(filepath.Join(dir, name), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name, "main.go"), []byte(quickStart(t, section)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := t.TempDir()
	start := time.Now()
	if out, err := goCmd(t, dir, "build", "-o", bin+"/", "./mytool", "./myapi"); err != nil {
		t.Fatalf("the README's quick starts do not build: %v\n%s", err, out)
	}
	t.Logf("built both quick starts in %s", time.Since(start).Round(time.Millisecond))
	ours := regexp.MustCompile(`(?m)^go (\S+)$`)
	mod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
	keyloopMod, _ := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if got, want := ours.FindSubmatch(mod), ours.FindSubmatch(keyloopMod); got == nil || want == nil || !bytes.Equal(got[1], want[1]) {
		t.Errorf("the newcomer's go line became %q; want keyloop's %q", got, want)
	}

	// The backend, as its quick start says to run it.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	api := exec.CommandContext(ctx, filepath.Join(bin, "myapi"), "-addr", "127.0.0.1:0", "-data", filepath.Join(t.TempDir(), "data"))
	stderr, err := api.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); api.Wait() })
	issuer := make(chan string, 1)
	var apiLog testenv.SyncBuffer
	listening := regexp.MustCompile(`listening on (http://\S+)`)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			apiLog.Write([]byte(sc.Text() + "\n"))
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				issuer <- m[1]
			}
		}
	}()
	var server string
	select {
	case server = <-issuer:
	case <-time.After(30 * time.Second):
		t.Fatalf("the backend did not start:\n%s", apiLog.String())
	}

	// The CLI, with a $BROWSER that hands the URL to Chromium.
	urlFile := filepath.Join(t.TempDir(), "url")
	browser := filepath.Join(t.TempDir(), "browser.sh")
	os.WriteFile(browser, []byte("#!/bin/sh\nprintf '%s\\n' \"$1\" > "+urlFile+"\n"), 0o700)
	env := []string{"BROWSER=" + browser}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MYTOOL_") && !strings.HasPrefix(kv, "BROWSER=") {
			env = append(env, kv)
		}
	}
	mytool := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "mytool"), append([]string{"--server", server}, args...)...)
		cmd.Env = env
		return cmd
	}
	run := func(args ...string) (string, string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := mytool(ctx, args...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		return out.String(), errOut.String(), err
	}

	lctx, lcancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer lcancel()
	login := mytool(lctx, "login")
	var loginOut testenv.SyncBuffer
	login.Stdout, login.Stderr = io.Discard, &loginOut
	if err := login.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- login.Wait() }()
	var authURL string
	for deadline := time.Now().Add(30 * time.Second); authURL == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(urlFile)
		authURL = strings.TrimSpace(string(b))
	}
	if authURL == "" {
		t.Fatalf("mytool login opened no browser:\n%s", loginOut.String())
	}
	step, stop := context.WithTimeout(bctx, 60*time.Second)
	defer stop()
	if err := chromedp.Do(step,
		chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), "ada@example.com"),
		chromedp.Click(`//button[normalize-space()="Sign in"]`),
		chromedp.WaitVisible(`//button[normalize-space()="Authorize"]`),
		chromedp.Click(`//button[normalize-space()="Authorize"]`),
		chromedp.WaitVisible(chromedp.CSS(`main.ok`)),
	); err != nil {
		t.Fatalf("browser login: %v\nmytool:\n%s\nbackend:\n%s", err, loginOut.String(), apiLog.String())
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mytool login: %v\n%s", err, loginOut.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("mytool login did not end:\n%s", loginOut.String())
	}

	// The CLI's own command: the API on the same server, with the token.
	out, errOut, err := run("whoami")
	var me map[string]string
	if err != nil || json.Unmarshal([]byte(out), &me) != nil || me["email"] != "ada@example.com" || me["sub"] == "" {
		t.Fatalf("mytool whoami: %v\n%s%s", err, out, errOut)
	}
	if out, errOut, err := run("status"); err != nil || !strings.Contains(out, "ada@example.com") || !strings.Contains(out, "keychain") {
		t.Errorf("mytool status: %v\n%s%s", err, out, errOut)
	}
	if out, errOut, err := run("logout"); err != nil {
		t.Errorf("mytool logout: %v\n%s%s", err, out, errOut)
	}
	if _, _, err := run("whoami"); err == nil {
		t.Error("mytool whoami worked after logout")
	}
}
