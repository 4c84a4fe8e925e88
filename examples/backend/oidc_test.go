package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/server/clerk/clerktest"
)

// A standard OpenID Connect relying party — coreos/go-oidc with x/oauth2,
// unmodified, the stack kubelogin is built on — logs in to examples/backend
// knowing only its URL and the client ID, through a real Chromium:
// discovery, code flow with PKCE and a nonce, the ID token verified against
// jwks_uri (signature, iss, aud, exp, nonce, at_hash), userinfo, the access
// token at /api/me, and a refresh that brings a new ID token. After a
// restart of the backend the ID tokens still verify (their key is kept
// under -data). In dev mode and in Clerk mode (access tokens from Clerk, ID
// tokens from the backend's own key), against the local fake of Clerk.
func TestOpenIDConnectClientThroughChromium(t *testing.T) {
	t.Run("dev", func(t *testing.T) { oidcClientThroughChromium(t, false) })
	t.Run("clerk", func(t *testing.T) {
		fake := clerktest.New(t, clerktest.Options{})
		t.Setenv("CLERK_SECRET_KEY", fake.SecretKey)
		t.Setenv("CLERK_PUBLISHABLE_KEY", fake.PublishableKey)
		t.Setenv("CLERK_FRONTEND_API_URL", fake.FrontendAPIURL)
		t.Setenv("CLERK_API_URL", fake.APIURL)
		t.Setenv("CLERK_WEBHOOK_SECRET", "")
		t.Setenv("CLERK_JWT_TEMPLATE", "")
		t.Setenv("CLERK_AUDIENCE", "")
		oidcClientThroughChromium(t, true)
	})
}

func oidcClientThroughChromium(t *testing.T, clerkMode bool) {
	bctx := testenv.Browser(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	data := t.TempDir()
	issuer, stop := startRun(t, "-addr", addr, "-data", data)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute) // generous: Chromium on a loaded machine
	defer cancel()

	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("OpenID Connect discovery: %v", err)
	}
	callbacks := make(chan url.Values, 1)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case callbacks <- r.URL.Query():
		default:
		}
		io.WriteString(w, "signed in; you may close this window")
	}))
	defer cb.Close()
	_, port, _ := net.SplitHostPort(cb.Listener.Addr().String())
	conf := &oauth2.Config{
		ClientID:    "mytool",
		Endpoint:    provider.Endpoint(),
		RedirectURL: "http://localhost:" + port + "/", // as kubelogin registers it
		Scopes:      []string{oidc.ScopeOpenID, "email", "profile", oidc.ScopeOfflineAccess},
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: "mytool"})
	state, nonce, pkce := testenv.RandomString(16), testenv.RandomString(16), oauth2.GenerateVerifier()

	step, cancelStep := context.WithTimeout(bctx, 60*time.Second)
	defer cancelStep()
	err = chromedp.Do(step,
		chromedp.Navigate(conf.AuthCodeURL(state, oauth2.S256ChallengeOption(pkce), oidc.Nonce(nonce))),
		chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), "grace@example.com"),
		chromedp.Click(`//button[normalize-space()="Sign in"]`),
		chromedp.WaitVisible(`//button[normalize-space()="Authorize"]`),
		chromedp.Click(`//button[normalize-space()="Authorize"]`),
	)
	if err != nil {
		t.Fatalf("sign-in and consent in Chromium: %v", err)
	}
	var q url.Values
	select {
	case q = <-callbacks:
	case <-step.Done():
		t.Fatal("the browser never reached the relying party's callback")
	}
	if q.Get("state") != state || q.Get("iss") != issuer || q.Get("code") == "" {
		t.Fatalf("callback state ok=%t iss=%q code=%t error=%q", q.Get("state") == state, q.Get("iss"), q.Get("code") != "", q.Get("error"))
	}
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(pkce))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		t.Fatal("the token response has no id_token")
	}
	id, err := verifier.Verify(ctx, rawID)
	if err != nil {
		t.Fatalf("go-oidc refused the ID token: %v", err)
	}
	if id.Nonce != nonce {
		t.Fatal("the ID token does not carry the request's nonce")
	}
	if err := id.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Fatalf("at_hash: %v", err)
	}
	var claims struct {
		Email         string `json:"email"`
		EmailVerified bool   `json:"email_verified"`
		AZP           string `json:"azp"`
		AuthTime      int64  `json:"auth_time"`
	}
	id.Claims(&claims)
	if id.Issuer != issuer || !slices.Equal(id.Audience, []string{"mytool"}) || claims.Email != "grace@example.com" ||
		(claims.EmailVerified && !clerkMode) || claims.AZP != "mytool" || claims.AuthTime == 0 {
		t.Fatalf("ID token: iss %q aud %v claims %+v (dev mode verifies no e-mail address)", id.Issuer, id.Audience, claims)
	}

	ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	if ui.Subject != id.Subject || ui.Email != "grace@example.com" {
		t.Fatalf("userinfo sub %q email %q; ID token sub %q", ui.Subject, ui.Email, id.Subject)
	}
	if st, me := apiMe(t, issuer, tok.AccessToken); st != 200 || me["sub"] != id.Subject {
		t.Fatalf("/api/me with the access token: %d %v", st, me)
	}
	if st, _ := apiMe(t, issuer, rawID); st != 401 {
		t.Fatalf("/api/me took the ID token as an access token: %d", st)
	}

	stale := *tok
	stale.Expiry = time.Now().Add(-time.Minute)
	fresh, err := conf.TokenSource(ctx, &stale).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	rawID2, _ := fresh.Extra("id_token").(string)
	id2, err := verifier.Verify(ctx, rawID2)
	if err != nil {
		t.Fatalf("the refreshed ID token: %v", err)
	}
	if err := id2.VerifyAccessToken(fresh.AccessToken); err != nil || id2.Subject != id.Subject || id2.Nonce != "" || rawID2 == rawID {
		t.Fatalf("refreshed ID token: at_hash %v, sub %q, nonce %q", err, id2.Subject, id2.Nonce)
	}

	// A restart keeps the ID-token key: a relying party that discovers the
	// backend afresh still verifies the ID token issued before.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	startRun(t, "-addr", addr, "-data", data)
	provider2, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider2.Verifier(&oidc.Config{ClientID: "mytool"}).Verify(ctx, rawID2); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
}

// apiMe calls GET /api/me with tok.
func apiMe(t *testing.T, issuer, tok string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", issuer+"/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}
