package clerk_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	gojosejwt "github.com/go-jose/go-jose/v3/jwt"
	"github.com/golang-jwt/jwt/v5"

	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/clerk"
	"github.com/keyloop/keyloop/server/clerk/clerktest"
)

const pageOrigin = "http://127.0.0.1:8787"

// testClock is a settable clock shared by the fake and the provider.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock { return &testClock{t: time.Now().Truncate(time.Second)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	fake  *clerktest.Fake
	p     *clerk.Provider
	clock *testClock
	user  clerktest.User
	sess  clerktest.Session
}

// newEnvWith starts a fake with opts and a provider for it, and signs a
// user in from pageOrigin.
func newEnvWith(t testing.TB, opts clerktest.Options, mutate func(*clerk.Config)) *env {
	t.Helper()
	clock := newClock()
	opts.Now = clock.Now
	fake := clerktest.New(t, opts)
	cfg := clerk.Config{
		SecretKey:         fake.SecretKey,
		PublishableKey:    fake.PublishableKey,
		FrontendAPIURL:    fake.FrontendAPIURL,
		APIURL:            fake.APIURL,
		Audience:          "keyloop-test",
		AuthorizedParties: []string{pageOrigin},
		WebhookSecret:     fake.WebhookSecret,
		Now:               clock.Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := clerk.New(cfg)
	if err != nil {
		t.Fatalf("clerk.New: %v", err)
	}
	u := fake.CreateUser("ada@example.com")
	s, err := fake.SignIn(u.ID, pageOrigin)
	if err != nil {
		t.Fatal(err)
	}
	return &env{fake: fake, p: p, clock: clock, user: u, sess: s}
}

func newEnv(t testing.TB, mutate func(*clerk.Config)) *env {
	t.Helper()
	return newEnvWith(t, clerktest.Options{}, mutate)
}

func TestFrontendAPIURL(t *testing.T) {
	for _, tc := range []struct {
		key, want string
		ok        bool
	}{
		{"pk_test_ZXhhbXBsZS5hY2NvdW50cy5kZXYk", "https://example.accounts.dev", true}, // Clerk's documented example
		{"pk_live_Y2xlcmsuZXhhbXBsZS5jb20k", "https://clerk.example.com", true},
		{"pk_live_Y2xlcmsuZXhhbXBsZS5jb20", "https://clerk.example.com", true}, // unpadded, no "$"
		{"sk_test_ZXhhbXBsZS5hY2NvdW50cy5kZXYk", "", false},
		{"pk_test_!!!", "", false},
		{"pk_test_JA==", "", false},                 // "$": no host
		{"pk_test_ZXZpbC5jb20vcGF0aCQ=", "", false}, // "evil.com/path$"
		{"pk_test_dXNlckBldmlsLmNvbSQ=", "", false}, // "user@evil.com$"
	} {
		got, err := clerk.FrontendAPIURL(tc.key)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("FrontendAPIURL(%s) = %q, %v; want %q", tc.key, got, err, tc.want)
		}
		if !tc.ok && !errors.Is(err, clerk.ErrConfig) {
			t.Errorf("FrontendAPIURL(%s) = %q, %v; want ErrConfig", tc.key, got, err)
		}
	}
}

const (
	devKey  = "pk_test_ZXhhbXBsZS5hY2NvdW50cy5kZXYk" // example.accounts.dev
	liveKey = "pk_live_Y2xlcmsuZXhhbXBsZS5jb20k"     // clerk.example.com
)

func TestConfig(t *testing.T) {
	base := clerk.Config{SecretKey: "sk_test_x", PublishableKey: devKey, Issuer: "https://auth.example.com"}
	p, err := clerk.New(base)
	if err != nil {
		t.Fatal(err)
	}
	ki := p.KeyInfo()
	if ki.TokenIssuer != "https://example.accounts.dev" || ki.JWKSURI != "https://example.accounts.dev/.well-known/jwks.json" || ki.Audience != "" {
		t.Errorf("KeyInfo = %+v", ki)
	}
	// Everything Clerk cannot serve is refused at New (clerk-js core/clerk.ts
	// #validateMultiDomainOptions, Clerk's proxy and satellite guides).
	for name, mutate := range map[string]func(*clerk.Config){
		"no secret key":       func(c *clerk.Config) { c.SecretKey = "" },
		"no publishable key":  func(c *clerk.Config) { c.PublishableKey = "" },
		"bad publishable key": func(c *clerk.Config) { c.PublishableKey = "pk_x" },
		"no azp source":       func(c *clerk.Config) { c.Issuer = "" },
		"bad frontend API":    func(c *clerk.Config) { c.FrontendAPIURL = "ftp://x" },
		"relative API URL":    func(c *clerk.Config) { c.APIURL = "/v1" },
		"proxy on a development instance": func(c *clerk.Config) {
			c.ProxyURL = "https://auth.example.com/__clerk"
		},
		"relative proxy URL": func(c *clerk.Config) { c.PublishableKey = liveKey; c.ProxyURL = "/__clerk" },
		"proxy on another site": func(c *clerk.Config) {
			c.PublishableKey = liveKey
			c.ProxyURL = "https://proxy.elsewhere.net/__clerk"
		},
		"domain without IsSatellite": func(c *clerk.Config) { c.Domain = "satellite.example.net" },
		"satellite without domain or proxy": func(c *clerk.Config) {
			c.PublishableKey = liveKey
			c.IsSatellite = true
		},
		"satellite with domain and proxy": func(c *clerk.Config) {
			c.PublishableKey = liveKey
			c.IsSatellite, c.Domain, c.ProxyURL = true, "auth.example.com", "https://auth.example.com/__clerk"
		},
		"development satellite without SignInURL": func(c *clerk.Config) {
			c.IsSatellite, c.Domain = true, "auth.example.com"
		},
		"satellite SignInURL on the satellite": func(c *clerk.Config) {
			c.IsSatellite, c.Domain, c.SignInURL = true, "auth.example.com", "https://auth.example.com/sign-in"
		},
		"relative SignInURL": func(c *clerk.Config) { c.SignInURL = "/sign-in" },
	} {
		c := base
		mutate(&c)
		if _, err := clerk.New(c); !errors.Is(err, clerk.ErrConfig) {
			t.Errorf("%s: New = %v, want ErrConfig", name, err)
		}
	}
	if _, err := p.WebhookHandler(nil); !errors.Is(err, clerk.ErrConfig) {
		t.Errorf("WebhookHandler without secret = %v, want ErrConfig", err)
	}
	c := base
	c.WebhookSecret = "whsec_not base64!"
	p2, _ := clerk.New(c)
	if _, err := p2.WebhookHandler(&recordingRevoker{}); !errors.Is(err, clerk.ErrConfig) {
		t.Errorf("WebhookHandler with a malformed secret = %v, want ErrConfig", err)
	}
}

// TestSetups checks, for each way an instance can be reached, the issuer and
// keys published to clients, the Frontend API the page's clerk-js talks to
// (script URL, data attributes, CSP) and the issuers of session tokens
// accepted at sign-in: clerk-sdk-go v2 jwt.Verify requires iss == ProxyURL
// behind a proxy and checks no issuer on satellites, whose production
// Frontend API is https://clerk.<domain> (clerk-js core/fapiClient.ts).
func TestSetups(t *testing.T) {
	for _, tc := range []struct {
		name       string
		production bool
		mutate     func(c *clerk.Config, fake *clerktest.Fake)
		issuer     string // KeyInfo.TokenIssuer; "" means the fake's URL
		browser    string // the Frontend API clerk-js talks to; "" means the fake's URL
		attrs      []string
		accepted   []string // session token issuers accepted besides issuer
		refused    []string
	}{
		{name: "primary", refused: []string{"https://clerk.evil.com", "https://clerk.satellite.example"}},
		{
			name: "primary behind a proxy", production: true,
			mutate: func(c *clerk.Config, _ *clerktest.Fake) {
				c.FrontendAPIURL = ""
				c.ProxyURL = "http://127.0.0.1:8787/__clerk/"
			},
			issuer: "http://127.0.0.1:8787/__clerk", browser: "http://127.0.0.1:8787/__clerk",
			attrs:   []string{`data-clerk-proxy-url="http://127.0.0.1:8787/__clerk"`},
			refused: []string{"FAKE"},
		},
		{
			name: "production satellite", production: true,
			mutate: func(c *clerk.Config, _ *clerktest.Fake) {
				c.IsSatellite, c.Domain, c.SignInURL = true, "satellite.example", "https://primary.example/sign-in"
			},
			browser:  "https://clerk.satellite.example",
			attrs:    []string{`data-clerk-domain="satellite.example"`, `"isSatellite":true`, `"signInUrl":"https://primary.example/sign-in"`},
			accepted: []string{"https://clerk.satellite.example"},
			refused:  []string{"https://clerk.other.example"},
		},
		{
			name: "development satellite",
			mutate: func(c *clerk.Config, _ *clerktest.Fake) {
				c.IsSatellite, c.Domain, c.SignInURL = true, "127.0.0.1:8787", "http://localhost:3000/sign-in"
			},
			attrs:   []string{`data-clerk-domain="127.0.0.1:8787"`, `"isSatellite":true`},
			refused: []string{"https://clerk.127.0.0.1:8787"},
		},
		{
			name: "satellite behind a proxy", production: true,
			mutate: func(c *clerk.Config, _ *clerktest.Fake) {
				c.IsSatellite, c.ProxyURL = true, "http://127.0.0.1:8787/__clerk"
			},
			browser:  "http://127.0.0.1:8787/__clerk",
			attrs:    []string{`data-clerk-proxy-url="http://127.0.0.1:8787/__clerk"`, `"isSatellite":true`},
			accepted: []string{"http://127.0.0.1:8787/__clerk"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fake *clerktest.Fake
			e := newEnvWith(t, clerktest.Options{Production: tc.production}, func(c *clerk.Config) {
				c.FrontendAPIURL = ""
				if tc.mutate != nil {
					tc.mutate(c, nil)
				}
			})
			fake = e.fake
			// The publishable key encodes https://127.0.0.1:PORT; the fake
			// serves http, so the issuer when derived from the key is https.
			keyFAPI := strings.Replace(fake.FrontendAPIURL, "http://", "https://", 1)
			issuer, browser := tc.issuer, tc.browser
			if issuer == "" {
				issuer = keyFAPI
			}
			if browser == "" {
				browser = keyFAPI
			}
			ki := e.p.KeyInfo()
			if ki.TokenIssuer != issuer || ki.JWKSURI != issuer+"/.well-known/jwks.json" {
				t.Errorf("KeyInfo = %+v, want issuer %s", ki, issuer)
			}
			w := httptest.NewRecorder()
			_, _ = e.p.Authenticate(w, httptest.NewRequest(http.MethodGet, "/oauth/signin?req=1", nil), server.SignInPrompt{Action: "/oauth/signin?req=1", CSRFField: "csrf_token", CSRFToken: "x", Nonce: "n"})
			body, csp := w.Body.String(), w.Header().Get("Content-Security-Policy")
			if !strings.Contains(body, `src="`+browser+clerk.ClerkJSPath+`"`) {
				t.Errorf("page does not load clerk-js from %s:\n%s", browser, body)
			}
			bu, _ := url.Parse(browser)
			if !strings.Contains(csp, "connect-src "+bu.Scheme+"://"+bu.Host+" ") || !strings.Contains(csp, "script-src 'nonce-n' "+bu.Scheme+"://"+bu.Host) {
				t.Errorf("CSP %q does not allow %s", csp, browser)
			}
			for _, a := range tc.attrs {
				if !strings.Contains(body, a) {
					t.Errorf("page lacks %s", a)
				}
			}
			sessionToken := func(iss string) string {
				tok, err := fake.SessionToken(e.sess.ID, pageOrigin, func(c jwt.MapClaims, _ map[string]any) { c["iss"] = iss })
				if err != nil {
					t.Fatal(err)
				}
				return tok
			}
			for _, iss := range append([]string{issuer}, tc.accepted...) {
				if _, err := e.p.VerifySessionToken(context.Background(), sessionToken(iss)); err != nil {
					t.Errorf("session token issued by %s refused: %v", iss, err)
				}
			}
			for _, iss := range tc.refused {
				if iss == "FAKE" {
					iss = keyFAPI
				}
				if _, err := e.p.VerifySessionToken(context.Background(), sessionToken(iss)); !errors.Is(err, clerk.ErrSessionToken) || !strings.Contains(err.Error(), "wrong issuer") {
					t.Errorf("session token issued by %s: err = %v, want wrong issuer", iss, err)
				}
			}
		})
	}
}

// TestTokenLifetime checks the lifetime sent as expires_in_seconds through
// the exp/iat of the token the fake mints from it.
func TestTokenLifetime(t *testing.T) {
	for _, tc := range []struct {
		set, want time.Duration
	}{
		{0, 7 * 24 * time.Hour},
		{time.Second, 30 * time.Second},
		{time.Hour, time.Hour},
		{20 * 365 * 24 * time.Hour, 315360000 * time.Second},
	} {
		e := newEnv(t, func(c *clerk.Config) { c.TokenLifetime = tc.set })
		m, err := e.p.Mint(context.Background(), server.Grant{Identity: server.Identity{Subject: e.user.ID, SessionID: e.sess.ID}})
		if err != nil {
			t.Fatalf("lifetime %v: Mint: %v", tc.set, err)
		}
		if got := m.Expiry.Sub(e.clock.Now()); got != tc.want {
			t.Errorf("lifetime %v: token lives %v, want %v", tc.set, got, tc.want)
		}
	}
}

func TestVerifySessionToken(t *testing.T) {
	e := newEnv(t, nil)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	must := func(tok string, err error) func() string {
		return func() string {
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
	}
	sessionToken := func(origin string, mutate func(jwt.MapClaims, map[string]any)) func() string {
		return func() string { return must(e.fake.SessionToken(e.sess.ID, origin, mutate))() }
	}
	actor := e.fake.CreateUser("support@example.com")
	impersonated, err := e.fake.Impersonate(actor.ID, e.user.ID, pageOrigin)
	if err != nil {
		t.Fatal(err)
	}
	pending, _ := e.fake.SignIn(e.user.ID, pageOrigin)
	if err := e.fake.AddTask(pending.ID, clerktest.TaskChooseOrganization); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		token func() string
		kind  error // nil: accepted
		cause error
	}{
		{name: "valid", token: sessionToken(pageOrigin, nil)},
		{name: "no cat header", token: sessionToken(pageOrigin, func(_ jwt.MapClaims, h map[string]any) { h["cat"] = nil })},
		{name: "no typ header", token: sessionToken(pageOrigin, func(_ jwt.MapClaims, h map[string]any) { h["typ"] = nil })},
		{name: "ignore category", token: sessionToken(pageOrigin, func(_ jwt.MapClaims, h map[string]any) { h["cat"] = clerk.IgnoreTokenCategory })},
		// Clerk's backend SDK refuses a token without azp once authorized
		// parties are set (jwt/assertions.ts assertAuthorizedPartiesClaim).
		{name: "no azp", kind: clerk.ErrAuthorizedParty, token: sessionToken("", nil)},
		{name: "azp mismatch", kind: clerk.ErrAuthorizedParty, token: sessionToken("http://127.0.0.1:9999", nil)},
		{name: "template token posted as session token", kind: clerk.ErrTemplateToken, token: must(e.fake.TemplateToken(e.sess.ID, "cli", time.Hour))},
		{name: "session claims with template cat", kind: clerk.ErrTemplateToken,
			token: sessionToken(pageOrigin, func(_ jwt.MapClaims, h map[string]any) { h["cat"] = clerk.TemplateTokenCategory })},
		{name: "M2M token", kind: clerk.ErrTemplateToken, token: must(e.fake.MachineToken("mch_worker"))},
		{name: "OAuth access token (typ at+jwt, with sid)", kind: clerk.ErrTemplateToken, token: must(e.fake.OAuthAccessToken(e.sess.ID, "oauth_app"))},
		{name: "machine sub with session cat", kind: clerk.ErrTemplateToken,
			token: sessionToken(pageOrigin, func(c jwt.MapClaims, _ map[string]any) { c["sub"] = "mch_worker" })},
		{name: "opaque M2M token", kind: clerk.ErrTemplateToken, token: func() string { return "mt_0123456789abcdef" }},
		{name: "opaque OAuth token", kind: clerk.ErrTemplateToken, token: func() string { return "oat_0123456789abcdef" }},
		{name: "pending session", kind: clerk.ErrSessionPending, token: must(e.fake.SessionToken(pending.ID, pageOrigin, nil))},
		{name: "impersonated session", kind: clerk.ErrImpersonation, token: must(e.fake.SessionToken(impersonated.ID, pageOrigin, nil))},
		{name: "missing exp", kind: clerk.ErrMissingClaim, token: sessionToken(pageOrigin, func(c jwt.MapClaims, _ map[string]any) { delete(c, "exp") })},
		{name: "missing sid", kind: clerk.ErrMissingClaim, token: sessionToken(pageOrigin, func(c jwt.MapClaims, _ map[string]any) { delete(c, "sid") })},
		{name: "missing sub", kind: clerk.ErrMissingClaim, token: sessionToken(pageOrigin, func(c jwt.MapClaims, _ map[string]any) { delete(c, "sub") })},
		{name: "expired", cause: gojosejwt.ErrExpired, token: sessionToken(pageOrigin, func(c jwt.MapClaims, _ map[string]any) {
			c["exp"] = e.clock.Now().Add(-time.Minute).Unix()
		})},
		{name: "expired within leeway", token: sessionToken(pageOrigin, func(c jwt.MapClaims, _ map[string]any) {
			c["exp"] = e.clock.Now().Add(-2 * time.Second).Unix()
		})},
		{name: "not yet valid", cause: gojosejwt.ErrNotValidYet, token: sessionToken(pageOrigin, func(c jwt.MapClaims, _ map[string]any) {
			c["nbf"] = e.clock.Now().Add(time.Minute).Unix()
		})},
		{name: "issued in the future", cause: gojosejwt.ErrIssuedInTheFuture, token: sessionToken(pageOrigin, func(c jwt.MapClaims, _ map[string]any) {
			c["iat"] = e.clock.Now().Add(time.Minute).Unix()
		})},
		{name: "wrong issuer", token: sessionToken(pageOrigin, func(c jwt.MapClaims, _ map[string]any) { c["iss"] = "https://clerk.evil.com" }), kind: clerk.ErrSessionToken},
		{name: "unknown kid", kind: clerk.ErrSessionToken, token: sessionToken(pageOrigin, func(_ jwt.MapClaims, h map[string]any) { h["kid"] = "ins_other" })},
		{name: "other key, same kid", kind: clerk.ErrSessionToken, token: func() string {
			t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sid": e.sess.ID, "sub": e.user.ID, "azp": pageOrigin, "iss": e.fake.FrontendAPIURL, "exp": e.clock.Now().Add(time.Minute).Unix()})
			t.Header["kid"] = e.fake.KeyID
			s, _ := t.SignedString(otherKey)
			return s
		}},
		{name: "HS256 with the public key as secret", kind: clerk.ErrSessionToken, token: func() string {
			t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sid": e.sess.ID, "sub": e.user.ID, "iss": e.fake.FrontendAPIURL, "exp": e.clock.Now().Add(time.Minute).Unix()})
			t.Header["kid"] = e.fake.KeyID
			s, _ := t.SignedString(e.fake.PublicKey().N.Bytes())
			return s
		}},
		{name: "alg none", kind: clerk.ErrSessionToken, token: func() string {
			t := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sid": e.sess.ID, "sub": e.user.ID, "iss": e.fake.FrontendAPIURL, "exp": e.clock.Now().Add(time.Minute).Unix()})
			t.Header["kid"] = e.fake.KeyID
			s, _ := t.SignedString(jwt.UnsafeAllowNoneSignatureType)
			return s
		}},
		{name: "garbage", kind: clerk.ErrSessionToken, token: func() string { return "not-a-jwt" }},
		{name: "empty", kind: clerk.ErrMissingClaim, token: func() string { return "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token()
			c, err := e.p.VerifySessionToken(context.Background(), tok)
			if tc.kind == nil && tc.cause == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if c.SessionID != e.sess.ID || c.Subject != e.user.ID {
					t.Errorf("claims = %+v", c)
				}
				return
			}
			if !errors.Is(err, clerk.ErrSessionToken) {
				t.Fatalf("err = %v, want ErrSessionToken", err)
			}
			if tc.kind != nil && !errors.Is(err, tc.kind) {
				t.Errorf("err = %v, want %v", err, tc.kind)
			}
			if tc.cause != nil && !errors.Is(err, tc.cause) {
				t.Errorf("err = %v, want cause %v", err, tc.cause)
			}
			if tok != "" && strings.Contains(err.Error(), tok) {
				t.Errorf("error quotes the token")
			}
		})
	}
}

// On an instance that stamps the ignore category on every token, session
// tokens are accepted at sign-in and told apart from other kinds by their
// claims (clerk/javascript tokens/jwtCategories.ts).
func TestIgnoreCategory(t *testing.T) {
	e := newEnvWith(t, clerktest.Options{IgnoreCategory: true}, nil)
	ctx := context.Background()
	tok, err := e.fake.SessionToken(e.sess.ID, pageOrigin, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := postToken(t, e.p, tok); err != nil {
		t.Fatalf("sign-in with a session token of the ignore category: %v", err)
	}
	for name, mint := range map[string]func() (string, error){
		"template token": func() (string, error) { return e.fake.TemplateToken(e.sess.ID, "cli", time.Hour) },
		"M2M token":      func() (string, error) { return e.fake.MachineToken("mch_worker") },
		"OAuth token":    func() (string, error) { return e.fake.OAuthAccessToken(e.sess.ID, "oauth_app") },
	} {
		tok, err := mint()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.p.VerifySessionToken(ctx, tok); !errors.Is(err, clerk.ErrTemplateToken) {
			t.Errorf("%s of the ignore category as session token: err = %v, want ErrTemplateToken", name, err)
		}
	}
	m, err := e.p.Mint(ctx, server.Grant{Identity: server.Identity{Subject: e.user.ID, SessionID: e.sess.ID}})
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	h, c := parse(t, e, m.AccessToken)
	if h["cat"] != clerk.IgnoreTokenCategory {
		t.Fatalf("fake did not stamp the ignore category: %v", h)
	}
	if err := e.p.CheckAccessToken(h, c); err != nil {
		t.Errorf("CheckAccessToken(template token of the ignore category) = %v", err)
	}
	h, c = parse(t, e, tok)
	if err := e.p.CheckAccessToken(h, c); !errors.Is(err, clerk.ErrTemplateToken) {
		t.Errorf("CheckAccessToken(session token of the ignore category) = %v, want ErrTemplateToken", err)
	}
}

func postToken(t *testing.T, p *clerk.Provider, token string) (*server.Identity, error) {
	t.Helper()
	id, _, err := postTokenResponse(t, p, token)
	return id, err
}

func postTokenResponse(t *testing.T, p *clerk.Provider, token string) (*server.Identity, *httptest.ResponseRecorder, error) {
	t.Helper()
	form := url.Values{clerk.SessionTokenField: {token}, "csrf_token": {"x"}}
	r := httptest.NewRequest(http.MethodPost, "/oauth/signin?req=1", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	id, err := p.Authenticate(w, r, server.SignInPrompt{Action: "/oauth/signin?req=1", CSRFField: "csrf_token", CSRFToken: "x", Nonce: "n"})
	return id, w, err
}

func TestAuthenticatePost(t *testing.T) {
	e := newEnv(t, nil)
	tok, err := e.fake.SessionToken(e.sess.ID, pageOrigin, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := postToken(t, e.p, tok)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	want := server.Identity{Subject: e.user.ID, SessionID: e.sess.ID, Email: "ada@example.com", Name: "ada"}
	if id.Subject != want.Subject || id.SessionID != want.SessionID || id.Email != want.Email || id.Name != want.Name || id.Claims != nil {
		t.Errorf("identity = %+v, want %+v", *id, want)
	}

	// A valid token of a session that has since ended is refused.
	if err := e.fake.EndSession(e.sess.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := postToken(t, e.p, tok); !errors.Is(err, clerk.ErrSessionInactive) || !strings.Contains(err.Error(), `"ended"`) {
		t.Errorf("ended session: err = %v, want ErrSessionInactive with the status", err)
	}
	if _, err := postToken(t, e.p, ""); !errors.Is(err, clerk.ErrMissingClaim) {
		t.Errorf("no token: err = %v", err)
	}
}

// A pending session (tasks to finish) is not signed in: the POST gets the
// sign-in page back, told to send the browser to the tasks, whether the
// token said so (sts) or only the Backend API knows.
func TestAuthenticatePending(t *testing.T) {
	e := newEnv(t, nil)
	tokActive, _ := e.fake.SessionToken(e.sess.ID, pageOrigin, nil) // minted before the task appeared
	if err := e.fake.AddTask(e.sess.ID, clerktest.TaskChooseOrganization); err != nil {
		t.Fatal(err)
	}
	tokPending, _ := e.fake.SessionToken(e.sess.ID, pageOrigin, nil)
	for name, tok := range map[string]string{"sts pending": tokPending, "Backend API says pending": tokActive} {
		id, w, err := postTokenResponse(t, e.p, tok)
		if id != nil || !errors.Is(err, server.ErrResponded) {
			t.Fatalf("%s: Authenticate = %v, %v; want the page", name, id, err)
		}
		body := w.Body.String()
		if w.Code != http.StatusConflict || !strings.Contains(body, `role="status" data-pending>`) || !strings.Contains(body, "Clerk.redirectToTasks(redirect)") {
			t.Errorf("%s: %d\n%s", name, w.Code, body)
		}
	}
	if _, err := e.p.VerifySessionToken(context.Background(), tokPending); !errors.Is(err, clerk.ErrSessionPending) || !errors.Is(err, clerk.ErrSessionInactive) {
		t.Errorf("VerifySessionToken(pending) = %v", err)
	}
}

func TestAuthenticateBannedOrLocked(t *testing.T) {
	for name, block := range map[string]func(*clerktest.Fake, string) error{
		"banned": (*clerktest.Fake).BanUser,
		"locked": (*clerktest.Fake).LockUser,
	} {
		e := newEnv(t, nil)
		tok, _ := e.fake.SessionToken(e.sess.ID, pageOrigin, nil)
		if err := block(e.fake, e.user.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := postToken(t, e.p, tok); !errors.Is(err, clerk.ErrUserBlocked) && !errors.Is(err, clerk.ErrSessionInactive) {
			t.Errorf("%s user: err = %v, want refused", name, err)
		}
	}
}

// Impersonation is refused by default; with AllowImpersonation it is carried
// through: the identity names the actor and the minted token must carry it.
func TestImpersonation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	actor := e.fake.CreateUser("support@example.com")
	s, _ := e.fake.Impersonate(actor.ID, e.user.ID, pageOrigin)
	tok, _ := e.fake.SessionToken(s.ID, pageOrigin, nil)
	if _, err := postToken(t, e.p, tok); !errors.Is(err, clerk.ErrImpersonation) {
		t.Errorf("impersonated session, default: err = %v, want ErrImpersonation", err)
	}
	// Without act in the token, the Backend API's session still tells.
	noAct, _ := e.fake.SessionToken(s.ID, pageOrigin, func(c jwt.MapClaims, _ map[string]any) { delete(c, "act") })
	if _, err := postToken(t, e.p, noAct); !errors.Is(err, clerk.ErrImpersonation) {
		t.Errorf("impersonated session, token without act: err = %v, want ErrImpersonation", err)
	}

	allow := func(c *clerk.Config) { c.AllowImpersonation = true }
	// A template without {{session.actor}} would hide the actor: Mint refuses.
	e2 := newEnv(t, allow)
	actor2 := e2.fake.CreateUser("support@example.com")
	s2, _ := e2.fake.Impersonate(actor2.ID, e2.user.ID, pageOrigin)
	tok2, _ := e2.fake.SessionToken(s2.ID, pageOrigin, nil)
	id, err := postToken(t, e2.p, tok2)
	if err != nil {
		t.Fatalf("impersonated session, allowed: %v", err)
	}
	if !strings.Contains(id.Email, "impersonated by "+actor2.ID) || id.Claims["act"] == nil {
		t.Errorf("identity does not name the actor: %+v", id)
	}
	if _, err := e2.p.Mint(ctx, server.Grant{Identity: *id}); !errors.Is(err, clerk.ErrSetup) || !strings.Contains(err.Error(), "{{session.actor}}") {
		t.Errorf("Mint with a template that drops the actor: err = %v, want ErrSetup naming {{session.actor}}", err)
	}
	tmpls := clerktest.DefaultTemplates()
	tmpls["cli"].Claims["act"] = "{{session.actor}}"
	e3 := newEnvWith(t, clerktest.Options{Templates: tmpls}, allow)
	actor3 := e3.fake.CreateUser("support@example.com")
	s3, _ := e3.fake.Impersonate(actor3.ID, e3.user.ID, pageOrigin)
	tok3, _ := e3.fake.SessionToken(s3.ID, pageOrigin, nil)
	id3, err := postToken(t, e3.p, tok3)
	if err != nil {
		t.Fatal(err)
	}
	m, err := e3.p.Mint(ctx, server.Grant{Identity: *id3})
	if err != nil {
		t.Fatalf("Mint with {{session.actor}}: %v", err)
	}
	h, c := parse(t, e3, m.AccessToken)
	if err := e3.p.CheckAccessToken(h, c); err != nil {
		t.Errorf("CheckAccessToken(impersonated, allowed) = %v", err)
	}
	if err := e.p.CheckAccessToken(h, c); !errors.Is(err, clerk.ErrImpersonation) {
		t.Errorf("CheckAccessToken(impersonated, default) = %v, want ErrImpersonation", err)
	}
	// The template's {{session.actor}} is null for the user's own sessions.
	own, err := e3.p.Mint(ctx, server.Grant{Identity: server.Identity{Subject: e3.user.ID, SessionID: e3.sess.ID}})
	if err != nil {
		t.Fatal(err)
	}
	h, c = parse(t, e3, own.AccessToken)
	if err := e.p.CheckAccessToken(h, c); err != nil {
		t.Errorf("CheckAccessToken(own session, act null) = %v", err)
	}
}

func TestAuthenticateWrongSecretKey(t *testing.T) {
	e := newEnv(t, func(c *clerk.Config) { c.SecretKey = "sk_test_wrong_secret" })
	tok, _ := e.fake.SessionToken(e.sess.ID, pageOrigin, nil)
	_, err := postToken(t, e.p, tok)
	var ae *clerk.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized || ae.Code != "authentication_invalid" || ae.Op != "jwks.Get" {
		t.Fatalf("err = %#v, want APIError 401 authentication_invalid from jwks.Get", err)
	}
	if !errors.Is(err, clerk.ErrClerkAPI) || strings.Contains(err.Error(), "sk_test_wrong_secret") {
		t.Errorf("err = %v", err)
	}
}

func TestAuthenticateGetRendersPage(t *testing.T) {
	e := newEnv(t, nil)
	w := httptest.NewRecorder()
	prompt := server.SignInPrompt{ClientName: "mytool", Action: "/oauth/signin?req=abc&x=1", CSRFField: "csrf_token", CSRFToken: "tok<en>", Nonce: "N0nce"}
	id, err := e.p.Authenticate(w, httptest.NewRequest(http.MethodGet, "/oauth/signin?req=abc", nil), prompt)
	if id != nil || !errors.Is(err, server.ErrResponded) {
		t.Fatalf("Authenticate(GET) = %v, %v; want ErrResponded", id, err)
	}
	// Clerk's CSP guide: the Frontend API for scripts and connections,
	// Cloudflare's and Clerk's bot and fraud protection (Protect), Clerk's
	// images, workers from 'self' and blob:.
	csp := w.Header().Get("Content-Security-Policy")
	for _, want := range []string{
		"script-src 'nonce-N0nce' " + e.fake.URL + " https://challenges.cloudflare.com https://*.protect.clerk.com",
		"connect-src " + e.fake.URL + " https://*.protect.clerk.com:*",
		"frame-src https://challenges.cloudflare.com https://*.protect.clerk.com",
		"img-src https://img.clerk.com", "worker-src 'self' blob:",
		"frame-ancestors 'none'", "default-src 'none'", "form-action 'self'",
	} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	body := w.Body.String()
	for _, want := range []string{
		`data-clerk-publishable-key="` + e.fake.PublishableKey + `"`,
		`src="` + e.fake.URL + clerktest.ClerkJSPath + `"`,
		`action="/oauth/signin?req=abc&amp;x=1"`,
		`name="csrf_token" value="tok&lt;en&gt;"`,
		`<script nonce="N0nce">`,
		"await Clerk.load({});",
		"Clerk.redirectToSignIn(redirect)",
		"Clerk.session.getToken({skipCache: true})",
		"!Clerk.isSignedIn",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "data-clerk-proxy-url") || strings.Contains(body, "data-clerk-domain") {
		t.Errorf("page without proxy or satellite names one")
	}
	if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers = %v", w.Header())
	}
}

// parse verifies a token the fake minted and returns its header and claims.
func parse(t *testing.T, e *env, tok string) (map[string]any, jwt.MapClaims) {
	t.Helper()
	parsed, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return e.fake.PublicKey(), nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(e.clock.Now))
	if err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	return parsed.Header, parsed.Claims.(jwt.MapClaims)
}

func TestMint(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	g := server.Grant{Identity: server.Identity{Subject: e.user.ID, SessionID: e.sess.ID}, ClientID: "mytool"}
	m, err := e.p.Mint(ctx, g)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	parsed, err := jwt.Parse(m.AccessToken, func(*jwt.Token) (any, error) { return e.fake.PublicKey(), nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(e.fake.FrontendAPIURL), jwt.WithAudience("keyloop-test"),
		jwt.WithTimeFunc(e.clock.Now))
	if err != nil {
		t.Fatalf("minted token does not verify: %v", err)
	}
	claims := parsed.Claims.(jwt.MapClaims)
	if parsed.Header["cat"] != clerk.TemplateTokenCategory || claims["sub"] != e.user.ID || claims["email"] != "ada@example.com" || claims[clerk.TemplateClaim] != "cli" {
		t.Errorf("token header %v, claims %v", parsed.Header, claims)
	}
	for _, c := range []string{"sid", "azp"} {
		if _, has := claims[c]; has {
			t.Errorf("Backend API template token carries %s", c)
		}
	}
	if err := e.p.CheckAccessToken(parsed.Header, claims); err != nil {
		t.Errorf("CheckAccessToken(minted token) = %v", err)
	}
	if !m.Expiry.Equal(e.clock.Now().Add(7 * 24 * time.Hour)) {
		t.Errorf("Expiry = %v, want now+7d", m.Expiry)
	}

	// Refresh mints again while the Clerk session is active …
	g.Refresh = true
	if _, err := e.p.Mint(ctx, g); err != nil {
		t.Fatalf("refresh with an active session: %v", err)
	}
	// … and is refused once it ended, with the status in the error.
	if err := e.fake.EndSession(e.sess.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.p.Mint(ctx, g)
	if !errors.Is(err, server.ErrRefreshRefused) || !errors.Is(err, clerk.ErrSessionInactive) || !strings.Contains(err.Error(), `"ended"`) {
		t.Errorf("refresh after the session ended: err = %v", err)
	}
}

// Mint checks what Clerk returned against the set-up keyloop needs, and says
// what to change.
func TestMintSetupErrors(t *testing.T) {
	ctx := context.Background()
	tmpl := func(mutate func(*clerktest.Template)) clerktest.Options {
		ts := clerktest.DefaultTemplates()
		c := ts["cli"]
		mutate(&c)
		ts["cli"] = c
		return clerktest.Options{Templates: ts}
	}
	for _, tc := range []struct {
		name   string
		opts   clerktest.Options
		mutate func(*clerk.Config)
		want   string
	}{
		{"template without the marker claim", tmpl(func(c *clerktest.Template) { delete(c.Claims, clerk.TemplateClaim) }), nil, `"keyloop_template": "cli"`},
		{"template with a custom signing key", tmpl(func(c *clerktest.Template) { c.CustomSigningKey = true }), nil, "custom signing key"},
		{"template without the audience", tmpl(func(c *clerktest.Template) { delete(c.Claims, "aud") }), nil, `"aud": "keyloop-test"`},
		{"issuer not the configured one", clerktest.Options{}, func(c *clerk.Config) { c.FrontendAPIURL = "https://clerk.example.com" }, "set clerk.Config.FrontendAPIURL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWith(t, tc.opts, tc.mutate)
			_, err := e.p.Mint(ctx, server.Grant{Identity: server.Identity{Subject: e.user.ID, SessionID: e.sess.ID}})
			if !errors.Is(err, clerk.ErrSetup) || errors.Is(err, server.ErrRefreshRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrSetup naming %s", err, tc.want)
			}
		})
	}
}

func TestMintRefreshRefused(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		act    func(e *env) error
		sid    func(e *env) string
		status string
		kind   error
	}{
		"revoked":      {act: func(e *env) error { return e.fake.RevokeSession(e.sess.ID) }, status: "revoked"},
		"user deleted": {act: func(e *env) error { return e.fake.DeleteUser(e.user.ID) }, status: "removed"},
		"expired":      {act: func(e *env) error { e.clock.Advance(7*24*time.Hour + time.Second); return nil }, status: "expired"},
		"abandoned":    {act: func(e *env) error { return e.fake.SetSessionStatus(e.sess.ID, clerktest.StatusAbandoned) }, status: "abandoned"},
		"replaced":     {act: func(e *env) error { return e.fake.SetSessionStatus(e.sess.ID, clerktest.StatusReplaced) }, status: "replaced"},
		"pending":      {act: func(e *env) error { return e.fake.AddTask(e.sess.ID, clerktest.TaskResetPassword) }, status: "pending", kind: clerk.ErrSessionPending},
		"banned":       {act: func(e *env) error { return e.fake.BanUser(e.user.ID) }, status: "revoked"},
		"locked":       {act: func(e *env) error { return e.fake.LockUser(e.user.ID) }, kind: clerk.ErrUserBlocked},
		"unknown":      {sid: func(*env) string { return "sess_unknown" }},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			sid := e.sess.ID
			if tc.sid != nil {
				sid = tc.sid(e)
			}
			if tc.act != nil {
				if err := tc.act(e); err != nil {
					t.Fatal(err)
				}
			}
			_, err := e.p.Mint(ctx, server.Grant{Identity: server.Identity{Subject: e.user.ID, SessionID: sid}, Refresh: true})
			if !errors.Is(err, server.ErrRefreshRefused) {
				t.Fatalf("err = %v, want ErrRefreshRefused", err)
			}
			if tc.status != "" && !strings.Contains(err.Error(), `"`+tc.status+`"`) {
				t.Errorf("err = %v, want status %q", err, tc.status)
			}
			if tc.kind != nil && !errors.Is(err, tc.kind) {
				t.Errorf("err = %v, want %v", err, tc.kind)
			}
		})
	}
}

// A Clerk session that ends between consent and the code exchange is refused
// (invalid_grant: sign in again), not a server error.
func TestMintAfterSessionEnded(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.fake.EndSession(e.sess.ID); err != nil {
		t.Fatal(err)
	}
	_, err := e.p.Mint(context.Background(), server.Grant{Identity: server.Identity{Subject: e.user.ID, SessionID: e.sess.ID}})
	if !errors.Is(err, server.ErrRefreshRefused) {
		t.Fatalf("err = %v, want ErrRefreshRefused", err)
	}
}

func TestMintClerkUnreachable(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.Close()
	_, err := e.p.Mint(context.Background(), server.Grant{Identity: server.Identity{SessionID: e.sess.ID}, Refresh: true})
	if errors.Is(err, server.ErrRefreshRefused) || !errors.Is(err, clerk.ErrClerkAPI) {
		t.Fatalf("err = %v, want a retryable ErrClerkAPI", err)
	}
	_, err = e.p.Mint(context.Background(), server.Grant{Identity: server.Identity{}})
	if !errors.Is(err, clerk.ErrMissingClaim) {
		t.Errorf("identity without session: err = %v", err)
	}
}

func TestMintUnknownTemplate(t *testing.T) {
	e := newEnv(t, func(c *clerk.Config) { c.JWTTemplate = "nope" })
	_, err := e.p.Mint(context.Background(), server.Grant{Identity: server.Identity{SessionID: e.sess.ID}})
	var ae *clerk.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 404 || ae.Op != "session.CreateToken" || errors.Is(err, server.ErrRefreshRefused) {
		t.Fatalf("err = %v, want APIError 404 from session.CreateToken", err)
	}
}

// The bearer middleware accepts only what Mint hands out: Backend
// API-minted tokens of the configured template. Every other token the
// instance signs with the same key and issuer is refused.
func TestCheckAccessToken(t *testing.T) {
	ts := clerktest.DefaultTemplates()
	ts["supabase"] = clerktest.Template{Claims: map[string]any{"aud": "keyloop-test", "role": "authenticated"}}
	e := newEnvWith(t, clerktest.Options{Templates: ts}, nil)
	must := func(tok string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	minted, err := e.p.Mint(context.Background(), server.Grant{Identity: server.Identity{Subject: e.user.ID, SessionID: e.sess.ID}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tok  string
		want error
	}{
		{"Backend API token of the CLI template", minted.AccessToken, nil},
		{"browser-minted token of the CLI template (azp)", must(e.fake.FrontendTemplateToken(e.sess.ID, "cli", pageOrigin)), clerk.ErrTemplateToken},
		// Clerk leaves azp out when the Frontend API request has no Origin;
		// the template's own lifetime (60 s) still tells it from Mint's.
		{"token of the CLI template minted through the Frontend API without Origin", must(e.fake.FrontendTemplateToken(e.sess.ID, "cli", "")), clerk.ErrTemplateToken},
		{"token of another template", must(e.fake.TemplateToken(e.sess.ID, "supabase", time.Hour)), clerk.ErrTemplateToken},
		{"session token", must(e.fake.SessionToken(e.sess.ID, pageOrigin, nil)), clerk.ErrTemplateToken},
		{"session token without cat", must(e.fake.SessionToken(e.sess.ID, pageOrigin, func(_ jwt.MapClaims, h map[string]any) { h["cat"] = nil })), clerk.ErrTemplateToken},
		{"M2M token", must(e.fake.MachineToken("mch_worker")), clerk.ErrTemplateToken},
		{"OAuth access token", must(e.fake.OAuthAccessToken(e.sess.ID, "oauth_app")), clerk.ErrTemplateToken},
	} {
		h, c := parse(t, e, tc.tok)
		err := e.p.CheckAccessToken(h, c)
		if (tc.want == nil && err != nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: CheckAccessToken = %v, want %v", tc.name, err, tc.want)
		}
	}
	h, c := parse(t, e, minted.AccessToken)
	delete(c, "exp")
	if err := e.p.CheckAccessToken(h, c); !errors.Is(err, clerk.ErrMissingClaim) {
		t.Errorf("no exp: CheckAccessToken = %v", err)
	}
	h["cat"] = "cl_other"
	if err := e.p.CheckAccessToken(h, c); !errors.Is(err, clerk.ErrTemplateToken) {
		t.Errorf("unknown cat: CheckAccessToken = %v", err)
	}
}

func TestCheckSetup(t *testing.T) {
	ctx := context.Background()
	good := clerktest.DefaultTemplates()["cli"]
	for _, tc := range []struct {
		name   string
		tmpl   *clerktest.Template
		mutate func(*clerk.Config)
		want   []string // empty: no problem
	}{
		{name: "as the README says", tmpl: &good},
		{name: "no such template", want: []string{`no JWT template "cli"`}},
		{name: "everything wrong", tmpl: &clerktest.Template{Claims: map[string]any{"email": "{{user.primary_email_address}}"}, Lifetime: 7 * 24 * time.Hour, CustomSigningKey: true},
			mutate: func(c *clerk.Config) { c.AllowImpersonation = true },
			want:   []string{`"keyloop_template": "cli"`, `"aud": "keyloop-test"`, `"act": "{{session.actor}}"`, "custom signing key", "lower the token lifetime from 168h0m0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := map[string]clerktest.Template{"other": {Claims: map[string]any{}}}
			if tc.tmpl != nil {
				ts["cli"] = *tc.tmpl
			}
			e := newEnvWith(t, clerktest.Options{Templates: ts}, tc.mutate)
			err := e.p.CheckSetup(ctx)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("CheckSetup = %v", err)
				}
				return
			}
			if !errors.Is(err, clerk.ErrSetup) {
				t.Fatalf("CheckSetup = %v, want ErrSetup", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckSetup = %v, lacks %s", err, w)
				}
			}
		})
	}
	e := newEnv(t, func(c *clerk.Config) { c.SecretKey = "sk_test_wrong" })
	if err := e.p.CheckSetup(ctx); !errors.Is(err, clerk.ErrClerkAPI) {
		t.Errorf("CheckSetup with a wrong secret key = %v, want ErrClerkAPI", err)
	}
}

// BenchmarkVerifySessionToken measures verifying a posted session token
// (the JWKS is cached after the first call); compare with
// BenchmarkVerifySessionTokenBaseline, a bare RS256 check with golang-jwt.
func BenchmarkVerifySessionToken(b *testing.B) {
	e := newEnv(b, nil)
	tok, _ := e.fake.SessionToken(e.sess.ID, pageOrigin, nil)
	ctx := context.Background()
	if _, err := e.p.VerifySessionToken(ctx, tok); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := e.p.VerifySessionToken(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifySessionTokenBaseline(b *testing.B) {
	e := newEnv(b, nil)
	tok, _ := e.fake.SessionToken(e.sess.ID, pageOrigin, nil)
	key := e.fake.PublicKey()
	for b.Loop() {
		if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return key, nil },
			jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(e.clock.Now)); err != nil {
			b.Fatal(err)
		}
	}
}
