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

func newEnv(t testing.TB, mutate func(*clerk.Config)) *env {
	t.Helper()
	clock := newClock()
	fake := clerktest.New(t, clerktest.Options{Now: clock.Now})
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

func TestConfig(t *testing.T) {
	base := clerk.Config{SecretKey: "sk_test_x", PublishableKey: "pk_test_ZXhhbXBsZS5hY2NvdW50cy5kZXYk", Issuer: "https://auth.example.com"}
	p, err := clerk.New(base)
	if err != nil {
		t.Fatal(err)
	}
	ki := p.KeyInfo()
	if ki.TokenIssuer != "https://example.accounts.dev" || ki.JWKSURI != "https://example.accounts.dev/.well-known/jwks.json" || ki.Audience != "" {
		t.Errorf("KeyInfo = %+v", ki)
	}
	for name, mutate := range map[string]func(*clerk.Config){
		"no secret key":       func(c *clerk.Config) { c.SecretKey = "" },
		"no publishable key":  func(c *clerk.Config) { c.PublishableKey = "" },
		"bad publishable key": func(c *clerk.Config) { c.PublishableKey = "pk_x" },
		"no azp source":       func(c *clerk.Config) { c.Issuer = "" },
		"bad frontend API":    func(c *clerk.Config) { c.FrontendAPIURL = "ftp://x" },
		"relative API URL":    func(c *clerk.Config) { c.APIURL = "/v1" },
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
	sessionToken := func(origin string, mutate func(jwt.MapClaims, map[string]any)) func() string {
		return func() string {
			tok, err := e.fake.SessionToken(e.sess.ID, origin, mutate)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
	}
	for _, tc := range []struct {
		name  string
		token func() string
		kind  error // nil: accepted
		cause error
	}{
		{name: "valid", token: sessionToken(pageOrigin, nil)},
		{name: "no azp", token: sessionToken("", nil)},
		{name: "no cat header", token: sessionToken(pageOrigin, func(_ jwt.MapClaims, h map[string]any) { h["cat"] = nil })},
		{name: "template token posted as session token", kind: clerk.ErrTemplateToken, token: func() string {
			tok, err := e.fake.TemplateToken(e.sess.ID, "cli", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}},
		{name: "session claims with template cat", kind: clerk.ErrTemplateToken,
			token: sessionToken(pageOrigin, func(_ jwt.MapClaims, h map[string]any) { h["cat"] = clerktest.TemplateTokenCategory })},
		{name: "missing exp", kind: clerk.ErrMissingClaim, token: sessionToken(pageOrigin, func(c jwt.MapClaims, _ map[string]any) { delete(c, "exp") })},
		{name: "missing sid", kind: clerk.ErrMissingClaim, token: sessionToken(pageOrigin, func(c jwt.MapClaims, _ map[string]any) { delete(c, "sid") })},
		{name: "missing sub", kind: clerk.ErrMissingClaim, token: sessionToken(pageOrigin, func(c jwt.MapClaims, _ map[string]any) { delete(c, "sub") })},
		{name: "azp mismatch", kind: clerk.ErrAuthorizedParty, token: sessionToken("http://127.0.0.1:9999", nil)},
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
			t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sid": e.sess.ID, "sub": e.user.ID, "iss": e.fake.FrontendAPIURL, "exp": e.clock.Now().Add(time.Minute).Unix()})
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

func postToken(t *testing.T, p *clerk.Provider, token string) (*server.Identity, error) {
	t.Helper()
	form := url.Values{clerk.SessionTokenField: {token}, "csrf_token": {"x"}}
	r := httptest.NewRequest(http.MethodPost, "/oauth/signin?req=1", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return p.Authenticate(httptest.NewRecorder(), r, server.SignInPrompt{Action: "/oauth/signin?req=1", CSRFField: "csrf_token", CSRFToken: "x", Nonce: "n"})
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
	if id.Subject != want.Subject || id.SessionID != want.SessionID || id.Email != want.Email || id.Name != want.Name {
		t.Errorf("identity = %+v, want %+v", *id, want)
	}

	// A valid token of a session that has since ended is refused.
	if err := e.fake.EndSession(e.sess.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := postToken(t, e.p, tok); !errors.Is(err, clerk.ErrSessionInactive) || !strings.Contains(err.Error(), `"ended"`) {
		t.Errorf("ended session: err = %v, want ErrSessionInactive with the status", err)
	}
	// A template token is refused before any session lookup.
	if _, err := postToken(t, e.p, ""); !errors.Is(err, clerk.ErrMissingClaim) {
		t.Errorf("no token: err = %v", err)
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
	csp := w.Header().Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'nonce-N0nce' " + e.fake.URL, "connect-src " + e.fake.URL, "frame-ancestors 'none'", "default-src 'none'", "form-action 'self'"} {
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
		"Clerk.redirectToSignIn({signInForceRedirectUrl: location.href",
		"Clerk.session.getToken()",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers = %v", w.Header())
	}
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
	if parsed.Header["cat"] != clerk.TemplateTokenCategory || claims["sub"] != e.user.ID || claims["email"] != "ada@example.com" {
		t.Errorf("token header %v, claims %v", parsed.Header, claims)
	}
	if _, hasSID := claims["sid"]; hasSID {
		t.Errorf("template token carries sid")
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

func TestMintRefreshRefused(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		act    func(e *env) error
		sid    func(e *env) string
		status string
	}{
		"revoked":      {act: func(e *env) error { return e.fake.RevokeSession(e.sess.ID) }, status: "revoked"},
		"user deleted": {act: func(e *env) error { return e.fake.DeleteUser(e.user.ID) }, status: "removed"},
		"expired":      {act: func(e *env) error { e.clock.Advance(7*24*time.Hour + time.Second); return nil }, status: "expired"},
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

func TestCheckAccessToken(t *testing.T) {
	e := newEnv(t, nil)
	exp := map[string]any{"exp": 1.0, "sub": "user_1"}
	for _, tc := range []struct {
		name   string
		header map[string]any
		claims map[string]any
		want   error
	}{
		{"template token", map[string]any{"cat": clerk.TemplateTokenCategory}, exp, nil},
		{"no cat, no sid", map[string]any{}, exp, nil},
		{"session token", map[string]any{"cat": clerk.SessionTokenCategory}, map[string]any{"exp": 1.0, "sid": "sess_1"}, clerk.ErrTemplateToken},
		{"unknown cat", map[string]any{"cat": "cl_other"}, exp, clerk.ErrTemplateToken},
		{"no cat but sid", map[string]any{}, map[string]any{"exp": 1.0, "sid": "sess_1"}, clerk.ErrTemplateToken},
		{"no exp", map[string]any{"cat": clerk.TemplateTokenCategory}, map[string]any{"sub": "user_1"}, clerk.ErrMissingClaim},
	} {
		err := e.p.CheckAccessToken(tc.header, tc.claims)
		if (tc.want == nil && err != nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: CheckAccessToken = %v, want %v", tc.name, err, tc.want)
		}
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
