package clilogin

// Unit tests for what other providers do differently from a keyloop
// server: where their metadata is, how they spell their issuer, client
// secrets, redirect URIs, extra parameters, ID tokens, opaque access
// tokens, and refresh answers that leave things out.

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/keyloop/keyloop/tokenstore"
)

func TestMetadataURLs(t *testing.T) {
	for _, tc := range []struct {
		issuer string
		want   []string
	}{
		{"https://a.example", []string{
			"https://a.example/.well-known/oauth-authorization-server",
			"https://a.example/.well-known/openid-configuration"}},
		{"https://tenant.auth0.example/", []string{
			"https://tenant.auth0.example/.well-known/oauth-authorization-server",
			"https://tenant.auth0.example/.well-known/openid-configuration"}},
		{"https://kc.example/realms/dev", []string{
			"https://kc.example/.well-known/oauth-authorization-server/realms/dev",
			"https://kc.example/realms/dev/.well-known/openid-configuration",
			"https://kc.example/.well-known/openid-configuration/realms/dev",
			"https://kc.example/realms/dev/.well-known/oauth-authorization-server"}},
		{"https://login.example/tenant-id/v2.0/", []string{
			"https://login.example/.well-known/oauth-authorization-server/tenant-id/v2.0",
			"https://login.example/tenant-id/v2.0/.well-known/openid-configuration",
			"https://login.example/.well-known/openid-configuration/tenant-id/v2.0",
			"https://login.example/tenant-id/v2.0/.well-known/oauth-authorization-server"}},
	} {
		if got := metadataURLs(tc.issuer); !slices.Equal(got, tc.want) {
			t.Errorf("metadataURLs(%q) =\n%q\nwant\n%q", tc.issuer, got, tc.want)
		}
	}
}

// loginOK runs a login that must succeed and returns the session.
func (h *harness) loginOK() *Session {
	h.t.Helper()
	r := h.runLogin(h.t.Context(), func(ctx context.Context, r *loginResult) {
		if s := browse(ctx, r.authURL); s.status != http.StatusOK {
			h.t.Errorf("browser saw %d %v: %s", s.status, s.err, s.body)
		}
	})
	if r.err != nil {
		h.t.Fatalf("Login: %v", r.err)
	}
	return r.sess
}

// A provider that publishes its issuer with a terminating "/" (Auth0) is
// logged in to whether the configuration has the "/" or not, the published
// form is what tokens and callbacks are checked against, and both forms
// share the login stored under the key of the form without "/", as before.
func TestIssuerTrailingSlash(t *testing.T) {
	for _, configured := range []string{"slash", "no slash"} {
		t.Run(configured, func(t *testing.T) {
			h := newHarness(t)
			h.as.Published = h.as.Issuer + "/"
			h.cfg.Scopes = []string{"openid"}
			if configured == "slash" {
				h.cfg.Issuer = h.as.Issuer + "/"
			}
			sess := h.loginOK()
			rec := h.stored() // under tokenstore.Key("", issuer without "/", …)
			if sess.Issuer != h.as.Issuer+"/" || rec.Issuer != h.as.Issuer+"/" || rec.Subject != "user-1" {
				t.Errorf("session issuer %q, stored %q / %q", sess.Issuer, rec.Issuer, rec.Subject)
			}
			h.clock.Add(50 * time.Minute)
			if _, err := h.client().Token(t.Context()); err != nil || h.as.Refreshes.Load() != 1 {
				t.Errorf("refresh: %v (%d refreshes)", err, h.as.Refreshes.Load())
			}
		})
	}
	t.Run("other issuer still refused", func(t *testing.T) {
		h := newHarness(t)
		h.as.Published = h.as.Issuer + "/x"
		h.cfg.OpenBrowser = func(context.Context, string) error { t.Error("browser opened"); return nil }
		if _, err := h.client().Login(t.Context()); !errors.Is(err, ErrIssuerMismatch) || !errors.Is(err, ErrDiscovery) {
			t.Errorf("err = %v, want ErrIssuerMismatch", err)
		}
	})
}

// Providers that publish only OpenID Connect discovery, at either form for
// an issuer with a path, or RFC 8414's inserted form; a web app's
// catch-all page at the other URLs is skipped.
func TestDiscoveryForms(t *testing.T) {
	for _, tc := range []struct {
		name, path, served string
		html               bool
	}{
		{"OIDC only", "", "/.well-known/openid-configuration", false},
		{"OIDC only, HTML elsewhere", "", "/.well-known/openid-configuration", true},
		{"path issuer, OIDC appended", "/realms/dev", "/realms/dev/.well-known/openid-configuration", false},
		{"path issuer, RFC 8414 inserted", "/tenant/v2.0", "/.well-known/oauth-authorization-server/tenant/v2.0", false},
		{"path issuer, OIDC inserted", "/tenant/v2.0", "/.well-known/openid-configuration/tenant/v2.0", true},
		{"path issuer, RFC 8414 appended", "/o", "/o/.well-known/oauth-authorization-server", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.as.Published = h.as.Issuer + tc.path
			h.as.MetadataPaths = []string{tc.served}
			h.as.HTMLElsewhere = tc.html
			h.cfg.Issuer = h.as.Published
			sess := h.loginOK()
			if sess.Issuer != h.as.Published || sess.Subject != "user-1" {
				t.Errorf("session = %+v", sess)
			}
		})
	}
	t.Run("none found", func(t *testing.T) {
		h := newHarness(t)
		h.as.MetadataPaths = []string{}
		h.cfg.OpenBrowser = func(context.Context, string) error { t.Error("browser opened"); return nil }
		_, err := h.client().Login(t.Context())
		msg := Message(err)
		if !errors.Is(err, ErrDiscovery) || !strings.Contains(msg, h.as.Issuer+"/.well-known/openid-configuration (404 Not Found)") ||
			!strings.Contains(msg, "configure its endpoints") {
			t.Errorf("err = %v\nmessage: %s", err, msg)
		}
	})
	t.Run("server error ends discovery", func(t *testing.T) {
		h := newHarness(t)
		h.as.MetaOverride = map[string]any{"issuer": nil}
		h.as.MetadataPaths = []string{"/.well-known/openid-configuration"}
		_, err := h.client().discover(t.Context())
		if !errors.Is(err, ErrIssuerMismatch) {
			t.Errorf("err = %v, want ErrIssuerMismatch (no issuer published)", err)
		}
	})
}

// A provider without discovery (GitHub OAuth apps): explicit endpoints, a
// client secret sent in the body, opaque tokens without expires_in, no
// revocation endpoint; token answers in JSON or, as GitHub sends them to
// clients that do not ask for JSON, form-encoded.
func TestExplicitEndpoints(t *testing.T) {
	for _, form := range []bool{false, true} {
		t.Run(map[bool]string{false: "JSON answers", true: "form-encoded answers"}[form], func(t *testing.T) {
			testExplicitEndpoints(t, form)
		})
	}
}

func testExplicitEndpoints(t *testing.T, form bool) {
	h := newHarness(t)
	h.as.FormAnswer = form
	h.as.MetadataPaths = []string{} // nothing to discover
	h.as.ClientSecret, h.as.ClientAuth = "gh-secret-123", "client_secret_post"
	h.as.OmitExpiresIn = true
	h.cfg.Endpoints = &Endpoints{Authorization: h.as.Issuer + "/authorize", Token: h.as.Issuer + "/token"}
	h.cfg.ClientSecret = "gh-secret-123"
	sess := h.loginOK()
	rec := h.stored()
	if !rec.AccessTokenOpaque || rec.TokenAuth != authInBody || !sess.Expiry.IsZero() || rec.JWKSURI != "" ||
		sess.Subject != "" || !sess.CanRefresh {
		t.Errorf("session %+v, record %+v", sess, rec)
	}
	// An unknown expiry is never refreshed ahead; the token is used.
	h.clock.Add(1000 * time.Hour)
	tok, err := h.client().Token(t.Context())
	if err != nil || tok.AccessToken != rec.AccessToken.Reveal() || h.as.Refreshes.Load() != 0 {
		t.Fatalf("Token = %v, %v (%d refreshes)", tok, err, h.as.Refreshes.Load())
	}
	// An API that refuses it gets a refreshed one, with the secret.
	h.as.Reject()
	resp, err := h.client().HTTPClient(t.Context()).Get(h.as.Issuer + "/api/me")
	if err != nil || resp.StatusCode != http.StatusOK || h.as.Refreshes.Load() != 1 {
		t.Fatalf("API after refresh: %v %v (%d refreshes)", resp, err, h.as.Refreshes.Load())
	}
	resp.Body.Close()
	// Logout removes the login and says the provider cannot revoke it.
	err = h.client().Logout(t.Context())
	if !errors.Is(err, ErrRevocationUnsupported) || errors.Is(err, ErrRevocationFailed) ||
		!strings.Contains(Message(err), "Logged out on this machine.") || !strings.Contains(Message(err), "no revocation endpoint") {
		t.Errorf("Logout = %v (%s)", err, Message(err))
	}
	if _, err := h.client().Status(t.Context()); !errors.Is(err, ErrNotLoggedIn) {
		t.Errorf("after logout, Status = %v", err)
	}
	h.checkNoSecrets("output", h.out.String())
	if strings.Contains(h.out.String(), "gh-secret-123") || strings.Contains(Message(err), "gh-secret-123") {
		t.Error("the client secret was printed")
	}
}

// A client secret goes where the provider wants it, at login, refresh and
// revocation.
func TestClientSecret(t *testing.T) {
	for _, tc := range []struct {
		name      string
		style     oauth2.AuthStyle
		advertise []string
		server    string
	}{
		{"basic by default", oauth2.AuthStyleAutoDetect, nil, "client_secret_basic"},
		{"post when only post is advertised", oauth2.AuthStyleAutoDetect, []string{"client_secret_post"}, "client_secret_post"},
		{"basic when both are", oauth2.AuthStyleAutoDetect, []string{"client_secret_post", "client_secret_basic"}, "client_secret_basic"},
		{"forced post", oauth2.AuthStyleInParams, []string{"client_secret_basic"}, "client_secret_post"},
		{"forced basic", oauth2.AuthStyleInHeader, []string{"client_secret_post"}, "client_secret_basic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			const secret = "GOCSPX-s3cr3t/+="
			h.as.ClientSecret, h.as.ClientAuth = secret, tc.server
			if tc.advertise != nil {
				h.as.MetaOverride = map[string]any{"token_endpoint_auth_methods_supported": tc.advertise}
			}
			h.cfg.ClientSecret, h.cfg.AuthStyle = secret, tc.style
			h.loginOK()
			h.clock.Add(50 * time.Minute)
			if _, err := h.client().Token(t.Context()); err != nil || h.as.Refreshes.Load() != 1 {
				t.Fatalf("refresh: %v", err)
			}
			if err := h.client().Logout(t.Context()); err != nil || len(h.as.Revoked()) == 0 {
				t.Errorf("Logout = %v, revoked %v", err, h.as.Revoked())
			}
		})
	}
	t.Run("public client sends no secret", func(t *testing.T) {
		h := newHarness(t)
		h.loginOK()
		if got := *h.as.TokenAuthHeader.Load(); got != "" {
			t.Errorf("Authorization header %q sent by a public client", got)
		}
	})
}

// Redirect URIs a provider registers exactly: localhost (Entra ID), a fixed
// port and path, IPv6.
func TestRedirectURL(t *testing.T) {
	free := func(t *testing.T, network, addr string) string {
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Skipf("cannot listen on %s: %v", addr, err)
		}
		defer ln.Close()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		return port
	}
	for _, tc := range []struct {
		name, path string
		redirect   func(t *testing.T) string
		want       func(got string) bool
	}{
		{"localhost, any port", "/callback", func(*testing.T) string { return "http://localhost/callback" },
			func(got string) bool {
				return strings.HasPrefix(got, "http://localhost:") && strings.HasSuffix(got, "/callback")
			}},
		{"fixed port and path", "/oauth2/cb", func(t *testing.T) string {
			return "http://127.0.0.1:" + free(t, "tcp4", "127.0.0.1:0") + "/oauth2/cb"
		}, nil},
		{"IPv6", "/callback", func(t *testing.T) string { return "http://[::1]:" + free(t, "tcp6", "[::1]:0") + "/callback" }, nil},
		{"localhost, fixed port", "/", func(t *testing.T) string { return "http://localhost:" + free(t, "tcp4", "127.0.0.1:0") + "/" }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.as.RedirectPath = tc.path
			h.cfg.RedirectURL = tc.redirect(t)
			var redirectURI string
			r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) {
				redirectURI = r.redirectURI
				if s := browse(ctx, r.authURL); s.status != http.StatusOK {
					t.Errorf("browser saw %d %v: %s", s.status, s.err, s.body)
				}
			})
			if r.err != nil {
				t.Fatalf("Login: %v", r.err)
			}
			if tc.want == nil && redirectURI != h.cfg.RedirectURL || tc.want != nil && !tc.want(redirectURI) {
				t.Errorf("redirect_uri = %q for RedirectURL %q", redirectURI, h.cfg.RedirectURL)
			}
		})
	}
	for _, bad := range []string{"https://127.0.0.1/cb", "http://example.com/cb", "http://127.0.0.2/cb", "http://localhost/cb?x=1",
		"http://localhost:http/cb", "http://localhost/done", "http://u:p@localhost/cb"} {
		if _, err := New(Config{Issuer: "https://a.example", ClientID: "c", AppName: "a", RedirectURL: bad}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New with RedirectURL %q = %v, want ErrInvalidConfig", bad, err)
		}
	}
	_, err := New(Config{Issuer: "https://a.example", ClientID: "c", AppName: "a", RedirectURL: "http://localhost/cb",
		ListenAddrs: []string{"127.0.0.1:0"}})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with RedirectURL and ListenAddrs = %v", err)
	}
}

// Extra authorization parameters reach the provider; the ones Login sets
// cannot be replaced.
func TestAuthParams(t *testing.T) {
	h := newHarness(t)
	h.cfg.Scopes = []string{"openid", "offline_access"}
	h.cfg.AuthParams = url.Values{"prompt": {"consent"}, "access_type": {"offline"}, "audience": {"https://api.example.com"}}
	h.loginOK()
	q := *h.as.LastAuthQuery.Load()
	if q.Get("prompt") != "consent" || q.Get("access_type") != "offline" || q.Get("audience") != "https://api.example.com" ||
		q.Get("scope") != "openid offline_access" || len(q.Get("nonce")) < 22 {
		t.Errorf("authorization request = %v", q)
	}
	for _, k := range reservedAuthParams {
		if _, err := New(Config{Issuer: "https://a.example", ClientID: "c", AppName: "a", AuthParams: url.Values{k: {"x"}}}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("AuthParams %q: New = %v, want ErrInvalidConfig", k, err)
		}
	}
}

// ID tokens are verified as OpenID Connect Core §3.1.3.7 says; a bad one
// fails the login and stores nothing.
func TestIDTokenVerification(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(jwt.MapClaims)
		want string
	}{
		{"nonce replayed", func(c jwt.MapClaims) { c["nonce"] = "another-login" }, "nonce"},
		{"nonce missing", func(c jwt.MapClaims) { delete(c, "nonce") }, "nonce"},
		{"other audience", func(c jwt.MapClaims) { c["aud"] = "other-client"; delete(c, "azp") }, "aud"},
		{"other azp", func(c jwt.MapClaims) { c["azp"] = "other-client" }, "azp"},
		{"several audiences, no azp", func(c jwt.MapClaims) { c["aud"] = []string{testClientID, "api"}; delete(c, "azp") }, "azp"},
		{"other issuer", func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }, "iss"},
		{"expired", func(c jwt.MapClaims) { c["exp"] = time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC).Unix() }, "expired"},
		{"no iat", func(c jwt.MapClaims) { delete(c, "iat") }, "iat"},
		{"issued in the future", func(c jwt.MapClaims) { c["iat"] = time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC).Unix() }, "before issued"},
		{"no subject", func(c jwt.MapClaims) { delete(c, "sub") }, "subject"},
		{"at_hash of another token", func(c jwt.MapClaims) { c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" }, "at_hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.cfg.Scopes = []string{"openid"}
			h.as.IDMint = tc.edit
			r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
			if !errors.Is(r.err, ErrInvalidToken) || !strings.Contains(r.err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrInvalidToken about %s", r.err, tc.want)
			}
			if _, err := h.store.Load(t.Context(), keyOf(h)); !errors.Is(err, tokenstore.ErrNotFound) {
				t.Errorf("something was stored: %v", err)
			}
			h.checkNoSecrets("error", r.err.Error())
		})
	}
	t.Run("missing", func(t *testing.T) {
		h := newHarness(t)
		h.cfg.Scopes = []string{"openid"}
		h.as.NoIDToken = true // a provider that ignores OpenID Connect
		r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
		if !errors.Is(r.err, ErrInvalidToken) || !strings.Contains(r.err.Error(), "no ID token") {
			t.Errorf("err = %v, want ErrInvalidToken: no ID token", r.err)
		}
	})
}

// The identity comes from the ID token; when it names no account, from
// userinfo; a refresh answer without a new refresh token or ID token keeps
// the previous ones.
func TestIDTokenIdentityAndRefresh(t *testing.T) {
	h := newHarness(t)
	h.cfg.Scopes = []string{"openid"}
	h.cfg.AccessTokenVerification = AccessTokenOpaque
	h.as.Userinfo = true
	h.as.IDMint = func(c jwt.MapClaims) { delete(c, "email") }
	sess := h.loginOK()
	first := h.stored()
	if sess.Subject != "user-1" || sess.Account != "user-1@userinfo.example" || first.IDToken == "" || !first.AccessTokenOpaque {
		t.Fatalf("session %+v, record id token %t opaque %t", sess, first.IDToken != "", first.AccessTokenOpaque)
	}
	if want := h.clock.Now().Add(time.Hour); !sess.Expiry.Equal(want) {
		t.Errorf("Expiry = %v, want %v (expires_in)", sess.Expiry, want)
	}

	// A refresh that brings a new ID token replaces it.
	h.clock.Add(50 * time.Minute)
	if _, err := h.client().Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	second := h.stored()
	if second.IDToken == first.IDToken || second.RefreshToken == first.RefreshToken || second.Subject != "user-1" ||
		second.Account != "user-1@userinfo.example" {
		t.Errorf("after a full refresh: new ID token %t, new refresh token %t, %q %q", second.IDToken != first.IDToken,
			second.RefreshToken != first.RefreshToken, second.Subject, second.Account)
	}

	// One without them keeps the previous ones; the kept refresh token
	// refreshes again.
	h.as.KeepRefresh, h.as.NoIDOnRefresh = true, true
	for i := range 2 {
		h.clock.Add(50 * time.Minute)
		tok, err := h.client().Token(t.Context())
		if err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		rec := h.stored()
		if rec.IDToken != second.IDToken || rec.RefreshToken != second.RefreshToken || rec.AccessToken.Reveal() != tok.AccessToken ||
			rec.Pending != nil || rec.Subject != "user-1" {
			t.Errorf("refresh %d: kept ID token %t, kept refresh token %t, pending %v", i, rec.IDToken == second.IDToken,
				rec.RefreshToken == second.RefreshToken, rec.Pending)
		}
	}
	if h.as.Refreshes.Load() != 3 {
		t.Errorf("%d refreshes, want 3", h.as.Refreshes.Load())
	}

	// A refreshed ID token for another user is refused (the old token
	// has expired, so Token fails).
	h.as.NoIDOnRefresh = false
	h.as.IDMint = func(c jwt.MapClaims) { c["sub"] = "user-2" }
	h.clock.Add(70 * time.Minute)
	if _, err := h.client().Token(t.Context()); !errors.Is(err, ErrInvalidToken) || !errors.Is(err, ErrRefreshFailed) {
		t.Errorf("a refreshed ID token for another subject: %v", err)
	}
	if rec := h.stored(); rec.Subject != "user-1" || rec.IDToken != second.IDToken {
		t.Errorf("after a refused refresh the login is %q", rec.Subject)
	}
}

// The access token rule: keyloop servers' JWTs are verified; without the
// metadata's say-so they are accepted as the token endpoint gave them;
// AccessTokenJWT and AccessTokenOpaque force either way.
func TestAccessTokenVerification(t *testing.T) {
	t.Run("auto verifies for a keyloop server", func(t *testing.T) {
		h := newHarness(t)
		h.as.Mint = func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }
		r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
		if !errors.Is(r.err, ErrInvalidToken) {
			t.Errorf("err = %v, want ErrInvalidToken", r.err)
		}
	})
	t.Run("auto accepts another provider's token as given", func(t *testing.T) {
		h := newHarness(t)
		h.as.MetaOverride = map[string]any{"access_token_issuer": nil}
		h.as.Mint = func(c jwt.MapClaims) { c["iss"] = "https://graph.example"; c["aud"] = "https://graph.example" }
		h.as.JWKSFail.Store(100) // its keys are not even fetched
		h.as.ExpiresIn = "1800"
		sess := h.loginOK()
		if rec := h.stored(); !rec.AccessTokenOpaque || !sess.Expiry.Equal(h.clock.Now().Add(30*time.Minute)) {
			t.Errorf("opaque %t, expiry %v", rec.AccessTokenOpaque, sess.Expiry)
		}
		// Its pages show no keyloop confirmation code, so none is printed.
		if strings.Contains(h.out.String(), "Confirmation code") {
			t.Errorf("a confirmation code was printed for a provider that shows none:\n%s", h.out)
		}
	})
	t.Run("auto verifies with a configured audience", func(t *testing.T) {
		h := newHarness(t)
		h.as.MetaOverride = map[string]any{"access_token_issuer": nil}
		h.as.Audience = "https://api.example.com"
		h.cfg.Audience = "https://api.example.com"
		h.as.Mint = func(c jwt.MapClaims) { c["aud"] = "https://other.example.com" }
		r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
		if !errors.Is(r.err, ErrInvalidToken) {
			t.Errorf("err = %v, want ErrInvalidToken", r.err)
		}
	})
	t.Run("JWT mode refuses an opaque token", func(t *testing.T) {
		h := newHarness(t)
		h.as.MetaOverride = map[string]any{"access_token_issuer": nil}
		h.as.Mint = func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }
		h.cfg.AccessTokenVerification = AccessTokenJWT
		r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
		if !errors.Is(r.err, ErrInvalidToken) {
			t.Errorf("err = %v, want ErrInvalidToken", r.err)
		}
	})
	t.Run("opaque mode does not verify", func(t *testing.T) {
		h := newHarness(t)
		h.as.Mint = func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }
		h.cfg.AccessTokenVerification = AccessTokenOpaque
		h.loginOK()
	})
	if _, err := New(Config{Issuer: "https://a.example", ClientID: "c", AppName: "a", AccessTokenVerification: 7}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("an unknown mode: %v", err)
	}
}

// A login stored before ID tokens were kept has no issuer key set; when its
// server starts adding ID tokens to refresh answers, the refresh works and
// the ID token, which nothing can verify, is not kept.
func TestRefreshOfOlderRecordWithIDToken(t *testing.T) {
	h := newHarness(t)
	h.cfg.Scopes = []string{"openid"}
	h.loginOK()
	old := h.stored()
	old.IssuerJWKSURI, old.IDToken = "", "" // as an older release wrote it
	b, err := tokenstore.MarshalRecord(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.Save(t.Context(), keyOf(h), b); err != nil {
		t.Fatal(err)
	}
	h.clock.Add(50 * time.Minute)
	if _, err := h.client().Token(t.Context()); err != nil || h.as.Refreshes.Load() != 1 {
		t.Fatalf("refresh: %v (%d refreshes)", err, h.as.Refreshes.Load())
	}
	if rec := h.stored(); rec.IDToken != "" || rec.Subject != "user-1" || rec.Pending != nil {
		t.Errorf("after the refresh: ID token kept %t, subject %q, pending %v", rec.IDToken != "", rec.Subject, rec.Pending)
	}
}

// GitHub answers token endpoint errors with 200 OK (JSON, or form-encoded
// without Accept: application/json): a refused refresh token must end the
// login as refused, not be reported as a malformed answer.
func TestTokenErrorWith200(t *testing.T) {
	for _, form := range []bool{false, true} {
		t.Run(map[bool]string{false: "JSON", true: "form-encoded"}[form], func(t *testing.T) {
			h := newHarness(t)
			h.as.MetadataPaths = []string{}
			h.as.ClientSecret, h.as.ClientAuth = "gh-secret", "client_secret_post"
			h.as.FormAnswer, h.as.ErrorsAs200 = form, true
			h.as.RefreshRefusal = "The refresh token passed is incorrect or expired."
			h.cfg.Endpoints = &Endpoints{Authorization: h.as.Issuer + "/authorize", Token: h.as.Issuer + "/token"}
			h.cfg.ClientSecret = "gh-secret"
			h.loginOK()
			h.as.mu.Lock()
			clear(h.as.refreshes) // the provider no longer knows the refresh token
			h.as.mu.Unlock()
			h.clock.Add(70 * time.Minute) // the access token expired
			_, err := h.client().Token(t.Context())
			if !errors.Is(err, ErrLoginEnded) || !strings.Contains(Message(err), "The login at "+h.as.Issuer+" has ended: ") {
				t.Fatalf("err = %v (%s), want the login ended by invalid_grant", err, Message(err))
			}
			if rec := h.stored(); rec.Ended == nil || rec.Ended.Description != h.as.RefreshRefusal || rec.RefreshToken != "" {
				t.Errorf("stored = %+v, want a login ended with the provider's description", rec)
			}
		})
	}
}

// Google's ID tokens may name the issuer without its scheme; that form is
// accepted for Google only, and an issuer is otherwise compared exactly.
func TestIDTokenGoogleIssuer(t *testing.T) {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c, err := New(Config{Issuer: googleIssuer, ClientID: "cli", AppName: "mytool", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	kf := func(*jwt.Token) (any, error) { return key.Public(), nil }
	for _, tc := range []struct {
		iss, issuer string
		ok          bool
	}{
		{"accounts.google.com", googleIssuer, true},
		{googleIssuer, googleIssuer, true},
		{"accounts.google.com/", googleIssuer, false},
		{"example.com", "https://example.com", false},
		{"https://example.com/", "https://example.com", false},
	} {
		raw, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": tc.iss, "sub": "1", "aud": "cli",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.verifyIDToken(kf, raw, tc.issuer, "cli", "", ""); (err == nil) != tc.ok {
			t.Errorf("iss %q for issuer %q: %v, want ok %t", tc.iss, tc.issuer, err, tc.ok)
		}
	}
}
