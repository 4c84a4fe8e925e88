package clilogin

// honest state and honest errors at login.

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestLoginPromptsWhenBrowserFails: over SSH with a $BROWSER that fails, or
// on a desktop whose opener fails, the paste prompt is offered and a
// pasted URL completes the login.
func TestLoginPromptsWhenBrowserFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		open func(context.Context, string) error
	}{
		{"SSH, failing $BROWSER", map[string]string{"SSH_CONNECTION": "10.0.0.1 5000 10.0.0.2 22", "DISPLAY": "", "WAYLAND_DISPLAY": "", "BROWSER": "false"}, nil},
		{"SSH, working $BROWSER", map[string]string{"SSH_CONNECTION": "10.0.0.1 5000 10.0.0.2 22", "DISPLAY": "", "WAYLAND_DISPLAY": "", "BROWSER": "true"}, nil},
		{"desktop, failing opener", map[string]string{"SSH_CONNECTION": "", "SSH_TTY": "", "DISPLAY": ":0", "BROWSER": ""},
			func(context.Context, string) error { return errors.New("xdg-open: no method available") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			h := newHarness(t)
			h.cfg.OpenBrowser = tc.open
			p := h.startPrompted(t.Context())
			p.paste(t, p.callbackURL(t))
			if sess, err := p.wait(t); err != nil || sess == nil {
				t.Fatalf("Login: %v\n%s", err, h.out.String())
			}
			if tc.open != nil && !strings.Contains(h.out.String(), "Could not open a browser (xdg-open: no method available)") {
				t.Errorf("the opener's failure was not reported:\n%s", h.out.String())
			}
		})
	}
}

// TestLoginTLSAtListener: a browser that upgraded the loopback URL to https
// sends a TLS handshake to the plain-HTTP listener; the terminal says so in
// one line and suggests --no-browser.
func TestLoginTLSAtListener(t *testing.T) {
	h := newHarness(t)
	h.cfg.LoginCommand = "mytool login --server " + h.as.Issuer
	r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) {
		host := mustHost(t, r.redirectURI)
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", host, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			conn.Close()
			t.Error("the loopback listener completed a TLS handshake")
		}
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(h.out.String(), "tried https://"); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("nothing said about the HTTPS attempt:\n%s", h.out.String())
				break
			}
		}
		browse(ctx, r.authURL) // the user then signs in over http
	})
	if r.err != nil {
		t.Fatalf("Login: %v", r.err)
	}
	out := h.out.String()
	want := "Your browser tried https://" + mustHost(t, r.redirectURI) + ", but this login listens on plain http; run `mytool login --server " +
		h.as.Issuer + " --no-browser` and paste the address instead.\n"
	if strings.Count(out, "tried https://") != 1 || !strings.Contains(out, want) {
		t.Errorf("want one line %q in:\n%s", want, out)
	}
}

// TestNewRefusesUnusableListenAddrs: loopback addresses other than
// 127.0.0.1 and [::1] are refused at New, since servers refuse them as
// redirect URIs and the login would wait for nothing.
func TestNewRefusesUnusableListenAddrs(t *testing.T) {
	for _, a := range []string{"127.0.0.2:0", "127.1.2.3:8400", "[::ffff:127.0.0.2]:0", "localhost:0"} {
		_, err := New(Config{Issuer: "https://auth.example", ClientID: "c", AppName: "a", ListenAddrs: []string{a}})
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "127.0.0.1 or [::1]") {
			t.Errorf("New with %s: %v", a, err)
		}
	}
	for _, a := range []string{"127.0.0.1:0", "[::1]:0", "127.0.0.1:8400"} {
		if _, err := New(Config{Issuer: "https://auth.example", ClientID: "c", AppName: "a", ListenAddrs: []string{a}}); err != nil {
			t.Errorf("New with %s: %v", a, err)
		}
	}
}

// TestTokenEnvTrimmed: the TokenEnv value is trimmed; white space alone
// counts as unset.
func TestTokenEnvTrimmed(t *testing.T) {
	h := newHarness(t)
	h.cfg.TokenEnv = "MYTOOL_TEST_TOKEN"
	stored := h.login()
	c := h.client()
	t.Setenv("MYTOOL_TEST_TOKEN", "  env-token\n")
	if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "env-token" {
		t.Errorf("Token = %q, %v; want the trimmed env token", tok.AccessToken, err)
	}
	t.Setenv("MYTOOL_TEST_TOKEN", " \t\n")
	if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != stored.AccessToken.Reveal() {
		t.Errorf("Token with a blank env var = %v; want the stored login", err)
	}
	if s, err := c.Status(t.Context()); err != nil || s.Location.Kind == "env" {
		t.Errorf("Status with a blank env var = %+v, %v; want the stored login", s, err)
	}
}

// TestTokenEndpointNotAnswering: a token endpoint that accepts and never
// answers is named, with how long it was given, at refresh.
func TestTokenEndpointNotAnswering(t *testing.T) {
	h := newHarness(t)
	h.login()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	b, _ := h.store.Load(t.Context(), keyOf(h))
	rec := mustRecord(t, b)
	rec.TokenEndpoint = "http://" + ln.Addr().String() + "/token"
	saveRecord(t, h, rec)
	h.cfg.HTTPClient = newTimeoutClient(300 * time.Millisecond)
	h.clock.Add(2 * time.Hour) // expired: the refresh must succeed or fail
	_, err = h.client().Token(t.Context())
	var ue *UnreachableError
	if !errors.As(err, &ue) || !ue.Timeout || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrLoginRequired) {
		t.Fatalf("Token = %v; want an *UnreachableError timeout, not a deadline or a login request", err)
	}
	if msg := Message(err); !strings.Contains(msg, "The token endpoint "+rec.TokenEndpoint+" did not answer within 300ms") {
		t.Errorf("message = %q", msg)
	}
}

// TestLoginWithoutPasteInput: over SSH with no terminal input (stdin is
// /dev/null) nothing can be pasted, so the instructions do not ask the user
// to copy the address the browser ends on; they say that only a browser on
// this machine can finish the login.
func TestLoginWithoutPasteInput(t *testing.T) {
	for k, v := range map[string]string{"SSH_CONNECTION": "10.0.0.1 5000 10.0.0.2 22", "DISPLAY": "", "WAYLAND_DISPLAY": "", "BROWSER": ""} {
		t.Setenv(k, v)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	stdin := os.Stdin
	os.Stdin = null
	t.Cleanup(func() { os.Stdin = stdin; null.Close() })

	h := newHarness(t)
	r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
	if r.err != nil {
		t.Fatalf("Login: %v\n%s", r.err, h.out.String())
	}
	out := h.out.String()
	if strings.Contains(out, "copy its full address") || strings.Contains(out, "Paste the URL") ||
		!strings.Contains(out, "which only a browser on this machine can reach:\nthis terminal has no input to paste that address into.") {
		t.Errorf("instructions with nothing to paste into:\n%s", out)
	}
	if strings.Contains(out, "--device") {
		t.Errorf("--device suggested although the server has no device_authorization_endpoint:\n%s", out)
	}
}
