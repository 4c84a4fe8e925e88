package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/keyloop/keyloop/internal/confirm"
	"github.com/keyloop/keyloop/server"
	"golang.org/x/oauth2"
)

// A third-party OAuth client (plain x/oauth2 with PKCE) logs in knowing only
// the issuer: endpoints from the metadata, keys from jwks_uri.
func TestFullFlowWithThirdPartyClient(t *testing.T) {
	e := newEnv(t, envOpts{})
	md := e.metadata()
	if md["issuer"] != e.issuer {
		t.Fatalf("issuer %v", md["issuer"])
	}
	cfg := e.oauthConfig("mytool")
	verifier := oauth2.GenerateVerifier()
	state := oauth2.GenerateVerifier()
	last, consent := newBrowser(t).login(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), "Ada@Example.com", "authorize")
	if last.status != 200 || last.body != "callback received" {
		t.Fatalf("callback page %d %q", last.status, last.body)
	}
	if want := confirm.Code(state); !strings.Contains(consent.body, want) {
		t.Fatalf("consent page lacks confirmation code %s", want)
	}
	for _, s := range []string{"My Tool", "Ada@Example.com"} {
		if !strings.Contains(consent.body, s) {
			t.Fatalf("consent page does not name %q", s)
		}
	}
	q := e.lastCallback()
	if q.Get("state") != state || q.Get("iss") != e.issuer || q.Get("code") == "" {
		t.Fatalf("callback query has state=%t iss=%q code=%t", q.Get("state") == state, q.Get("iss"), q.Get("code") != "")
	}
	tok, err := cfg.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "Bearer" || tok.RefreshToken == "" || tok.Expiry.IsZero() {
		t.Fatalf("token type %q, refresh %t, expiry %v", tok.TokenType, tok.RefreshToken != "", tok.Expiry)
	}
	// Verify like a client: keys from jwks_uri only.
	kf, err := keyfunc.NewDefaultCtx(t.Context(), []string{md["jwks_uri"].(string)})
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok.AccessToken, claims, kf.Keyfunc, jwt.WithValidMethods([]string{"EdDSA"}),
		jwt.WithIssuer(md["access_token_issuer"].(string)), jwt.WithExpirationRequired(), jwt.WithTimeFunc(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Header["kid"] != e.minter.KeyID() || claims["sub"] != server.DevSubject("ada@example.com") ||
		claims["email"] != "Ada@Example.com" || claims["client_id"] != "mytool" || claims["sid"] == nil || claims["jti"] == nil {
		t.Fatalf("header %v claims %v", parsed.Header, claims)
	}
	if st, _ := e.apiMe(tok.AccessToken); st != 200 {
		t.Fatalf("/api/me: %d", st)
	}
	// The browser stays signed in: a second login skips the sign-in page.
	b := newBrowser(t)
	b.login(cfg.AuthCodeURL("s2", oauth2.S256ChallengeOption(verifier)), "bob@example.com", "authorize")
	p := b.get(cfg.AuthCodeURL("s3", oauth2.S256ChallengeOption(verifier)))
	if !strings.Contains(p.body, ">Authorize</button>") || !strings.Contains(p.body, "bob@example.com") {
		t.Fatalf("remembered sign-in did not go straight to consent:\n%s", p.body)
	}
}

func TestDeny(t *testing.T) {
	e := newEnv(t, envOpts{})
	cfg := e.oauthConfig("mytool")
	last, _ := newBrowser(t).login(cfg.AuthCodeURL("st-deny", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "ada@example.com", "deny")
	q := e.lastCallback()
	if last.status != 200 || q.Get("error") != "access_denied" || q.Get("state") != "st-deny" || q.Get("iss") != e.issuer || q.Has("code") {
		t.Fatalf("deny callback: %v", q)
	}
}

func TestMetadata(t *testing.T) {
	e := newEnv(t, envOpts{selfSigned: func(c *server.SelfSignedConfig) { c.Audience = "https://api.example.com" }})
	md := e.metadata()
	want := map[string]any{
		"issuer":                                         e.issuer,
		"authorization_endpoint":                         e.issuer + "/oauth/authorize",
		"token_endpoint":                                 e.issuer + "/oauth/token",
		"jwks_uri":                                       e.issuer + "/oauth/jwks",
		"revocation_endpoint":                            e.issuer + "/oauth/revoke",
		"response_types_supported":                       []any{"code"},
		"grant_types_supported":                          []any{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":               []any{"S256"},
		"token_endpoint_auth_methods_supported":          []any{"none"},
		"revocation_endpoint_auth_methods_supported":     []any{"none"},
		"authorization_response_iss_parameter_supported": true,
		"access_token_issuer":                            e.issuer,
		"access_token_audience":                          "https://api.example.com",
		// OpenID Connect Discovery 1.0 §3
		"userinfo_endpoint":                     e.issuer + "/oauth/userinfo",
		"response_modes_supported":              []any{"query"},
		"scopes_supported":                      []any{"openid", "profile", "email", "offline_access"},
		"subject_types_supported":               []any{"public"},
		"id_token_signing_alg_values_supported": []any{"RS256"},
		"claims_supported": []any{"iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "at_hash", "sid",
			"email", "email_verified", "name"},
		"claims_parameter_supported":      false,
		"request_parameter_supported":     false,
		"request_uri_parameter_supported": false,
	}
	a, _ := json.Marshal(md)
	b, _ := json.Marshal(want)
	if string(a) != string(b) {
		t.Fatalf("metadata\n got %s\nwant %s", a, b)
	}
	// One document at both well-known paths, so they never disagree.
	for _, p := range []string{server.MetadataPath, server.OpenIDConfigurationPath} {
		resp, err := http.Get(e.issuer + p)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if c, _ := json.Marshal(got); resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || string(c) != string(a) {
			t.Fatalf("%s: %s %q\n%s", p, resp.Status, resp.Header.Get("Content-Type"), c)
		}
	}
}

// authURL builds an authorization request with overrides; a nil value
// removes the parameter.
func authURL(e *env, over map[string][]string) string {
	q := url.Values{
		"client_id": {"mytool"}, "redirect_uri": {e.callbackURL()}, "response_type": {"code"},
		"code_challenge_method": {"S256"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
		"state": {"st-1"},
	}
	for k, v := range over {
		if v == nil {
			delete(q, k)
		} else {
			q[k] = v
		}
	}
	return e.issuer + "/oauth/authorize?" + q.Encode()
}

func noRedirects() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestRedirectURIValidation(t *testing.T) {
	e := newEnv(t, envOpts{configure: func(c *server.Config) {
		c.Clients = append(c.Clients, server.Client{ID: "v4only", RedirectHosts: []string{"127.0.0.1"}})
	}})
	for _, tc := range []struct {
		uri    string
		ok     bool
		client string
	}{
		{"http://127.0.0.1:1234/callback", true, ""},
		{"http://127.0.0.1/callback", true, ""},
		{"http://[::1]:65535/cb", true, ""},
		{"http://localhost:8080/", true, ""},
		{"http://127.0.0.1:1234", true, ""},
		{"http://127.0.0.1:1234/cb?x=1", true, ""},
		{"http://localhost:8080/", false, "v4only"},
		{"https://127.0.0.1:1234/callback", false, ""},
		{"HTTP://127.0.0.1:1234/callback", false, ""},
		{"http://example.com/callback", false, ""},
		{"http://127.0.0.1.nip.io/cb", false, ""},
		{"http://localhost./cb", false, ""},
		{"http://LOCALHOST:1/cb", false, ""},
		{"http://Localhost:1/cb", false, ""},
		{"http://127.1/cb", false, ""},
		{"http://2130706433/cb", false, ""},
		{"http://0x7f.1/cb", false, ""},
		{"http://0x7f000001/cb", false, ""},
		{"http://0177.0.0.1/cb", false, ""},
		{"http://127.0.0.2/cb", false, ""},
		{"http://0.0.0.0/cb", false, ""},
		{"http://[::ffff:127.0.0.1]/cb", false, ""},
		{"http://[0:0:0:0:0:0:0:1]/cb", false, ""},
		{"http://%31%32%37.0.0.1/cb", false, ""},
		{"http://127.0.0.1%2eevil.com/cb", false, ""},
		{"http://127.0.0.1:1234/c%62", false, ""},
		{"http://user@127.0.0.1:1234/cb", false, ""},
		{"http://evil.com@127.0.0.1/cb", false, ""},
		{"http://127.0.0.1@evil.com/cb", false, ""},
		{"http://127.0.0.1:1234/cb#frag", false, ""},
		{"http://127.0.0.1:1234/cb#", false, ""},
		{"http://127.0.0.1:/cb", false, ""},
		{"http://127.0.0.1:0/cb", false, ""},
		{"http://127.0.0.1:01234/cb", false, ""},
		{"http://127.0.0.1:65536/cb", false, ""},
		{"http://127.0.0.1:12a/cb", false, ""},
		{"http://127.0.0.1\\@evil.com/cb", false, ""},
		{"http://127.0.0.1 /cb", false, ""},
		{"http://127.0.0.1:1234/c b", false, ""},
		{"http://127.0.0.1:1234//evil.com", false, ""},
		{"http://127.0.0.1:1234/a/../b", false, ""},
		{"http:/127.0.0.1/cb", false, ""},
		{"//127.0.0.1/cb", false, ""},
		{"127.0.0.1:1234/cb", false, ""},
		{"", false, ""},
		{"http://127.0.0.1:1234/" + strings.Repeat("a", 1100), false, ""},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			over := map[string][]string{"redirect_uri": {tc.uri}}
			if tc.client != "" {
				over["client_id"] = []string{tc.client}
			}
			resp, err := noRedirects().Get(authURL(e, over))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			if tc.ok {
				if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "/oauth/signin?req=") {
					t.Fatalf("want redirect to sign-in, got %d %q", resp.StatusCode, loc)
				}
				return
			}
			if resp.StatusCode != http.StatusBadRequest || loc != "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				t.Fatalf("want HTML 400 and no redirect, got %d Location=%q", resp.StatusCode, loc)
			}
		})
	}
}

func TestAuthorizeErrors(t *testing.T) {
	e := newEnv(t, envOpts{})
	page := func(name string, over map[string][]string) {
		t.Run(name, func(t *testing.T) {
			resp, err := noRedirects().Get(authURL(e, over))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
				t.Fatalf("want HTML error page, got %d %q", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
	page("unknown client", map[string][]string{"client_id": {"nope"}})
	page("missing client", map[string][]string{"client_id": nil})
	page("duplicate client", map[string][]string{"client_id": {"mytool", "mytool"}})
	page("missing redirect", map[string][]string{"redirect_uri": nil})
	page("duplicate redirect", map[string][]string{"redirect_uri": {e.callbackURL(), e.callbackURL()}})

	redirect := func(name string, over map[string][]string, wantErr string, wantState bool) {
		t.Run(name, func(t *testing.T) {
			resp, err := noRedirects().Get(authURL(e, over))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, err := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != 302 || err != nil || !strings.HasPrefix(loc.String(), e.callbackURL()) {
				t.Fatalf("want redirect to the callback, got %d %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			q := loc.Query()
			if q.Get("error") != wantErr || q.Has("state") != wantState || q.Get("iss") != e.issuer || q.Has("code") {
				t.Fatalf("callback query %v", q)
			}
			if wantState && q.Get("state") != "st-1" {
				t.Fatalf("state %q", q.Get("state"))
			}
		})
	}
	redirect("missing state", map[string][]string{"state": nil}, "invalid_request", false)
	redirect("control char in state", map[string][]string{"state": {"a\nb"}}, "invalid_request", false)
	redirect("long state", map[string][]string{"state": {strings.Repeat("s", 513)}}, "invalid_request", false)
	redirect("missing response_type", map[string][]string{"response_type": nil}, "invalid_request", true)
	redirect("token response_type", map[string][]string{"response_type": {"token"}}, "unsupported_response_type", true)
	redirect("no PKCE", map[string][]string{"code_challenge": nil, "code_challenge_method": nil}, "invalid_request", true)
	redirect("plain PKCE", map[string][]string{"code_challenge_method": {"plain"}}, "invalid_request", true)
	redirect("short challenge", map[string][]string{"code_challenge": {"abc"}}, "invalid_request", true)
	redirect("duplicate param", map[string][]string{"response_type": {"code", "code"}}, "invalid_request", true)

	t.Run("POST", func(t *testing.T) {
		resp, err := http.Post(authURL(e, nil), "application/x-www-form-urlencoded", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

func checkPageHeaders(t *testing.T, p page) {
	t.Helper()
	h := p.header
	csp := h.Get("Content-Security-Policy")
	if h.Get("X-Frame-Options") != "DENY" || !strings.Contains(csp, "frame-ancestors 'none'") ||
		!strings.Contains(csp, "default-src 'none'") || h.Get("Cache-Control") != "no-store" ||
		h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("page %s headers: %v", p.url, h)
	}
	nonce := strings.TrimSuffix(strings.SplitN(strings.SplitN(csp, "'nonce-", 2)[1], "'", 2)[0], "'")
	if !strings.Contains(p.body, `<style nonce="`+nonce+`">`) {
		t.Fatalf("inline style does not carry the CSP nonce %q", nonce)
	}
	if strings.Contains(p.body, "<script") || strings.Contains(p.body, "http://") && !strings.Contains(p.body, "action=") {
		t.Fatalf("page loads external or script content")
	}
}

func TestPagesCSRFAndFraming(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	u := authURL(e, nil)
	signin := b.get(u)
	checkPageHeaders(t, signin)
	consent := b.submit(signin, url.Values{"email": {"ada@example.com"}})
	checkPageHeaders(t, consent)

	post := func(b *browser, action string, form url.Values) page {
		req, _ := http.NewRequest("POST", action, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return b.do(req)
	}
	action := consent.url.String()
	// Without the CSRF token, and with a wrong one: refused, nothing issued.
	for _, form := range []url.Values{{"decision": {"authorize"}}, {"decision": {"authorize"}, "csrf_token": {"forged"}}} {
		p := post(b, action, form)
		if p.status != http.StatusForbidden || e.lastCallback() != nil {
			t.Fatalf("CSRF-less consent: %d, callback %v", p.status, e.lastCallback())
		}
		checkPageHeaders(t, p)
	}
	// Another browser (no binding cookie) with the right CSRF token: refused.
	csrf := csrfRE.FindStringSubmatch(consent.body)[1]
	if p := post(newBrowser(t), action, url.Values{"decision": {"authorize"}, "csrf_token": {csrf}}); p.status != http.StatusForbidden {
		t.Fatalf("foreign browser: %d", p.status)
	}
	// Sign-in POST without CSRF in a fresh flow: refused before the authenticator runs.
	b2 := newBrowser(t)
	s2 := b2.get(authURL(e, nil))
	if p := post(b2, s2.url.String(), url.Values{"email": {"eve@example.com"}}); p.status != http.StatusForbidden {
		t.Fatalf("sign-in without CSRF: %d", p.status)
	}
	// The real click works once; a replay finds the request used.
	if p := b.submit(consent, url.Values{"decision": {"authorize"}}); p.status != 200 || e.lastCallback().Get("code") == "" {
		t.Fatalf("authorize: %d", p.status)
	}
	if p := b.submit(consent, url.Values{"decision": {"authorize"}}); p.status != 400 {
		t.Fatalf("replayed consent: %d", p.status)
	}
	// Unknown or malformed request IDs.
	if p := b.get(e.issuer + "/oauth/signin?req=nope"); p.status != 400 {
		t.Fatalf("bad req id: %d", p.status)
	}
	// Expired pending authorization.
	p := b.get(authURL(e, nil))
	e.clock.Advance(server.DefaultPendingTTL + time.Second)
	if p = b.get(p.url.String()); p.status != 400 || !strings.Contains(p.body, "expired") {
		t.Fatalf("expired pending: %d", p.status)
	}
}

func TestDevSignInExpiresAndResistsTampering(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	b.login(authURL(e, nil), "ada@example.com", "authorize")
	if p := b.get(authURL(e, nil)); !strings.Contains(p.body, ">Authorize</button>") {
		t.Fatal("sign-in not remembered")
	}
	u, _ := url.Parse(e.issuer + "/oauth/")
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "keyloop_dev_signin" {
			// Same value with one MAC character changed: refused.
			v := []byte(c.Value)
			v[len(v)-2] ^= 1
			jar2 := newBrowser(t)
			jar2.c.Jar.SetCookies(u, []*http.Cookie{{Name: c.Name, Value: string(v), Path: "/oauth"}})
			if p := jar2.get(authURL(e, nil)); !strings.Contains(p.body, `name="email"`) {
				t.Fatal("tampered sign-in cookie accepted")
			}
		}
	}
	e.clock.Advance(server.DefaultDevSignInLifetime + time.Minute)
	if p := b.get(authURL(e, nil)); !strings.Contains(p.body, `name="email"`) {
		t.Fatal("expired sign-in cookie accepted")
	}
}

func TestDevSignInValidatesEmail(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	p := b.get(authURL(e, nil))
	for _, bad := range []string{"", "not-an-email", "Ada <ada@example.com>", "ada@localhost", strings.Repeat("a", 250) + "@example.com"} {
		if r := b.submit(p, url.Values{"email": {bad}}); r.status != 400 || !strings.Contains(r.body, "valid e-mail") {
			t.Fatalf("%q accepted: %d", bad, r.status)
		}
	}
}

// The dev sign-in page follows the app's brand and template overrides, like
// the handler's own pages.
func TestDevSignInPageIsCustomizable(t *testing.T) {
	e := newEnv(t, envOpts{configure: func(c *server.Config) {
		c.Brand = server.Brand{Name: "Acme Cloud", AccentColor: "#aa0000"}
		c.Templates = fstest.MapFS{"signin.html": {Data: []byte(
			`{{define "title"}}Acme sign-in{{end}}{{define "content"}}<h1>Welcome to Acme, {{.Data.ClientName}}</h1>` +
				`<form method="post" action="{{.Data.Action}}"><input type="hidden" name="{{.Data.CSRFField}}" value="{{.Data.CSRFToken}}">` +
				`<input name="email" type="email"><button>Sign in</button></form>{{end}}`)}}
	}})
	b := newBrowser(t)
	p := b.get(authURL(e, nil))
	if p.status != 200 || !strings.Contains(p.body, "Welcome to Acme, My Tool") || !strings.Contains(p.body, "Acme Cloud") {
		t.Fatalf("dev sign-in page ignores the templates or brand: %d\n%s", p.status, p.body)
	}
	if r := b.submit(p, url.Values{"email": {"ada@example.com"}}); r.status != 200 || !strings.Contains(r.body, "Authorize") {
		t.Fatalf("signing in through the custom page: %d\n%s", r.status, r.body)
	}
}
