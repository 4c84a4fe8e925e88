package doctest

import (
	"context"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/testenv"
)

var (
	demoBinOnce sync.Once
	demoBin     string
	demoBinErr  error
)

// demoBinaries builds examples/backend and examples/mytool, as `make build`
// does, into a directory of the test run.
func demoBinaries(t *testing.T) string {
	t.Helper()
	demoBinOnce.Do(func() {
		demoBin, demoBinErr = os.MkdirTemp("", "keyloop-demo-bin-")
		if demoBinErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", demoBin+"/", "github.com/keyloop/keyloop/examples/backend", "github.com/keyloop/keyloop/examples/mytool")
		if out, err := cmd.CombinedOutput(); err != nil {
			demoBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if demoBinErr != nil {
		t.Fatal(demoBinErr)
	}
	return demoBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if demoBin != "" {
		os.RemoveAll(demoBin)
	}
	os.Exit(code)
}

// demo is a running scripts/demo.
type demo struct {
	cmd      *exec.Cmd
	out, err *testenv.SyncBuffer
	done     chan error
	urlFile  string
}

// startDemo runs scripts/demo as `make demo` would, with env added to the
// test's environment (less the names in drop), and stops it (and its
// backend) when the test ends.
func startDemo(t *testing.T, data string, env []string, drop ...string) *demo {
	t.Helper()
	root, _ := filepath.Abs(repoRoot)
	d := &demo{out: &testenv.SyncBuffer{}, err: &testenv.SyncBuffer{}, done: make(chan error, 1)}
	dir := t.TempDir()
	d.urlFile = filepath.Join(dir, "url")
	browser := filepath.Join(dir, "browser.sh")
	os.WriteFile(browser, []byte("#!/bin/sh\nprintf '%s\\n' \"$1\" > "+d.urlFile+"\n"), 0o700)
	d.cmd = exec.Command(filepath.Join(root, "scripts", "demo"), data)
	d.cmd.Dir = root
	base := []string{"BIN=" + demoBinaries(t), "BROWSER=" + browser}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		keep := !strings.HasPrefix(name, "MYTOOL_") && name != "BROWSER" && name != "DEMO_ADDR" && name != "DISPLAY" && name != "WAYLAND_DISPLAY"
		for _, n := range drop {
			keep = keep && name != n
		}
		if keep {
			base = append(base, kv)
		}
	}
	d.cmd.Env = append(base, env...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.err
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
	})
	return d
}

// waitFor waits until the demo's stdout matches re, and returns the match.
func (d *demo) waitFor(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.After(90 * time.Second)
	for {
		if m := re.FindStringSubmatch(d.out.String()); m != nil {
			return m
		}
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("the demo ended (%v) before printing %s:\n%s\nstderr:\n%s", err, re, d.out.String(), d.err.String())
		case <-deadline:
			t.Fatalf("the demo did not print %s:\n%s\nstderr:\n%s", re, d.out.String(), d.err.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// signInAndAuthorize plays the person at the browser the demo opened: the
// dev sign-in page, then Authorize on the consent page.
func (d *demo) signInAndAuthorize(t *testing.T) {
	t.Helper()
	var authURL string
	for deadline := time.Now().Add(90 * time.Second); authURL == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(d.urlFile)
		authURL = strings.TrimSpace(string(b))
	}
	if authURL == "" {
		t.Fatalf("the demo opened no browser:\n%s\nstderr:\n%s", d.out.String(), d.err.String())
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	page := func(resp *http.Response, err error) (string, *url.URL) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp.Request.URL
	}
	submit := func(body string, at *url.URL, fields url.Values) (string, *url.URL) {
		t.Helper()
		action := regexp.MustCompile(`<form method="post" action="([^"]+)">`).FindStringSubmatch(body)
		csrf := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindStringSubmatch(body)
		if action == nil || csrf == nil {
			t.Fatalf("no form at %s:\n%s", at, body)
		}
		u, _ := at.Parse(html.UnescapeString(action[1]))
		fields.Set("csrf_token", html.UnescapeString(csrf[1]))
		return page(c.PostForm(u.String(), fields))
	}
	body, at := page(c.Get(authURL))
	body, at = submit(body, at, url.Values{"email": {"ada@example.com"}})
	if !strings.Contains(body, ">Authorize</button>") {
		t.Fatalf("no consent page at %s:\n%s", at, body)
	}
	body, _ = submit(body, at, url.Values{"decision": {"authorize"}})
	if !strings.Contains(body, "Signed in to mytool") {
		t.Fatalf("the CLI did not confirm the sign-in:\n%s", body)
	}
}

var hintRE = regexp.MustCompile(`demo: signed in\. Try: (.+?) status \|`)

// backendRE finds the demo's backend URL in its output.
var backendRE = regexp.MustCompile(`backend \(dev mode\) at (http://127\.0\.0\.1:\d+)`)

// TestDemoWithoutKeychain is `make demo` on a headless machine (no D-Bus
// session): mytool keeps its login in the demo's private keyring, `status`
// says keychain as README shows, and the closing hint's command works
// afterwards, against the real port.
func TestDemoWithoutKeychain(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	for _, tool := range []string{"gnome-keyring-daemon", "dbus-run-session"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool, "apt-get install gnome-keyring dbus")
		}
	}
	data := t.TempDir()
	start := time.Now()
	d := startDemo(t, data, []string{"DEMO_ADDR=127.0.0.1:0"}, "DBUS_SESSION_BUS_ADDRESS")
	d.signInAndAuthorize(t)
	t.Logf("signed in after %s", time.Since(start).Round(time.Millisecond))
	m := d.waitFor(t, hintRE)
	t.Logf("the demo's commands were done after %s", time.Since(start).Round(time.Millisecond))
	out := d.out.String()
	url := backendRE.FindStringSubmatch(out)
	if url == nil || strings.HasSuffix(url[1], ":8787") {
		t.Fatalf("the demo does not say where its backend is:\n%s", out)
	}
	if !strings.Contains(out, "private keyring") || !strings.Contains(out, "(keychain)") || strings.Contains(out, "plain file") {
		t.Errorf("status does not show a keychain login:\n%s\nstderr:\n%s", out, d.err.String())
	}
	if !strings.Contains(out, `"email":"ada@example.com"`) {
		t.Errorf("mytool api /api/me did not answer the identity:\n%s", out)
	}
	hint := m[1]
	if hint != filepath.Join(data, "mytool") {
		t.Fatalf("the closing hint runs %q; want the demo's wrapper %s", hint, filepath.Join(data, "mytool"))
	}
	// The hint, run by the person afterwards (another shell, no bus).
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, hint, "status")
	cmd.Env = d.cmd.Env
	status, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(status), url[1]) || !strings.Contains(string(status), "ada@example.com") || !strings.Contains(string(status), "keychain") {
		t.Errorf("%s status: %v\n%s", hint, err, status)
	}
	if strings.Contains(string(status), "dbus-daemon") || strings.Contains(string(status), "gnome-keyring") {
		t.Errorf("the keyring's own messages reach the person:\n%s", status)
	}
}

// TestDemoHintUsesItsPort: with a keychain and another DEMO_ADDR, the hint
// names the server it started, not the default one.
func TestDemoHintUsesItsPort(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	testenv.RequireKeychain(t)
	d := startDemo(t, t.TempDir(), []string{"DEMO_ADDR=127.0.0.1:0"})
	d.signInAndAuthorize(t)
	m := d.waitFor(t, hintRE)
	url := backendRE.FindStringSubmatch(d.out.String())
	if url == nil || m[1] != demoBinaries(t)+"/mytool --server "+url[1] {
		t.Errorf("hint %q for the backend at %v:\n%s", m[1], url, d.out.String())
	}
}

// TestDemoBusyPort: a taken DEMO_ADDR says so, with the fix.
func TestDemoBusyPort(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := startDemo(t, t.TempDir(), []string{"DEMO_ADDR=" + ln.Addr().String()})
	select {
	case err := <-d.done:
		d.done <- err
		if err == nil || !strings.Contains(d.err.String(), "already in use") || !strings.Contains(d.err.String(), "make demo DEMO_ADDR=127.0.0.1:8788") {
			t.Errorf("demo on a busy port: %v\n%s", err, d.err.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the demo did not give up on a busy port:\n%s\n%s", d.out.String(), d.err.String())
	}
}
