package server_test

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
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

// clock is an injectable clock. It stands still unless Run was called.
type clock struct {
	mu    sync.Mutex
	t     time.Time
	since time.Time // set by Run: Now adds the real time elapsed since
}

func newClock() *clock { return &clock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.since.IsZero() {
		return c.t.Add(time.Since(c.since))
	}
	return c.t
}

// Run makes the clock follow real time from now on (Advance still jumps),
// for a client that paces itself by real time, such as x/oauth2's polling.
func (c *clock) Run() {
	c.mu.Lock()
	c.since = time.Now()
	c.mu.Unlock()
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a running backend on a real loopback server plus a CLI-side
// loopback callback server.
type env struct {
	t        *testing.T
	srv      *httptest.Server
	issuer   string
	h        *server.Handler
	minter   *server.SelfSigned
	clock    *clock
	state    *server.MemoryStateStore
	key      crypto.Signer
	callback *httptest.Server
	cbMu     sync.Mutex
	cbQuery  url.Values
}

type envOpts struct {
	configure  func(*server.Config)
	selfSigned func(*server.SelfSignedConfig)
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{t: t, clock: newClock(), state: server.NewMemoryStateStore()}
	e.srv = httptest.NewUnstartedServer(nil)
	e.issuer = "http://" + e.srv.Listener.Addr().String()
	key, err := server.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	e.key = key
	sc := server.SelfSignedConfig{Issuer: e.issuer, Key: key, Now: e.clock.Now}
	if o.selfSigned != nil {
		o.selfSigned(&sc)
	}
	if e.minter, err = server.NewSelfSigned(sc); err != nil {
		t.Fatal(err)
	}
	dev, err := server.NewDevAuthenticator(server.DevConfig{Key: []byte(strings.Repeat("k", 32)), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{
		Issuer:        e.issuer,
		Clients:       []server.Client{{ID: "mytool", Name: "My Tool"}, {ID: "other", Name: "Other"}},
		Authenticator: dev,
		Minter:        e.minter,
		State:         e.state,
		Now:           e.clock.Now,
	}
	if o.configure != nil {
		o.configure(&cfg)
	}
	if e.h, err = server.New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.h.Close() })
	mux := http.NewServeMux()
	mux.Handle(server.MetadataPath, e.h)
	mux.Handle(server.OpenIDConfigurationPath, e.h)
	mux.Handle("/oauth/", e.h)
	mux.Handle("GET /api/me", e.h.RequireToken(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := server.ClaimsFromContext(r.Context())
		json.NewEncoder(w).Encode(map[string]string{"sub": c.Subject, "email": c.Email})
	})))
	e.srv.Config.Handler = mux
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	e.callback = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.cbMu.Lock()
		e.cbQuery = r.URL.Query()
		e.cbMu.Unlock()
		io.WriteString(w, "callback received")
	}))
	t.Cleanup(e.callback.Close)
	return e
}

func (e *env) callbackURL() string { return e.callback.URL + "/callback" }

func (e *env) lastCallback() url.Values {
	e.cbMu.Lock()
	defer e.cbMu.Unlock()
	return e.cbQuery
}

// oauthConfig builds an x/oauth2 config from the served metadata only.
func (e *env) oauthConfig(clientID string) *oauth2.Config {
	e.t.Helper()
	md := e.metadata()
	return &oauth2.Config{
		ClientID:    clientID,
		Endpoint:    oauth2.Endpoint{AuthURL: md["authorization_endpoint"].(string), TokenURL: md["token_endpoint"].(string)},
		RedirectURL: e.callbackURL(),
	}
}

func (e *env) metadata() map[string]any {
	e.t.Helper()
	resp, err := http.Get(e.issuer + server.MetadataPath)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var md map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		e.t.Fatal(err)
	}
	return md
}

// browser is an http.Client with a cookie jar, playing the user's browser.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, c: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

type page struct {
	status int
	url    *url.URL
	header http.Header
	body   string
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, url: resp.Request.URL, header: resp.Header, body: string(body)}
}

func (b *browser) get(u string) page {
	req, _ := http.NewRequest("GET", u, nil)
	return b.do(req)
}

var (
	formActionRE = regexp.MustCompile(`<form method="post" action="([^"]+)">`)
	csrfRE       = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
)

// submit posts the page's form with extra fields.
func (b *browser) submit(p page, fields url.Values) page {
	b.t.Helper()
	m, c := formActionRE.FindStringSubmatch(p.body), csrfRE.FindStringSubmatch(p.body)
	if m == nil || c == nil {
		b.t.Fatalf("no form on page %s:\n%s", p.url, p.body)
	}
	action, _ := p.url.Parse(html.UnescapeString(m[1]))
	form := url.Values{"csrf_token": {html.UnescapeString(c[1])}}
	for k, v := range fields {
		form[k] = v
	}
	req, _ := http.NewRequest("POST", action.String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// login walks authURL through sign-in (as email) and the consent page, then
// clicks decision; it returns the last page (the CLI callback's response)
// and the consent page.
func (b *browser) login(authURL, email, decision string) (last, consent page) {
	b.t.Helper()
	p := b.get(authURL)
	if strings.Contains(p.body, `name="email"`) {
		if !strings.Contains(p.body, ">Sign in</button>") {
			b.t.Fatalf("sign-in page has no Sign in button:\n%s", p.body)
		}
		p = b.submit(p, url.Values{"email": {email}})
	}
	if p.status != 200 || !strings.Contains(p.body, ">Authorize</button>") || !strings.Contains(p.body, ">Deny</button>") {
		b.t.Fatalf("expected the consent page, got %d %s:\n%s", p.status, p.url, p.body)
	}
	return b.submit(p, url.Values{"decision": {decision}}), p
}

// codeFlow runs a login for clientID and returns the code, verifier and
// redirect URI the CLI would hold.
func (e *env) codeFlow(clientID string) (code, verifier, redirect string) {
	e.t.Helper()
	cfg := e.oauthConfig(clientID)
	verifier = oauth2.GenerateVerifier()
	state := fmt.Sprint("st-", time.Now().UnixNano())
	newBrowser(e.t).login(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), "ada@example.com", "authorize")
	q := e.lastCallback()
	if q.Get("state") != state || q.Get("code") == "" {
		e.t.Fatalf("callback %v", q)
	}
	return q.Get("code"), verifier, cfg.RedirectURL
}

// login runs a full login and exchange with x/oauth2.
func (e *env) login() *oauth2.Token {
	e.t.Helper()
	code, verifier, _ := e.codeFlow("mytool")
	tok, err := e.oauthConfig("mytool").Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// postForm posts form to the token endpoint (or path) and decodes the JSON.
func (e *env) postForm(path string, form url.Values) (int, map[string]any, http.Header) {
	e.t.Helper()
	resp, err := http.PostForm(e.issuer+path, form)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m, resp.Header
}

func (e *env) refresh(rt string) (int, map[string]any) {
	e.t.Helper()
	st, m, _ := e.postForm(server.TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"mytool"}})
	return st, m
}

// apiMe calls the protected route with tok.
func (e *env) apiMe(tok string) (int, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.issuer+"/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}
