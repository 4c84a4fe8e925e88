package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyloop/keyloop/server"
	"golang.org/x/oauth2"
)

// deviceEnv is a backend where "mytool" and "tv" may use the device flow and
// "other" may not.
func deviceEnv(t *testing.T, more func(*server.Config)) *env {
	return newEnv(t, envOpts{configure: func(c *server.Config) {
		c.Clients = []server.Client{
			{ID: "mytool", Name: "My Tool", DeviceFlow: true}, {ID: "other", Name: "Other"}, {ID: "tv", Name: "TV", DeviceFlow: true},
		}
		if more != nil {
			more(c)
		}
	}})
}

type deviceAuth struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

var userCodeRE = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)

// startDevice asks the device authorization endpoint for codes.
func (e *env) startDevice(clientID string) deviceAuth {
	e.t.Helper()
	resp, err := http.PostForm(e.issuer+server.DeviceAuthorizationPath, url.Values{"client_id": {clientID}, "scope": {"profile"}})
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var da deviceAuth
	if resp.StatusCode != 200 || json.Unmarshal(body, &da) != nil || da.DeviceCode == "" || !userCodeRE.MatchString(da.UserCode) {
		e.t.Fatalf("device authorization: %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		e.t.Fatalf("device authorization response is cacheable: %v", resp.Header)
	}
	return da
}

// poll asks the token endpoint once; it returns the status and the
// "error" (or "" for tokens) and the body.
func (e *env) poll(clientID, deviceCode string) (int, string, map[string]any) {
	e.t.Helper()
	st, m, _ := e.postForm(server.TokenPath, url.Values{"grant_type": {server.DeviceCodeGrantType}, "device_code": {deviceCode}, "client_id": {clientID}})
	code, _ := m["error"].(string)
	return st, code, m
}

func (e *env) wantPoll(clientID, deviceCode string, status int, code string) map[string]any {
	e.t.Helper()
	st, got, m := e.poll(clientID, deviceCode)
	if st != status || got != code {
		e.t.Fatalf("poll: %d %q (%v); want %d %q", st, got, m, status, code)
	}
	return m
}

// enterCode opens the verification page at u and submits typed.
func (b *browser) enterCode(u, typed string) page {
	b.t.Helper()
	p := b.get(u)
	if p.status != 200 || !strings.Contains(p.body, `name="user_code"`) {
		b.t.Fatalf("verification page %d:\n%s", p.status, p.body)
	}
	return b.submit(p, url.Values{"user_code": {typed}})
}

// toConsent takes the page after a code was accepted through sign-in (as
// email) to the consent page.
func (b *browser) toConsent(p page, email string) page {
	b.t.Helper()
	if strings.Contains(p.body, `name="email"`) {
		p = b.submit(p, url.Values{"email": {email}})
	}
	if p.status != 200 || !strings.Contains(p.body, ">Authorize</button>") {
		b.t.Fatalf("expected the consent page, got %d %s:\n%s", p.status, p.url, p.body)
	}
	return p
}

// approve enters the code of da, signs in and decides.
func (b *browser) decideDevice(da deviceAuth, email, decision string) (last, consent page) {
	b.t.Helper()
	consent = b.toConsent(b.enterCode(da.VerificationURI, da.UserCode), email)
	return b.submit(consent, url.Values{"decision": {decision}}), consent
}

// An unmodified third-party device client (x/oauth2's DeviceAuth and
// DeviceAccessToken) logs in knowing only the metadata; the tokens refresh
// and revoke like a browser login's.
func TestDeviceFlowWithThirdPartyClient(t *testing.T) {
	e := deviceEnv(t, func(c *server.Config) { c.DeviceFlow.Interval = time.Second })
	e.clock.Run() // x/oauth2 paces its polls by real time
	md := e.metadata()
	if md["device_authorization_endpoint"] != e.issuer+server.DeviceAuthorizationPath {
		t.Fatalf("metadata: %v", md)
	}
	cfg := &oauth2.Config{ClientID: "mytool", Endpoint: oauth2.Endpoint{
		DeviceAuthURL: md["device_authorization_endpoint"].(string), TokenURL: md["token_endpoint"].(string),
	}}
	// Watch the polls, to approve only after one was told to wait.
	polls := &pollWatcher{pending: make(chan struct{}, 100)}
	ctx := context.WithValue(t.Context(), oauth2.HTTPClient, &http.Client{Transport: polls})
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !userCodeRE.MatchString(da.UserCode) || da.VerificationURI != e.issuer+server.DevicePath ||
		da.VerificationURIComplete != da.VerificationURI+"?user_code="+da.UserCode || da.Interval != 1 ||
		da.Expiry.Before(time.Now().Add(9*time.Minute)) || len(da.DeviceCode) < 43 {
		t.Fatalf("device authorization %+v", da)
	}
	type result struct {
		tok *oauth2.Token
		err error
	}
	done := make(chan result, 1)
	pollCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	go func() {
		tok, err := cfg.DeviceAccessToken(pollCtx, da)
		done <- result{tok, err}
	}()
	<-polls.pending
	// The user types the code their own way: lower case, a space.
	b := newBrowser(t)
	consent := b.toConsent(b.enterCode(da.VerificationURI, strings.ToLower(strings.Replace(da.UserCode, "-", " ", 1))), "ada@example.com")
	for _, s := range []string{"My Tool", "ada@example.com", da.UserCode} {
		if !strings.Contains(consent.body, s) {
			t.Fatalf("consent page does not show %q:\n%s", s, consent.body)
		}
	}
	checkPageHeaders(t, consent)
	last := b.submit(consent, url.Values{"decision": {"authorize"}})
	if last.status != 200 || !strings.Contains(last.body, "Device signed in") || !strings.Contains(last.body, da.UserCode) {
		t.Fatalf("after approval: %d\n%s", last.status, last.body)
	}
	checkPageHeaders(t, last)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	// x/oauth2 sends each poll twice (HTTP Basic, then form parameters):
	// that is not too fast.
	polls.mu.Lock()
	if polls.slow != 0 {
		t.Errorf("x/oauth2 polling on time got slow_down %d times", polls.slow)
	}
	polls.mu.Unlock()
	if r.tok.TokenType != "Bearer" || r.tok.RefreshToken == "" || r.tok.Expiry.IsZero() {
		t.Fatalf("token: type %q refresh %t expiry %v", r.tok.TokenType, r.tok.RefreshToken != "", r.tok.Expiry)
	}
	if st, _ := e.apiMe(r.tok.AccessToken); st != 200 {
		t.Fatalf("/api/me with the device token: %d", st)
	}
	c, err := e.h.VerifyToken(t.Context(), r.tok.AccessToken)
	if err != nil || c.Subject != server.DevSubject("ada@example.com") || c.ClientID != "mytool" || c.SessionID == "" {
		t.Fatalf("claims %+v, %v", c, err)
	}
	// Refresh like any login.
	st, m := e.refresh(r.tok.RefreshToken)
	if st != 200 || m["refresh_token"] == nil {
		t.Fatalf("refresh: %d %v", st, m)
	}
	// Revocation ends the session: the new refresh token and the access
	// token stop working.
	if st, _, _ := e.postForm(server.RevokePath, url.Values{"token": {m["refresh_token"].(string)}, "client_id": {"mytool"}}); st != 200 {
		t.Fatalf("revoke: %d", st)
	}
	if st, _ := e.apiMe(m["access_token"].(string)); st != 401 {
		t.Fatalf("/api/me after revocation: %d", st)
	}
	// The device code is spent.
	e.wantPoll("mytool", da.DeviceCode, 400, "invalid_grant")
}

// pollWatcher is a RoundTripper that signals every authorization_pending
// answer and counts slow_down answers.
type pollWatcher struct {
	pending chan struct{}
	mu      sync.Mutex
	slow    int
}

func (p *pollWatcher) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || resp.StatusCode != 400 {
		return resp, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if bytes.Contains(body, []byte(`"authorization_pending"`)) {
		p.pending <- struct{}{}
	}
	if bytes.Contains(body, []byte(`"slow_down"`)) {
		p.mu.Lock()
		p.slow++
		p.mu.Unlock()
	}
	return resp, nil
}

func TestDeviceMetadata(t *testing.T) {
	e := deviceEnv(t, nil)
	md := e.metadata()
	gt, _ := json.Marshal(md["grant_types_supported"])
	if md["device_authorization_endpoint"] != e.issuer+"/oauth/device_authorization" ||
		string(gt) != `["authorization_code","refresh_token","urn:ietf:params:oauth:grant-type:device_code"]` {
		t.Fatalf("metadata: %v", md)
	}
	// No client opted in: nothing advertised, the page is not there.
	plain := newEnv(t, envOpts{})
	if _, ok := plain.metadata()["device_authorization_endpoint"]; ok {
		t.Fatal("device endpoint advertised with no client opted in")
	}
	if p := newBrowser(t).get(plain.issuer + server.DevicePath); p.status != 404 {
		t.Fatalf("verification page without device clients: %d", p.status)
	}
}

func TestDeviceAuthorizationErrors(t *testing.T) {
	e := deviceEnv(t, nil)
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		code   string
	}{
		{"no client", url.Values{}, 400, "invalid_request"},
		{"unknown client", url.Values{"client_id": {"nope"}}, 401, "invalid_client"},
		{"not opted in", url.Values{"client_id": {"other"}}, 400, "unauthorized_client"},
		{"scope too long", url.Values{"client_id": {"mytool"}, "scope": {strings.Repeat("s", 2000)}}, 400, "invalid_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, m, _ := e.postForm(server.DeviceAuthorizationPath, tc.form)
			if st != tc.status || m["error"] != tc.code {
				t.Fatalf("%d %v; want %d %s", st, m, tc.status, tc.code)
			}
		})
	}
	resp, err := http.Get(e.issuer + server.DeviceAuthorizationPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	// HTTP Basic with an empty secret is how x/oauth2 may authenticate.
	req, _ := http.NewRequest("POST", e.issuer+server.DeviceAuthorizationPath, strings.NewReader(""))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("mytool", "")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("Basic auth: %d", resp.StatusCode)
	}
}

func TestDevicePolling(t *testing.T) {
	e := deviceEnv(t, nil)
	da := e.startDevice("mytool")
	if da.Interval != 5 || da.ExpiresIn != 600 {
		t.Fatalf("interval %d, expires_in %d", da.Interval, da.ExpiresIn)
	}
	e.wantPoll("mytool", da.DeviceCode, 400, "authorization_pending")
	// One poll right after another passes (x/oauth2 sends each poll twice
	// while it probes the authentication style)...
	e.wantPoll("mytool", da.DeviceCode, 400, "authorization_pending")
	// ... a third is too soon: slow_down, and the interval is 10 s from now on.
	e.wantPoll("mytool", da.DeviceCode, 400, "slow_down")
	e.clock.Advance(5 * time.Second)
	e.wantPoll("mytool", da.DeviceCode, 400, "slow_down") // 5 s < 10 s; now 15 s
	e.clock.Advance(10 * time.Second)
	e.wantPoll("mytool", da.DeviceCode, 400, "slow_down") // 10 s < 15 s; now 20 s
	e.clock.Advance(20 * time.Second)
	e.wantPoll("mytool", da.DeviceCode, 400, "authorization_pending")
	e.clock.Advance(20 * time.Second)
	e.wantPoll("mytool", da.DeviceCode, 400, "authorization_pending")

	// Another client's device code, a client not opted in, unknown codes.
	e.wantPoll("tv", da.DeviceCode, 400, "invalid_grant")
	e.wantPoll("other", da.DeviceCode, 400, "unauthorized_client")
	e.wantPoll("mytool", "not-a-device-code", 400, "invalid_grant")
	e.wantPoll("mytool", "", 400, "invalid_request")

	// Expiry: expired_token, then (the record gone) invalid_grant.
	e.clock.Advance(10 * time.Minute)
	e.wantPoll("mytool", da.DeviceCode, 400, "expired_token")
	if p := newBrowser(t).enterCode(da.VerificationURI, da.UserCode); p.status != 400 || !strings.Contains(p.body, "not valid or has expired") {
		t.Fatalf("expired code entered: %d\n%s", p.status, p.body)
	}
	e.clock.Advance(11 * time.Minute)
	e.wantPoll("mytool", da.DeviceCode, 400, "invalid_grant")
}

func TestDeviceDenied(t *testing.T) {
	e := deviceEnv(t, nil)
	da := e.startDevice("mytool")
	last, _ := newBrowser(t).decideDevice(da, "ada@example.com", "deny")
	if last.status != 200 || !strings.Contains(last.body, "Request denied") {
		t.Fatalf("after denial: %d\n%s", last.status, last.body)
	}
	e.wantPoll("mytool", da.DeviceCode, 400, "access_denied")
	e.clock.Advance(time.Minute)
	e.wantPoll("mytool", da.DeviceCode, 400, "access_denied")
	// The code cannot be entered again.
	if p := newBrowser(t).enterCode(da.VerificationURI, da.UserCode); p.status != 400 {
		t.Fatalf("denied code entered again: %d", p.status)
	}
}

// Of several polls racing after the approval exactly one gets tokens; a
// later one is a reuse and revokes the login session.
func TestDeviceCodeSingleUse(t *testing.T) {
	e := deviceEnv(t, nil)
	da := e.startDevice("mytool")
	newBrowser(t).decideDevice(da, "ada@example.com", "authorize")
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		tokens []map[string]any
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _, m := e.poll("mytool", da.DeviceCode)
			if st == 200 {
				mu.Lock()
				tokens = append(tokens, m)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(tokens) != 1 {
		t.Fatalf("%d polls got tokens", len(tokens))
	}
	e.wantPoll("mytool", da.DeviceCode, 400, "invalid_grant")
	if st, _ := e.refresh(tokens[0]["refresh_token"].(string)); st != 400 {
		t.Fatalf("refresh after device code reuse: %d", st)
	}
	if st, _ := e.apiMe(tokens[0]["access_token"].(string)); st != 401 {
		t.Fatalf("/api/me after device code reuse: %d", st)
	}
}

func TestDeviceVerificationPage(t *testing.T) {
	e := deviceEnv(t, nil)
	da := e.startDevice("mytool")
	b := newBrowser(t)
	entry := b.get(da.VerificationURI)
	checkPageHeaders(t, entry)
	if entry.status != 200 || !strings.Contains(entry.body, `name="user_code"`) {
		t.Fatalf("entry page %d\n%s", entry.status, entry.body)
	}

	// Typed the user's way: case, dashes, spaces do not matter.
	letters := strings.ReplaceAll(da.UserCode, "-", "")
	for _, typed := range []string{
		da.UserCode, strings.ToLower(da.UserCode), letters, " " + letters[:2] + " " + letters[2:] + " ",
		letters[:4] + "–" + letters[4:], strings.ToLower(letters[:4]) + "_" + letters[4:],
	} {
		p := newBrowser(t).enterCode(da.VerificationURI, typed)
		if p.status != 200 || !strings.Contains(p.body, `name="email"`) {
			t.Fatalf("typed %q: %d\n%s", typed, p.status, p.body)
		}
	}
	// Not a code: said so, shown back, escaped.
	for _, typed := range []string{"BCDF", "BCDF-GHJKL", "BCDF-GHJ1", "ABCD-EFGH", "<b>BCDF</b>"} {
		p := newBrowser(t).enterCode(da.VerificationURI, typed)
		if p.status != 400 || !strings.Contains(p.body, "8 letters") || strings.Contains(p.body, "<b>BCDF") {
			t.Fatalf("typed %q: %d\n%s", typed, p.status, p.body)
		}
	}
	// A well-formed wrong code.
	wrong := "BBBB-BBBB"
	if wrong == da.UserCode {
		wrong = "CCCC-CCCC"
	}
	p := newBrowser(t).enterCode(da.VerificationURI, wrong)
	if p.status != 400 || !strings.Contains(p.body, "not valid or has expired") {
		t.Fatalf("wrong code: %d\n%s", p.status, p.body)
	}
	checkPageHeaders(t, p)

	// verification_uri_complete goes straight to sign-in.
	p = newBrowser(t).get(da.VerificationURIComplete)
	if p.status != 200 || !strings.Contains(p.body, `name="email"`) || strings.Contains(p.url.String(), "user_code") {
		t.Fatalf("verification_uri_complete: %d %s\n%s", p.status, p.url, p.body)
	}

	// CSRF: a POST without the token, or with another browser's, is refused.
	post := func(b *browser, form url.Values) page {
		req, _ := http.NewRequest("POST", e.issuer+server.DevicePath, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return b.do(req)
	}
	if p := post(b, url.Values{"user_code": {da.UserCode}}); p.status != 403 {
		t.Fatalf("entry without CSRF: %d", p.status)
	}
	csrf := csrfRE.FindStringSubmatch(entry.body)[1]
	other := newBrowser(t)
	other.get(da.VerificationURI)
	if p := post(other, url.Values{"user_code": {da.UserCode}, "csrf_token": {csrf}}); p.status != 403 {
		t.Fatalf("entry with another browser's CSRF token: %d", p.status)
	}
	if p := post(newBrowser(t), url.Values{"user_code": {da.UserCode}, "csrf_token": {csrf}}); p.status != 403 {
		t.Fatalf("entry without the cookie: %d", p.status)
	}

	// Two browsers reach consent with one code; the first decision wins.
	b1, b2 := newBrowser(t), newBrowser(t)
	c1 := b1.toConsent(b1.enterCode(da.VerificationURI, da.UserCode), "ada@example.com")
	c2 := b2.toConsent(b2.enterCode(da.VerificationURI, da.UserCode), "eve@example.com")
	if p := b1.submit(c1, url.Values{"decision": {"authorize"}}); p.status != 200 {
		t.Fatalf("first approval: %d\n%s", p.status, p.body)
	}
	if p := b2.submit(c2, url.Values{"decision": {"authorize"}}); p.status != 400 || !strings.Contains(p.body, "already approved or denied") {
		t.Fatalf("second approval: %d\n%s", p.status, p.body)
	}
	m := e.wantPoll("mytool", da.DeviceCode, 200, "")
	c, err := e.h.VerifyToken(t.Context(), m["access_token"].(string))
	if err != nil || c.Email != "ada@example.com" {
		t.Fatalf("token of %+v, %v", c, err)
	}
	// A decided code cannot be entered again.
	if p := newBrowser(t).enterCode(da.VerificationURI, da.UserCode); p.status != 400 {
		t.Fatalf("used code entered again: %d", p.status)
	}
}

// A code that expires while the user is on the consent page is refused
// there, and the poller learns expired_token.
func TestDeviceCodeExpiresDuringConsent(t *testing.T) {
	e := deviceEnv(t, func(c *server.Config) { c.DeviceFlow.CodeTTL = 2 * time.Minute })
	da := e.startDevice("mytool")
	b := newBrowser(t)
	consent := b.toConsent(b.enterCode(da.VerificationURI, da.UserCode), "ada@example.com")
	e.clock.Advance(2 * time.Minute)
	if p := b.submit(consent, url.Values{"decision": {"authorize"}}); p.status != 400 || !strings.Contains(p.body, "expired") {
		t.Fatalf("late approval: %d\n%s", p.status, p.body)
	}
	e.wantPoll("mytool", da.DeviceCode, 400, "expired_token")
}

// sourceBrowser is a browser whose requests claim source src (the test's
// ClientIP reads it from a header).
func sourceBrowser(t *testing.T, src string) *browser {
	b := newBrowser(t)
	b.c.Transport = headerTransport{"X-Test-Source", src}
	return b
}

type headerTransport struct{ k, v string }

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.k, h.v)
	return http.DefaultTransport.RoundTrip(r)
}

// Wrong user codes are limited per source and in total, across replicas
// sharing the StateStore, per window.
func TestDeviceUserCodeAttemptLimits(t *testing.T) {
	var cfg server.Config
	e := deviceEnv(t, func(c *server.Config) {
		c.DeviceFlow.MaxAttempts = 3
		c.DeviceFlow.MaxAttemptsTotal = 5
		c.DeviceFlow.ClientIP = func(r *http.Request) string { return r.Header.Get("X-Test-Source") }
		cfg = *c
	})
	replica := startReplica(t, cfg)
	da := e.startDevice("mytool")
	wrong := "BBBB-BBBB"
	if wrong == da.UserCode {
		wrong = "CCCC-CCCC"
	}
	try := func(base, src, code string) page {
		t.Helper()
		return sourceBrowser(t, src).enterCode(base+server.DevicePath, code)
	}
	for i, base := range []string{e.issuer, replica, e.issuer} {
		if p := try(base, "a", wrong); p.status != 400 {
			t.Fatalf("wrong code %d: %d", i, p.status)
		}
	}
	// Source a is out of attempts, on both replicas, even with the right
	// code; malformed input does not count but is refused too.
	for _, base := range []string{e.issuer, replica} {
		p := try(base, "a", da.UserCode)
		if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") == "" || !strings.Contains(p.body, "Too many wrong codes") {
			t.Fatalf("source a after 3 wrong codes: %d %v\n%s", p.status, p.header, p.body)
		}
	}
	// Source b still may; two wrong codes reach the total of 5.
	if p := try(replica, "b", da.UserCode); p.status != 200 {
		t.Fatalf("source b, right code: %d", p.status)
	}
	try(e.issuer, "b", wrong)
	try(replica, "b", wrong)
	if p := try(e.issuer, "c", da.UserCode); p.status != http.StatusTooManyRequests {
		t.Fatalf("source c after 5 wrong codes in total: %d", p.status)
	}
	// The next window starts afresh.
	e.clock.Advance(server.DefaultUserCodeAttemptWindow)
	da = e.startDevice("mytool")
	if p := try(e.issuer, "a", da.UserCode); p.status != 200 {
		t.Fatalf("source a in the next window: %d\n%s", p.status, p.body)
	}
}

// startReplica serves a second Handler with cfg (the same StateStore and
// issuer) and returns its base URL.
func startReplica(t *testing.T, cfg server.Config) string {
	t.Helper()
	h, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// A device login works when each request lands on another replica.
func TestDeviceFlowAcrossReplicas(t *testing.T) {
	var cfg server.Config
	e := deviceEnv(t, func(c *server.Config) { cfg = *c })
	replica := startReplica(t, cfg)
	da := e.startDevice("mytool")
	e.wantPoll("mytool", da.DeviceCode, 400, "authorization_pending")
	b := newBrowser(t)
	consent := b.toConsent(b.enterCode(replica+server.DevicePath, da.UserCode), "ada@example.com")
	b.submit(consent, url.Values{"decision": {"authorize"}})
	e.clock.Advance(5 * time.Second)
	e.wantPoll("mytool", da.DeviceCode, 200, "")
}

func TestUserCodesAreUniformAndUnique(t *testing.T) {
	e := deviceEnv(t, nil)
	seen := map[string]bool{}
	count := map[rune]int{}
	const n = 400
	for range n {
		uc := e.startDevice("mytool").UserCode
		if seen[uc] {
			t.Fatalf("user code %s issued twice", uc)
		}
		seen[uc] = true
		for _, c := range strings.ReplaceAll(uc, "-", "") {
			count[c]++
		}
	}
	// 3200 letters over 20: each expected 160; a letter below 80 or above
	// 260 is beyond 6 standard deviations.
	for _, c := range "BCDFGHJKLMNPQRSTVWXZ" {
		if count[c] < 80 || count[c] > 260 {
			t.Fatalf("letter %c appeared %d times in %d codes: %v", c, count[c], n, count)
		}
	}
}

func TestDeviceFlowConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    server.DeviceFlowConfig
	}{
		{"ttl too long", server.DeviceFlowConfig{CodeTTL: 2 * time.Hour}},
		{"ttl negative", server.DeviceFlowConfig{CodeTTL: -time.Second}},
		{"fractional interval", server.DeviceFlowConfig{Interval: 1500 * time.Millisecond}},
		{"negative interval", server.DeviceFlowConfig{Interval: -time.Second}},
		{"relative verification URI", server.DeviceFlowConfig{VerificationURI: "/device"}},
		{"verification URI with query", server.DeviceFlowConfig{VerificationURI: "https://ex.com/d?x=1"}},
		{"negative window", server.DeviceFlowConfig{AttemptWindow: -time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := server.New(server.Config{
				Issuer: "https://auth.example.com", Clients: []server.Client{{ID: "c", DeviceFlow: true}},
				Authenticator: nopAuthenticator{}, Minter: mustSelfSigned(t), DeviceFlow: tc.d,
			})
			if err == nil || !strings.Contains(err.Error(), "DeviceFlow.") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// A configured VerificationURI is what clients are told.
func TestDeviceVerificationURIOverride(t *testing.T) {
	e := deviceEnv(t, func(c *server.Config) { c.DeviceFlow.VerificationURI = "https://example.com/device" })
	da := e.startDevice("mytool")
	if da.VerificationURI != "https://example.com/device" || !strings.HasPrefix(da.VerificationURIComplete, "https://example.com/device?user_code=") {
		t.Fatalf("%+v", da)
	}
}

type nopAuthenticator struct{}

func (nopAuthenticator) Authenticate(http.ResponseWriter, *http.Request, server.SignInPrompt) (*server.Identity, error) {
	return nil, server.ErrResponded
}

func mustSelfSigned(t *testing.T) *server.SelfSigned {
	t.Helper()
	key, err := server.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	m, err := server.NewSelfSigned(server.SelfSignedConfig{Issuer: "https://auth.example.com", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Device and user codes never reach the logs.
func TestDeviceLogsCarryNoSecrets(t *testing.T) {
	var buf syncBuf
	e := deviceEnv(t, func(c *server.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	da := e.startDevice("mytool")
	newBrowser(t).enterCode(da.VerificationURI, "BBBB-BBBB")
	newBrowser(t).decideDevice(da, "ada@example.com", "authorize")
	m := e.wantPoll("mytool", da.DeviceCode, 200, "")
	e.poll("mytool", da.DeviceCode) // reuse
	logs := buf.String()
	for _, want := range []string{"device authorization started", "device authorization approved", "grant_type=device_code", "device code reused", "wrong or expired user code"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in logs:\n%s", want, logs)
		}
	}
	for _, s := range []string{da.DeviceCode, da.UserCode, strings.ReplaceAll(da.UserCode, "-", ""), "BBBBBBBB", m["access_token"].(string), m["refresh_token"].(string)} {
		if strings.Contains(logs, s) {
			t.Fatalf("a secret is in the logs:\n%s", logs)
		}
	}
}

// Wrong user codes sent all at once (a guesser does not wait for answers)
// are held to the same limit as codes sent one after another. The store
// holds the first reads of the attempt counters until all of them have come,
// so every entry reads the counters before any other entry is counted: a
// limit checked before counting lets them all through.
func TestDeviceUserCodeAttemptLimitsConcurrent(t *testing.T) {
	const n = 8
	store := &barrierStore{MemoryStateStore: server.NewMemoryStateStore(), match: ":device-tries:", n: n, release: make(chan struct{})}
	e := deviceEnv(t, func(c *server.Config) {
		c.State = store
		c.DeviceFlow.MaxAttempts = 3
		c.DeviceFlow.MaxAttemptsTotal = -1
	})
	da := e.startDevice("mytool")
	wrong := "BBBB-BBBB"
	if wrong == da.UserCode {
		wrong = "CCCC-CCCC"
	}
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := http.Get(e.issuer + server.DevicePath + "?" + url.Values{"user_code": {wrong}}.Encode())
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	wg.Wait()
	close(statuses)
	looked := 0
	for st := range statuses {
		switch st {
		case http.StatusBadRequest:
			looked++
		case http.StatusTooManyRequests:
		default:
			t.Errorf("status %d", st)
		}
	}
	if looked > 3 {
		t.Fatalf("%d of %d concurrent wrong codes were looked up; the limit is 3", looked, n)
	}
	if p := newBrowser(t).enterCode(e.issuer+server.DevicePath, da.UserCode); p.status != http.StatusTooManyRequests {
		t.Fatalf("right code after the limit: %d", p.status)
	}
}

// barrierStore holds the first n Gets of keys containing match, after
// reading, until all n have read (or 10 s passed, so a store that sees fewer does not hang).
type barrierStore struct {
	*server.MemoryStateStore
	match   string
	n       int
	mu      sync.Mutex
	seen    int
	release chan struct{}
}

func (s *barrierStore) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := s.MemoryStateStore.Get(ctx, key)
	if strings.Contains(key, s.match) {
		s.mu.Lock()
		s.seen++
		first, last := s.seen <= s.n, s.seen == s.n
		s.mu.Unlock()
		if last {
			close(s.release)
		}
		if first {
			select {
			case <-s.release:
			case <-time.After(10 * time.Second):
			}
		}
	}
	return b, err
}

// A poll of an approved device code whose state store fails at any step
// answers 503 temporarily_unavailable and leaves the device code redeemable
// exactly once when the store is back: a store outage does not turn the
// next poll into a "reuse" that ends the login.
func TestDeviceTokenWhenStateStoreFails(t *testing.T) {
	f := &faultyStore{}
	e := deviceEnv(t, func(c *server.Config) {
		f.StateStore = c.State
		c.State = f
	})
	form := func(dc string) url.Values {
		return url.Values{"grant_type": {server.DeviceCodeGrantType}, "device_code": {dc}, "client_id": {"mytool"}}
	}
	for n := 0; ; n++ {
		da := e.startDevice("mytool")
		newBrowser(t).decideDevice(da, "ada@example.com", "authorize")
		f.failFrom(n)
		st, m, h := e.postForm(server.TokenPath, form(da.DeviceCode))
		if failed := f.heal(); failed == 0 {
			if st != 200 {
				t.Fatalf("poll with a working store: %d %v", st, m)
			}
			e.wantPoll("mytool", da.DeviceCode, 400, "invalid_grant")
			return // every step has been made to fail once
		}
		checkUnavailable(t, fmt.Sprintf("device poll failing after %d store calls", n), st, m, h)
		m = e.wantPoll("mytool", da.DeviceCode, 200, "")
		if st, _ := e.apiMe(m["access_token"].(string)); st != 200 {
			t.Fatalf("after a failure at store call %d, the retried poll's token is refused (%d)", n+1, st)
		}
		if st, _ := e.refresh(m["refresh_token"].(string)); st != 200 {
			t.Fatalf("after a failure at store call %d, the retried poll's refresh token is refused (%d)", n+1, st)
		}
		e.wantPoll("mytool", da.DeviceCode, 400, "invalid_grant")
	}
}

// The device authorization endpoint answers 503 temporarily_unavailable
// with Retry-After when the state store cannot store the request.
func TestDeviceAuthorizationWhenStateStoreFails(t *testing.T) {
	f := &faultyStore{}
	e := deviceEnv(t, func(c *server.Config) {
		f.StateStore = c.State
		c.State = f
	})
	for n := range 2 {
		f.failFrom(n)
		st, m, h := e.postForm(server.DeviceAuthorizationPath, url.Values{"client_id": {"mytool"}})
		f.heal()
		checkUnavailable(t, fmt.Sprintf("device authorization failing after %d store calls", n), st, m, h)
	}
	e.startDevice("mytool")
}

// The verification page answers a state store failure at any step of a
// code entry with the "temporarily unavailable" page (503, Retry-After), as
// sign-in and consent do, and the code can be entered once the store is
// back.
func TestDeviceVerificationWhenStateStoreFails(t *testing.T) {
	f := &faultyStore{}
	e := deviceEnv(t, func(c *server.Config) {
		f.StateStore = c.State
		c.State = f
	})
	da := e.startDevice("mytool")
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for n := 0; ; n++ {
		f.failFrom(n)
		resp, err := c.Get(da.VerificationURIComplete)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if f.heal() == 0 {
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("code entry with a working store: %d\n%s", resp.StatusCode, body)
			}
			break
		}
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "Temporarily unavailable") {
			t.Fatalf("code entry failing after %d store calls: %d (Retry-After %q)\n%s", n, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	newBrowser(t).decideDevice(da, "ada@example.com", "authorize")
	e.wantPoll("mytool", da.DeviceCode, 200, "")
}
