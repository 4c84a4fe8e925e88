// Package oidcprovider starts an independent OpenID Provider for tests:
// zitadel/oidc's op package with its example storage
// (github.com/zitadel/oidc/v3, a test-only dependency) on a loopback port,
// with a username and password sign-in page that a headless Chromium fills
// in. Nothing of keyloop's server is involved: the provider publishes only
// OpenID Connect discovery, signs ID tokens with RS256, issues opaque or JWT
// access tokens as each client's registration says, rotates refresh tokens
// and revokes them (RFC 7009).
//
// Only tests import it (clilogin's interop tests, examples/mytool's
// end-to-end test).
package oidcprovider

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// TB is the part of testing.TB Start uses.
type TB interface {
	Helper()
	Fatal(args ...any)
	Cleanup(func())
}

// Config describes the provider to start.
type Config struct {
	// Clients are the registered clients, made with the example storage's
	// constructors (storage.NativeClient for a public CLI with a loopback
	// redirect URI, storage.WebClient for one with a secret).
	Clients []*storage.Client
	// JWT names the clients whose access tokens are JWTs
	// (op.AccessTokenTypeJWT, "aud" the client ID); the others get opaque
	// ones.
	JWT []string
	// Slash makes the provider publish its issuer with a terminating "/",
	// as Auth0 does.
	Slash bool
	// AccessTokenTTL, when set, is the lifetime the provider gives access
	// tokens (expires_in, and a JWT's "exp"), so a test sees one expire.
	// Zero means the example storage's 5 minutes. The provider's own
	// record of an opaque token keeps the storage's 5 minutes: userinfo
	// accepts it until then, or until a refresh or a revocation ends it.
	AccessTokenTTL time.Duration
}

// Provider is a running OpenID Provider. It stops when the test ends.
type Provider struct {
	// Issuer is the issuer URL, as the provider publishes it
	// ("http://127.0.0.1:PORT", with a terminating "/" under
	// Config.Slash).
	Issuer string
	// Username and Password sign in the example storage's one user.
	Username, Password string
	// Subject is that user's "sub"; Email its e-mail address (in userinfo
	// with the "email" scope, not in the ID token).
	Subject, Email string
}

// store is the example storage with Config's changes: JWT access tokens
// for some clients, and shorter-lived access tokens.
type store struct {
	*storage.Storage
	jwt map[string]bool
	ttl time.Duration
}

func (s store) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err == nil && s.jwt[id] {
		return jwtClient{c}, nil
	}
	return c, err
}

// CreateAccessToken is the example storage's, with Config.AccessTokenTTL.
func (s store) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	id, exp, err := s.Storage.CreateAccessToken(ctx, req)
	return id, s.expiry(exp), err
}

// CreateAccessAndRefreshTokens is the example storage's, with
// Config.AccessTokenTTL.
func (s store) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	id, refresh, exp, err := s.Storage.CreateAccessAndRefreshTokens(ctx, req, current)
	return id, refresh, s.expiry(exp), err
}

func (s store) expiry(exp time.Time) time.Time {
	if s.ttl > 0 && !exp.IsZero() {
		return time.Now().Add(s.ttl)
	}
	return exp
}

type jwtClient struct{ op.Client }

func (jwtClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }

// loginPage is the provider's own sign-in page (the example server's
// username/password form, reduced).
var loginPage = template.Must(template.New("login").Parse(`<!doctype html><html lang="en"><title>Sign in</title>
<form method="POST" action="/login/username"><input type="hidden" name="id" value="{{.ID}}">
<label>Username <input id="username" name="username"></label>
<label>Password <input id="password" name="password" type="password"></label>
<p>{{.Error}}</p><button type="submit">Sign in</button></form>`))

// Start starts the provider on a kernel-chosen loopback port.
func Start(t TB, cfg Config) *Provider {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	if cfg.Slash {
		issuer += "/"
	}
	clients := map[string]*storage.Client{}
	for _, c := range cfg.Clients {
		clients[c.GetID()] = c
	}
	st := store{Storage: storage.NewStorageWithClients(storage.NewUserStore(issuer), clients), jwt: map[string]bool{}, ttl: cfg.AccessTokenTTL}
	for _, id := range cfg.JWT {
		st.jwt[id] = true
	}
	var key [32]byte
	_, _ = rand.Read(key[:])
	provider, err := op.NewProvider(&op.Config{
		CryptoKey: key, CodeMethodS256: true, AuthMethodPost: true, GrantTypeRefreshToken: true,
		SupportedUILocales: []language.Tag{language.English},
	}, st, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	callback := op.AuthCallbackURL(provider)
	mux := http.NewServeMux()
	mux.Handle("/", provider)
	mux.HandleFunc("GET /login/username", func(w http.ResponseWriter, r *http.Request) {
		_ = loginPage.Execute(w, map[string]string{"ID": r.FormValue("authRequestID")})
	})
	mux.Handle("POST /login/username", op.NewIssuerInterceptor(provider.IssuerFromRequest).HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			id := r.FormValue("id")
			if err := st.CheckUsernamePassword(r.FormValue("username"), r.FormValue("password"), id); err != nil {
				_ = loginPage.Execute(w, map[string]string{"ID": id, "Error": err.Error()})
				return
			}
			http.Redirect(w, r, callback(r.Context(), id), http.StatusFound)
		}))
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(srv.Close)
	return &Provider{
		Issuer: issuer, Username: "test-user@127.0.0.1", Password: "verysecure",
		Subject: "id1", Email: "test-user@zitadel.ch",
	}
}

// SignIn opens authURL (an authorization request to this provider) in the
// Chromium tab, signs in as the user, and returns once the page the
// redirects end on shows a heading (a CLI's outcome page). Give tab a
// timeout. The error describes where the tab stopped and what it showed.
func (p *Provider) SignIn(tab context.Context, authURL string) error {
	err := chromedp.Do(tab, chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), p.Username),
		chromedp.SendKeys(chromedp.CSS(`#password`), p.Password),
		chromedp.Click(`//button[normalize-space()="Sign in"]`),
		chromedp.WaitVisible(chromedp.CSS(`h1`)))
	if err != nil {
		look, cancel := context.WithTimeout(context.WithoutCancel(tab), 5*time.Second)
		defer cancel()
		loc, _ := chromedp.Run(look, chromedp.Location())
		page, _ := chromedp.Run(look, chromedp.Text(chromedp.CSS(`body`)))
		return fmt.Errorf("sign-in at %s in Chromium: %w; at %s, page:\n%s", p.Issuer, err, loc, page)
	}
	return nil
}

// Userinfo asks the provider's userinfo endpoint about accessToken and
// returns the HTTP status and the JSON body (nil when there is none).
func (p *Provider) Userinfo(ctx context.Context, accessToken string) (int, map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(p.Issuer, "/")+"/userinfo", nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body, nil
}
