package clilogin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/confirm"
	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/tokenstore"
)

type harness struct {
	t     *testing.T
	as    *authServer
	clock *testClock
	store *tokenstore.Memory
	out   *testenv.SyncBuffer
	cfg   Config
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	clock := newClock()
	h := &harness{t: t, as: newAuthServer(t, clock), clock: clock, store: tokenstore.NewMemory(), out: &testenv.SyncBuffer{}}
	h.cfg = Config{
		Issuer: h.as.Issuer, ClientID: testClientID, AppName: "mytool",
		Store: h.store, Stdout: h.out, Now: clock.Now,
	}
	return h
}

func (h *harness) client() *Client {
	h.t.Helper()
	c, err := New(h.cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// page is what the browser saw at the end of a navigation.
type seen struct {
	status int
	header http.Header
	body   string
	err    error
}

// browse plays the browser: GET u, following redirects.
func browse(ctx context.Context, u string) seen {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return seen{err: err}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return seen{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return seen{status: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}

// send sends one request to the loopback listener, as a stray or hostile
// browser would.
func send(ctx context.Context, method, u, host string) seen {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return seen{err: err}
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return seen{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return seen{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// loginResult is the outcome of runLogin.
type loginResult struct {
	sess        *Session
	err         error
	authURL     string
	redirectURI string
	printed     string // what was printed when the browser was asked to open
}

// runLogin runs Login with an OpenBrowser that records the URL and then runs
// act (the browser's behaviour); it waits for both to finish.
func (h *harness) runLogin(ctx context.Context, act func(ctx context.Context, r *loginResult)) *loginResult {
	h.t.Helper()
	r := &loginResult{}
	done := make(chan struct{})
	h.cfg.OpenBrowser = func(bctx context.Context, u string) error {
		defer close(done)
		r.authURL = u
		r.printed = h.out.String()
		pu, err := url.Parse(u)
		if err != nil {
			h.t.Errorf("auth URL: %v", err)
			return err
		}
		r.redirectURI = pu.Query().Get("redirect_uri")
		act(bctx, r)
		return nil
	}
	c := h.client()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second) // a hung flow fails instead of hanging
	defer cancel()
	r.sess, r.err = c.Login(ctx)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		h.t.Fatal("the browser did not finish")
	}
	return r
}

// checkNoSecrets fails when s contains a code or token the server issued.
func (h *harness) checkNoSecrets(what, s string) {
	h.t.Helper()
	for _, sec := range h.as.Secrets() {
		if strings.Contains(s, sec) {
			h.t.Errorf("%s contains a secret the server issued (%.8s…)", what, sec)
		}
	}
}

// checkClosed fails when something still listens at redirectURI's host.
func checkClosed(t *testing.T, redirectURI string) {
	t.Helper()
	u, err := url.Parse(redirectURI)
	if err != nil || u.Host == "" {
		t.Fatalf("redirect URI %q", redirectURI)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err == nil {
		conn.Close()
		t.Errorf("the callback listener %s is still open after Login returned", u.Host)
	}
}

func TestLoginHappyPath(t *testing.T) {
	h := newHarness(t)
	h.cfg.Scopes = []string{"openid", "api"}
	var final seen
	r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { final = browse(ctx, r.authURL) })
	if r.err != nil {
		t.Fatalf("Login: %v", r.err)
	}
	if r.sess.Subject != "user-1" || r.sess.Account != "user-1@example.com" || r.sess.Issuer != h.as.Issuer ||
		!r.sess.CanRefresh || r.sess.Location.Kind != tokenstore.KindMemory {
		t.Errorf("session = %+v", r.sess)
	}
	if want := h.clock.Now().Add(time.Hour); !r.sess.Expiry.Equal(want) {
		t.Errorf("Expiry = %v, want %v", r.sess.Expiry, want)
	}

	// The URL and the confirmation code were printed before the browser opened.
	state := mustQuery(t, r.authURL, "state")
	if len(state) < 22 {
		t.Errorf("state %q has fewer than 128 bits", state)
	}
	if !strings.Contains(r.printed, r.authURL) || !strings.Contains(r.printed, confirm.Code(state)) {
		t.Errorf("before opening the browser, printed:\n%s", r.printed)
	}
	au, _ := url.Parse(r.authURL)
	q := au.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("client_id") != testClientID || q.Get("scope") != "openid api" ||
		!strings.HasPrefix(q.Get("redirect_uri"), "http://127.0.0.1:") || !strings.HasSuffix(q.Get("redirect_uri"), "/callback") {
		t.Errorf("auth URL query = %v", q)
	}

	// The browser got the success page, self-contained, with a CSP.
	if final.err != nil || final.status != http.StatusOK || !strings.Contains(final.body, "Signed in to mytool") ||
		!strings.Contains(final.body, "user-1@example.com") {
		t.Errorf("browser saw %d %v:\n%s", final.status, final.err, final.body)
	}
	if csp := final.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") ||
		!strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP = %q", csp)
	}
	if strings.Contains(final.body, "http://") || strings.Contains(final.body, "https://") || strings.Contains(final.body, "src=") {
		t.Errorf("success page references external assets:\n%s", final.body)
	}

	// The stored record is complete.
	b, err := h.store.Load(t.Context(), tokenstore.Key("", h.as.Issuer, testClientID))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := tokenstore.UnmarshalRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if rec.RefreshToken == "" || rec.TokenEndpoint != h.as.Issuer+"/token" || rec.RevocationEndpoint != h.as.Issuer+"/revoke" ||
		rec.JWKSURI != h.as.Issuer+"/jwks" || rec.Subject != "user-1" || rec.Account != "user-1@example.com" ||
		!rec.IssuedAt.Equal(h.clock.Now()) || rec.ClientID != testClientID || rec.Issuer != h.as.Issuer {
		t.Errorf("stored record = %#v", rec)
	}

	checkClosed(t, r.redirectURI)
	out := h.out.String()
	h.checkNoSecrets("output", out)
	h.checkNoSecrets("success page", final.body)
	if strings.Count(out, state) != 1 {
		t.Errorf("the state appears outside the URL in the output:\n%s", out)
	}
}

func mustQuery(t *testing.T, raw, key string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get(key)
}

// TestLoginRefusedRequestsDoNotEndTheFlow sends requests the callback
// handler must refuse with a 4xx; the real callback afterwards still wins.
func TestLoginRefusedRequestsDoNotEndTheFlow(t *testing.T) {
	h := newHarness(t)
	var refused []seen
	var final seen
	r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) {
		cb := r.redirectURI
		host := mustHost(t, cb)
		base := strings.TrimSuffix(cb, "/callback")
		for _, req := range []struct{ method, url, host string }{
			{"GET", cb + "?state=wrong&code=forged", ""},     // state mismatch
			{"GET", cb + "?code=forged", ""},                 // no state
			{"GET", cb + "?state=a&state=b&code=forged", ""}, // two states
			{"GET", cb + "?state=" + mustQuery(t, r.authURL, "state") + "&code=x", "evil.example:" + portOf(host)}, // DNS rebinding
			{"GET", cb + "?state=" + mustQuery(t, r.authURL, "state") + "&code=x", "localhost:" + portOf(host)},
			{"POST", cb + "?state=" + mustQuery(t, r.authURL, "state") + "&code=x", ""}, // method
			{"GET", base + "/favicon.ico", ""}, // stray path
			{"GET", base + "/callback/extra?state=" + mustQuery(t, r.authURL, "state"), ""},
		} {
			refused = append(refused, send(ctx, req.method, req.url, req.host))
		}
		final = browse(ctx, r.authURL)
	})
	if r.err != nil {
		t.Fatalf("Login: %v", r.err)
	}
	want := []int{400, 400, 400, 400, 400, 405, 404, 404}
	for i, s := range refused {
		if s.err != nil || s.status != want[i] {
			t.Errorf("refused request %d: %d %v, want %d", i, s.status, s.err, want[i])
		}
	}
	if final.status != http.StatusOK {
		t.Errorf("final callback: %d\n%s", final.status, final.body)
	}
	checkClosed(t, r.redirectURI)
}

func mustHost(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func portOf(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// TestLoginOneCallbackOnly: after the valid callback, a replay gets a 4xx
// (or finds the listener closed) and the outcome does not change.
func TestLoginOneCallbackOnly(t *testing.T) {
	h := newHarness(t)
	h.as.Mode = "approve"
	var replay seen
	r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) {
		// Follow the authorize redirect by hand to learn the callback URL.
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(r.authURL)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
		cb := resp.Header.Get("Location")
		first := browse(ctx, cb)
		if first.status != http.StatusOK {
			t.Errorf("first callback: %d", first.status)
		}
		replay = send(ctx, "GET", cb, "")
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if replay.err == nil && replay.status < 400 {
		t.Errorf("replayed callback got %d", replay.status)
	}
}

func TestLoginCallbackErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*authServer)
		check func(t *testing.T, err error)
		page  string
	}{
		{"access_denied", func(a *authServer) { a.Mode = "deny" }, func(t *testing.T, err error) {
			if !errors.Is(err, ErrAccessDenied) {
				t.Errorf("err = %v, want ErrAccessDenied", err)
			}
		}, "denied"},
		{"other error", func(a *authServer) { a.Mode = "error" }, func(t *testing.T, err error) {
			var ce *CallbackError
			if !errors.As(err, &ce) || ce.Code != "temporarily_unavailable" || ce.Description != "maintenance window[31m until 5" {
				t.Errorf("err = %#v", err)
			}
			if strings.ContainsAny(err.Error(), "\x1b\n\"") {
				t.Errorf("unsanitized error %q", err)
			}
		}, "temporarily_unavailable"},
		{"iss mismatch", func(a *authServer) { a.CallbackIss = "https://evil.example" }, func(t *testing.T, err error) {
			if !errors.Is(err, ErrIssuerMismatch) {
				t.Errorf("err = %v, want ErrIssuerMismatch", err)
			}
		}, "unexpected server"},
		{"token fails verification", func(a *authServer) {
			a.TokenIssuer = "https://evil.example"
			a.MetaOverride = map[string]any{"access_token_issuer": a.Issuer}
		},
			func(t *testing.T, err error) {
				if !errors.Is(err, ErrInvalidToken) {
					t.Errorf("err = %v, want ErrInvalidToken", err)
				}
			}, "could not be completed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.setup(h.as)
			var final seen
			r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { final = browse(ctx, r.authURL) })
			if r.err == nil {
				t.Fatal("Login succeeded")
			}
			tc.check(t, r.err)
			if final.status != http.StatusBadRequest || !strings.Contains(final.body, tc.page) {
				t.Errorf("browser saw %d:\n%s", final.status, final.body)
			}
			if _, err := h.store.Load(t.Context(), tokenstore.Key("", h.as.Issuer, testClientID)); !errors.Is(err, tokenstore.ErrNotFound) {
				t.Errorf("something was stored: %v", err)
			}
			h.checkNoSecrets("error", r.err.Error())
			h.checkNoSecrets("output", h.out.String())
			checkClosed(t, r.redirectURI)
		})
	}
}

func TestLoginCancellation(t *testing.T) {
	t.Run("canceled", func(t *testing.T) {
		h := newHarness(t)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		r := h.runLogin(ctx, func(context.Context, *loginResult) { cancel() })
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", r.err)
		}
		checkClosed(t, r.redirectURI)
	})
	t.Run("timeout", func(t *testing.T) {
		h := newHarness(t)
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		r := h.runLogin(ctx, func(context.Context, *loginResult) {})
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", r.err)
		}
		if !strings.Contains(r.err.Error(), "run `mytool login` again") {
			t.Errorf("the timeout does not say what to do: %v", r.err)
		}
		checkClosed(t, r.redirectURI)
	})
}

func TestLoginListenAddrs(t *testing.T) {
	t.Run("fixed port list skips a busy port", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		h := newHarness(t)
		h.cfg.ListenAddrs = []string{busy.Addr().String(), "127.0.0.1:0"}
		r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
		if r.err != nil {
			t.Fatal(r.err)
		}
		if strings.Contains(r.redirectURI, busy.Addr().String()) {
			t.Errorf("redirect URI %s uses the busy port", r.redirectURI)
		}
	})
	t.Run("IPv6 loopback", func(t *testing.T) {
		probe, err := net.Listen("tcp", "[::1]:0")
		if err != nil {
			t.Skipf("no IPv6 loopback on this machine: %v", err)
		}
		probe.Close()
		h := newHarness(t)
		h.cfg.ListenAddrs = []string{"[::1]:0"}
		r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !strings.HasPrefix(r.redirectURI, "http://[::1]:") {
			t.Errorf("redirect URI = %s", r.redirectURI)
		}
		checkClosed(t, r.redirectURI)
	})
	t.Run("all busy", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		h := newHarness(t)
		h.cfg.ListenAddrs = []string{busy.Addr().String()}
		_, err = h.client().Login(t.Context())
		// The listen error wraps the OS errors, so callers can tell a busy port.
		if !errors.Is(err, syscall.EADDRINUSE) || !strings.HasPrefix(err.Error(), "clilogin: ") || !strings.Contains(err.Error(), "cannot listen") {
			t.Errorf("err = %v, want a clilogin error wrapping EADDRINUSE", err)
		}
	})
}

func TestDiscoveryErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		meta map[string]any
		want string
	}{
		{"issuer differs", map[string]any{"issuer": "https://other.example"}, "names issuer"},
		{"non-loopback http endpoint", map[string]any{"token_endpoint": "http://auth.example/token"}, "must use https"},
		{"no S256", map[string]any{"code_challenge_methods_supported": []string{"plain"}}, "S256"},
		{"no jwks_uri", map[string]any{"jwks_uri": nil}, "no jwks_uri"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.as.MetaOverride = tc.meta
			h.cfg.OpenBrowser = func(context.Context, string) error { t.Error("browser opened"); return nil }
			_, err := h.client().Login(t.Context())
			if !errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrDiscovery mentioning %q", err, tc.want)
			}
		})
	}
	t.Run("server down", func(t *testing.T) {
		h := newHarness(t)
		h.as.Close()
		_, err := h.client().Login(t.Context())
		var ue *UnreachableError
		if !errors.Is(err, ErrDiscovery) || !errors.As(err, &ue) || ue.Timeout ||
			!strings.Contains(Message(err), "Cannot reach the metadata endpoint "+h.as.Issuer+"/.well-known/oauth-authorization-server: connection refused") {
			t.Errorf("err = %v (%q)", err, Message(err))
		}
	})
}

func TestNew(t *testing.T) {
	ok := Config{Issuer: "https://auth.example", ClientID: "c", AppName: "a"}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"minimal", func(*Config) {}, true},
		{"loopback http", func(c *Config) { c.Issuer = "http://127.0.0.1:8787/" }, true},
		{"localhost http", func(c *Config) { c.Issuer = "http://localhost:8787" }, true},
		{"fixed ports and IPv6", func(c *Config) { c.ListenAddrs = []string{"127.0.0.1:8400", "[::1]:0"} }, true},
		{"no issuer", func(c *Config) { c.Issuer = "" }, false},
		{"no client", func(c *Config) { c.ClientID = "" }, false},
		{"no app", func(c *Config) { c.AppName = "" }, false},
		{"plain http", func(c *Config) { c.Issuer = "http://auth.example" }, false},
		{"relative issuer", func(c *Config) { c.Issuer = "auth.example" }, false},
		{"issuer with query", func(c *Config) { c.Issuer = "https://auth.example?x=1" }, false},
		{"public listen address", func(c *Config) { c.ListenAddrs = []string{"0.0.0.0:0"} }, false},
		{"localhost listen address", func(c *Config) { c.ListenAddrs = []string{"localhost:0"} }, false},
		{"bad port", func(c *Config) { c.ListenAddrs = []string{"127.0.0.1:http"} }, false},
		{"negative leeway", func(c *Config) { c.Leeway = -time.Second }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.edit(&cfg)
			_, err := New(cfg)
			if tc.ok != (err == nil) {
				t.Errorf("New: %v", err)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// TestLoginBrowserEnv opens the URL through $BROWSER: the command is this
// test binary, which then plays the browser (TestBrowserEnvChild).
func TestLoginBrowserEnv(t *testing.T) {
	if os.Getenv(browserChildEnv) == "1" {
		return
	}
	h := newHarness(t)
	t.Setenv("BROWSER", os.Args[0]+" -test.run=^TestBrowserEnvChild$ -test.count=1")
	t.Setenv(browserChildEnv, "1")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sess, err := h.client().Login(ctx)
	if err != nil {
		t.Fatalf("Login through $BROWSER: %v\n%s", err, h.out.String())
	}
	if sess.Subject != "user-1" {
		t.Errorf("session = %+v", sess)
	}
}

const browserChildEnv = "CLILOGIN_TEST_BROWSER_CHILD"

func TestBrowserEnvChild(t *testing.T) {
	if os.Getenv(browserChildEnv) != "1" {
		return // run as $BROWSER by TestLoginBrowserEnv only
	}
	u := os.Args[len(os.Args)-1]
	if s := browse(t.Context(), u); s.err != nil || s.status != http.StatusOK {
		t.Fatalf("browser: %d %v", s.status, s.err)
	}
}

// TestLoginTokenIssuerAndAudience: the server advertises access_token_issuer
// and access_token_audience (tokens minted by Clerk); login and refresh
// verify against them, and a configured audience that differs fails.
func TestLoginTokenIssuerAndAudience(t *testing.T) {
	h := newHarness(t)
	h.as.TokenIssuer = "https://clerk.example"
	h.as.Audience = "https://api.example"
	rec := h.login()
	if rec.TokenIssuer != "https://clerk.example" || rec.Audience != "https://api.example" {
		t.Errorf("record TokenIssuer %q, Audience %q", rec.TokenIssuer, rec.Audience)
	}
	h.clock.Add(50 * time.Minute)
	if _, err := h.client().Token(t.Context()); err != nil || h.as.Refreshes.Load() != 1 {
		t.Fatalf("refresh: %v, Refreshes %d", err, h.as.Refreshes.Load())
	}

	h2 := newHarness(t)
	h2.as.Audience = "https://api.example"
	h2.cfg.Audience = "https://other.example"
	r := h2.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
	if !errors.Is(r.err, ErrInvalidToken) {
		t.Errorf("Login with another audience: %v", r.err)
	}
}

// TestLoginAccessTokenJWKSURI: jwks_uri is the issuer's own key set (its ID
// tokens, OpenID Connect); when access tokens are signed with other keys
// (Clerk's), the metadata's access_token_jwks_uri names them, and login and
// refresh verify access tokens against it.
func TestLoginAccessTokenJWKSURI(t *testing.T) {
	h := newHarness(t)
	h.as.MetaOverride = map[string]any{"jwks_uri": h.as.Issuer + "/id-token-keys", "access_token_jwks_uri": h.as.Issuer + "/jwks"}
	rec := h.login()
	if rec.JWKSURI != h.as.Issuer+"/jwks" {
		t.Errorf("record JWKSURI %q", rec.JWKSURI)
	}
	h.clock.Add(50 * time.Minute)
	if _, err := h.client().Token(t.Context()); err != nil || h.as.Refreshes.Load() != 1 {
		t.Fatalf("refresh: %v, Refreshes %d", err, h.as.Refreshes.Load())
	}
}

func TestTokenCorruptRecord(t *testing.T) {
	h := newHarness(t)
	key := tokenstore.Key("", h.as.Issuer, testClientID)
	if err := h.store.Save(t.Context(), key, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	c := h.client()
	if _, err := c.Token(t.Context()); !errors.Is(err, ErrLoginRequired) || !errors.Is(err, tokenstore.ErrCorrupt) {
		t.Errorf("Token: %v", err)
	}
	if err := c.Logout(t.Context()); err != nil {
		t.Errorf("Logout of a corrupt login: %v", err)
	}
	if _, err := h.store.Load(t.Context(), key); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Errorf("the corrupt login was not deleted: %v", err)
	}
}
