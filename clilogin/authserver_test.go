package clilogin

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testClock is an injected clock shared by a test's Client and authServer.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock {
	return &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// authServer is a small OAuth 2.0 authorization server for tests: RFC 8414
// metadata, authorize (auto-approving), token (authorization_code with PKCE,
// refresh_token with rotation), JWKS, RFC 7009 revocation, and a protected
// API route.
type authServer struct {
	t      testing.TB
	srv    *httptest.Server
	Issuer string
	clock  *testClock
	key    ed25519.PrivateKey
	kid    string

	// Knobs, set before the flow starts.
	TTL          time.Duration       // access token lifetime; default 1 h
	Mode         string              // "approve" (default), "deny", "error"
	CallbackIss  string              // iss on the callback; default Issuer
	TokenIssuer  string              // iss in tokens; default Issuer
	Audience     string              // access_token_audience advertised and minted
	MetaOverride map[string]any      // replaces metadata fields
	Mint         func(jwt.MapClaims) // edits claims before signing

	mu        sync.Mutex
	codes     map[string]codeGrant
	refreshes map[string]string // refresh token → subject
	openid    map[string]bool   // refresh token → the grant has openid
	accepted  map[string]bool   // access tokens /api/me accepts
	secrets   []string          // every code and token issued
	revoked   []string          // token_type_hint of each revocation
	lastState string

	Refreshes atomic.Int32
	APICalls  atomic.Int32
	RejectAll atomic.Bool // /api/me refuses every token

	// Fault knobs for the refresh tests.
	RefreshAttempts atomic.Int32 // every refresh_token grant, refused ones too
	JWKSFail        atomic.Int32 // this many next JWKS requests get 503
	// RefreshDelay, when set, is how long (in nanoseconds) a refresh's
	// answer is held back after the rotation was committed.
	RefreshDelay atomic.Int64
	// ExpiresIn, when set, is sent as expires_in instead of the lifetime in
	// seconds; OmitExpiresIn leaves it out.
	ExpiresIn     any
	OmitExpiresIn bool
	// RefreshRefusal is the error_description of invalid_grant answers to
	// unknown refresh tokens.
	RefreshRefusal string

	// OpenID Connect and provider quirks.
	IDMint          func(jwt.MapClaims) // edits ID token claims before signing
	KeepRefresh     bool                // refresh answers carry no refresh token; the old one stays valid
	NoIDOnRefresh   bool                // refresh answers carry no ID token
	NoIDToken       bool                // no answer carries an ID token
	ClientSecret    string              // when set, the token endpoint requires it
	ClientAuth      string              // "client_secret_basic" (default with a secret) or "client_secret_post"
	RedirectPath    string              // the registered callback path; default /callback
	Published       string              // the issuer as the metadata, callbacks and tokens name it; default Issuer
	MetadataPaths   []string            // where metadata is served; default RFC 8414's /.well-known/oauth-authorization-server
	HTMLElsewhere   bool                // other paths answer 200 with an HTML page, as a web app's catch-all does
	Userinfo        bool                // serve and advertise /userinfo
	FormAnswer      bool                // token answers are form-encoded, as GitHub's are without Accept: application/json
	ErrorsAs200     bool                // token endpoint errors come with 200 OK, as GitHub's do
	LastAuthQuery   atomic.Pointer[url.Values]
	TokenAuthHeader atomic.Pointer[string] // the last token request's Authorization header
}

type codeGrant struct {
	challenge, redirect, clientID string
	nonce                         string
	openid                        bool
}

const testClientID = "mytool"

func newAuthServer(t testing.TB, clock *testClock) *authServer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := &authServer{
		t: t, clock: clock, key: key, kid: "test-key-1", TTL: time.Hour,
		codes: map[string]codeGrant{}, refreshes: map[string]string{}, openid: map[string]bool{}, accepted: map[string]bool{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", a.wellKnown)
	mux.HandleFunc("GET /userinfo", a.userinfo)
	mux.HandleFunc("GET /authorize", a.authorize)
	mux.HandleFunc("POST /token", a.token)
	mux.HandleFunc("GET /jwks", a.jwks)
	mux.HandleFunc("POST /revoke", a.revoke)
	mux.HandleFunc("GET /api/me", a.api)
	mux.HandleFunc("POST /api/me", a.api)
	mux.HandleFunc("PUT /api/me", a.api)
	a.srv = httptest.NewServer(mux)
	a.Issuer = a.srv.URL
	t.Cleanup(a.srv.Close)
	return a
}

// Close stops the server: later requests fail to connect.
func (a *authServer) Close() { a.srv.Close() }

// iss is the issuer as the server publishes it.
func (a *authServer) iss() string {
	if a.Published != "" {
		return a.Published
	}
	return a.Issuer
}

// wellKnown serves the metadata at MetadataPaths, and 404 (or, with
// HTMLElsewhere, a web page) elsewhere.
func (a *authServer) wellKnown(w http.ResponseWriter, r *http.Request) {
	paths := a.MetadataPaths
	if paths == nil {
		paths = []string{"/.well-known/oauth-authorization-server"}
	}
	switch {
	case slices.Contains(paths, r.URL.Path):
		a.metadata(w, r)
	case a.HTMLElsewhere:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, "<!doctype html><title>app</title>")
	default:
		http.NotFound(w, r)
	}
}

// userinfo answers the OpenID Connect userinfo request of an accepted
// access token.
func (a *authServer) userinfo(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	a.mu.Lock()
	ok = ok && a.accepted[tok]
	a.mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"sub": "user-1", "email": "user-1@userinfo.example"})
}

func (a *authServer) metadata(w http.ResponseWriter, _ *http.Request) {
	md := map[string]any{
		"issuer":                           a.iss(),
		"authorization_endpoint":           a.Issuer + "/authorize",
		"token_endpoint":                   a.Issuer + "/token",
		"jwks_uri":                         a.Issuer + "/jwks",
		"revocation_endpoint":              a.Issuer + "/revoke",
		"code_challenge_methods_supported": []string{"S256"},
		"response_types_supported":         []string{"code"},
		"grant_types_supported":            []string{"authorization_code", "refresh_token"},
		"authorization_response_iss_parameter_supported": true,
	}
	// As keyloop servers do: the access tokens' issuer is always named,
	// so the client verifies them (AccessTokenAuto).
	md["access_token_issuer"] = a.iss()
	if a.Userinfo {
		md["userinfo_endpoint"] = a.Issuer + "/userinfo"
	}
	if a.TokenIssuer != "" {
		md["access_token_issuer"] = a.TokenIssuer
	}
	if a.Audience != "" {
		md["access_token_audience"] = a.Audience
	}
	for k, v := range a.MetaOverride {
		if v == nil {
			delete(md, k)
		} else {
			md[k] = v
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(md)
}

func (a *authServer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	a.LastAuthQuery.Store(&q)
	path := a.RedirectPath
	if path == "" {
		path = "/callback"
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Scheme != "http" || !(redirect.Hostname() == "localhost" || net.ParseIP(redirect.Hostname()).IsLoopback()) ||
		redirect.Path != path {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	if q.Get("client_id") != testClientID || q.Get("response_type") != "code" ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || len(q.Get("state")) < 22 {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.lastState = q.Get("state")
	a.mu.Unlock()
	iss := a.CallbackIss
	if iss == "" {
		iss = a.iss()
	}
	back := url.Values{"state": {q.Get("state")}, "iss": {iss}}
	switch a.Mode {
	case "deny":
		back.Set("error", "access_denied")
	case "error":
		back.Set("error", "temporarily_unavailable")
		back.Set("error_description", "maintenance \"window\"\n\x1b[31m until 5")
	default:
		code := a.secret("code")
		a.mu.Lock()
		a.codes[code] = codeGrant{challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri"), clientID: q.Get("client_id"),
			nonce: q.Get("nonce"), openid: slices.Contains(strings.Fields(q.Get("scope")), "openid")}
		a.mu.Unlock()
		back.Set("code", code)
	}
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (a *authServer) secret(prefix string) string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	s := prefix + "-" + base64.RawURLEncoding.EncodeToString(b)
	a.mu.Lock()
	a.secrets = append(a.secrets, s)
	a.mu.Unlock()
	return s
}

// Secrets returns every code and token the server issued.
func (a *authServer) Secrets() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.secrets...)
}

func (a *authServer) oauthError(w http.ResponseWriter, code string) {
	a.oauthErrorDesc(w, code, "")
}

func (a *authServer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || !a.clientAuthenticated(r) {
		a.oauthError(w, "invalid_client")
		return
	}
	var sub, nonce string
	var openid bool
	oldRefresh := r.PostForm.Get("refresh_token")
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		a.mu.Lock()
		g, ok := a.codes[r.PostForm.Get("code")]
		delete(a.codes, r.PostForm.Get("code"))
		a.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !ok || g.redirect != r.PostForm.Get("redirect_uri") ||
			base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
			a.oauthError(w, "invalid_grant")
			return
		}
		sub, nonce, openid = "user-1", g.nonce, g.openid
	case "refresh_token":
		a.RefreshAttempts.Add(1)
		a.mu.Lock()
		s, ok := a.refreshes[oldRefresh]
		openid = a.openid[oldRefresh]
		if !a.KeepRefresh {
			delete(a.refreshes, oldRefresh) // rotation
		}
		a.mu.Unlock()
		if !ok {
			a.oauthErrorDesc(w, "invalid_grant", a.RefreshRefusal)
			return
		}
		a.Refreshes.Add(1)
		sub = s
	default:
		a.oauthError(w, "unsupported_grant_type")
		return
	}
	access := a.mintFor(sub)
	refresh := a.secret("refresh")
	refreshing := r.PostForm.Get("grant_type") == "refresh_token"
	a.mu.Lock()
	if refreshing && a.KeepRefresh {
		refresh = ""
	} else {
		a.refreshes[refresh] = sub
		a.openid[refresh] = openid
	}
	a.accepted[access] = true
	a.mu.Unlock()
	resp := map[string]any{"access_token": access, "token_type": "Bearer", "refresh_token": refresh,
		"expires_in": int(a.TTL / time.Second)}
	if refresh == "" {
		delete(resp, "refresh_token")
	}
	if openid && !a.NoIDToken && !(refreshing && a.NoIDOnRefresh) {
		resp["id_token"] = a.mintID(sub, nonce, access)
	}
	if a.ExpiresIn != nil {
		resp["expires_in"] = a.ExpiresIn
	}
	if a.OmitExpiresIn {
		delete(resp, "expires_in")
	}
	if d := time.Duration(a.RefreshDelay.Load()); r.PostForm.Get("grant_type") == "refresh_token" && d > 0 {
		time.Sleep(d) // the rotation is committed; the answer is late
	}
	w.Header().Set("Cache-Control", "no-store")
	if a.FormAnswer {
		form := url.Values{}
		for k, v := range resp {
			form.Set(k, fmt.Sprint(v))
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		_, _ = io.WriteString(w, form.Encode())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func (a *authServer) oauthErrorDesc(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	status := http.StatusBadRequest
	if a.ErrorsAs200 {
		status = http.StatusOK
	}
	body := map[string]string{"error": code}
	if desc != "" {
		body["error_description"] = desc
	}
	if a.FormAnswer {
		form := url.Values{}
		for k, v := range body {
			form.Set(k, v)
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, form.Encode())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// clientAuthenticated checks the client's credentials as the server's
// ClientSecret and ClientAuth say.
func (a *authServer) clientAuthenticated(r *http.Request) bool {
	a.TokenAuthHeader.Store(ptr(r.Header.Get("Authorization")))
	if a.ClientSecret == "" {
		return r.PostForm.Get("client_id") == testClientID && r.Header.Get("Authorization") == ""
	}
	if a.ClientAuth == "client_secret_post" {
		return r.PostForm.Get("client_id") == testClientID && r.PostForm.Get("client_secret") == a.ClientSecret &&
			r.Header.Get("Authorization") == ""
	}
	id, secret, ok := r.BasicAuth()
	id, _ = url.QueryUnescape(id)
	secret, _ = url.QueryUnescape(secret)
	return ok && id == testClientID && secret == a.ClientSecret && !r.PostForm.Has("client_secret")
}

func ptr[T any](v T) *T { return &v }

// mintID signs an OpenID Connect ID token for sub, to the test client.
func (a *authServer) mintID(sub, nonce, access string) string {
	now := a.clock.Now()
	sum := sha512.Sum512([]byte(access)) // at_hash for EdDSA
	c := jwt.MapClaims{
		"iss": a.iss(), "sub": sub, "aud": testClientID, "azp": testClientID,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "auth_time": now.Unix(),
		"email": sub + "@example.com", "at_hash": base64.RawURLEncoding.EncodeToString(sum[:32]),
	}
	if nonce != "" {
		c["nonce"] = nonce
	}
	if a.IDMint != nil {
		a.IDMint(c)
	}
	s := a.sign(jwt.SigningMethodEdDSA, a.key, a.kid, c)
	a.mu.Lock()
	a.secrets = append(a.secrets, s)
	a.mu.Unlock()
	return s
}

// mintFor signs an access token for sub with the server's key.
func (a *authServer) mintFor(sub string) string {
	now := a.clock.Now()
	iss := a.TokenIssuer
	if iss == "" {
		iss = a.iss()
	}
	c := jwt.MapClaims{
		"iss": iss, "sub": sub, "email": sub + "@example.com",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(a.TTL).Unix(),
		"jti": a.secret("jti"),
	}
	if a.Audience != "" {
		c["aud"] = a.Audience
	}
	if a.Mint != nil {
		a.Mint(c)
	}
	s := a.sign(jwt.SigningMethodEdDSA, a.key, a.kid, c)
	a.mu.Lock()
	a.secrets = append(a.secrets, s)
	a.mu.Unlock()
	return s
}

func (a *authServer) sign(m jwt.SigningMethod, key crypto.PrivateKey, kid string, c jwt.Claims) string {
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		a.t.Fatal(err)
	}
	return s
}

func (a *authServer) jwksJSON() []byte {
	pub := a.key.Public().(ed25519.PublicKey)
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(pub),
		"kid": a.kid, "alg": "EdDSA", "use": "sig",
	}}})
	return b
}

func (a *authServer) jwks(w http.ResponseWriter, _ *http.Request) {
	if a.JWKSFail.Add(-1) >= 0 {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	a.JWKSFail.Store(0)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(a.jwksJSON())
}

func (a *authServer) revoke(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || !a.clientAuthenticated(r) {
		a.oauthError(w, "invalid_client")
		return
	}
	tok := r.PostForm.Get("token")
	a.mu.Lock()
	delete(a.refreshes, tok)
	delete(a.accepted, tok)
	a.revoked = append(a.revoked, r.PostForm.Get("token_type_hint"))
	a.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// Revoked returns the token_type_hint of each revocation request.
func (a *authServer) Revoked() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.revoked...)
}

// Reject makes /api/me refuse every access token issued so far.
func (a *authServer) Reject() {
	a.mu.Lock()
	clear(a.accepted)
	a.mu.Unlock()
}

// RefreshTokenValid reports whether rt would be accepted by the token endpoint.
func (a *authServer) RefreshTokenValid(rt string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.refreshes[rt]
	return ok
}

func (a *authServer) api(w http.ResponseWriter, r *http.Request) {
	a.APICalls.Add(1)
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	a.mu.Lock()
	ok = ok && a.accepted[tok] && !a.RejectAll.Load()
	a.mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"sub": "user-1", "method": r.Method, "body": string(b)})
}
