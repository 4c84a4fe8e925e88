package server_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/keyloop/keyloop/server"
)

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// testRSAKey is one RSA-2048 key for the package's tests (generating one
// per test would dominate their run time under -race).
func testRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

// fixedAuthenticator signs every browser in as one identity.
type fixedAuthenticator struct{ id server.Identity }

func (f fixedAuthenticator) Authenticate(http.ResponseWriter, *http.Request, server.SignInPrompt) (*server.Identity, error) {
	id := f.id
	return &id, nil
}

var grace = server.Identity{Subject: "user-grace", Email: "grace@example.com", EmailVerified: true, Name: "Grace Hopper"}

// newOIDCEnv is newEnv with an RSA ID-token key and an authenticator that
// knows the user's name and verified e-mail.
func newOIDCEnv(t *testing.T, configure func(*server.Config)) *env {
	return newEnv(t, envOpts{configure: func(c *server.Config) {
		c.IDTokenKey = testRSAKey(t)
		c.Authenticator = fixedAuthenticator{grace}
		if configure != nil {
			configure(c)
		}
	}})
}

// rp is an OpenID Connect relying party built with coreos/go-oidc and
// x/oauth2 from the issuer URL and client ID alone.
type rp struct {
	e        *env
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	conf     *oauth2.Config
}

func newRP(e *env, clientID string) *rp {
	e.t.Helper()
	p, err := oidc.NewProvider(context.Background(), e.issuer)
	if err != nil {
		e.t.Fatalf("go-oidc discovery: %v", err)
	}
	return &rp{
		e: e, provider: p,
		verifier: p.Verifier(&oidc.Config{ClientID: clientID, Now: e.clock.Now}),
		conf:     &oauth2.Config{ClientID: clientID, Endpoint: p.Endpoint(), RedirectURL: e.callbackURL()},
	}
}

// login signs in through the browser asking for scopes with nonce and
// returns the token response; it fails the test on any error.
func (r *rp) login(nonce string, scopes ...string) *oauth2.Token {
	r.e.t.Helper()
	r.conf.Scopes = scopes
	verifier := oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if nonce != "" {
		opts = append(opts, oidc.Nonce(nonce))
	}
	newBrowser(r.e.t).login(r.conf.AuthCodeURL("st-oidc", opts...), "", "authorize")
	q := r.e.lastCallback()
	if q.Get("code") == "" {
		r.e.t.Fatalf("callback %v", q)
	}
	tok, err := r.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		r.e.t.Fatalf("exchange: %v", err)
	}
	return tok
}

// idToken verifies the token response's id_token with go-oidc, checks its
// at_hash against the access token, and returns it with its raw claims.
func (r *rp) idToken(tok *oauth2.Token) (*oidc.IDToken, map[string]any) {
	r.e.t.Helper()
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		r.e.t.Fatal("the token response has no id_token")
	}
	id, err := r.verifier.Verify(context.Background(), raw)
	if err != nil {
		r.e.t.Fatalf("go-oidc refused the ID token: %v", err)
	}
	if err := id.VerifyAccessToken(tok.AccessToken); err != nil {
		r.e.t.Fatalf("at_hash: %v", err)
	}
	var c map[string]any
	if err := id.Claims(&c); err != nil {
		r.e.t.Fatal(err)
	}
	return id, c
}

func jwtHeader(t *testing.T, tok string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	json.Unmarshal(b, &h)
	return h
}

func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	json.Unmarshal(b, &c)
	return c
}

// An unmodified OpenID Connect relying party (coreos/go-oidc + x/oauth2)
// logs in knowing only the issuer and the client ID: discovery, code with
// PKCE, an ID token with every OpenID Connect Core claim and the nonce,
// userinfo, and a refresh that brings a new ID token (§12.2).
func TestOpenIDConnectWithGoOIDC(t *testing.T) {
	e := newOIDCEnv(t, nil)
	r := newRP(e, "mytool")
	tok := r.login("n-0S6_WzA2Mj", oidc.ScopeOpenID, "email", "profile", oidc.ScopeOfflineAccess, "groups")
	if tok.Extra("scope") != "openid profile email offline_access" {
		t.Errorf("granted scope %q; unknown scopes are ignored, known ones echoed", tok.Extra("scope"))
	}
	id, c := r.idToken(tok)
	signIn := e.clock.Now().Truncate(time.Second)
	if id.Nonce != "n-0S6_WzA2Mj" || id.Issuer != e.issuer || id.Subject != "user-grace" ||
		!slices.Equal(id.Audience, []string{"mytool"}) || c["azp"] != "mytool" ||
		!id.IssuedAt.Equal(signIn) || !id.Expiry.Equal(signIn.Add(server.DefaultIDTokenLifetime)) ||
		c["auth_time"] != float64(signIn.Unix()) || c["sid"] == nil ||
		c["email"] != "grace@example.com" || c["email_verified"] != true || c["name"] != "Grace Hopper" {
		t.Fatalf("ID token claims %v", c)
	}
	if h := jwtHeader(t, tok.Extra("id_token").(string)); h["alg"] != "RS256" || h["typ"] != "JWT" || h["kid"] == "" {
		t.Fatalf("ID token header %v", h)
	}
	// The access token is an RFC 9068 access token for the API audience
	// (by default the issuer), which RequireToken accepts.
	at := jwtClaims(t, tok.AccessToken)
	if h := jwtHeader(t, tok.AccessToken); h["typ"] != "at+jwt" || at["aud"] != e.issuer ||
		at["scope"] != "openid profile email offline_access" || at["sid"] != c["sid"] {
		t.Fatalf("access token header %v claims %v", h, at)
	}
	if st, _ := e.apiMe(tok.AccessToken); st != 200 {
		t.Fatalf("/api/me with the access token: %d", st)
	}

	ui, err := r.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var uc map[string]any
	ui.Claims(&uc)
	if ui.Subject != id.Subject || ui.Email != "grace@example.com" || !ui.EmailVerified || uc["name"] != "Grace Hopper" {
		t.Fatalf("userinfo %v", uc)
	}

	// Refresh: a new ID token, same iss/sub/aud/azp/auth_time, new iat,
	// no nonce (the refresh is not an authentication request).
	e.clock.Advance(2 * time.Hour)
	stale := *tok
	stale.Expiry = time.Now().Add(-time.Minute)
	fresh, err := r.conf.TokenSource(context.Background(), &stale).Token()
	if err != nil {
		t.Fatal(err)
	}
	id2, c2 := r.idToken(fresh)
	if id2.Subject != id.Subject || id2.Issuer != id.Issuer || !slices.Equal(id2.Audience, id.Audience) ||
		c2["azp"] != c["azp"] || c2["auth_time"] != c["auth_time"] || c2["sid"] != c["sid"] ||
		!id2.IssuedAt.Equal(e.clock.Now().Truncate(time.Second)) || id2.Nonce != "" || c2["email"] != "grace@example.com" {
		t.Fatalf("refreshed ID token claims %v (first %v)", c2, c)
	}
	if fresh.Extra("scope") != tok.Extra("scope") {
		t.Fatalf("refresh scope %q", fresh.Extra("scope"))
	}
}

// The claims an ID token and the userinfo answer carry follow the granted
// scopes (OpenID Connect Core §5.4); without "openid" there is no ID token.
func TestIDTokenClaimsPerScope(t *testing.T) {
	e := newOIDCEnv(t, nil)
	r := newRP(e, "mytool")
	for _, tc := range []struct {
		scopes  []string
		granted string
		claims  []string // beyond the required ones
		absent  []string
	}{
		{[]string{"openid"}, "openid", nil, []string{"email", "email_verified", "name"}},
		{[]string{"openid", "email"}, "openid email", []string{"email", "email_verified"}, []string{"name"}},
		{[]string{"openid", "profile"}, "openid profile", []string{"name"}, []string{"email", "email_verified"}},
		{[]string{"email", "openid", "email"}, "openid email", []string{"email"}, []string{"name"}},
	} {
		t.Run(strings.Join(tc.scopes, "+"), func(t *testing.T) {
			tok := r.login("n1", tc.scopes...)
			if tok.Extra("scope") != tc.granted {
				t.Errorf("scope %q, want %q", tok.Extra("scope"), tc.granted)
			}
			_, c := r.idToken(tok)
			ui, err := r.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatal(err)
			}
			var uc map[string]any
			ui.Claims(&uc)
			for _, k := range []string{"iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "at_hash", "sid"} {
				if _, ok := c[k]; !ok {
					t.Errorf("ID token lacks %s: %v", k, c)
				}
			}
			for _, k := range tc.claims {
				if _, ok := c[k]; !ok {
					t.Errorf("ID token lacks %s: %v", k, c)
				}
				if _, ok := uc[k]; !ok {
					t.Errorf("userinfo lacks %s: %v", k, uc)
				}
			}
			for _, k := range tc.absent {
				if _, ok := c[k]; ok {
					t.Errorf("ID token has %s: %v", k, c)
				}
				if _, ok := uc[k]; ok {
					t.Errorf("userinfo has %s: %v", k, uc)
				}
			}
		})
	}
	t.Run("no openid", func(t *testing.T) {
		tok := r.login("", "email", "custom:read")
		if tok.Extra("id_token") != nil || tok.Extra("scope") != "email" {
			t.Fatalf("id_token %v, scope %q", tok.Extra("id_token") != nil, tok.Extra("scope"))
		}
		if _, err := r.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(tok)); err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("userinfo without openid: %v", err)
		}
	})
	t.Run("no scope", func(t *testing.T) {
		tok := r.login("")
		if tok.Extra("id_token") != nil || tok.Extra("scope") != nil {
			t.Fatalf("id_token %v, scope %v", tok.Extra("id_token") != nil, tok.Extra("scope"))
		}
		if _, ok := jwtClaims(t, tok.AccessToken)["scope"]; ok {
			t.Fatal("access token has a scope claim")
		}
	})
	t.Run("dev sign-in is not verified", func(t *testing.T) {
		e := newEnv(t, envOpts{configure: func(c *server.Config) { c.IDTokenKey = testRSAKey(t) }})
		r := newRP(e, "mytool")
		r.conf.Scopes = []string{"openid", "email"}
		verifier := oauth2.GenerateVerifier()
		newBrowser(t).login(r.conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), "ada@example.com", "authorize")
		tok, err := r.conf.Exchange(context.Background(), e.lastCallback().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		_, c := r.idToken(tok)
		if c["email"] != "ada@example.com" || c["email_verified"] != false || c["sub"] != server.DevSubject("ada@example.com") {
			t.Fatalf("claims %v", c)
		}
	})
}

// A refresh may narrow the scope and never widen it (RFC 6749 §6); a
// refused widening leaves the refresh token usable.
func TestRefreshScope(t *testing.T) {
	e := newOIDCEnv(t, nil)
	r := newRP(e, "mytool")
	tok := r.login("n", "openid", "email")
	rt := tok.RefreshToken
	refresh := func(scope string) (int, map[string]any) {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"mytool"}}
		if scope != "-" {
			form.Set("scope", scope)
		}
		st, m, _ := e.postForm(server.TokenPath, form)
		if s, ok := m["refresh_token"].(string); ok {
			rt = s
		}
		return st, m
	}
	if st, m := refresh("openid profile"); st != 400 || m["error"] != "invalid_scope" {
		t.Fatalf("widening: %d %v", st, m)
	}
	if st, m := refresh("openid\x01"); st != 400 || m["error"] != "invalid_scope" {
		t.Fatalf("malformed: %d %v", st, m)
	}
	st, m := refresh("openid")
	if st != 200 || m["scope"] != "openid" || m["id_token"] == nil {
		t.Fatalf("narrowing after a refused widening: %d %v", st, m)
	}
	if c := jwtClaims(t, m["id_token"].(string)); c["email"] != nil || c["nonce"] != nil {
		t.Fatalf("narrowed ID token %v", c)
	}
	if st, m := refresh("email"); st != 200 || m["scope"] != "email" || m["id_token"] != nil {
		t.Fatalf("without openid: %d %v", st, m)
	}
	// The refresh token keeps the original grant.
	if st, m := refresh("-"); st != 200 || m["scope"] != "openid email" || jwtClaims(t, m["id_token"].(string))["email"] == nil {
		t.Fatalf("omitted scope: %d %v", st, m)
	}
}

// OpenID Connect parameters of the authorization request the handler
// cannot honour are refused with the right error, on the redirect.
func TestAuthorizeOpenIDErrors(t *testing.T) {
	e := newOIDCEnv(t, nil)
	for _, tc := range []struct {
		name    string
		over    map[string][]string
		wantErr string
	}{
		{"prompt none", map[string][]string{"prompt": {"none"}}, "consent_required"},
		{"prompt none with login", map[string][]string{"prompt": {"none login"}}, "invalid_request"},
		{"response_mode fragment", map[string][]string{"response_mode": {"fragment"}}, "invalid_request"},
		{"response_mode form_post", map[string][]string{"response_mode": {"form_post"}}, "invalid_request"},
		{"request object", map[string][]string{"request": {"eyJhbGciOiJub25lIn0.e30."}}, "request_not_supported"},
		{"request_uri", map[string][]string{"request_uri": {"https://rp.example/req"}}, "request_uri_not_supported"},
		{"long nonce", map[string][]string{"nonce": {strings.Repeat("n", 513)}}, "invalid_request"},
		{"control char in nonce", map[string][]string{"nonce": {"a\tb"}}, "invalid_request"},
		{"malformed scope", map[string][]string{"scope": {`openid "email"`}}, "invalid_scope"},
		{"non-ASCII scope", map[string][]string{"scope": {"openid é"}}, "invalid_scope"},
		{"duplicate nonce", map[string][]string{"nonce": {"a", "b"}}, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			over := map[string][]string{"scope": {"openid"}}
			for k, v := range tc.over {
				over[k] = v
			}
			resp, err := noRedirects().Get(authURL(e, over))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, _ := url.Parse(resp.Header.Get("Location"))
			q := loc.Query()
			if resp.StatusCode != 302 || !strings.HasPrefix(loc.String(), e.callbackURL()) || q.Get("error") != tc.wantErr ||
				q.Get("state") != "st-1" || q.Get("iss") != e.issuer || q.Has("code") {
				t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
	for _, ok := range []map[string][]string{
		{"prompt": {"login consent"}}, {"response_mode": {"query"}}, {"nonce": {strings.Repeat("n", 512)}},
		{"scope": {"openid  email"}}, {"max_age": {"0"}, "login_hint": {"grace"}, "ui_locales": {"fr"}},
	} {
		resp, err := noRedirects().Get(authURL(e, ok))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 302 || !strings.HasPrefix(resp.Header.Get("Location"), server.SignInPath) {
			t.Errorf("%v: %d %q", ok, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// userinfoReq calls UserInfoPath.
func userinfoReq(t *testing.T, e *env, method, query, auth, contentType, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, e.issuer+server.UserInfoPath+query, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &m)
	return resp.StatusCode, resp.Header, m
}

// Userinfo takes the access token as RFC 6750 allows (header on GET and
// POST, or a POST form body; never the URL) and answers RFC 6750 §3 errors.
func TestUserInfoErrors(t *testing.T) {
	e := newOIDCEnv(t, nil)
	r := newRP(e, "mytool")
	tok := r.login("n", "openid", "email")
	at := tok.AccessToken
	const form = "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, method, query, auth, ctype, body string
		status                                 int
		challenge                              string
	}{
		{"GET header", "GET", "", "Bearer " + at, "", "", 200, ""},
		{"POST header", "POST", "", "Bearer " + at, "", "", 200, ""},
		{"POST form body", "POST", "", "", form, "access_token=" + at, 200, ""},
		{"no token", "GET", "", "", "", "", 401, "Bearer"},
		{"POST without token", "POST", "", "", form, "x=1", 401, "Bearer"},
		{"garbage token", "GET", "", "Bearer not.a.jwt", "", "", 401, `Bearer error="invalid_token", error_description="the access token is invalid or expired"`},
		{"the ID token", "GET", "", "Bearer " + tok.Extra("id_token").(string), "", "", 401, `Bearer error="invalid_token", error_description="the access token is invalid or expired"`},
		{"token in the URL", "GET", "?access_token=" + at, "", "", "", 400, `Bearer error="invalid_request", error_description="send the access token in the Authorization header, not in the URL"`},
		{"two methods", "POST", "", "Bearer " + at, form, "access_token=" + at, 400, `Bearer error="invalid_request", error_description="the access token was sent twice"`},
		{"Basic scheme", "GET", "", "Basic dTpw", "", "", 400, `Bearer error="invalid_request", error_description="the Authorization header must be one Bearer token"`},
		{"PUT", "PUT", "", "Bearer " + at, "", "", 405, `Bearer error="invalid_request", error_description="use GET or POST"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, h, m := userinfoReq(t, e, tc.method, tc.query, tc.auth, tc.ctype, tc.body)
			if st != tc.status || h.Get("WWW-Authenticate") != tc.challenge || h.Get("Cache-Control") != "no-store" {
				t.Fatalf("%d %q %v", st, h.Get("WWW-Authenticate"), m)
			}
			if st == 200 && (m["sub"] != "user-grace" || m["email"] != "grace@example.com" || m["name"] != nil) {
				t.Fatalf("answer %v", m)
			}
			if b, _ := json.Marshal(m); st != 200 && (m["error"] == nil || strings.Contains(string(b), at[:20])) {
				t.Fatalf("error body %s", b)
			}
		})
	}
	t.Run("without openid", func(t *testing.T) {
		noOpenID := r.login("", "email")
		st, h, m := userinfoReq(t, e, "GET", "", "Bearer "+noOpenID.AccessToken, "", "")
		if st != 403 || h.Get("WWW-Authenticate") != `Bearer error="insufficient_scope", error_description="the access token was not issued for the openid scope", scope="openid"` || m["error"] != "insufficient_scope" {
			t.Fatalf("%d %q %v", st, h.Get("WWW-Authenticate"), m)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		if err := e.h.RevokeSubject(context.Background(), "user-grace"); err != nil {
			t.Fatal(err)
		}
		st, h, _ := userinfoReq(t, e, "GET", "", "Bearer "+at, "", "")
		if st != 401 || h.Get("WWW-Authenticate") != `Bearer error="invalid_token", error_description="the login was revoked"` {
			t.Fatalf("%d %q", st, h.Get("WWW-Authenticate"))
		}
	})
}

// A token without a "scope" claim (a Clerk JWT template's) gets the claims
// it carries itself and nothing more.
func TestUserInfoTokenWithoutScopeClaim(t *testing.T) {
	e := newEnv(t, envOpts{})
	tok := sign(t, jwt.SigningMethodEdDSA, e.key, e.minter.KeyID(), jwt.MapClaims{
		"iss": e.issuer, "aud": e.issuer, "sub": "user_2abc", "email": "ada@example.com",
		"exp": e.clock.Now().Add(time.Hour).Unix(), "iat": e.clock.Now().Unix(), "org": "acme"})
	st, _, m := userinfoReq(t, e, "GET", "", "Bearer "+tok, "", "")
	if st != 200 || len(m) != 2 || m["sub"] != "user_2abc" || m["email"] != "ada@example.com" {
		t.Fatalf("%d %v", st, m)
	}
}

// ID tokens are addressed to the client: the bearer middleware, which
// checks the API audience, refuses them as access tokens.
func TestRequireTokenRefusesIDTokens(t *testing.T) {
	e := newOIDCEnv(t, func(c *server.Config) { c.IDTokenKey = nil }) // the minter's Ed25519 key cannot sign RS256
	tok := newRP(e, "mytool").login("n", "openid")
	if st, _ := e.apiMe(tok.Extra("id_token").(string)); st != 401 {
		t.Fatalf("an ID token opened /api/me: %d", st)
	}
	if st, _ := e.apiMe(tok.AccessToken); st != 200 {
		t.Fatalf("the access token: %d", st)
	}
	// Same key for both: the audience still tells them apart.
	e2 := newEnv(t, envOpts{selfSigned: func(c *server.SelfSignedConfig) { c.Key = testRSAKey(t) },
		configure: func(c *server.Config) { c.Authenticator = fixedAuthenticator{grace} }})
	tok = newRP(e2, "mytool").login("n", "openid")
	if h1, h2 := jwtHeader(t, tok.AccessToken), jwtHeader(t, tok.Extra("id_token").(string)); h1["kid"] != h2["kid"] {
		t.Fatalf("kids %v %v: want the SelfSigned RSA key signing both", h1["kid"], h2["kid"])
	}
	if st, _ := e2.apiMe(tok.Extra("id_token").(string)); st != 401 {
		t.Fatalf("an ID token signed with the access-token key opened /api/me: %d", st)
	}
}

// jwks fetches the handler's key set.
func jwks(t *testing.T, e *env) []map[string]any {
	t.Helper()
	resp, err := http.Get(e.issuer + server.JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct{ Keys []map[string]any }
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s %v", resp.Status, err)
	}
	return set.Keys
}

// jwks_uri holds the access-token keys and the ID-token key, each once, and
// ID tokens can be signed with each supported key type.
func TestIDTokenKeys(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ed, _ := server.GenerateKey()
	for _, tc := range []struct {
		name     string
		key      crypto.Signer
		kid      string
		alg      string
		wantKeys int
	}{
		{"RSA", testRSAKey(t), "id-1", "RS256", 2},
		{"ECDSA", ec, "", "ES256", 2},
		{"Ed25519", ed, "", "EdDSA", 2},
		{"generated", nil, "", "RS256", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newOIDCEnv(t, func(c *server.Config) { c.IDTokenKey, c.IDTokenKeyID = tc.key, tc.kid })
			if algs := e.metadata()["id_token_signing_alg_values_supported"]; len(algs.([]any)) != 1 || algs.([]any)[0] != tc.alg {
				t.Fatalf("advertised %v", algs)
			}
			r := newRP(e, "mytool")
			tok := r.login("n", "openid")
			r.idToken(tok) // signature via jwks_uri, at_hash with the alg's hash
			h := jwtHeader(t, tok.Extra("id_token").(string))
			keys := jwks(t, e)
			if h["alg"] != tc.alg || (tc.kid != "" && h["kid"] != tc.kid) || len(keys) != tc.wantKeys || keys[0]["kid"] != e.minter.KeyID() {
				t.Fatalf("header %v, keys %v", h, keys)
			}
		})
	}
	t.Run("SelfSigned RSA key signs both, published once", func(t *testing.T) {
		e := newEnv(t, envOpts{selfSigned: func(c *server.SelfSignedConfig) { c.Key = testRSAKey(t) }})
		if keys := jwks(t, e); len(keys) != 1 || keys[0]["alg"] != "RS256" {
			t.Fatalf("keys %v", keys)
		}
	})
}

func TestOpenIDConfigErrors(t *testing.T) {
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	ss, _ := server.NewSelfSigned(server.SelfSignedConfig{Issuer: "https://auth.example", Audience: "mytool", AllowEphemeralKey: true})
	dev, _ := server.NewDevAuthenticator(server.DevConfig{Key: []byte(strings.Repeat("k", 32))})
	okMinter, _ := server.NewSelfSigned(server.SelfSignedConfig{Issuer: "https://auth.example", AllowEphemeralKey: true})
	ks, err := server.NewKeySet([]server.SigningKey{{Key: testRSAKey(t)}})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]server.Config{
		"RSA-1024 ID token key":         {IDTokenKey: small},
		"negative lifetime":             {IDTokenLifetime: -time.Second},
		"audience is a client ID":       {Minter: ss},
		"IDTokenKeys and IDTokenKey":    {IDTokenKeys: ks, IDTokenKey: testRSAKey(t)},
		"IDTokenKeyID with IDTokenKeys": {IDTokenKeys: ks, IDTokenKeyID: "k1"},
	} {
		c.Issuer, c.Clients, c.Authenticator = "https://auth.example", []server.Client{{ID: "mytool"}}, dev
		if c.Minter == nil {
			c.Minter = okMinter
		}
		if _, err := server.New(c); !errors.Is(err, server.ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The ID token's lifetime is IDTokenLifetime; the access token's is the
// Minter's.
func TestIDTokenLifetime(t *testing.T) {
	e := newOIDCEnv(t, func(c *server.Config) { c.IDTokenLifetime = 5 * time.Minute })
	r := newRP(e, "mytool")
	id, _ := r.idToken(r.login("n", "openid"))
	if got := id.Expiry.Sub(id.IssuedAt); got != 5*time.Minute {
		t.Fatalf("lifetime %v", got)
	}
	e.clock.Advance(6 * time.Minute)
	raw := r.login("n", "openid").Extra("id_token").(string)
	e.clock.Advance(6 * time.Minute)
	if _, err := r.verifier.Verify(context.Background(), raw); err == nil {
		t.Fatal("an expired ID token verified")
	}
}

// ID-token keys rotate with their KeySet: a new active key signs from the
// next token on, and the old one stays published so tokens it signed still
// verify. A SelfSigned whose set holds an RS256 key next to its EdDSA one
// signs access tokens with EdDSA and ID tokens with RS256, from one JWKS.
func TestIDTokenKeyRotation(t *testing.T) {
	rsa2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys := []server.SigningKey{{ID: "id-1", Key: testRSAKey(t)}, {ID: "id-2", Key: rsa2}}
	ks, err := server.NewKeySet(keys, "id-1")
	if err != nil {
		t.Fatal(err)
	}
	e := newOIDCEnv(t, func(c *server.Config) { c.IDTokenKey, c.IDTokenKeys = nil, ks })
	r := newRP(e, "mytool")
	old := r.login("n", "openid")
	if err := ks.Replace(keys, "id-2"); err != nil {
		t.Fatal(err)
	}
	fresh := r.login("n", "openid")
	if a, b := jwtHeader(t, old.Extra("id_token").(string))["kid"], jwtHeader(t, fresh.Extra("id_token").(string))["kid"]; a != "id-1" || b != "id-2" {
		t.Fatalf("kids %v then %v", a, b)
	}
	r.idToken(old)
	r.idToken(fresh)

	ed, _ := server.GenerateKey()
	both, err := server.NewKeySet([]server.SigningKey{{ID: "at", Key: ed}, {ID: "id", Key: testRSAKey(t)}}, "at", "id")
	if err != nil {
		t.Fatal(err)
	}
	e2 := newEnv(t, envOpts{
		selfSigned: func(c *server.SelfSignedConfig) { c.Key, c.Keys = nil, both },
		configure:  func(c *server.Config) { c.Authenticator = fixedAuthenticator{grace} },
	})
	tok := newRP(e2, "mytool").login("n", "openid")
	if a, i := jwtHeader(t, tok.AccessToken), jwtHeader(t, tok.Extra("id_token").(string)); a["kid"] != "at" || a["alg"] != "EdDSA" || i["kid"] != "id" || i["alg"] != "RS256" {
		t.Fatalf("access token header %v, ID token header %v", a, i)
	}
	if keys := jwks(t, e2); len(keys) != 2 {
		t.Fatalf("JWKS %v", keys)
	}
	if st, _ := e2.apiMe(tok.AccessToken); st != 200 {
		t.Fatalf("/api/me: %d", st)
	}
}

// prompt=login and max_age (OpenID Connect Core §3.1.2.1): a remembered
// dev sign-in that is too old makes the user sign in again, and the ID
// token's auth_time says when they did; an Authenticator that cannot tell
// when the user authenticated gets the client login_required.
func TestPromptLoginAndMaxAge(t *testing.T) {
	e := newEnv(t, envOpts{configure: func(c *server.Config) { c.IDTokenKey = testRSAKey(t) }})
	r := newRP(e, "mytool")
	r.conf.Scopes = []string{"openid"}
	b := newBrowser(t)
	first := e.clock.Now().Truncate(time.Second)
	b.login(r.conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "ada@example.com", "authorize")
	e.clock.Advance(10 * time.Minute)

	// flow starts an authorization with extra parameters and returns the
	// first page the browser lands on and the PKCE verifier.
	flow := func(opts ...oauth2.AuthCodeOption) (page, string) {
		v := oauth2.GenerateVerifier()
		return b.get(r.conf.AuthCodeURL("st", append(opts, oauth2.S256ChallengeOption(v), oidc.Nonce("n"))...)), v
	}
	finish := func(p page, v string) map[string]any {
		t.Helper()
		if p = b.submit(p, url.Values{"decision": {"authorize"}}); p.status != 200 {
			t.Fatalf("consent: %d", p.status)
		}
		tok, err := r.conf.Exchange(context.Background(), e.lastCallback().Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		_, c := r.idToken(tok)
		return c
	}
	opt := oauth2.SetAuthURLParam
	if p, v := flow(opt("max_age", "3600")); !strings.Contains(p.body, ">Authorize</button>") {
		t.Fatalf("max_age=3600 after 10 minutes asked to sign in again:\n%s", p.body)
	} else if c := finish(p, v); c["auth_time"] != float64(first.Unix()) {
		t.Fatalf("auth_time %v, want the first sign-in %d", c["auth_time"], first.Unix())
	}
	for _, o := range []oauth2.AuthCodeOption{opt("max_age", "60"), opt("prompt", "login"), opt("max_age", "0")} {
		p, v := flow(o)
		if !strings.Contains(p.body, `name="email"`) || !strings.Contains(p.body, "sign in again") {
			t.Fatalf("a too-old sign-in was reused:\n%s", p.body)
		}
		e.clock.Advance(time.Second)
		p = b.submit(p, url.Values{"email": {"ada@example.com"}})
		if c := finish(p, v); c["auth_time"] != float64(e.clock.Now().Unix()) {
			t.Fatalf("auth_time %v, want the new sign-in %d", c["auth_time"], e.clock.Now().Unix())
		}
		e.clock.Advance(10 * time.Minute)
	}

	t.Run("an Authenticator that does not know", func(t *testing.T) {
		e := newOIDCEnv(t, nil)
		p := newBrowser(t).get(authURL(e, map[string][]string{"scope": {"openid"}, "prompt": {"login"}}))
		q := e.lastCallback()
		if p.body != "callback received" || q.Get("error") != "login_required" || q.Get("state") != "st-1" || q.Has("code") {
			t.Fatalf("callback %v; page %s", q, p.body)
		}
	})
	t.Run("bad max_age", func(t *testing.T) {
		for _, ma := range []string{"-1", "x", "1.5", "99999999999"} {
			resp, err := noRedirects().Get(authURL(e, map[string][]string{"max_age": {ma}}))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if loc.Query().Get("error") != "invalid_request" {
				t.Errorf("max_age=%s: %q", ma, loc)
			}
		}
	})
}

// outageStore is a MemoryStateStore whose Gets fail as an unreachable
// store's do while down is set.
type outageStore struct {
	*server.MemoryStateStore
	down atomic.Bool
}

func (s *outageStore) Get(ctx context.Context, key string) ([]byte, error) {
	if s.down.Load() {
		return nil, fmt.Errorf("dial tcp 127.0.0.1:6379: %w", server.ErrStateUnavailable)
	}
	return s.MemoryStateStore.Get(ctx, key)
}

// Userinfo does not call a token invalid when the revocation check could
// not be made: 503 temporarily_unavailable, then 200 once the store is back.
func TestUserInfoStoreOutage(t *testing.T) {
	var st *outageStore
	e := newOIDCEnv(t, func(c *server.Config) {
		st = &outageStore{MemoryStateStore: c.State.(*server.MemoryStateStore)}
		c.State = st
	})
	tok := newRP(e, "mytool").login("n", "openid")
	st.down.Store(true)
	code, h, m := userinfoReq(t, e, "GET", "", "Bearer "+tok.AccessToken, "", "")
	if code != 503 || h.Get("Retry-After") == "" || h.Get("WWW-Authenticate") != "" || m["error"] != "temporarily_unavailable" {
		t.Fatalf("store down: %d %q %v", code, h.Get("Retry-After"), m)
	}
	st.down.Store(false)
	if code, _, m := userinfoReq(t, e, "GET", "", "Bearer "+tok.AccessToken, "", ""); code != 200 {
		t.Fatalf("store back: %d %v", code, m)
	}
}

// The device flow grants scopes as the code flow does: with "openid" the
// token response carries an ID token (without nonce: RFC 8628 has none),
// here verified by go-oidc after an x/oauth2 device login.
func TestDeviceFlowIDToken(t *testing.T) {
	e := deviceEnv(t, func(c *server.Config) {
		c.IDTokenKey = testRSAKey(t)
		c.Authenticator = fixedAuthenticator{grace}
	})
	r := newRP(e, "mytool")
	if r.conf.Endpoint.DeviceAuthURL != e.issuer+server.DeviceAuthorizationPath {
		t.Fatalf("discovered device endpoint %q", r.conf.Endpoint.DeviceAuthURL)
	}
	r.conf.Scopes = []string{"openid", "email", "unknown"}
	da, err := r.conf.DeviceAuth(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	newBrowser(t).decideDevice(deviceAuth{VerificationURI: da.VerificationURI, UserCode: da.UserCode}, "", "authorize")
	da.Interval = 1 // approved before the first poll: no need to wait long
	tok, err := r.conf.DeviceAccessToken(context.Background(), da)
	if err != nil {
		t.Fatal(err)
	}
	id, c := r.idToken(tok)
	if id.Subject != "user-grace" || id.Nonce != "" || c["email"] != "grace@example.com" || tok.Extra("scope") != "openid email" {
		t.Fatalf("claims %v, scope %q", c, tok.Extra("scope"))
	}
	st, m, _ := e.postForm(server.DeviceAuthorizationPath, url.Values{"client_id": {"mytool"}, "scope": {"openid \"x\""}})
	if st != 400 || m["error"] != "invalid_scope" {
		t.Fatalf("malformed scope: %d %v", st, m)
	}
}
