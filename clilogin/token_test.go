package clilogin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyloop/keyloop/tokenstore"
)

// login runs a successful login with the harness's config and returns the
// stored record.
func (h *harness) login() *tokenstore.Record {
	h.t.Helper()
	r := h.runLogin(h.t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
	if r.err != nil {
		h.t.Fatalf("Login: %v", r.err)
	}
	return h.stored()
}

// stored returns the record in the harness's store.
func (h *harness) stored() *tokenstore.Record {
	h.t.Helper()
	b, err := h.cfg.Store.Load(h.t.Context(), tokenstore.Key(h.cfg.Profile, h.as.Issuer, testClientID))
	if err != nil {
		h.t.Fatalf("load the stored login: %v", err)
	}
	rec, err := tokenstore.UnmarshalRecord(b)
	if err != nil {
		h.t.Fatal(err)
	}
	return rec
}

func TestTokenRefreshWindow(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ttl         time.Duration
		quiet, busy time.Duration // elapsed times just outside and just inside the window
	}{
		{"a quarter of the lifetime", time.Hour, 44 * time.Minute, 46 * time.Minute},
		{"at most 24 hours", 7 * 24 * time.Hour, 6*24*time.Hour - time.Hour, 6*24*time.Hour + time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.as.TTL = tc.ttl
			first := h.login()
			c := h.client()

			h.clock.Add(tc.quiet)
			tok, err := c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken != first.AccessToken.Reveal() || h.as.Refreshes.Load() != 0 {
				t.Fatalf("refreshed %d times outside the window", h.as.Refreshes.Load())
			}
			if tok.RefreshToken != "" || tok.TokenType != "Bearer" || !tok.Expiry.Equal(first.Expiry) {
				t.Errorf("token = %+v", tok)
			}

			h.clock.Add(tc.busy - tc.quiet)
			tok, err = c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if h.as.Refreshes.Load() != 1 || tok.AccessToken == first.AccessToken.Reveal() {
				t.Fatalf("Refreshes = %d in the window", h.as.Refreshes.Load())
			}
			// Saved before Token returned, with the rotated refresh token.
			now := h.stored()
			if now.AccessToken.Reveal() != tok.AccessToken || now.RefreshToken == first.RefreshToken ||
				!now.IssuedAt.Equal(h.clock.Now()) || !now.Expiry.Equal(h.clock.Now().Add(tc.ttl)) || now.Subject != "user-1" {
				t.Errorf("stored after refresh: %#v", now)
			}
			if h.as.RefreshTokenValid(first.RefreshToken.Reveal()) {
				t.Error("the old refresh token still works: it was not rotated")
			}
			// The new token is outside its window: no second refresh.
			if _, err := c.Token(t.Context()); err != nil || h.as.Refreshes.Load() != 1 {
				t.Errorf("second Token: %v, Refreshes = %d", err, h.as.Refreshes.Load())
			}
		})
	}
}

func TestTokenBackendDown(t *testing.T) {
	h := newHarness(t)
	h.cfg.Profile = "work"
	var hooked []error
	h.cfg.OnRefreshError = func(err error) { hooked = append(hooked, err) }
	first := h.login()
	c := h.client()
	h.as.Close()

	h.clock.Add(50 * time.Minute) // in the window, still valid
	tok, err := c.Token(t.Context())
	if err != nil {
		t.Fatalf("Token with the backend down and a valid token: %v", err)
	}
	if tok.AccessToken != first.AccessToken.Reveal() {
		t.Error("did not return the old, still valid token")
	}
	if len(hooked) != 1 || !errors.Is(hooked[0], ErrRefreshFailed) {
		t.Fatalf("OnRefreshError got %v", hooked)
	}
	if _, err := c.Token(t.Context()); err != nil || len(hooked) != 1 {
		t.Errorf("a retry within 30 s hit the backend again: %v, %d reports", err, len(hooked))
	}

	h.clock.Add(11 * time.Minute) // expired
	_, err = c.Token(t.Context())
	// The server did not answer: that is what the error says, naming the
	// endpoint; the login is kept, so no new sign-in is asked for.
	var ue *UnreachableError
	if !errors.Is(err, ErrRefreshFailed) || !errors.As(err, &ue) || errors.Is(err, ErrLoginRequired) {
		t.Fatalf("err = %v, want ErrRefreshFailed with an *UnreachableError, not ErrLoginRequired", err)
	}
	if msg := Message(err); !strings.Contains(msg, "Cannot reach the token endpoint "+h.as.Issuer+"/token") ||
		!strings.Contains(msg, "login is kept") || strings.Contains(msg, "clilogin:") {
		t.Errorf("message = %q; want it to name the token endpoint and keep the login", msg)
	}
	if h.stored().RefreshToken != first.RefreshToken {
		t.Error("the stored login changed after a refresh that got no answer")
	}
	for _, e := range append(hooked, err) {
		h.checkNoSecrets("refresh error", e.Error())
	}
}

func TestTokenNotLoggedIn(t *testing.T) {
	h := newHarness(t)
	c := h.client()
	_, err := c.Token(t.Context())
	if !errors.Is(err, ErrNotLoggedIn) || !errors.Is(err, ErrLoginRequired) || !strings.Contains(err.Error(), "run `mytool login`") {
		t.Errorf("Token: %v", err)
	}
	if _, err := c.Status(t.Context()); !errors.Is(err, ErrNotLoggedIn) {
		t.Errorf("Status: %v", err)
	}
	if err := c.Logout(t.Context()); !errors.Is(err, ErrNotLoggedIn) {
		t.Errorf("Logout: %v", err)
	}
}

func TestStatus(t *testing.T) {
	h := newHarness(t)
	rec := h.login()
	h.as.Close() // Status does no network I/O
	s, err := h.client().Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.Subject != "user-1" || s.Account != "user-1@example.com" || !s.Expiry.Equal(rec.Expiry) ||
		s.Location.Kind != tokenstore.KindMemory || !s.CanRefresh || s.Issuer != h.as.Issuer {
		t.Errorf("Status = %+v", s)
	}
}

// TestTokenConcurrentGoroutines: many goroutines on several Clients sharing
// one store, all in the refresh window, make one refresh.
func TestTokenConcurrentGoroutines(t *testing.T) {
	h := newHarness(t)
	h.login()
	h.clock.Add(50 * time.Minute)
	clients := []*Client{h.client(), h.client(), h.client()}
	var wg sync.WaitGroup
	tokens := make([]string, 24)
	errs := make([]error, len(tokens))
	for i := range tokens {
		wg.Go(func() {
			tok, err := clients[i%len(clients)].Token(t.Context())
			errs[i] = err
			if err == nil {
				tokens[i] = tok.AccessToken
			}
		})
	}
	wg.Wait()
	if n := h.as.Refreshes.Load(); n != 1 {
		t.Errorf("Refreshes = %d, want 1", n)
	}
	want := h.stored().AccessToken.Reveal()
	for i := range tokens {
		if errs[i] != nil || tokens[i] != want {
			t.Errorf("goroutine %d: %v (token is the stored one: %v)", i, errs[i], tokens[i] == want)
		}
	}
}

// The child process of TestTokenMultiProcess.
const childEnv = "CLILOGIN_TEST_CHILD"

func TestTokenMultiProcessChild(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		return // run by TestTokenMultiProcess only
	}
	store, err := tokenstore.NewFile(tokenstore.FileConfig{Dir: os.Getenv("CHILD_STORE_DIR")})
	if err != nil {
		t.Fatal(err)
	}
	sec, _ := strconv.ParseInt(os.Getenv("CHILD_NOW"), 10, 64)
	now := time.Unix(sec, 0)
	c, err := New(Config{Issuer: os.Getenv("CHILD_ISSUER"), ClientID: testClientID, AppName: "mytool",
		Store: store, Now: func() time.Time { return now },
		OnRefreshError: func(err error) { t.Errorf("refresh failed: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("TOKEN %s\n", tok.AccessToken)
}

// TestTokenMultiProcess: several processes sharing a file store (flock
// Locker) call Token in the refresh window at once: one refresh.
func TestTokenMultiProcess(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		return
	}
	h := newHarness(t)
	dir := t.TempDir()
	store, err := tokenstore.NewFile(tokenstore.FileConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	h.cfg.Store = store
	h.login()
	h.clock.Add(50 * time.Minute)

	const n = 4
	outs := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestTokenMultiProcessChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"=1", "CHILD_STORE_DIR="+dir, "CHILD_ISSUER="+h.as.Issuer,
			"CHILD_NOW="+strconv.FormatInt(h.clock.Now().Unix(), 10))
		wg.Go(func() { outs[i], errs[i] = cmd.CombinedOutput() })
	}
	wg.Wait()
	want := h.stored().AccessToken.Reveal()
	for i := range n {
		if errs[i] != nil || !strings.Contains(string(outs[i]), "TOKEN "+want+"\n") {
			t.Errorf("child %d: %v\n%s", i, errs[i], outs[i])
		}
	}
	if got := h.as.Refreshes.Load(); got != 1 {
		t.Errorf("Refreshes = %d for %d processes, want 1", got, n)
	}
}

func TestHTTPClient(t *testing.T) {
	h := newHarness(t)
	h.login()
	hc := h.client().HTTPClient(t.Context())
	api := h.as.Issuer + "/api/me"
	do := func(method, body string) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(t.Context(), method, api, rd)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	calls := func() int32 { return h.as.APICalls.Load() }

	if st, _ := do("GET", ""); st != 200 || calls() != 1 || h.as.Refreshes.Load() != 0 {
		t.Fatalf("GET: %d, calls %d", st, calls())
	}
	// The API refuses the token: one refresh, one retry.
	h.as.Reject()
	if st, _ := do("GET", ""); st != 200 || calls() != 3 || h.as.Refreshes.Load() != 1 {
		t.Errorf("GET after a 401: %d, calls %d, refreshes %d", st, calls(), h.as.Refreshes.Load())
	}
	// A PUT with a replayable body is retried with its body.
	h.as.Reject()
	if st, body := do("PUT", "hello"); st != 200 || !strings.Contains(body, `"body":"hello"`) || calls() != 5 {
		t.Errorf("PUT after a 401: %d %s, calls %d", st, body, calls())
	}
	// A POST is not retried: the caller gets the 401; the next request uses
	// the refreshed token.
	h.as.Reject()
	if st, _ := do("POST", "x"); st != 401 || calls() != 6 || h.as.Refreshes.Load() != 3 {
		t.Errorf("POST after a 401: %d, calls %d, refreshes %d", st, calls(), h.as.Refreshes.Load())
	}
	if st, _ := do("POST", "x"); st != 200 || calls() != 7 {
		t.Errorf("POST after the refresh: %d, calls %d", st, calls())
	}
	// A 401 that persists is retried once, not more.
	h.as.RejectAll.Store(true)
	if st, _ := do("GET", ""); st != 401 || calls() != 9 || h.as.Refreshes.Load() != 4 {
		t.Errorf("persistent 401: %d, calls %d, refreshes %d", st, calls(), h.as.Refreshes.Load())
	}
}

func TestHTTPClientLoginRequired(t *testing.T) {
	h := newHarness(t)
	_, err := h.client().HTTPClient(t.Context()).Get(h.as.Issuer + "/api/me")
	if !errors.Is(err, ErrLoginRequired) || h.as.APICalls.Load() != 0 {
		t.Errorf("err = %v, API calls %d", err, h.as.APICalls.Load())
	}
}

func TestTokenSource(t *testing.T) {
	h := newHarness(t)
	rec := h.login()
	ts := h.client().TokenSource(t.Context())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			tok, err := ts.Token()
			if err != nil || tok.AccessToken != rec.AccessToken.Reveal() || !tok.Expiry.Equal(rec.Expiry) {
				t.Errorf("Token: %v", err)
			}
		})
	}
	wg.Wait()
}

func TestLogout(t *testing.T) {
	t.Run("server up", func(t *testing.T) {
		h := newHarness(t)
		rec := h.login()
		c := h.client()
		if err := c.Logout(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(h.as.Revoked(), ","); got != "refresh_token,access_token" {
			t.Errorf("revoked %q", got)
		}
		if h.as.RefreshTokenValid(rec.RefreshToken.Reveal()) {
			t.Error("the refresh token still works after logout")
		}
		if _, err := c.Status(t.Context()); !errors.Is(err, ErrNotLoggedIn) {
			t.Errorf("Status after logout: %v", err)
		}
		if _, err := c.Token(t.Context()); !errors.Is(err, ErrNotLoggedIn) {
			t.Errorf("Token after logout: %v", err)
		}
	})
	t.Run("server down", func(t *testing.T) {
		h := newHarness(t)
		h.login()
		h.as.Close()
		c := h.client()
		err := c.Logout(t.Context())
		if !errors.Is(err, ErrRevocationFailed) || !strings.Contains(err.Error(), "logged out on this machine") {
			t.Fatalf("err = %v, want ErrRevocationFailed", err)
		}
		h.checkNoSecrets("logout error", err.Error())
		if _, err := c.Status(t.Context()); !errors.Is(err, ErrNotLoggedIn) {
			t.Errorf("the login was not deleted locally: %v", err)
		}
	})
}

func TestTokenEnvOverride(t *testing.T) {
	h := newHarness(t)
	stored := h.login()
	envTok := h.as.mintFor("user-env")
	h.cfg.TokenEnv = "MYTOOL_TEST_TOKEN"
	t.Setenv("MYTOOL_TEST_TOKEN", envTok)
	c := h.client()

	tok, err := c.Token(t.Context())
	if err != nil || tok.AccessToken != envTok {
		t.Errorf("Token: %v", err)
	}
	s, err := c.Status(t.Context())
	if err != nil || s.Location.Kind != tokenstore.KindEnv || s.Subject != "user-env" || s.CanRefresh ||
		!s.Expiry.Equal(h.clock.Now().Add(time.Hour)) {
		t.Errorf("Status = %+v, %v", s, err)
	}
	if _, err := c.Login(t.Context()); !errors.Is(err, ErrTokenFromEnv) || !strings.Contains(err.Error(), "MYTOOL_TEST_TOKEN is set") {
		t.Errorf("Login: %v", err)
	}
	if err := c.Logout(t.Context()); !errors.Is(err, ErrTokenFromEnv) {
		t.Errorf("Logout: %v", err)
	}
	if h.stored().AccessToken != stored.AccessToken || len(h.as.Revoked()) != 0 {
		t.Error("the env override touched the stored login")
	}
	t.Setenv("MYTOOL_TEST_TOKEN", "not-a-jwt")
	if s, err := c.Status(t.Context()); err != nil || s.Location.Kind != tokenstore.KindEnv || s.Subject != "" {
		t.Errorf("Status with an opaque token = %+v, %v", s, err)
	}
}

// failingSaves is a Store whose Save fails after the first one, as a
// keychain that went away between the write before a refresh and the save
// of its answer would.
type failingSaves struct {
	tokenstore.Store
	saves atomic.Int32
}

func (f *failingSaves) Save(ctx context.Context, key string, v []byte) error {
	if f.saves.Add(1) == 1 {
		return f.Store.Save(ctx, key, v)
	}
	return errors.New("tokenstore: keychain unavailable: the test says so")
}

// A refresh that succeeded but could not be stored still serves the new
// token (the old refresh token is spent at the server) and reports
// ErrNotSaved through the hook.
func TestTokenRefreshedButNotSaved(t *testing.T) {
	h := newHarness(t)
	var hooked []error
	h.cfg.OnRefreshError = func(err error) { hooked = append(hooked, err) }
	first := h.login()
	h.cfg.Store = &failingSaves{Store: h.cfg.Store}
	c := h.client()

	h.clock.Add(50 * time.Minute) // in the refresh window
	tok, err := c.Token(t.Context())
	if err != nil {
		t.Fatalf("Token after a refresh that could not be saved: %v", err)
	}
	if h.as.Refreshes.Load() != 1 || tok.AccessToken == first.AccessToken.Reveal() {
		t.Fatalf("did not serve the refreshed token (refreshes: %d)", h.as.Refreshes.Load())
	}
	if len(hooked) != 1 || !errors.Is(hooked[0], ErrNotSaved) || !strings.Contains(hooked[0].Error(), "mytool login") {
		t.Fatalf("OnRefreshError got %v; want one ErrNotSaved naming the login command", hooked)
	}
	h.checkNoSecrets("not-saved report", hooked[0].Error())
	// The same Client keeps using the refreshed token, not the spent one.
	if again, err := c.Token(t.Context()); err != nil || again.AccessToken != tok.AccessToken || h.as.Refreshes.Load() != 1 {
		t.Fatalf("second Token: %v, same token %v, refreshes %d", err, err == nil && again.AccessToken == tok.AccessToken, h.as.Refreshes.Load())
	}
}

// cancelAfterRefresh is a RoundTripper that cancels the caller's context
// as soon as a refresh response has arrived (its body already in memory),
// as a Ctrl+C between the refresh and the save would.
type cancelAfterRefresh struct {
	cancel context.CancelFunc
}

func (c cancelAfterRefresh) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || !strings.Contains(string(body), "grant_type=refresh_token") {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	c.cancel()
	return resp, nil
}

// A Ctrl+C that lands between the refresh and the save does not lose the
// login: the rotated refresh token is saved all the same.
func TestTokenRefreshSavedDespiteCancel(t *testing.T) {
	h := newHarness(t)
	first := h.login()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	h.cfg.HTTPClient = &http.Client{Transport: cancelAfterRefresh{cancel}}
	c := h.client()

	h.clock.Add(50 * time.Minute)
	_, _ = c.Token(ctx) // may report the cancellation; what matters is the store
	if h.as.Refreshes.Load() != 1 {
		t.Fatalf("refreshes = %d; want 1", h.as.Refreshes.Load())
	}
	stored := h.stored()
	if stored.RefreshToken == first.RefreshToken || !h.as.RefreshTokenValid(stored.RefreshToken.Reveal()) {
		t.Fatal("the rotated refresh token was not saved after the context was canceled: the login is lost")
	}
}
