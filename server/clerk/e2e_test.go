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
	"slices"
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

type backendOpts struct {
	fake clerktest.Options
	// proxy mounts a proxy of the fake's Frontend API at /__clerk on the
	// backend, configures the instance with it and sets Config.ProxyURL
	// (Clerk proxies production instances only: fake.Production is set).
	proxy bool
	// config, when set, changes the Config before clerk.New.
	config func(*clerk.Config)
}

func newBackend(t *testing.T, o backendOpts) *backend {
	t.Helper()
	if o.proxy {
		o.fake.Production = true
	}
	b := &backend{fake: clerktest.New(t, o.fake)}
	srv := httptest.NewUnstartedServer(nil)
	b.issuer = "http://" + srv.Listener.Addr().String()
	cfg := clerk.Config{
		SecretKey:      b.fake.SecretKey,
		PublishableKey: b.fake.PublishableKey,
		FrontendAPIURL: b.fake.FrontendAPIURL,
		APIURL:         b.fake.APIURL,
		Audience:       "keyloop-test",
		Issuer:         b.issuer,
		WebhookSecret:  b.fake.WebhookSecret,
	}
	mux := http.NewServeMux()
	if o.proxy {
		proxyURL := b.issuer + "/__clerk"
		if err := b.fake.SetProxyURL(proxyURL); err != nil {
			t.Fatal(err)
		}
		mux.Handle("/__clerk/", b.fake.ProxyHandler(proxyURL))
		cfg.FrontendAPIURL = "" // the proxy URL, the issuer of every token now
		cfg.ProxyURL = proxyURL
	}
	if o.config != nil {
		o.config(&cfg)
	}
	p, err := clerk.New(cfg)
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

// login is one OAuth authorization request of the CLI "mytool" against the
// backend: x/oauth2 with PKCE, the callback on b.callback.
type login struct {
	oc                       *oauth2.Config
	md                       map[string]any
	verifier, state, authURL string
}

func (b *backend) newLogin(t *testing.T) *login {
	t.Helper()
	md := b.metadata(t)
	l := &login{md: md, verifier: oauth2.GenerateVerifier(), state: oauth2.GenerateVerifier()}
	l.oc = &oauth2.Config{
		ClientID:    "mytool",
		Endpoint:    oauth2.Endpoint{AuthURL: md["authorization_endpoint"].(string), TokenURL: md["token_endpoint"].(string)},
		RedirectURL: b.callback.URL + "/callback",
	}
	l.authURL = l.oc.AuthCodeURL(l.state, oauth2.S256ChallengeOption(l.verifier))
	return l
}

// browserStep runs actions in the Chromium tab, with a generous deadline
// against hangs, and fails with the tab's location and text.
func browserStep(t *testing.T, tab context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	step, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(step, actions...); err != nil {
		look, cancel := context.WithTimeout(tab, 5*time.Second)
		defer cancel()
		loc, _ := chromedp.Run(look, chromedp.Location())
		page, _ := chromedp.Run(look, chromedp.Text(chromedp.CSS(`body`)))
		t.Fatalf("%s in Chromium: %v; at %s, page:\n%s", what, err, loc, page)
	}
}

// current returns the tab's location and text.
func current(t *testing.T, tab context.Context) (loc, text string) {
	t.Helper()
	look, cancel := context.WithTimeout(tab, 10*time.Second)
	defer cancel()
	loc, _ = chromedp.Run(look, chromedp.Location())
	text, _ = chromedp.Run(look, chromedp.Text(chromedp.CSS(`body`)))
	return loc, text
}

// signInAtClerk fills the fake Clerk's sign-in form the browser is on.
func signInAtClerk(t *testing.T, tab context.Context, email string) {
	t.Helper()
	browserStep(t, tab, "sign-in at Clerk",
		chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), email),
		chromedp.Click(`//button[normalize-space()="Sign in"]`),
	)
}

// authorize clicks Authorize on the consent page, and exchanges the code.
func (b *backend) authorize(t *testing.T, tab context.Context, l *login) *oauth2.Token {
	t.Helper()
	browserStep(t, tab, "consent",
		chromedp.WaitVisible(`//button[normalize-space()="Authorize"]`),
		chromedp.Click(`//button[normalize-space()="Authorize"]`),
		chromedp.WaitVisible(`//body[contains(., "callback received")]`),
	)
	q := b.lastCallback()
	if q.Get("state") != l.state || q.Get("code") == "" {
		t.Fatalf("callback query = %v", q)
	}
	tok, err := l.oc.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(l.verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	return tok
}

// verifyAccessToken verifies tok as any client would, from the metadata
// only, and returns its claims.
func verifyAccessToken(t *testing.T, l *login, tok string) (map[string]any, jwt.MapClaims) {
	t.Helper()
	kf, err := keyfunc.NewDefaultCtx(context.Background(), []string{l.md["access_token_jwks_uri"].(string)})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.Parse(tok, kf.Keyfunc, jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithIssuer(l.md["access_token_issuer"].(string)), jwt.WithAudience("keyloop-test"), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("access token does not verify against the JWKS and issuer of the metadata: %v", err)
	}
	return parsed.Header, parsed.Claims.(jwt.MapClaims)
}

// TestEndToEndBrowserLogin: a signed-out Chromium opens the authorize URL,
// is sent to the fake Clerk's sign-in, comes back, consents, and the code
// exchange (x/oauth2 with PKCE) yields a Clerk-minted template token that
// verifies against the Clerk JWKS and issuer the metadata names. Refresh
// works while the Clerk session is active and is refused (invalid_grant)
// once it ended; a user.deleted webhook revokes the access token.
func TestEndToEndBrowserLogin(t *testing.T) {
	tab := testenv.Browser(t)
	b := newBackend(t, backendOpts{})
	ctx := context.Background()

	l := b.newLogin(t)
	if l.md["access_token_jwks_uri"] != b.fake.FrontendAPIURL+"/.well-known/jwks.json" || l.md["jwks_uri"] != b.issuer+server.JWKSPath ||
		l.md["access_token_issuer"] != b.fake.FrontendAPIURL || l.md["access_token_audience"] != "keyloop-test" {
		t.Fatalf("metadata does not point at Clerk: %v", l.md)
	}
	browserStep(t, tab, "signed-out redirect to Clerk sign-in", chromedp.Navigate(l.authURL), chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)))
	signInURL, _ := current(t, tab)
	if !strings.HasPrefix(signInURL, b.fake.URL+"/sign-in?redirect_url=") {
		t.Errorf("signed-out browser went to %s, want the fake Clerk sign-in", signInURL)
	}
	signInAtClerk(t, tab, "grace@example.com")
	browserStep(t, tab, "return to consent", chromedp.WaitVisible(`//button[normalize-space()="Authorize"]`))
	_, consent := current(t, tab)
	if !strings.Contains(consent, "grace@example.com") || !strings.Contains(consent, "mytool") {
		t.Errorf("consent page does not name the account and the CLI:\n%s", consent)
	}
	tok := b.authorize(t, tab, l)
	header, claims := verifyAccessToken(t, l, tok.AccessToken)
	user, ok := b.fake.UserByEmail("grace@example.com")
	if !ok || claims["sub"] != user.ID || header["cat"] != clerk.TemplateTokenCategory || !strings.HasPrefix(header["kid"].(string), "ins_") {
		t.Errorf("access token header %v claims %v; want a template token for %s", header, claims, user.ID)
	}
	exp, _ := claims.GetExpirationTime()
	if life := time.Until(exp.Time); life < 7*24*time.Hour-time.Minute || life > 7*24*time.Hour+time.Minute {
		t.Errorf("access token lives %v, want 7 days", life)
	}
	if code := b.apiMe(t, tok.AccessToken); code != http.StatusOK {
		t.Errorf("/api/me with the access token: %d", code)
	}

	// Other tokens of the same instance are no access tokens for the app's
	// API: a Clerk session token, and a token of the CLI's own template that
	// the signed-in browser minted itself through the Frontend API.
	sessions := b.fake.Sessions(user.ID)
	if len(sessions) != 1 {
		t.Fatalf("sessions = %v", sessions)
	}
	sessTok, _ := b.fake.SessionToken(sessions[0].ID, b.issuer, nil)
	browserTok, _ := b.fake.FrontendTemplateToken(sessions[0].ID, "cli", b.issuer)
	for name, tok := range map[string]string{"a Clerk session token": sessTok, "a browser-minted cli template token": browserTok} {
		if code := b.apiMe(t, tok); code != http.StatusUnauthorized {
			t.Errorf("/api/me with %s: %d, want 401", name, code)
		}
	}

	// Refresh mints again while the Clerk session is active …
	refreshed, err := l.oc.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
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
	_, err = l.oc.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshed.RefreshToken}).Token()
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

// TestEndToEndProxy: a production instance whose Frontend API is reached
// only through a proxy on the backend's own origin (/__clerk), as Clerk's
// proxy guide sets it up. clerk-js must be told (data-clerk-proxy-url) and
// loaded through it, the page's CSP must let it connect there, and every
// token is issued by the proxy URL. A ban (user.updated, banned) then
// revokes the CLI's access token.
func TestEndToEndProxy(t *testing.T) {
	tab := testenv.Browser(t)
	b := newBackend(t, backendOpts{proxy: true})
	proxyURL := b.issuer + "/__clerk"
	l := b.newLogin(t)
	if l.md["access_token_issuer"] != proxyURL || l.md["access_token_jwks_uri"] != proxyURL+"/.well-known/jwks.json" {
		t.Fatalf("metadata does not point at the proxy: %v", l.md)
	}
	browserStep(t, tab, "signed-out redirect to Clerk sign-in", chromedp.Navigate(l.authURL))
	signInAtClerk(t, tab, "pat@example.com")
	tok := b.authorize(t, tab, l)
	_, claims := verifyAccessToken(t, l, tok.AccessToken)
	if claims["iss"] != proxyURL {
		t.Errorf("access token iss = %v, want the proxy URL", claims["iss"])
	}
	if code := b.apiMe(t, tok.AccessToken); code != http.StatusOK {
		t.Errorf("/api/me with the access token: %d", code)
	}
	user, _ := b.fake.UserByEmail("pat@example.com")
	if err := b.fake.BanUser(user.ID); err != nil {
		t.Fatal(err)
	}
	if status, err := b.fake.SendWebhook(context.Background(), b.issuer+"/webhooks/clerk", "user.updated", b.fake.UserData(user.ID)); err != nil || status != http.StatusOK {
		t.Fatalf("webhook: %d, %v", status, err)
	}
	if code := b.apiMe(t, tok.AccessToken); code != http.StatusUnauthorized {
		t.Errorf("/api/me after the user was banned: %d, want 401", code)
	}
}

// signInOnApp signs the browser in at the fake Clerk for app, another
// origin than the backend (the application the user already uses), and
// returns the user.
func signInOnApp(t *testing.T, tab context.Context, b *backend, email string) clerktest.User {
	t.Helper()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "the app")
	}))
	t.Cleanup(app.Close)
	browserStep(t, tab, "sign-in page", chromedp.Navigate(b.fake.URL+"/sign-in?redirect_url="+url.QueryEscape(app.URL+"/")))
	signInAtClerk(t, tab, email)
	browserStep(t, tab, "back on the app", chromedp.WaitVisible(`//body[contains(., "the app")]`))
	u, _ := b.fake.UserByEmail(email)
	return u
}

// TestEndToEndSignedInOnTheApp: the browser is already signed in to Clerk
// on the application's origin. clerk-js's cached session token was minted
// for that origin (its azp); the page asks for a fresh one
// (getToken({skipCache: true})), minted for its own origin, and the user
// goes straight to consent.
func TestEndToEndSignedInOnTheApp(t *testing.T) {
	tab := testenv.Browser(t)
	b := newBackend(t, backendOpts{})
	user := signInOnApp(t, tab, b, "app@example.com")
	l := b.newLogin(t)
	browserStep(t, tab, "straight to consent", chromedp.Navigate(l.authURL))
	tok := b.authorize(t, tab, l)
	if _, claims := verifyAccessToken(t, l, tok.AccessToken); claims["sub"] != user.ID {
		t.Errorf("access token for %v, want %s", claims["sub"], user.ID)
	}
}

// TestEndToEndPendingTask: the browser's Clerk session has a task to finish
// (here an organization to choose, added after the user signed in on the
// app). clerk-js sets Clerk.session but Clerk.isSignedIn is false; the page
// sends the browser to the task on Clerk's sign-in and, once it is done,
// on to consent.
func TestEndToEndPendingTask(t *testing.T) {
	tab := testenv.Browser(t)
	b := newBackend(t, backendOpts{})
	user := signInOnApp(t, tab, b, "org@example.com")
	sessions := b.fake.Sessions(user.ID)
	if len(sessions) != 1 {
		t.Fatalf("sessions = %v", sessions)
	}
	if err := b.fake.AddTask(sessions[0].ID, clerktest.TaskChooseOrganization); err != nil {
		t.Fatal(err)
	}

	l := b.newLogin(t)
	browserStep(t, tab, "redirect to the pending task",
		chromedp.Navigate(l.authURL),
		chromedp.WaitVisible(`//button[normalize-space()="Continue"]`))
	taskURL, page := current(t, tab)
	if !strings.HasPrefix(taskURL, b.fake.URL+"/sign-in?redirect_url=") || !strings.HasSuffix(taskURL, "#/tasks/"+clerktest.TaskChooseOrganization) ||
		!strings.Contains(page, clerktest.TaskChooseOrganization) {
		t.Errorf("pending session went to %s:\n%s", taskURL, page)
	}
	browserStep(t, tab, "finish the task", chromedp.Click(`//button[normalize-space()="Continue"]`))
	tok := b.authorize(t, tab, l)
	_, claims := verifyAccessToken(t, l, tok.AccessToken)
	if claims["sub"] != user.ID {
		t.Errorf("access token for %v, want %s", claims["sub"], user.ID)
	}
	if s, _ := b.fake.Session(sessions[0].ID); s.Status != clerktest.StatusActive {
		t.Errorf("session status %q after the task", s.Status)
	}
}

// satelliteBackend is a backend on a satellite domain of a development
// instance, whose primary domain signs in at the fake's hosted sign-in page.
func satelliteBackend(t *testing.T) *backend {
	t.Helper()
	return newBackend(t, backendOpts{config: func(c *clerk.Config) {
		u, _ := url.Parse(c.Issuer)
		c.IsSatellite, c.Domain = true, u.Host
		c.SignInURL = strings.TrimSuffix(c.APIURL, "/v1") + "/sign-in"
	}})
}

// signInVisits returns the fake's hosted sign-in page requests: "sync" for
// a satellite syncing with the primary domain (__clerk_satellite_url),
// "sign-in" for a sign-in (redirect_url).
func signInVisits(f *clerktest.Fake) []string {
	var out []string
	for _, r := range f.Requests() {
		switch r {
		case "GET /sign-in?__clerk_satellite_url":
			out = append(out, "sync")
		case "GET /sign-in?redirect_url":
			out = append(out, "sign-in")
		}
	}
	return out
}

// TestEndToEndSatellite: on a satellite domain, clerk-js is loaded as a
// satellite (isSatellite, its domain, the primary's signInUrl). A signed-out
// satellite first syncs with the primary domain (clerk-js leaves the page
// during load(), which returns with Clerk.loaded false: the page must not
// start a navigation of its own), then goes to the primary's sign-in with
// the satellite page as redirect_url — without clerk-js's __clerk_synced
// mark, which would skip the sync after sign-in — and, signed in, syncs
// again and reaches consent.
func TestEndToEndSatellite(t *testing.T) {
	tab := testenv.Browser(t)
	b := satelliteBackend(t)
	l := b.newLogin(t)
	browserStep(t, tab, "signed-out satellite", chromedp.Navigate(l.authURL), chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)))
	loc, _ := current(t, tab)
	u, err := url.Parse(loc)
	back := u.Query().Get("redirect_url")
	if err != nil || !strings.HasPrefix(loc, b.fake.URL+"/sign-in?") || !strings.HasPrefix(back, b.issuer+"/oauth/") || strings.Contains(back, "__clerk_") {
		t.Errorf("signed-out satellite went to %s, want the primary's sign-in and back to the satellite page", loc)
	}
	if v := signInVisits(b.fake); !slices.Equal(v, []string{"sync", "sign-in"}) {
		t.Errorf("hosted sign-in visits %v, want a sync with the primary, then the sign-in", v)
	}
	signInAtClerk(t, tab, "sat@example.com")
	tok := b.authorize(t, tab, l)
	if code := b.apiMe(t, tok.AccessToken); code != http.StatusOK {
		t.Errorf("/api/me with the access token: %d", code)
	}
	if v := signInVisits(b.fake); !slices.Equal(v, []string{"sync", "sign-in", "sync"}) {
		t.Errorf("hosted sign-in visits %v, want sync, sign-in, sync", v)
	}
}

// TestEndToEndSatelliteSignedInOnPrimary: the browser is signed in on the
// primary domain. On the satellite, clerk-js syncs with the primary and
// comes back signed in: straight to consent, with no sign-in on the way.
func TestEndToEndSatelliteSignedInOnPrimary(t *testing.T) {
	tab := testenv.Browser(t)
	b := satelliteBackend(t)
	user := signInOnApp(t, tab, b, "primary@example.com")
	l := b.newLogin(t)
	browserStep(t, tab, "satellite syncs and goes to consent", chromedp.Navigate(l.authURL))
	tok := b.authorize(t, tab, l)
	if _, claims := verifyAccessToken(t, l, tok.AccessToken); claims["sub"] != user.ID {
		t.Errorf("access token for %v, want %s", claims["sub"], user.ID)
	}
	if v := signInVisits(b.fake); !slices.Equal(v, []string{"sign-in", "sync"}) {
		t.Errorf("hosted sign-in visits %v, want the sign-in on the primary's app, then one sync", v)
	}
}

// TestEndToEndTemplateTokenRefused drives the sign-in step without a browser: a POSTed
// template token is refused with a precise message on the sign-in page.
func TestEndToEndTemplateTokenRefused(t *testing.T) {
	b := newBackend(t, backendOpts{})
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
