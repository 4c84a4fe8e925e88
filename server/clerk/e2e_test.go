package clerk_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/clerk"
	"github.com/keyloop/keyloop/server/clerk/clerktest"
)

// backend is a keyloop server.Handler with Clerk as its authenticator and
// minter, on a real loopback server, next to a fake Clerk.
type backend struct {
	fake     *clerktest.Fake
	issuer   string
	h        *server.Handler
	callback *httptest.Server

	mu      sync.Mutex
	cbQuery url.Values
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{fake: clerktest.New(t, clerktest.Options{})}
	srv := httptest.NewUnstartedServer(nil)
	b.issuer = "http://" + srv.Listener.Addr().String()
	p, err := clerk.New(clerk.Config{
		SecretKey:      b.fake.SecretKey,
		PublishableKey: b.fake.PublishableKey,
		FrontendAPIURL: b.fake.FrontendAPIURL,
		APIURL:         b.fake.APIURL,
		Audience:       "keyloop-test",
		Issuer:         b.issuer,
		WebhookSecret:  b.fake.WebhookSecret,
	})
	if err != nil {
		t.Fatal(err)
	}
	if b.h, err = server.New(server.Config{
		Issuer:        b.issuer,
		Clients:       []server.Client{{ID: "mytool", Name: "mytool"}},
		Authenticator: p,
		Minter:        p,
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.h.Close() })
	webhook, err := p.WebhookHandler(b.h)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(server.MetadataPath, b.h)
	mux.Handle("/oauth/", b.h)
	mux.Handle("POST /webhooks/clerk", webhook)
	mux.Handle("GET /api/me", b.h.RequireToken(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := server.ClaimsFromContext(r.Context())
		_ = json.NewEncoder(w).Encode(map[string]string{"sub": c.Subject})
	})))
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(srv.Close)
	b.callback = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r) // e.g. the browser's /favicon.ico
			return
		}
		b.mu.Lock()
		b.cbQuery = r.URL.Query()
		b.mu.Unlock()
		_, _ = io.WriteString(w, "callback received")
	}))
	t.Cleanup(b.callback.Close)
	return b
}

func (b *backend) lastCallback() url.Values {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cbQuery
}

func (b *backend) metadata(t *testing.T) map[string]any {
	t.Helper()
	resp, err := http.Get(b.issuer + server.MetadataPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		t.Fatal(err)
	}
	return md
}

func (b *backend) apiMe(t *testing.T, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.issuer+"/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestEndToEndBrowserLogin: a signed-out Chromium opens the authorize URL,
// is sent to the fake Clerk's sign-in, comes back, consents, and the code
// exchange (x/oauth2 with PKCE) yields a Clerk-minted template token that
// verifies against the Clerk JWKS and issuer the metadata names. Refresh
// works while the Clerk session is active and is refused (invalid_grant)
// once it ended; a user.deleted webhook revokes the access token.
func TestEndToEndBrowserLogin(t *testing.T) {
	bctx := testenv.Browser(t)
	b := newBackend(t)
	ctx := context.Background()

	md := b.metadata(t)
	if md["jwks_uri"] != b.fake.FrontendAPIURL+"/.well-known/jwks.json" ||
		md["access_token_issuer"] != b.fake.FrontendAPIURL || md["access_token_audience"] != "keyloop-test" {
		t.Fatalf("metadata does not point at Clerk: %v", md)
	}
	oc := &oauth2.Config{
		ClientID:    "mytool",
		Endpoint:    oauth2.Endpoint{AuthURL: md["authorization_endpoint"].(string), TokenURL: md["token_endpoint"].(string)},
		RedirectURL: b.callback.URL + "/callback",
	}
	verifier := oauth2.GenerateVerifier()
	state := oauth2.GenerateVerifier()
	authURL := oc.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))

	step, cancel := context.WithTimeout(bctx, 30*time.Second)
	defer cancel()
	fail := func(what string, err error) {
		t.Helper()
		page, _ := chromedp.Run(step, chromedp.Text(chromedp.CSS(`body`)))
		t.Fatalf("%s in Chromium: %v; page:\n%s", what, err, page)
	}
	if err := chromedp.Do(step, chromedp.Navigate(authURL), chromedp.WaitVisible(chromedp.CSS(`input[name=email]`))); err != nil {
		fail("signed-out redirect to Clerk sign-in", err)
	}
	signInURL, err := chromedp.Run(step, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(step,
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), "grace@example.com"),
		chromedp.Click(`//button[normalize-space()="Sign in"]`),
		chromedp.WaitVisible(`//button[normalize-space()="Authorize"]`),
	); err != nil {
		fail("sign-in and return", err)
	}
	if !strings.HasPrefix(signInURL, b.fake.URL+"/sign-in?redirect_url=") {
		t.Errorf("signed-out browser went to %s, want the fake Clerk sign-in", signInURL)
	}
	consent, _ := chromedp.Run(step, chromedp.Text(chromedp.CSS(`body`)))
	if !strings.Contains(consent, "grace@example.com") || !strings.Contains(consent, "mytool") {
		t.Errorf("consent page does not name the account and the CLI:\n%s", consent)
	}
	if err := chromedp.Do(step,
		chromedp.Click(`//button[normalize-space()="Authorize"]`),
		chromedp.WaitVisible(`//body[contains(., "callback received")]`),
	); err != nil {
		t.Fatalf("consent: %v", err)
	}
	q := b.lastCallback()
	if q.Get("state") != state || q.Get("code") == "" {
		t.Fatalf("callback query = %v", q)
	}

	tok, err := oc.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	// Verify the access token as any client would, from the metadata only.
	kf, err := keyfunc.NewDefaultCtx(ctx, []string{md["jwks_uri"].(string)})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.Parse(tok.AccessToken, kf.Keyfunc, jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithIssuer(md["access_token_issuer"].(string)), jwt.WithAudience("keyloop-test"), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("access token does not verify against the Clerk JWKS: %v", err)
	}
	user, ok := b.fake.UserByEmail("grace@example.com")
	claims := parsed.Claims.(jwt.MapClaims)
	if !ok || claims["sub"] != user.ID || parsed.Header["cat"] != clerk.TemplateTokenCategory || !strings.HasPrefix(parsed.Header["kid"].(string), "ins_") {
		t.Errorf("access token header %v claims %v; want a template token for %s", parsed.Header, claims, user.ID)
	}
	exp, _ := claims.GetExpirationTime()
	if life := time.Until(exp.Time); life < 7*24*time.Hour-time.Minute || life > 7*24*time.Hour+time.Minute {
		t.Errorf("access token lives %v, want 7 days", life)
	}
	if code := b.apiMe(t, tok.AccessToken); code != http.StatusOK {
		t.Errorf("/api/me with the access token: %d", code)
	}

	// A Clerk session token is not an access token for the app's API.
	sessions := b.fake.Sessions(user.ID)
	if len(sessions) != 1 {
		t.Fatalf("sessions = %v", sessions)
	}
	sessTok, _ := b.fake.SessionToken(sessions[0].ID, b.issuer, nil)
	if code := b.apiMe(t, sessTok); code != http.StatusUnauthorized {
		t.Errorf("/api/me with a Clerk session token: %d, want 401", code)
	}

	// Refresh mints again while the Clerk session is active …
	refreshed, err := oc.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("refresh with an active Clerk session: %v", err)
	}
	if refreshed.AccessToken == tok.AccessToken || refreshed.RefreshToken == "" {
		t.Errorf("refresh returned no new tokens")
	}
	// … and is refused once the Clerk session ended.
	if err := b.fake.EndSession(sessions[0].ID); err != nil {
		t.Fatal(err)
	}
	_, err = oc.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshed.RefreshToken}).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("refresh after the Clerk session ended: %v, want invalid_grant", err)
	}

	// user.deleted (Svix-signed) revokes the user's access tokens.
	status, err := b.fake.SendWebhook(ctx, b.issuer+"/webhooks/clerk", "user.deleted", map[string]any{"id": user.ID, "object": "user", "deleted": true})
	if err != nil || status != http.StatusOK {
		t.Fatalf("webhook: %d, %v", status, err)
	}
	if code := b.apiMe(t, refreshed.AccessToken); code != http.StatusUnauthorized {
		t.Errorf("/api/me after user.deleted: %d, want 401", code)
	}
}

// TestEndToEndTemplateTokenRefused drives the sign-in step without a browser: a POSTed
// template token is refused with a precise message on the sign-in page.
func TestEndToEndTemplateTokenRefused(t *testing.T) {
	b := newBackend(t)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	md := b.metadata(t)
	oc := &oauth2.Config{ClientID: "mytool", Endpoint: oauth2.Endpoint{AuthURL: md["authorization_endpoint"].(string)}, RedirectURL: b.callback.URL + "/callback"}
	resp, err := c.Get(oc.AuthCodeURL("state-123456789012345678901234", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	signInURL := resp.Request.URL.String()
	csrf := between(string(page), `name="csrf_token" value="`, `"`)
	if csrf == "" || !strings.Contains(string(page), "data-clerk-publishable-key") {
		t.Fatalf("no Clerk sign-in page at %s:\n%s", signInURL, page)
	}
	u := b.fake.CreateUser("eve@example.com")
	s, _ := b.fake.SignIn(u.ID, b.issuer)
	tmpl, err := b.fake.TemplateToken(s.ID, "cli", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = c.PostForm(signInURL, url.Values{"csrf_token": {csrf}, clerk.SessionTokenField: {tmpl}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "wrong token type") || strings.Contains(string(body), tmpl) {
		t.Errorf("template token posted: %d\n%s", resp.StatusCode, body)
	}
}

func between(s, start, end string) string {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, end)
	return v
}
