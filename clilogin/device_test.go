package clilogin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// deviceServer adds RFC 8628 to an authServer: a device authorization
// endpoint, and a token endpoint that answers device_code polls from a
// script and hands every other grant to the authServer (so refresh works as
// after a browser login).
type deviceServer struct {
	a   *authServer
	srv *httptest.Server
	// Auth replaces fields of the device authorization response (nil
	// removes one).
	Auth map[string]any

	mu       sync.Mutex
	script   []string // answers to polls in order; the last one repeats
	polls    int
	code     string
	authForm url.Values
	pollForm url.Values
}

const testUserCode = "BCDF-GHJK"

func newDeviceServer(h *harness, script ...string) *deviceServer {
	d := &deviceServer{a: h.as, script: script}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /device", d.authorize)
	mux.HandleFunc("POST /token", d.token)
	d.srv = httptest.NewServer(mux)
	h.t.Cleanup(d.srv.Close)
	h.as.MetaOverride = map[string]any{
		"device_authorization_endpoint": d.srv.URL + "/device",
		"token_endpoint":                d.srv.URL + "/token",
	}
	return d
}

func (d *deviceServer) authorize(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	code := d.a.secret("device")
	d.mu.Lock()
	d.authForm, d.code = r.PostForm, code
	d.mu.Unlock()
	resp := map[string]any{
		"device_code": code, "user_code": testUserCode,
		"verification_uri":          "https://auth.example.com/device",
		"verification_uri_complete": "https://auth.example.com/device?user_code=" + testUserCode,
		"expires_in":                600, "interval": 5,
	}
	for k, v := range d.Auth {
		if v == nil {
			delete(resp, k)
		} else {
			resp[k] = v
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

func (d *deviceServer) token(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	if r.PostForm.Get("grant_type") != deviceGrantType {
		d.a.token(w, r)
		return
	}
	d.mu.Lock()
	d.pollForm = r.PostForm
	answer := "pending"
	if len(d.script) > 0 {
		answer = d.script[min(d.polls, len(d.script)-1)]
	}
	d.polls++
	known := r.PostForm.Get("device_code") == d.code
	d.mu.Unlock()
	if !known {
		d.a.oauthError(w, "invalid_grant")
		return
	}
	switch answer {
	case "approve":
		access, refresh := d.a.mintFor("user-1"), d.a.secret("refresh")
		d.a.mu.Lock()
		d.a.refreshes[refresh] = "user-1"
		d.a.accepted[access] = true
		d.a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": access, "token_type": "Bearer", "refresh_token": refresh, "expires_in": 3600})
	case "pending", "slow_down", "access_denied", "expired_token", "invalid_client", "invalid_grant":
		if answer == "pending" {
			answer = "authorization_pending"
		}
		d.a.oauthError(w, answer)
	case "unavailable":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"temporarily_unavailable"}`))
	case "500":
		http.Error(w, "boom", http.StatusInternalServerError)
	case "drop":
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	default:
		panic("unknown answer " + answer)
	}
}

func (d *deviceServer) Polls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.polls
}

// deviceRun is one device Login with waits recorded instead of slept.
type deviceRun struct {
	sess    *Session
	err     error
	waits   []time.Duration
	printed string // what was printed before the first wait
}

// runDevice runs Login with Config.Device = DeviceAlways. Each wait
// advances the harness clock by its length and returns at once; onWait,
// when set, runs first and may cancel.
func (h *harness) runDevice(ctx context.Context, onWait func(n int, d time.Duration)) *deviceRun {
	h.t.Helper()
	h.cfg.Device = DeviceAlways
	c := h.client()
	r := &deviceRun{}
	c.wait = func(ctx context.Context, d time.Duration) error {
		if len(r.waits) == 0 {
			r.printed = h.out.String()
		}
		r.waits = append(r.waits, d)
		if onWait != nil {
			onWait(len(r.waits), d)
		}
		h.clock.Add(d)
		return ctx.Err()
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	r.sess, r.err = c.Login(ctx)
	return r
}

func TestDeviceLogin(t *testing.T) {
	h := newHarness(t)
	d := newDeviceServer(h, "pending", "slow_down", "pending", "approve")
	h.cfg.Scopes = []string{"profile", "email"}
	r := h.runDevice(t.Context(), nil)
	if r.err != nil {
		t.Fatalf("Login: %v\n%s", r.err, h.out)
	}
	// The URL and the code come first, then the URL with the code.
	p := r.printed
	iURI, iCode, iComplete := strings.Index(p, "https://auth.example.com/device\n"), strings.Index(p, testUserCode), strings.Index(p, "device?user_code="+testUserCode)
	if iURI < 0 || iCode < iURI || iComplete < iCode || !strings.Contains(p, "The code expires in 10 minutes.") {
		t.Fatalf("printed before polling:\n%s", p)
	}
	// interval, then 5 s more from the slow_down on.
	want := []time.Duration{5 * time.Second, 5 * time.Second, 10 * time.Second, 10 * time.Second}
	if len(r.waits) != len(want) || r.waits[0] != want[0] || r.waits[1] != want[1] || r.waits[2] != want[2] || r.waits[3] != want[3] {
		t.Fatalf("waits %v; want %v", r.waits, want)
	}
	if f := d.authForm; f.Get("client_id") != testClientID || f.Get("scope") != "profile email" {
		t.Fatalf("device authorization request %v", f)
	}
	if f := d.pollForm; f.Get("grant_type") != deviceGrantType || f.Get("client_id") != testClientID || f.Get("device_code") != d.code {
		t.Fatalf("poll %v", f)
	}
	// Stored like a browser login: it refreshes and logs out.
	rec := h.stored()
	if r.sess.Subject != "user-1" || rec.Subject != "user-1" || rec.RefreshToken == "" || rec.TokenEndpoint != d.srv.URL+"/token" ||
		rec.RevocationEndpoint != h.as.Issuer+"/revoke" || rec.JWKSURI != h.as.Issuer+"/jwks" {
		t.Fatalf("session %+v, record %+v", r.sess, rec)
	}
	h.checkNoSecrets("output", h.out.String())
	h.clock.Add(59 * time.Minute) // into the refresh window
	c := h.client()
	tok, err := c.Token(t.Context())
	if err != nil || tok.AccessToken == string(rec.AccessToken) || h.as.Refreshes.Load() != 1 {
		t.Fatalf("refresh after a device login: %v (refreshes %d)", err, h.as.Refreshes.Load())
	}
	if err := c.Logout(t.Context()); err != nil || len(h.as.Revoked()) == 0 {
		t.Fatalf("logout after a device login: %v, revoked %v", err, h.as.Revoked())
	}
}

func TestDeviceLoginOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []string
		auth   map[string]any
		is     []error
		says   string
	}{
		{"denied", []string{"pending", "access_denied"}, nil, []error{ErrAccessDenied, ErrDeviceFlow}, "denied on the other device"},
		{"expired at the server", []string{"pending", "expired_token"}, nil, []error{ErrDeviceCodeExpired, ErrDeviceFlow}, "expired before it was approved"},
		// expires_in passes on the client's clock before anyone approved.
		{"expired here", []string{"pending"}, map[string]any{"expires_in": 30}, []error{ErrDeviceCodeExpired}, "mytool login --device"},
		{"refused", []string{"invalid_client"}, nil, []error{ErrDeviceFlow}, "could not be completed. The token endpoint"},
		// The device code was lost at the server (a restart): say what to run.
		{"code unknown at the server", []string{"invalid_grant"}, nil, []error{ErrDeviceFlow}, "Run `mytool login --device` to try again."},
		{"no user code", nil, map[string]any{"user_code": nil}, []error{ErrInvalidResponse, ErrDeviceFlow}, "could not be started"},
		{"escape sequence in the code", nil, map[string]any{"user_code": "AB\x1b[2JCD"}, []error{ErrInvalidResponse}, "not printable"},
		{"script URL", nil, map[string]any{"verification_uri": "javascript:alert(1)"}, []error{ErrInvalidResponse}, "verification_uri"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			d := newDeviceServer(h, tc.script...)
			d.Auth = tc.auth
			r := h.runDevice(t.Context(), nil)
			for _, e := range tc.is {
				if !errors.Is(r.err, e) {
					t.Errorf("err %v; want %v", r.err, e)
				}
			}
			if msg := Message(r.err); !strings.Contains(msg, tc.says) || strings.Contains(msg, "clilogin:") {
				t.Errorf("message %q; want a sentence with %q", msg, tc.says)
			}
			if r.sess != nil || h.hasLogin() {
				t.Errorf("something was stored")
			}
			h.checkNoSecrets("message", Message(r.err)+r.err.Error())
		})
	}
}

// A server that does not answer for a while does not end the login: polling
// goes on, slower, says so once, and comes back to the interval.
func TestDeviceLoginRidesOutOutages(t *testing.T) {
	h := newHarness(t)
	newDeviceServer(h, "pending", "unavailable", "drop", "500", "pending", "approve")
	r := h.runDevice(t.Context(), nil)
	if r.err != nil {
		t.Fatalf("Login: %v\n%s", r.err, h.out)
	}
	want := []time.Duration{5, 5, 10, 20, 40, 5}
	for i := range want {
		want[i] *= time.Second
	}
	if len(r.waits) != len(want) {
		t.Fatalf("waits %v; want %v", r.waits, want)
	}
	for i := range want {
		if r.waits[i] != want[i] {
			t.Fatalf("waits %v; want %v", r.waits, want)
		}
	}
	if n := strings.Count(h.out.String(), "Still trying"); n != 1 {
		t.Fatalf("the outage was reported %d times:\n%s", n, h.out)
	}
}

func TestDeviceLoginCanceledOrTimedOut(t *testing.T) {
	t.Run("canceled", func(t *testing.T) {
		h := newHarness(t)
		newDeviceServer(h, "pending")
		ctx, cancel := context.WithCancel(t.Context())
		r := h.runDevice(ctx, func(n int, _ time.Duration) {
			if n == 3 {
				cancel()
			}
		})
		if !errors.Is(r.err, context.Canceled) || !errors.Is(r.err, ErrDeviceFlow) || h.hasLogin() {
			t.Fatalf("err %v, stored %v", r.err, h.hasLogin())
		}
	})
	t.Run("canceled while the approval is on its way", func(t *testing.T) {
		h := newHarness(t)
		d := newDeviceServer(h, "approve")
		ctx, cancel := context.WithCancel(t.Context())
		h.as.Mint = func(jwt.MapClaims) { cancel() } // the server answers after ctx ended
		r := h.runDevice(ctx, nil)
		if !errors.Is(r.err, context.Canceled) || h.hasLogin() || d.Polls() != 1 {
			t.Fatalf("err %v, stored %v, polls %d", r.err, h.hasLogin(), d.Polls())
		}
		// The tokens that came too late are revoked: no grant is left alive.
		if rev := h.as.Revoked(); len(rev) == 0 || rev[0] != "refresh_token" {
			t.Errorf("revoked %v; want the refresh token that arrived after the cancel", rev)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		h := newHarness(t)
		newDeviceServer(h, "pending")
		h.cfg.Device = DeviceAlways
		c := h.client()
		ctx, cancel := context.WithCancel(t.Context())
		c.wait = func(wctx context.Context, d time.Duration) error {
			cancel() // stands for the deadline passing while Login waits
			<-wctx.Done()
			return wctx.Err()
		}
		_, err := c.Login(timeoutCtx{ctx})
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrDeviceFlow) ||
			!strings.Contains(Message(err), "Timed out waiting for the sign-in to be approved") || !strings.Contains(Message(err), "mytool login --device") {
			t.Fatalf("err %v: %s", err, Message(err))
		}
	})
}

// timeoutCtx reports DeadlineExceeded once its parent is done, as a context
// whose deadline passed does.
type timeoutCtx struct{ context.Context }

func (c timeoutCtx) Err() error {
	if c.Context.Err() != nil {
		return context.DeadlineExceeded
	}
	return nil
}

func TestDeviceUnsupported(t *testing.T) {
	h := newHarness(t)
	r := h.runDevice(t.Context(), nil)
	if !errors.Is(r.err, ErrDeviceUnsupported) || !strings.Contains(Message(r.err), "does not offer device login") {
		t.Fatalf("err %v: %s", r.err, Message(r.err))
	}
}

// Which login DeviceAuto picks.
func TestDeviceAutoRule(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env       map[string]string
		noBrowser bool
		stdin     bool // Config.Stdin set: something can be pasted
		opener    bool // Config.OpenBrowser set
		advertise bool
		want      bool
	}{
		{"headless, no terminal", map[string]string{"SSH_CONNECTION": "1 2 3 4"}, false, false, false, true, true},
		{"headless, CI, a paste source", map[string]string{"SSH_CONNECTION": "1 2 3 4", "CI": "true"}, false, true, false, true, true},
		{"headless, a paste source", map[string]string{"SSH_CONNECTION": "1 2 3 4"}, false, true, false, true, false},
		{"headless, CI=false, a paste source", map[string]string{"SSH_CONNECTION": "1 2 3 4", "CI": "false"}, false, true, false, true, false},
		{"server without device flow", map[string]string{"SSH_CONNECTION": "1 2 3 4", "CI": "1"}, false, false, false, false, false},
		{"--no-browser keeps paste mode", map[string]string{"SSH_CONNECTION": "1 2 3 4", "CI": "1"}, true, false, false, true, false},
		{"$BROWSER set", map[string]string{"SSH_CONNECTION": "1 2 3 4", "CI": "1", "BROWSER": "echo"}, false, false, false, true, false},
		{"an opener", map[string]string{"SSH_CONNECTION": "1 2 3 4", "CI": "1"}, false, false, true, true, false},
		{"a display", map[string]string{"DISPLAY": ":0", "CI": "1"}, false, false, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"SSH_CONNECTION", "SSH_TTY", "DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "CI"} {
				t.Setenv(k, tc.env[k])
			}
			cfg := Config{Issuer: "https://auth.example.com", ClientID: "c", AppName: "mytool", NoBrowser: tc.noBrowser}
			if tc.stdin {
				cfg.Stdin = strings.NewReader("")
			}
			if tc.opener {
				cfg.OpenBrowser = func(context.Context, string) error { return nil }
			}
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			md := &metadata{Issuer: cfg.Issuer}
			if tc.advertise {
				md.DeviceAuthorizationEndpoint = "https://auth.example.com/device"
			}
			if got, err := c.wantsDevice(md); err != nil || got != tc.want {
				t.Fatalf("wantsDevice = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// In DeviceAuto, a login where nothing can open a browser nor take a paste
// uses the device flow by itself.
func TestDeviceLoginChosenAutomatically(t *testing.T) {
	h := newHarness(t)
	newDeviceServer(h, "approve")
	for _, k := range []string{"SSH_TTY", "DISPLAY", "WAYLAND_DISPLAY", "BROWSER"} {
		t.Setenv(k, "")
	}
	t.Setenv("SSH_CONNECTION", "10.0.0.1 22 10.0.0.2 22")
	t.Setenv("CI", "true")
	c := h.client()
	c.wait = func(ctx context.Context, d time.Duration) error { return ctx.Err() }
	sess, err := c.Login(t.Context())
	if err != nil || sess.Subject != "user-1" || !strings.Contains(h.out.String(), testUserCode) {
		t.Fatalf("Login: %v\n%s", err, h.out)
	}
}

func TestParseDeviceAuth(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, body string
		interval   time.Duration
		expires    time.Duration
		complete   string
		err        string
	}{
		{"standard", `{"device_code":"d","user_code":"U","verification_uri":"https://a/d","verification_uri_complete":"https://a/d?u=U","expires_in":900,"interval":7}`, 7 * time.Second, 900 * time.Second, "https://a/d?u=U", ""},
		{"Google's verification_url, strings", `{"device_code":"d","user_code":"U","verification_url":"https://a/d","expires_in":"1800","interval":"5"}`, 5 * time.Second, 1800 * time.Second, "", ""},
		{"no interval, no expiry", `{"device_code":"d","user_code":"U","verification_uri":"https://a/d"}`, 5 * time.Second, 0, "", ""},
		{"interval 0 and huge", `{"device_code":"d","user_code":"U","verification_uri":"https://a/d","interval":0}`, 5 * time.Second, 0, "", ""},
		{"interval capped", `{"device_code":"d","user_code":"U","verification_uri":"https://a/d","interval":3600}`, time.Minute, 0, "", ""},
		{"bad complete URI dropped", `{"device_code":"d","user_code":"U","verification_uri":"https://a/d","verification_uri_complete":"data:x"}`, 5 * time.Second, 0, "", ""},
		{"no device code", `{"user_code":"U","verification_uri":"https://a/d"}`, 0, 0, "", "no device_code"},
		{"no URI", `{"device_code":"d","user_code":"U"}`, 0, 0, "", "verification_uri"},
		{"not JSON", `<html>`, 0, 0, "", "is not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			da, err := parseDeviceAuth([]byte(tc.body), now)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v; want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			exp := time.Time{}
			if tc.expires > 0 {
				exp = now.Add(tc.expires)
			}
			if da.Interval != tc.interval || !da.Expires.Equal(exp) || da.VerificationURIComplete != tc.complete || da.VerificationURI != "https://a/d" {
				t.Fatalf("%+v", da)
			}
		})
	}
}

// Config.AuthParams go to the device authorization request too (RFC 8628
// §3.1 allows extra parameters): Auth0's device flow needs "audience" for
// an access token to its API.
func TestDeviceAuthParams(t *testing.T) {
	h := newHarness(t)
	d := newDeviceServer(h, "approve")
	h.cfg.Scopes = []string{"profile", "offline_access"}
	h.cfg.AuthParams = url.Values{"audience": {"https://api.example.com"}, "resource": {"urn:a", "urn:b"}}
	r := h.runDevice(t.Context(), nil)
	if r.err != nil {
		t.Fatalf("Login: %v\n%s", r.err, h.out)
	}
	f := d.authForm
	if f.Get("audience") != "https://api.example.com" || strings.Join(f["resource"], " ") != "urn:a urn:b" ||
		f.Get("client_id") != testClientID || f.Get("scope") != "profile offline_access" || len(f) != 4 {
		t.Errorf("device authorization request %v", f)
	}
	if f := d.pollForm; f.Has("audience") || f.Has("resource") {
		t.Errorf("the device_code poll carries AuthParams: %v", f)
	}
	if h.cfg.AuthParams.Get("client_id") != "" || len(h.cfg.AuthParams) != 2 {
		t.Errorf("Config.AuthParams changed: %v", h.cfg.AuthParams)
	}
}
