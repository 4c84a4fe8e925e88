package clilogin_test

// The client against an independent OpenID Provider: zitadel/oidc's op
// package with its example storage (internal/oidcprovider), started on
// loopback, signed in to through headless Chromium. Nothing of keyloop's
// server is involved: the provider publishes only OpenID Connect
// discovery, signs ID tokens with RS256, and issues opaque or JWT access
// tokens as its client registration says.

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/zitadel/oidc/v3/example/server/storage"

	"github.com/keyloop/keyloop/clilogin"
	"github.com/keyloop/keyloop/internal/oidcprovider"
	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/tokenstore"
)

// signIn returns an OpenBrowser that signs in at the provider's page in a
// Chromium tab; the tab then follows the redirects to the CLI's loopback
// listener and shows its outcome page. wait returns once the tab is done.
// Failures are reported through t.
func signIn(t *testing.T, bctx context.Context, z *oidcprovider.Provider) (open func(context.Context, string) error, wait func()) {
	done := make(chan struct{})
	var started atomic.Bool
	open = func(_ context.Context, authURL string) error {
		if started.Swap(true) {
			return errors.New("a second browser open")
		}
		go func() {
			defer close(done)
			tab, closeTab := chromedp.NewContext(bctx)
			defer closeTab()
			step, cancel := context.WithTimeout(tab, 60*time.Second)
			defer cancel()
			if err := z.SignIn(step, authURL); err != nil {
				t.Error(err)
			}
		}()
		return nil
	}
	return open, func() {
		if started.Load() {
			<-done
		}
	}
}

// offsetClock is the real time plus an offset the test moves forward, so
// the client sees a token as due for refresh while the provider, on the
// real clock, still issues fresh ones.
type offsetClock struct{ d atomic.Int64 }

func (c *offsetClock) Now() time.Time      { return time.Now().Add(time.Duration(c.d.Load())) }
func (c *offsetClock) Add(d time.Duration) { c.d.Add(int64(d)) }

func TestInteropZitadel(t *testing.T) {
	bctx := testenv.Browser(t)
	for _, tc := range []struct {
		name   string
		client func(t *testing.T) (*storage.Client, clilogin.Config)
		jwt    bool
		slash  bool // the provider publishes its issuer with a terminating "/"
	}{
		{"public client, opaque access tokens", func(*testing.T) (*storage.Client, clilogin.Config) {
			return storage.NativeClient("cli-opaque", "http://127.0.0.1/callback"), clilogin.Config{}
		}, false, false},
		{"public client, JWT access tokens for this client, localhost", func(*testing.T) (*storage.Client, clilogin.Config) {
			// Registered as http://localhost/callback, any port (RFC 8252
			// §7.3), as Entra ID wants it; the access tokens are JWTs
			// whose "aud" is the client ID, so Audience makes them
			// verified.
			return storage.NativeClient("cli-jwt", "http://localhost/callback"),
				clilogin.Config{RedirectURL: "http://localhost/callback", Audience: "cli-jwt"}
		}, true, false},
		{"confidential client, client_secret_basic, fixed port", func(t *testing.T) (*storage.Client, clilogin.Config) {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			redirect := "http://" + ln.Addr().String() + "/oauth/callback"
			ln.Close()
			return storage.WebClient("cli-secret", "s3cr3t-value", redirect),
				clilogin.Config{RedirectURL: redirect, ClientSecret: "s3cr3t-value"}
		}, false, false},
		{"issuer published with a terminating slash, JWT access tokens", func(*testing.T) (*storage.Client, clilogin.Config) {
			// The metadata, the callback and every token name
			// "http://127.0.0.1:PORT/"; the configuration has no "/".
			return storage.NativeClient("cli-slash", "http://127.0.0.1/callback"), clilogin.Config{Audience: "cli-slash"}
		}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, cfg := tc.client(t)
			var jwt []string
			if tc.jwt {
				jwt = []string{sc.GetID()}
			}
			z := oidcprovider.Start(t, oidcprovider.Config{Clients: []*storage.Client{sc}, JWT: jwt, Slash: tc.slash})
			clock := &offsetClock{}
			out := &testenv.SyncBuffer{}
			store := tokenstore.NewMemory()
			// The issuer as a person types it: without the "/".
			cfg.Issuer, cfg.ClientID, cfg.AppName = strings.TrimSuffix(z.Issuer, "/"), sc.GetID(), "mytool"
			cfg.Scopes = []string{"openid", "profile", "email", "offline_access"}
			cfg.Store, cfg.Stdout, cfg.Now = store, out, clock.Now
			var browserDone func()
			cfg.OpenBrowser, browserDone = signIn(t, bctx, z)
			defer browserDone() // also when the test fails early
			c, err := clilogin.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			sess, err := c.Login(ctx)
			if err != nil {
				t.Fatalf("Login: %v\n%s", err, out)
			}
			// The ID token names the user; its e-mail comes from userinfo
			// (this provider keeps it out of the ID token).
			if sess.Subject != z.Subject || sess.Account != z.Email || sess.Issuer != z.Issuer || !sess.CanRefresh {
				t.Errorf("session = %+v", sess)
			}
			// The token endpoint's expires_in (5 minutes), or the JWT's exp.
			if left := time.Until(sess.Expiry); left < 3*time.Minute || left > 6*time.Minute {
				t.Errorf("expiry in %s, want about 5 minutes", left)
			}
			key := tokenstore.Key("", cfg.Issuer, sc.GetID())
			rec := load(t, store, key)
			if rec.AccessTokenOpaque == tc.jwt || rec.IDToken == "" || rec.RefreshToken == "" {
				t.Errorf("stored: access token opaque %t (JWT client %t), ID token %t, refresh token %t",
					rec.AccessTokenOpaque, tc.jwt, rec.IDToken != "", rec.RefreshToken != "")
			}
			if want := map[bool]string{false: "", true: "client_secret_basic"}[cfg.ClientSecret != ""]; rec.TokenAuth != want {
				t.Errorf("client authentication %q, want %q", rec.TokenAuth, want)
			}
			checkUserinfo(t, z, rec.AccessToken.Reveal(), http.StatusOK)

			// Four minutes on, in the last quarter of the token's life:
			// Token refreshes it, and the provider's answer (new access,
			// refresh and ID tokens) is verified and kept.
			clock.Add(4 * time.Minute)
			tok, err := c.Token(ctx)
			if err != nil {
				t.Fatalf("Token (refresh): %v", err)
			}
			after := load(t, store, key)
			if tok.AccessToken == rec.AccessToken.Reveal() || after.RefreshToken == rec.RefreshToken ||
				after.IDToken == rec.IDToken || after.Subject != z.Subject || after.Pending != nil {
				t.Errorf("after the refresh: new access token %t, new refresh token %t, new ID token %t, subject %q, pending %v",
					tok.AccessToken != rec.AccessToken.Reveal(), after.RefreshToken != rec.RefreshToken,
					after.IDToken != rec.IDToken, after.Subject, after.Pending)
			}
			checkUserinfo(t, z, tok.AccessToken, http.StatusOK)

			// Logout revokes the refresh token at the provider, which
			// also ends its access token (zitadel answers 403 for it).
			if err := c.Logout(ctx); err != nil {
				t.Fatalf("Logout: %v", err)
			}
			checkUserinfo(t, z, tok.AccessToken, http.StatusForbidden)
			if _, err := c.Status(ctx); !errors.Is(err, clilogin.ErrNotLoggedIn) {
				t.Errorf("Status after logout: %v", err)
			}
			if strings.Contains(out.String(), "Confirmation code") {
				t.Errorf("a keyloop confirmation code was printed, which this provider does not show:\n%s", out)
			}
			if cfg.ClientSecret != "" && strings.Contains(out.String(), cfg.ClientSecret) {
				t.Error("the client secret was printed")
			}
		})
	}
}

func load(t *testing.T, st tokenstore.Store, key string) *tokenstore.Record {
	t.Helper()
	b, err := st.Load(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := tokenstore.UnmarshalRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// checkUserinfo asks the provider's userinfo endpoint about an access token
// and checks the HTTP status.
func checkUserinfo(t *testing.T, z *oidcprovider.Provider, accessToken string, want int) {
	t.Helper()
	status, body, err := z.Userinfo(t.Context(), accessToken)
	if err != nil {
		t.Fatal(err)
	}
	if status != want || want == http.StatusOK && body["sub"] != z.Subject {
		t.Errorf("userinfo answered %d %v, want %d", status, body, want)
	}
}
