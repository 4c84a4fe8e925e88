package main

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/keyloop/keyloop/server"
)

// A third-party OAuth client — plain golang.org/x/oauth2 with PKCE, knowing
// nothing but the backend's URL — logs in against examples/backend using its
// RFC 8414 metadata, and the token opens /api/me. An http.Client with a
// cookie jar plays the browser; a loopback server of the client's own
// catches the redirect.
func TestThirdPartyClientLogsInFromMetadataAlone(t *testing.T) {
	ctx := context.Background()
	issuer, stop := startRun(t, "-addr", "127.0.0.1:0", "-data", t.TempDir())
	conf, tok := thirdPartyLogin(t, issuer, "grace@example.com")

	api := conf.Client(ctx, tok)
	resp, err := api.Get(issuer + "/api/me")
	if err != nil {
		t.Fatal(err)
	}
	var me map[string]string
	json.NewDecoder(resp.Body).Decode(&me)
	resp.Body.Close()
	if resp.StatusCode != 200 || me["email"] != "grace@example.com" {
		t.Fatalf("/api/me: %s %v", resp.Status, me)
	}
	// x/oauth2's own refresh works against the backend too.
	refresh(t, conf, tok)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// Logins survive a restart of the backend: its state lives under -data, so a
// refresh token issued before the restart still refreshes after it, and
// stays single-use.
func TestBackendKeepsLoginsAcrossRestarts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	data := t.TempDir()

	issuer, stop := startRun(t, "-addr", addr, "-data", data)
	conf, tok := thirdPartyLogin(t, issuer, "grace@example.com")
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	issuer2, stop2 := startRun(t, "-addr", addr, "-data", data)
	if issuer2 != issuer {
		t.Fatalf("issuer changed across the restart: %s, %s", issuer, issuer2)
	}
	fresh := refresh(t, conf, tok)
	// The rotated-away refresh token may be retried once within the grace
	// period (a lost response) and gets the same successor…
	old := *tok
	old.Expiry = time.Now().Add(-time.Minute)
	retry, err := conf.TokenSource(context.Background(), &old).Token()
	if err != nil || retry.RefreshToken != fresh.RefreshToken {
		t.Fatalf("retry within the grace period: %v", err)
	}
	// …and that use survives another restart: it is refused afterwards.
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	startRun(t, "-addr", addr, "-data", data)
	if _, err := conf.TokenSource(context.Background(), &old).Token(); err == nil {
		t.Fatal("a spent refresh token refreshed again after the restart")
	}
}

// refresh makes x/oauth2 refresh tok and checks the refresh token rotated.
func refresh(t *testing.T, conf *oauth2.Config, tok *oauth2.Token) *oauth2.Token {
	t.Helper()
	stale := *tok
	stale.Expiry = time.Now().Add(-time.Minute) // make x/oauth2 refresh it
	fresh, err := conf.TokenSource(context.Background(), &stale).Token()
	if err != nil || fresh.AccessToken == tok.AccessToken || fresh.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh through x/oauth2: err=%v, rotated=%v", err, err == nil && fresh.RefreshToken != tok.RefreshToken)
	}
	return fresh
}

// thirdPartyLogin signs email in at issuer as a plain x/oauth2 client that
// knows only the issuer URL, and returns its config and token.
func thirdPartyLogin(t *testing.T, issuer, email string) (*oauth2.Config, *oauth2.Token) {
	t.Helper()
	resp, err := http.Get(issuer + server.MetadataPath)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	authURL, _ := raw["authorization_endpoint"].(string)
	tokenURL, _ := raw["token_endpoint"].(string)
	if raw["issuer"] != issuer || authURL == "" || tokenURL == "" {
		t.Fatalf("metadata %v", raw)
	}

	callbacks := make(chan url.Values, 1)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		callbacks <- r.URL.Query()
		io.WriteString(w, "done")
	}))
	defer cb.Close()
	conf := &oauth2.Config{
		ClientID:    "mytool",
		Endpoint:    oauth2.Endpoint{AuthURL: authURL, TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: cb.URL + "/callback",
	}
	verifier := oauth2.GenerateVerifier()
	state := "third-party-state-0123456789"

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	page := get(t, browser, conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)))
	page = submit(t, browser, page, url.Values{"email": {email}})
	if !strings.Contains(page.body, "Authorize") {
		t.Fatalf("no consent page after sign-in:\n%s", page.body)
	}
	submit(t, browser, page, url.Values{"decision": {"authorize"}})
	q := <-callbacks
	if q.Get("state") != state || q.Get("iss") != issuer || q.Get("code") == "" {
		t.Fatalf("callback state=%q iss=%q code present=%v", q.Get("state"), q.Get("iss"), q.Get("code") != "")
	}
	tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.RefreshToken == "" || tok.Expiry.IsZero() {
		t.Fatalf("token response lacks a refresh token or expiry")
	}
	return conf, tok
}

type page struct {
	url  *url.URL
	body string
}

func get(t *testing.T, c *http.Client, u string) page {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s\n%s", u, resp.Status, b)
	}
	return page{resp.Request.URL, string(b)}
}

var (
	actionRE = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]+)"`)
)

// submit posts the page's form with its hidden fields plus fields.
func submit(t *testing.T, c *http.Client, p page, fields url.Values) page {
	t.Helper()
	a := actionRE.FindStringSubmatch(p.body)
	if a == nil {
		t.Fatalf("no form on %s:\n%s", p.url, p.body)
	}
	action, err := p.url.Parse(html.UnescapeString(a[1]))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hiddenRE.FindAllStringSubmatch(p.body, -1) {
		fields.Set(html.UnescapeString(h[1]), html.UnescapeString(h[2]))
	}
	resp, err := c.PostForm(action.String(), fields)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return page{resp.Request.URL, string(b)}
}

// startOldBackend serves what earlier versions of this backend served on
// addr, with their state in data/state.json (a server.FileStateStore), and
// returns its issuer and a func that stops it.
func startOldBackend(t *testing.T, addr, data string) (string, func()) {
	t.Helper()
	issuer := "http://" + addr
	authn, minter, _, err := devMode(data, "", issuer, "", 168*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	state, err := server.NewFileStateStore(server.FileStateConfig{Path: filepath.Join(data, "state.json")})
	if err != nil {
		t.Fatal(err)
	}
	h, err := server.New(server.Config{State: state, Issuer: issuer, Clients: []server.Client{{ID: "mytool", Name: "mytool"}},
		Authenticator: authn, Minter: minter})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(server.MetadataPath, h)
	mux.Handle("/oauth/", h)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	stop := func() { srv.Close(); h.Close() }
	t.Cleanup(stop)
	return issuer, stop
}

// Upgrading from a backend that kept its state in state.json: the logins
// move into state.db, so a refresh token issued before the upgrade
// refreshes after it (and stays single-use), and state.json is gone.
func TestBackendMigratesStateJSON(t *testing.T) {
	addr, data := freeAddr(t), t.TempDir()
	issuer, stopOld := startOldBackend(t, addr, data)
	conf, tok := thirdPartyLogin(t, issuer, "grace@example.com")
	stopOld()
	if _, err := os.Stat(filepath.Join(data, "state.json")); err != nil {
		t.Fatalf("the old backend left no state.json: %v", err)
	}

	issuer2, _ := startRun(t, "-addr", addr, "-data", data)
	if issuer2 != issuer {
		t.Fatalf("issuer changed across the upgrade: %s, %s", issuer, issuer2)
	}
	if _, err := os.Stat(filepath.Join(data, "state.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state.json is still there after the migration (%v)", err)
	}
	if st, err := os.Stat(filepath.Join(data, "state.db")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state.db: %v %v; want mode 0600", err, st)
	}
	fresh := refresh(t, conf, tok)
	// Single use carries over: past the one retry the grace period allows,
	// the rotated-away token is refused.
	old := *tok
	old.Expiry = time.Now().Add(-time.Minute)
	if retry, err := conf.TokenSource(context.Background(), &old).Token(); err != nil || retry.RefreshToken != fresh.RefreshToken {
		t.Fatalf("retry within the grace period: %v", err)
	}
	if _, err := conf.TokenSource(context.Background(), &old).Token(); err == nil {
		t.Fatal("a spent refresh token refreshed again after the migration")
	}
}

// A state.json next to a state.db that already holds logins is refused,
// not merged: the backend does not start, says which file to move, and
// changes neither.
func TestBackendRefusesStateJSONNextToLogins(t *testing.T) {
	addr, data := freeAddr(t), t.TempDir()
	issuer, stop := startRun(t, "-addr", addr, "-data", data)
	thirdPartyLogin(t, issuer, "grace@example.com")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	old, err := server.NewFileStateStore(server.FileStateConfig{Path: filepath.Join(data, "state.json")})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Put(context.Background(), "keyloop:rt:x", []byte("{}"), time.Hour); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(data, "state.json"))

	err = run(context.Background(), []string{"-addr", addr, "-data", data}, io.Discard)
	jsonPath := filepath.Join(data, "state.json")
	if err == nil || !strings.Contains(err.Error(), "move "+jsonPath+" away") {
		t.Fatalf("run with both state files: %v; want a refusal naming %s", err, jsonPath)
	}
	if after, _ := os.ReadFile(jsonPath); string(after) != string(before) {
		t.Fatal("the refused state.json changed")
	}
}
