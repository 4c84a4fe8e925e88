package clilogin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyloop/keyloop/tokenstore"
)

// pasteRun is a paste-mode login running in the background, with a pipe as
// its Stdin.
type pasteRun struct {
	h           *harness
	in          *io.PipeWriter
	done        chan struct{}
	sess        *Session
	err         error
	authURL     string
	redirectURI string
}

// startPaste starts Login with NoBrowser and a pipe as Stdin, and waits for
// the paste prompt.
func (h *harness) startPaste(ctx context.Context) *pasteRun {
	h.t.Helper()
	h.cfg.NoBrowser = true
	h.cfg.OpenBrowser = func(context.Context, string) error {
		h.t.Error("a browser was opened in paste mode")
		return nil
	}
	return h.startPrompted(ctx)
}

// startPrompted starts Login with the harness's config and a pipe as
// Stdin, and waits for the paste prompt.
func (h *harness) startPrompted(ctx context.Context) *pasteRun {
	h.t.Helper()
	pr, pw := io.Pipe()
	h.cfg.Stdin = pr
	c := h.client()
	p := &pasteRun{h: h, in: pw, done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a hung flow fails instead of hanging
	go func() {
		defer close(p.done)
		defer cancel()
		p.sess, p.err = c.Login(ctx)
		pr.CloseWithError(errors.New("login returned")) // later pastes fail instead of blocking
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(h.out.String(), "Paste the URL your browser ended on: ") {
		select {
		case <-p.done:
			h.t.Fatalf("Login returned before prompting: %v\n%s", p.err, h.out.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no paste prompt:\n%s", h.out.String())
		}
	}
	for _, line := range strings.Split(h.out.String(), "\n") {
		if strings.HasPrefix(line, "    http") {
			p.authURL = strings.TrimSpace(line)
		}
	}
	p.redirectURI = mustQuery(h.t, p.authURL, "redirect_uri")
	return p
}

// paste types line and Enter.
func (p *pasteRun) paste(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		t.Fatalf("paste: %v", err)
	}
}

// callbackURL signs in with an HTTP client that does not follow the
// redirect back to the loopback listener, and returns the callback URL the
// browser would have ended on.
func (p *pasteRun) callbackURL(t *testing.T) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(p.authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, p.redirectURI+"?") {
		t.Fatalf("authorize redirected to %q", loc)
	}
	return loc
}

func (p *pasteRun) wait(t *testing.T) (*Session, error) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("Login did not return")
	}
	return p.sess, p.err
}

// hasLogin reports whether a login is in the harness's store.
func (h *harness) hasLogin() bool {
	_, err := h.store.Load(h.t.Context(), tokenstore.Key("", h.as.Issuer, testClientID))
	return err == nil
}

func TestPasteCompletesLogin(t *testing.T) {
	h := newHarness(t)
	p := h.startPaste(t.Context())
	out := h.out.String()
	if strings.Contains(out, "Opening your browser") || !strings.Contains(out, "Open it on any machine") ||
		strings.Index(out, p.authURL) > strings.Index(out, "Confirmation code") {
		t.Errorf("paste-mode instructions:\n%s", out)
	}
	p.paste(t, "  "+p.callbackURL(t)+"  ")
	sess, err := p.wait(t)
	if err != nil || sess.Subject != "user-1" {
		t.Fatalf("Login = %+v, %v\n%s", sess, err, h.out.String())
	}
	if !h.hasLogin() {
		t.Error("nothing stored")
	}
	checkClosed(t, p.redirectURI)
	h.checkNoSecrets("output", h.out.String())
}

// TestPasteWrongThenRight: each kind of wrong paste gets its own message and
// another chance, and the right URL then completes the login.
func TestPasteWrongThenRight(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wrong func(good, host string) string
		want  string
	}{
		{"not a URL", func(string, string) string { return "hello" }, "That is not a URL"},
		// url.Values.Encode sorts keys, so state comes last: a copy cut
		// short loses the end of the state.
		{"cut state", func(good, _ string) string { return good[:len(good)-10] }, "looks cut off (its state is incomplete)"},
		{"no state", func(good, _ string) string { return strings.SplitN(good, "&state=", 2)[0] }, "looks cut off (it has no state)"},
		{"other state", func(good, _ string) string {
			return withQueryS(good, "state", strings.Repeat("A", 43))
		}, "belongs to another login (its state does not match)"},
		{"the sign-in URL itself", func(good, _ string) string {
			return "http://127.0.0.1:1/authorize?response_type=code&client_id=mytool&state=" + queryOf(good, "state")
		}, "That is the sign-in URL itself"},
		{"state but no response", func(good, _ string) string {
			return "http://127.0.0.1:1/callback?state=" + queryOf(good, "state")
		}, "That URL has no sign-in response in it"},
		{"cut code", func(good, _ string) string {
			u, _ := url.Parse(good)
			return withQueryS(good, "code", u.Query().Get("code")[:8])
		}, "The server did not accept the code in that URL; it may be cut off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			p := h.startPaste(t.Context())
			good := p.callbackURL(t)
			if !strings.HasSuffix(good, "&state="+mustQuery(t, good, "state")) {
				t.Fatalf("state is not last in the callback URL %q", good)
			}
			p.paste(t, "") // Enter alone asks again, silently
			p.paste(t, tc.wrong(good, mustHost(t, p.redirectURI)))
			p.paste(t, good)
			sess, err := p.wait(t)
			out := h.out.String()
			if err != nil || sess == nil {
				t.Fatalf("Login: %v\n%s", err, out)
			}
			if !strings.Contains(out, tc.want) || !strings.Contains(out, "(4 tries left).") {
				t.Errorf("want %q and \"(4 tries left).\" in the output:\n%s", tc.want, out)
			}
			if strings.Count(out, "Paste the URL your browser ended on: ") != 3 {
				t.Errorf("want 3 prompts (first, after Enter, after the wrong paste):\n%s", out)
			}
			h.checkNoSecrets("output", out)
			checkClosed(t, p.redirectURI)
		})
	}
}

// TestPasteAcceptsEveryForm: the forms browsers show for the callback
// complete the login when they carry this login's state:
// https (Safari upgrades loopback URLs it once saw over https), hosts
// localhost and [::1], another port or path, and the bare query.
func TestPasteAcceptsEveryForm(t *testing.T) {
	for _, tc := range []struct {
		name string
		form func(good, host string) string
	}{
		{"https", func(good, _ string) string { return strings.Replace(good, "http://", "https://", 1) }},
		{"localhost", func(good, host string) string {
			return strings.Replace(good, host, "localhost:"+portOf(host), 1)
		}},
		{"[::1]", func(good, host string) string { return strings.Replace(good, host, "[::1]:"+portOf(host), 1) }},
		{"other port and path", func(good, host string) string {
			return strings.Replace(strings.Replace(good, host, "127.0.0.1:1", 1), "/callback", "/done", 1)
		}},
		{"bare query with ?", func(good, _ string) string { return good[strings.Index(good, "?"):] }},
		{"bare query", func(good, _ string) string { return good[strings.Index(good, "?")+1:] }},
		{"no scheme", func(good, _ string) string { return strings.TrimPrefix(good, "http://") }},
		{"quoted with spaces", func(good, _ string) string { return "  '" + good + "'  " }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			p := h.startPaste(t.Context())
			good := p.callbackURL(t)
			p.paste(t, tc.form(good, mustHost(t, p.redirectURI)))
			sess, err := p.wait(t)
			if err != nil || sess == nil {
				t.Fatalf("Login: %v\n%s", err, h.out.String())
			}
			if strings.Contains(h.out.String(), "tries left") {
				t.Errorf("the paste was refused first:\n%s", h.out.String())
			}
			if !h.hasLogin() {
				t.Error("nothing stored")
			}
		})
	}
}

func queryOf(raw, key string) string {
	u, _ := url.Parse(raw)
	return u.Query().Get(key)
}

func withQueryS(raw, key, value string) string {
	u, _ := url.Parse(raw)
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestPasteLastChance: the fifth wrong paste ends the login with
// ErrStateMismatch (wrong state) or ErrInvalidPaste (not a callback URL);
// nothing is stored and the listener is closed.
func TestPasteLastChance(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wrong func(good string) string
		want  error
	}{
		{"wrong state", func(good string) string { return withQueryS(good, "state", "x") }, ErrStateMismatch},
		{"garbage", func(string) string { return "ftp://nothing" }, ErrInvalidPaste},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			p := h.startPaste(t.Context())
			good := p.callbackURL(t)
			for range maxPasteTries {
				p.paste(t, tc.wrong(good))
			}
			_, err := p.wait(t)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "after 5 tries") {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if h.hasLogin() {
				t.Error("something was stored")
			}
			h.checkNoSecrets("error", err.Error())
			checkClosed(t, p.redirectURI)
		})
	}
}

// TestPasteDenied: a pasted error=access_denied ends the login like the
// callback would.
func TestPasteDenied(t *testing.T) {
	h := newHarness(t)
	h.as.Mode = "deny"
	p := h.startPaste(t.Context())
	p.paste(t, p.callbackURL(t))
	if _, err := p.wait(t); !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("err = %v, want ErrAccessDenied", err)
	}
	if h.hasLogin() {
		t.Error("something was stored")
	}
}

// TestPasteModeLoopbackWins: in paste mode the loopback listener still
// works; when its callback comes first, the login completes and the reader
// waiting on Stdin is abandoned (its next line is discarded).
func TestPasteModeLoopbackWins(t *testing.T) {
	h := newHarness(t)
	p := h.startPaste(t.Context())
	final := browse(t.Context(), p.authURL)
	sess, err := p.wait(t)
	if err != nil || sess == nil {
		t.Fatalf("Login: %v", err)
	}
	if final.status != http.StatusOK || !strings.Contains(final.body, "Signed in to mytool") {
		t.Errorf("browser saw %d:\n%s", final.status, final.body)
	}
	// The prompt's line was ended before the next message.
	if out := h.out.String(); strings.Contains(out, "ended on: Signed") {
		t.Errorf("output:\n%q", out)
	}
	if _, err := io.WriteString(p.in, "late\n"); err == nil {
		t.Error("a paste after the login was still read")
	}
	checkClosed(t, p.redirectURI)
}

// TestPasteStdinEnds: when Stdin ends, the login waits for the loopback.
func TestPasteStdinEnds(t *testing.T) {
	h := newHarness(t)
	p := h.startPaste(t.Context())
	p.in.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(h.out.String(), "Waiting for you to sign in in the browser…") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	browse(t.Context(), p.authURL)
	if _, err := p.wait(t); err != nil {
		t.Fatalf("Login: %v\n%s", err, h.out.String())
	}
}
