package clilogin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a foreign server that records what reaches it.
type recorder struct {
	mu   sync.Mutex
	auth []string // Authorization headers
	body []string // request bodies
	srv  *httptest.Server
}

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	rc := &recorder{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.auth = append(rc.auth, r.Header.Get("Authorization"))
		rc.body = append(rc.body, string(b))
		rc.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *recorder) seen() (auth, body []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.auth...), append([]string(nil), rc.body...)
}

// redirector answers every request with code, to target + the request's path.
func redirector(t *testing.T, code int, target string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+r.URL.Path, code)
	}))
	t.Cleanup(s.Close)
	return s
}

// An API that redirects to another origin must not receive, there, the
// bearer token the transport adds; a same-origin redirect keeps it.
func TestHTTPClientRedirectKeepsTokenOnOrigin(t *testing.T) {
	h := newHarness(t)
	rec := h.login()
	foreign := newRecorder(t)
	api := http.NewServeMux()
	var sameOrigin []string
	var mu sync.Mutex
	api.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, foreign.srv.URL+"/x", http.StatusFound)
	})
	api.HandleFunc("/here", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/landed", http.StatusFound)
	})
	api.HandleFunc("/landed", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sameOrigin = append(sameOrigin, r.Header.Get("Authorization"))
		mu.Unlock()
	})
	apiSrv := httptest.NewServer(api)
	defer apiSrv.Close()

	hc := h.client().HTTPClient(t.Context())
	for _, p := range []string{"/away", "/here"} {
		resp, err := hc.Get(apiSrv.URL + p)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		resp.Body.Close()
	}
	auth, _ := foreign.seen()
	if len(auth) != 1 {
		t.Fatalf("the foreign server saw %d requests, want 1", len(auth))
	}
	if auth[0] != "" {
		t.Errorf("the bearer token was sent to a foreign origin after a redirect (%.12s…)", auth[0])
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sameOrigin) != 1 || sameOrigin[0] != "Bearer "+rec.AccessToken.Reveal() {
		t.Errorf("same-origin redirect: Authorization = %q, want the bearer token", sameOrigin)
	}
}

// A token endpoint that redirects (307 re-sends the body) must not make the
// client post the authorization code, or a refresh token, to another address.
func TestTokenEndpointRedirectNotFollowed(t *testing.T) {
	t.Run("exchange", func(t *testing.T) {
		h := newHarness(t)
		foreign := newRecorder(t)
		h.as.MetaOverride = map[string]any{"token_endpoint": redirector(t, http.StatusTemporaryRedirect, foreign.srv.URL).URL + "/token"}
		r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
		if r.err == nil {
			t.Fatal("Login succeeded through a redirecting token endpoint")
		}
		var se *ServerError
		if !errors.As(r.err, &se) || se.Status != http.StatusTemporaryRedirect {
			t.Errorf("Login error = %v, want a *ServerError with status 307", r.err)
		}
		if _, body := foreign.seen(); len(body) != 0 {
			t.Errorf("the code was posted to a foreign server: %d requests", len(body))
		}
	})
	t.Run("refresh and revoke", func(t *testing.T) {
		h := newHarness(t)
		h.login()
		foreign := newRecorder(t)
		rd := redirector(t, http.StatusPermanentRedirect, foreign.srv.URL)
		rec := h.stored()
		rec.TokenEndpoint, rec.RevocationEndpoint = rd.URL+"/token", rd.URL+"/revoke"
		c := h.client()
		if err := c.save(t.Context(), h.store, rec); err != nil {
			t.Fatal(err)
		}
		h.clock.Add(50 * time.Minute) // in the refresh window of a 1 h token
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatalf("Token: %v (the old token is still valid)", err)
		}
		err := c.Logout(t.Context())
		if !errors.Is(err, ErrRevocationFailed) {
			t.Errorf("Logout = %v, want ErrRevocationFailed", err)
		}
		if _, body := foreign.seen(); len(body) != 0 {
			t.Errorf("a refresh token was posted to a foreign server: %d requests", len(body))
		}
	})
}

// A leeway of hours would make "exp" meaningless; New refuses it.
func TestNewLeewayBounded(t *testing.T) {
	for _, l := range []time.Duration{maxLeeway, time.Hour, 365 * 24 * time.Hour} {
		_, err := New(Config{Issuer: "https://id.example", ClientID: "c", AppName: "a", Leeway: l})
		if l <= maxLeeway && err != nil {
			t.Errorf("Leeway %s: %v", l, err)
		}
		if l > maxLeeway && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Leeway %s: err = %v, want ErrInvalidConfig", l, err)
		}
	}
}

// Malformed metadata is reported with its cause wrapped.
func TestDiscoveryMalformedWraps(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"issuer": `)
	}))
	defer srv.Close()
	c, err := New(Config{Issuer: srv.URL, ClientID: "c", AppName: "a"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.discover(t.Context())
	var se *json.SyntaxError
	if !errors.Is(err, ErrDiscovery) || (!errors.As(err, &se) && !errors.Is(err, io.ErrUnexpectedEOF)) {
		t.Errorf("discover = %v, want ErrDiscovery wrapping the JSON error", err)
	}
}

// loginGoroutines returns the stacks of goroutines running clilogin code,
// other than test functions.
func loginGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "keyloop/clilogin.") && !strings.Contains(g, "clilogin.Test") &&
			!strings.Contains(g, "clilogin.(*harness)") && !strings.Contains(g, "clilogin.browse") {
			out = append(out, g)
		}
	}
	return out
}

// Login leaves no goroutine of its own behind, whichever way it ends.
func TestLoginLeavesNoGoroutines(t *testing.T) {
	check := func(t *testing.T) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			left := loginGoroutines()
			if len(left) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d goroutines left after Login returned:\n%s", len(left), strings.Join(left, "\n\n"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Run("success", func(t *testing.T) {
		h := newHarness(t)
		h.cfg.Terminal = TerminalInteractive // the spinner goroutine too
		h.login()
		check(t)
	})
	t.Run("canceled", func(t *testing.T) {
		h := newHarness(t)
		h.cfg.Terminal = TerminalInteractive
		ctx, cancel := context.WithCancel(t.Context())
		r := h.runLogin(ctx, func(context.Context, *loginResult) { cancel() })
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("Login = %v", r.err)
		}
		checkClosed(t, r.redirectURI)
		check(t)
	})
	t.Run("paste mode, stdin ends", func(t *testing.T) {
		h := newHarness(t)
		pr, pw := io.Pipe()
		h.cfg.NoBrowser, h.cfg.Stdin = true, pr
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { _, err := h.client().Login(ctx); done <- err }()
		_, _ = io.WriteString(pw, "not a url\n")
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Login = %v", err)
		}
		pw.Close() // the documented case: the reader exits when Stdin ends
		check(t)
	})
}

// An over-long pasted line costs one try with a message; it does not end
// paste mode silently, and the right URL pasted next completes the login.
func TestPasteOverlongLine(t *testing.T) {
	h := newHarness(t)
	p := h.startPaste(t.Context())
	long := "http://" + strings.Repeat("x", maxPasteLine+10)
	go func() { _, _ = io.WriteString(p.in, long+"\n") }() // the pipe blocks until Login has read it all
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(h.out.String(), "4 tries left") {
		if time.Now().After(deadline) {
			t.Fatalf("no message for the over-long line:\n%s", h.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if strings.Contains(h.out.String(), "xxxx") {
		t.Error("the pasted text was echoed")
	}
	p.paste(t, p.callbackURL(t))
	if _, err := p.wait(t); err != nil {
		t.Fatalf("Login = %v\n%s", err, h.out.String())
	}
}
