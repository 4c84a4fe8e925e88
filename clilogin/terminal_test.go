package clilogin

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/creack/pty"
)

// capture reads everything written to r until it ends, copying it to tee
// when not nil.
func capture(r io.Reader, tee io.Writer) <-chan string {
	ch := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		w := io.Writer(&b)
		if tee != nil {
			w = io.MultiWriter(&b, tee)
		}
		_, _ = io.Copy(w, r)
		ch <- b.String()
	}()
	return ch
}

// TestTerminalOutputOnPTY runs a login with Stdout on a real pseudo-terminal:
// the URL comes first, then "Opening your browser…" and the code, then a
// spinner redrawn in place that is erased when the login ends.
func TestTerminalOutputOnPTY(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err) // a kernel feature, not an installable part
	}
	defer ptmx.Close()
	out := capture(ptmx, nil)

	h := newHarness(t)
	h.cfg.Stdout = tty
	r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
	if r.err != nil {
		t.Fatal(r.err)
	}
	tty.Close() // the master then reads EOF (EIO) once drained
	got := <-out

	iURL, iOpen, iCode := strings.Index(got, r.authURL), strings.Index(got, "Opening your browser…"), strings.Index(got, "Confirmation code: ")
	if iURL < 0 || iOpen < iURL || iCode < iOpen {
		t.Errorf("want the URL, then \"Opening your browser…\", then the code; got:\n%q", got)
	}
	frame := clearLine + "⠋ Waiting for you to sign in in the browser… 0s"
	first := strings.Index(got, frame)
	if first < iCode {
		t.Fatalf("no spinner frame after the code on a terminal; got:\n%q", got)
	}
	last := strings.LastIndex(got, "Waiting for you to sign in")
	if !strings.Contains(got[last:], clearLine) {
		t.Errorf("the spinner line was not erased at the end; tail:\n%q", got[last:])
	}
	h.checkNoSecrets("terminal output", got)
}

// TestTerminalOutputOnPipe: with Stdout on a pipe, the same login prints
// plain lines with no control characters at all.
func TestTerminalOutputOnPipe(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config, *loginResult)
	}{
		{"browser", func(*Config, *loginResult) {}},
		{"forced plain", func(c *Config, _ *loginResult) { c.Terminal = TerminalPlain }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			out := capture(pr, nil)
			h := newHarness(t)
			h.cfg.Stdout = pw
			tc.edit(&h.cfg, nil)
			r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
			pw.Close()
			got := <-out
			if r.err != nil {
				t.Fatal(r.err)
			}
			checkPlain(t, got)
			if !strings.Contains(got, "Waiting for you to sign in in the browser…\n") || !strings.Contains(got, r.authURL) {
				t.Errorf("plain output lacks the waiting line or the URL:\n%s", got)
			}
		})
	}
	t.Run("paste mode", func(t *testing.T) {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		h := newHarness(t)
		out := capture(pr, h.out)
		h.cfg.Stdout = pw
		p := h.startPaste(t.Context())
		p.paste(t, "not a url")
		p.paste(t, p.callbackURL(t))
		sess, err := p.wait(t)
		pw.Close()
		got := <-out
		if err != nil || sess == nil {
			t.Fatal(err)
		}
		checkPlain(t, got)
	})
}

func checkPlain(t *testing.T, got string) {
	t.Helper()
	if i := strings.IndexAny(got, "\r\x1b\b"); i >= 0 {
		t.Errorf("control character %q at %d in plain output:\n%q", got[i], i, got)
	}
	if strings.ContainsAny(got, string(spinFrames)) {
		t.Errorf("spinner frame in plain output:\n%q", got)
	}
}

// TestTerminalForcedInteractive: TerminalInteractive animates even on a
// writer that is not a terminal.
func TestTerminalForcedInteractive(t *testing.T) {
	h := newHarness(t)
	h.cfg.Terminal = TerminalInteractive
	r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := h.out.String(); !strings.Contains(got, clearLine+"⠋ Waiting") {
		t.Errorf("no spinner with TerminalInteractive:\n%q", got)
	}
}

func TestHeadlessDetection(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		goos string
		want bool
	}{
		{map[string]string{"DISPLAY": ":0"}, "linux", false},
		{map[string]string{"WAYLAND_DISPLAY": "wayland-0"}, "linux", false},
		{map[string]string{}, "linux", true},
		{map[string]string{"DISPLAY": ":0", "SSH_CONNECTION": "10.0.0.1 5022 10.0.0.2 22"}, "linux", true},
		{map[string]string{"SSH_TTY": "/dev/pts/3"}, "darwin", true},
		{map[string]string{}, "darwin", false},
		{map[string]string{}, "windows", false},
	} {
		if got := headless(func(k string) string { return tc.env[k] }, tc.goos); got != tc.want {
			t.Errorf("headless(%v, %s) = %v, want %v", tc.env, tc.goos, got, tc.want)
		}
	}
}
