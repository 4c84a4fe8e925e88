package main

// mytool, unchanged, against an OpenID Provider that is not a keyloop
// server: zitadel/oidc's op (internal/oidcprovider) on loopback, with
// "mytool" registered as a native, public client with a loopback redirect
// URI. The real binary logs in through headless Chromium, keeps the login
// in the real (private) keychain, refreshes it after its access token
// expired, and revokes it at logout.

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/zitadel/oidc/v3/example/server/storage"

	"github.com/keyloop/keyloop/internal/oidcprovider"
	"github.com/keyloop/keyloop/internal/testenv"
)

func TestLoginToOpenIDProvider(t *testing.T) {
	testenv.RequireKeychain(t)
	bctx := testenv.Browser(t)
	const ttl = 5 * time.Second // the access tokens' lifetime, so one expires during the test
	p := oidcprovider.Start(t, oidcprovider.Config{
		Clients:        []*storage.Client{storage.NativeClient("mytool", "http://127.0.0.1/callback")},
		AccessTokenTTL: ttl,
	})
	m := newMytool(t, p.Issuer)
	before := keychainItems(t, p.Issuer)

	// mytool login --server ISSUER: the browser signs in at the provider.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := m.command(ctx, "login", "--timeout", "80s")
	var errBuf testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = io.Discard, &errBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	authURL := m.openedURL(t)
	u, err := url.Parse(authURL)
	if err != nil || !strings.HasPrefix(authURL, p.Issuer) {
		t.Fatalf("mytool opened %q, not the provider's authorization endpoint", authURL)
	}
	// The default scopes for an OpenID Provider that lists them.
	if q := u.Query(); q.Get("scope") != "openid profile email offline_access" || q.Get("nonce") == "" ||
		q.Get("code_challenge_method") != "S256" || q.Get("client_id") != "mytool" {
		t.Errorf("authorization request: scope %q, nonce %t, code_challenge_method %q, client_id %q",
			q.Get("scope"), q.Has("nonce"), q.Get("code_challenge_method"), q.Get("client_id"))
	}
	tab, closeTab := chromedp.NewContext(bctx)
	defer closeTab()
	step, cancelStep := context.WithTimeout(tab, 60*time.Second)
	defer cancelStep()
	if err := p.SignIn(step, authURL); err != nil {
		t.Errorf("%v\nmytool stderr:\n%s", err, errBuf.String())
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mytool login: %v; stderr:\n%s", err, errBuf.String())
		}
	case <-ctx.Done():
		t.Fatalf("mytool login did not finish; stderr:\n%s", errBuf.String())
	}
	page, _ := chromedp.Run(step, chromedp.Text(chromedp.CSS(`body`)))
	if !strings.Contains(strings.ToLower(page), "signed in") {
		t.Errorf("the browser did not end on mytool's success page:\n%s", page)
	}
	if strings.Contains(errBuf.String(), "Confirmation code") {
		t.Errorf("login printed a keyloop confirmation code, which this provider does not show:\n%s", errBuf.String())
	}
	if got := keychainItems(t, p.Issuer); got != before+1 {
		t.Errorf("keychain items for this login: %d before, %d after; want one more", before, got)
	}

	// status names the user (the e-mail from userinfo) and the keychain.
	out, errOut, code := m.run(t, "status")
	if code != 0 || !strings.Contains(out, p.Email) || !strings.Contains(out, "keychain") {
		t.Errorf("status exit %d, stdout:\n%s\nstderr:\n%s\nwant %s and \"keychain\"", code, out, errOut, p.Email)
	}

	// token prints the provider's (opaque) access token, which its
	// userinfo endpoint accepts.
	token := func() string {
		t.Helper()
		out, errOut, code := m.run(t, "token")
		tok := strings.TrimSpace(out)
		if code != 0 || tok == "" || strings.Count(out, "\n") != 1 {
			t.Fatalf("token exit %d, stdout %q, stderr:\n%s", code, out, errOut)
		}
		if status, body, err := p.Userinfo(t.Context(), tok); err != nil || status != http.StatusOK || body["sub"] != p.Subject {
			t.Fatalf("userinfo with the printed token: %d %v %v", status, body, err)
		}
		return tok
	}
	first := token()
	if strings.Contains(errBuf.String(), first) {
		t.Error("login printed the access token")
	}
	// mytool api sends it as a bearer token.
	if out, errOut, code := m.run(t, "api", "/userinfo"); code != 0 || !strings.Contains(out, p.Email) {
		t.Errorf("api /userinfo exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Once that token has expired, token refreshes it: a new one, and the
	// provider ended the old one when it rotated the refresh token.
	time.Sleep(ttl + time.Second)
	second := token()
	if second == first {
		t.Fatal("token printed the expired access token again; want a refreshed one")
	}
	if status, _, err := p.Userinfo(t.Context(), first); err != nil || status == http.StatusOK {
		t.Errorf("userinfo with the token the refresh replaced: %d %v; want it refused", status, err)
	}
	if out, _, code := m.run(t, "status"); code != 0 || !strings.Contains(out, p.Email) {
		t.Errorf("status after the refresh exit %d:\n%s", code, out)
	}

	// logout revokes the login at the provider, which then refuses the
	// token, and removes it from the keychain.
	if _, errOut, code := m.run(t, "logout"); code != 0 {
		t.Fatalf("logout exit %d: %s", code, errOut)
	}
	if status, _, err := p.Userinfo(t.Context(), second); err != nil || status == http.StatusOK {
		t.Errorf("userinfo with the logged-out token: %d %v; want it refused", status, err)
	}
	if out, _, code := m.run(t, "status"); code != 1 || !strings.Contains(out, "mytool login --server "+p.Issuer) {
		t.Errorf("status after logout exit %d; want 1 and the login hint:\n%s", code, out)
	}
	if got := keychainItems(t, p.Issuer); got != before {
		t.Errorf("keychain items after logout = %d; want %d", got, before)
	}
	if _, errOut, code := m.run(t, "token"); code == 0 || !strings.Contains(errOut, "mytool login --server "+p.Issuer) {
		t.Errorf("token after logout exit %d; want non-zero and the login hint:\n%s", code, errOut)
	}
}
