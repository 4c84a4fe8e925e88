package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/clerk/clerktest"
)

// An unmodified third-party device client (x/oauth2's DeviceAuth and
// DeviceAccessToken) logs in to examples/backend while Chromium types the
// code on the verification page, signs in and approves — in dev mode and in
// Clerk mode (the fake Clerk's sign-in on the verification route) — and a
// denial reaches the client as access_denied.
func TestDeviceLoginThirdPartyClientChromium(t *testing.T) {
	for _, mode := range []string{"dev", "clerk"} {
		t.Run(mode, func(t *testing.T) {
			bctx := testenv.Browser(t)
			var fake *clerktest.Fake
			if mode == "clerk" {
				fake = clerktest.New(t, clerktest.Options{})
				t.Setenv("CLERK_SECRET_KEY", fake.SecretKey)
				t.Setenv("CLERK_PUBLISHABLE_KEY", fake.PublishableKey)
				t.Setenv("CLERK_FRONTEND_API_URL", fake.FrontendAPIURL)
				t.Setenv("CLERK_API_URL", fake.APIURL)
				t.Setenv("CLERK_WEBHOOK_SECRET", "")
				t.Setenv("CLERK_JWT_TEMPLATE", "")
				t.Setenv("CLERK_AUDIENCE", "")
			} else {
				t.Setenv("CLERK_SECRET_KEY", "")
			}
			issuer, _ := startRun(t, "-addr", "127.0.0.1:0", "-data", t.TempDir())
			conf := deviceConfig(t, issuer)

			// Approve: the user types the code their own way.
			da, tokc := startDeviceLogin(t, conf)
			page := chromeDevice(t, bctx, da.VerificationURI, strings.ToLower(strings.Replace(da.UserCode, "-", " ", 1)), "ada@example.com", "Authorize",
				func(consent string) {
					if !strings.Contains(consent, da.UserCode) || !strings.Contains(consent, "mytool") || !strings.Contains(consent, "ada@example.com") {
						t.Errorf("consent page does not show the code, the CLI and the account:\n%s", consent)
					}
				})
			if !strings.Contains(page, "Device signed in") {
				t.Fatalf("after Authorize:\n%s", page)
			}
			r := <-tokc
			if r.err != nil {
				t.Fatalf("DeviceAccessToken: %v", r.err)
			}
			req, _ := http.NewRequest("GET", issuer+"/api/me", nil)
			r.tok.SetAuthHeader(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var me map[string]any
			json.NewDecoder(resp.Body).Decode(&me)
			resp.Body.Close()
			if resp.StatusCode != 200 || me["email"] != "ada@example.com" && fake == nil {
				t.Fatalf("/api/me with the device token: %s %v", resp.Status, me)
			}
			if fake != nil {
				if u, ok := fake.UserByEmail("ada@example.com"); !ok || me["sub"] != u.ID {
					t.Fatalf("/api/me says %v; want the Clerk user of ada@example.com", me)
				}
			}
			refresh(t, conf, r.tok)

			// Deny: the client learns access_denied. Chromium is signed in
			// by now, so it goes straight to consent.
			da, tokc = startDeviceLogin(t, conf)
			page = chromeDevice(t, bctx, da.VerificationURIComplete, "", "", "Deny", nil)
			if !strings.Contains(page, "Request denied") {
				t.Fatalf("after Deny:\n%s", page)
			}
			r = <-tokc
			var re *oauth2.RetrieveError
			if !errors.As(r.err, &re) || re.ErrorCode != "access_denied" {
				t.Fatalf("DeviceAccessToken after a denial: %v", r.err)
			}
		})
	}
}

// deviceConfig is an x/oauth2 config made from the backend's metadata only.
func deviceConfig(t *testing.T, issuer string) *oauth2.Config {
	t.Helper()
	resp, err := http.Get(issuer + server.MetadataPath)
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	dev, _ := md["device_authorization_endpoint"].(string)
	tokenURL, _ := md["token_endpoint"].(string)
	if dev == "" || tokenURL == "" {
		t.Fatalf("metadata without a device authorization endpoint: %v", md)
	}
	return &oauth2.Config{ClientID: "mytool", Endpoint: oauth2.Endpoint{DeviceAuthURL: dev, TokenURL: tokenURL}}
}

type tokenResult struct {
	tok *oauth2.Token
	err error
}

// startDeviceLogin asks for codes and starts polling in the background.
func startDeviceLogin(t *testing.T, conf *oauth2.Config) (*oauth2.DeviceAuthResponse, <-chan tokenResult) {
	t.Helper()
	da, err := conf.DeviceAuth(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan tokenResult, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	go func() {
		defer cancel()
		tok, err := conf.DeviceAccessToken(ctx, da)
		ch <- tokenResult{tok, err}
	}()
	return da, ch
}

// chromeDevice opens u in Chromium, types typed into the code field (when
// not empty), signs in as email on the dev or fake Clerk sign-in page when
// one shows, checks the consent page with onConsent, clicks button, and
// returns the text of the page the browser ends on.
func chromeDevice(t *testing.T, bctx context.Context, u, typed, email, button string, onConsent func(string)) string {
	t.Helper()
	step, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	fail := func(what string, err error) {
		t.Helper()
		page, _ := chromedp.Run(step, chromedp.Text(chromedp.CSS(`body`)))
		t.Fatalf("%s in Chromium: %v; page:\n%s", what, err, page)
	}
	if err := chromedp.Do(step, chromedp.Navigate(u)); err != nil {
		fail("open "+u, err)
	}
	if typed != "" {
		if err := chromedp.Do(step,
			chromedp.WaitVisible(chromedp.CSS(`input[name=user_code]`)),
			chromedp.SendKeys(chromedp.CSS(`input[name=user_code]`), typed),
			chromedp.Click(`//button[normalize-space()="Continue"]`),
		); err != nil {
			fail("enter the code", err)
		}
	}
	authorize := `//button[normalize-space()="Authorize"]`
	if email != "" {
		if err := chromedp.Do(step,
			chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)),
			chromedp.SendKeys(chromedp.CSS(`input[name=email]`), email),
			chromedp.Click(`//button[normalize-space()="Sign in"]`),
		); err != nil {
			fail("sign in", err)
		}
	}
	if err := chromedp.Do(step, chromedp.WaitVisible(authorize)); err != nil {
		fail("reach the consent page", err)
	}
	if onConsent != nil {
		consent, _ := chromedp.Run(step, chromedp.Text(chromedp.CSS(`body`)))
		onConsent(consent)
	}
	if err := chromedp.Do(step,
		chromedp.Click(`//button[normalize-space()="`+button+`"]`),
		chromedp.WaitVisible(`//h1[normalize-space()="Device signed in" or normalize-space()="Request denied"]`),
	); err != nil {
		fail("click "+button, err)
	}
	page, err := chromedp.Run(step, chromedp.Text(chromedp.CSS(`body`)))
	if err != nil {
		t.Fatal(err)
	}
	return page
}
