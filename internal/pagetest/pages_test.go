// Package pagetest drives headless Chromium through every page a person sees
// during a login — the backend's (server) and the CLI's loopback pages
// (clilogin) — screenshots each in light and dark mode, and checks what the
// screenshots were looked at for: one visual language, the app's name from
// configuration, vertically centred, dark mode, neutral words for a refusal,
// no request leaving the machine.
//
// Run with -artifacts -outputdir DIR to keep the PNGs (DIR/…/TestLoginPages/).
package pagetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/keyloop/keyloop/clilogin"
	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/tokenstore"
)

// appName is the one name the app has: the server's client Name and the
// CLI's AppName.
const appName = "acme"

// newBackend serves a handler with authn on a loopback server.
func newBackend(t *testing.T, authn server.Authenticator) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	key, err := server.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	minter, err := server.NewSelfSigned(server.SelfSignedConfig{Issuer: issuer, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	h, err := server.New(server.Config{
		Issuer:        issuer,
		Clients:       []server.Client{{ID: appName, Name: appName, DeviceFlow: true}},
		Authenticator: authn,
		Minter:        minter,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	mux := http.NewServeMux()
	mux.Handle(server.MetadataPath, h)
	mux.Handle("/oauth/", h)
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(srv.Close)
	return issuer
}

// login is a clilogin.Client.Login running in the background.
type login struct {
	authURL string
	out     *testenv.SyncBuffer
	done    chan error
}

// startLogin starts a login for clientID against issuer and waits for the
// URL it asks the browser to open.
func startLogin(t *testing.T, issuer, clientID string) *login {
	t.Helper()
	opened := make(chan string, 1)
	l := &login{out: &testenv.SyncBuffer{}, done: make(chan error, 1)}
	c, err := clilogin.New(clilogin.Config{
		Issuer: issuer, ClientID: clientID, AppName: appName,
		Store: tokenstore.NewMemory(), Stdout: l.out, Stdin: strings.NewReader(""), Terminal: clilogin.TerminalPlain,
		OpenBrowser: func(_ context.Context, u string) error { opened <- u; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	go func() { _, err := c.Login(ctx); l.done <- err }()
	select {
	case l.authURL = <-opened:
	case err := <-l.done:
		t.Fatalf("Login ended before opening the browser: %v\n%s", err, l.out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("Login did not open the browser:\n%s", l.out.String())
	}
	return l
}

func (l *login) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-l.done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("Login did not end:\n%s", l.out.String())
		return nil
	}
}

// facts are what a screenshot is checked for, read from the live page.
type facts struct {
	Title, H1, Brand, Text, Tone         string
	H1Color, FailColor, Radius, Font     string
	Background, DarkBackground, DarkCard string
	TopGap, BottomGap, Width             float64
	External                             []string
}

// shooter screenshots pages into the test's artifact directory.
type shooter struct {
	t   *testing.T
	tab context.Context
	dir string
}

// page waits for the page, screenshots it in light and dark mode as name,
// and returns its facts.
func (s *shooter) page(name string) facts {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(s.tab, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("main h1"))); err != nil {
		t.Fatalf("%s: no page: %v", name, err)
	}
	var f facts
	var err error
	str := func(dst *string, js string) {
		if err == nil {
			*dst, err = chromedp.Run(ctx, chromedp.Evaluate[string](js))
		}
	}
	num := func(dst *float64, js string) {
		if err == nil {
			*dst, err = chromedp.Run(ctx, chromedp.Evaluate[float64](js))
		}
	}
	scheme := func(v string) {
		if err == nil {
			_, err = chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: v}}})
		}
	}
	shot := func(file string) {
		if err != nil {
			return
		}
		var png []byte
		if png, err = chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
			err = os.WriteFile(filepath.Join(s.dir, file), png, 0o644)
		}
	}
	scheme("light")
	str(&f.Title, `document.title`)
	str(&f.H1, `document.querySelector('main h1').textContent`)
	str(&f.Brand, `(document.querySelector('main .brand')||{}).textContent||''`)
	str(&f.Text, `document.body.innerText`)
	str(&f.Tone, `document.querySelector('main').className`)
	str(&f.H1Color, `getComputedStyle(document.querySelector('main h1')).color`)
	str(&f.FailColor, `getComputedStyle(document.documentElement).getPropertyValue('--fail').trim()`)
	str(&f.Radius, `getComputedStyle(document.querySelector('main')).borderTopLeftRadius`)
	str(&f.Font, `getComputedStyle(document.body).fontFamily`)
	str(&f.Background, `getComputedStyle(document.body).backgroundColor`)
	num(&f.TopGap, `document.querySelector('main').getBoundingClientRect().top`)
	num(&f.BottomGap, `innerHeight - document.querySelector('main').getBoundingClientRect().bottom`)
	num(&f.Width, `document.querySelector('main').getBoundingClientRect().width`)
	if err == nil {
		f.External, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](
			`[...document.querySelectorAll('*')].flatMap(e => [...e.attributes]).map(a => a.value).filter(v => /(^|\s)(https?:)?\/\/(?!127\.0\.0\.1[:\/])/i.test(v) || /url\(/i.test(v))`))
	}
	shot(name + ".png")
	scheme("dark")
	str(&f.DarkBackground, `getComputedStyle(document.body).backgroundColor`)
	str(&f.DarkCard, `getComputedStyle(document.querySelector('main')).backgroundColor`)
	shot(name + "-dark.png")
	scheme("light")
	if err != nil {
		t.Fatalf("%s: reading the page: %v", name, err)
	}
	return f
}

// do runs browser steps with a timeout.
func (s *shooter) do(steps ...chromedp.Action[chromedp.Void]) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.tab, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		s.t.Fatal(err)
	}
}

// check holds every page to the same rules; first is the sign-in page's
// facts, whose look every other page must share.
func check(t *testing.T, name string, f, first facts, brand, title string) {
	t.Helper()
	if strings.Contains(strings.ToLower(f.Text+f.Title), "keyloop") {
		t.Errorf("%s: says keyloop instead of the app's name:\n%s", name, f.Text)
	}
	if f.Brand != brand || f.Title != title+" · "+brand {
		t.Errorf("%s: brand %q, title %q; want %q and %q", name, f.Brand, f.Title, brand, title+" · "+brand)
	}
	if math.Abs(f.TopGap-f.BottomGap) > 2 || f.TopGap < 8 {
		t.Errorf("%s: the card is not vertically centred (%.0f px above, %.0f below)", name, f.TopGap, f.BottomGap)
	}
	if f.Background == f.DarkBackground || f.DarkCard == "rgb(255, 255, 255)" {
		t.Errorf("%s: no dark mode (background %s light, %s dark; card %s)", name, f.Background, f.DarkBackground, f.DarkCard)
	}
	if f.Radius != first.Radius || f.Font != first.Font || f.Width != first.Width || f.Background != first.Background {
		t.Errorf("%s: looks unlike the sign-in page (radius %s/%s, font %s/%s, width %.0f/%.0f, background %s/%s)",
			name, f.Radius, first.Radius, f.Font, first.Font, f.Width, first.Width, f.Background, first.Background)
	}
	if len(f.External) > 0 {
		t.Errorf("%s: references other origins: %q", name, f.External)
	}
}

// requests records every URL the tab requests.
type requests struct {
	mu   sync.Mutex
	urls []string
}

func watch(t *testing.T, tab context.Context) *requests {
	t.Helper()
	r := &requests{}
	if _, err := chromedp.Call(tab, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Listen(tab, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			r.mu.Lock()
			r.urls = append(r.urls, e.Request.URL)
			r.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	return r
}

var codeRE = regexp.MustCompile(`\b[A-Z2-9]{4}-[A-Z2-9]{4}\b`)

// TestLoginPages: every page of a login, in the order a person meets them.
func TestLoginPages(t *testing.T) {
	bctx := testenv.Browser(t)
	tab, closeTab := chromedp.NewContext(bctx)
	defer closeTab()
	reqs := watch(t, tab)
	s := &shooter{t: t, tab: tab, dir: t.ArtifactDir()}
	t.Logf("screenshots in %s", s.dir)

	dev, err := server.NewDevAuthenticator(server.DevConfig{Key: []byte(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	issuer := newBackend(t, dev)

	// The dev sign-in page, then the same with an error.
	l := startLogin(t, issuer, appName)
	s.do(chromedp.Navigate(l.authURL))
	first := s.page("signin")
	check(t, "signin", first, first, appName, "Sign in")
	if !strings.Contains(first.Text, "Development sign-in") || first.H1 != "Sign in to continue to "+appName {
		t.Errorf("signin: h1 %q, text:\n%s", first.H1, first.Text)
	}
	s.do(chromedp.Evaluate[chromedp.Void](`(() => { const f = document.querySelector('form'); f.noValidate = true;
		document.querySelector('input[name=email]').value = 'not-an-address'; f.submit(); })()`),
		chromedp.WaitVisible(chromedp.CSS(".error")))
	f := s.page("signin-error")
	check(t, "signin-error", f, first, appName, "Sign in")
	if !strings.Contains(f.Text, "Enter a valid e-mail address.") {
		t.Errorf("signin-error:\n%s", f.Text)
	}

	// Consent: the terminal's code, and words that hold in paste mode.
	s.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('input[name=email]').value = ''`),
		chromedp.SendKeys(chromedp.CSS("input[name=email]"), "ada@example.com"),
		chromedp.Click(`//button[normalize-space()="Sign in"]`),
		chromedp.WaitVisible(`//button[normalize-space()="Authorize"]`))
	f = s.page("consent")
	check(t, "consent", f, first, appName, "Authorize "+appName)
	if code := codeRE.FindString(l.out.String()); code == "" || !strings.Contains(f.Text, code) {
		t.Errorf("consent: the terminal's code %q is not on the page:\n%s", code, f.Text)
	}
	if strings.Contains(f.Text, "this computer") {
		t.Errorf("consent: says 'this computer', untrue in paste mode:\n%s", f.Text)
	}

	// Authorize: the CLI's success page.
	s.do(chromedp.Click(`//button[normalize-space()="Authorize"]`), chromedp.WaitVisible(chromedp.CSS("main.ok")))
	f = s.page("cli-success")
	check(t, "cli-success", f, first, appName, "Signed in to "+appName)
	if err := l.wait(t); err != nil {
		t.Fatalf("Login: %v", err)
	}

	// Deny: a neutral page, not a red failure.
	l = startLogin(t, issuer, appName)
	s.do(chromedp.Navigate(l.authURL), chromedp.WaitVisible(`//button[normalize-space()="Deny"]`),
		chromedp.Click(`//button[normalize-space()="Deny"]`), chromedp.WaitVisible(chromedp.CSS("main.neutral")))
	f = s.page("cli-denied")
	check(t, "cli-denied", f, first, appName, "Request denied")
	if err := l.wait(t); !errors.Is(err, clilogin.ErrAccessDenied) {
		t.Errorf("Login after Deny: %v", err)
	}
	denied := f

	// An unknown client: the page names it and says what to do; its button
	// tells the terminal, which stops waiting and shows the server's error.
	l = startLogin(t, issuer, "othercli")
	s.do(chromedp.Navigate(l.authURL))
	f = s.page("unknown-client")
	check(t, "unknown-client", f, first, appName, "Unknown application")
	if !strings.Contains(f.Text, "“othercli”") || !strings.Contains(f.Text, "register the client ID") || f.Tone != "fail" {
		t.Errorf("unknown-client (%s):\n%s", f.Tone, f.Text)
	}
	s.do(chromedp.Click(`//a[normalize-space()="Back to your terminal"]`), chromedp.WaitVisible(chromedp.CSS("main.fail .hint code")))
	f = s.page("cli-failure")
	check(t, "cli-failure", f, first, appName, "Sign-in failed")
	var ce *clilogin.CallbackError
	if err := l.wait(t); !errors.As(err, &ce) || ce.Code != "unauthorized_client" || !strings.Contains(ce.Description, "othercli") {
		t.Errorf("Login for an unknown client: %v", err)
	}
	failedH1 := f.H1Color
	if f.H1Color == denied.H1Color || denied.Tone != "neutral" || f.Tone != "fail" {
		t.Errorf("the denied page is colored like a failure (h1 %s vs %s; tones %q, %q)", denied.H1Color, f.H1Color, denied.Tone, f.Tone)
	}

	// A request that expired.
	s.do(chromedp.Navigate(issuer + server.SignInPath + "?req=" + strings.Repeat("A", 43)))
	f = s.page("expired")
	check(t, "expired", f, first, appName, "Login request expired")

	// The device flow's pages: code entry, consent for another device, the
	// result (approved, and denied in neutral colors).
	for _, decision := range []string{"Authorize", "Deny"} {
		cfg := &oauth2.Config{ClientID: appName, Endpoint: oauth2.Endpoint{DeviceAuthURL: issuer + server.DeviceAuthorizationPath}}
		da, err := cfg.DeviceAuth(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		s.do(chromedp.Navigate(da.VerificationURI), chromedp.WaitVisible(chromedp.CSS("input[name=user_code]")))
		if decision == "Authorize" {
			f = s.page("device")
			check(t, "device", f, first, appName, "Sign in a device")
		}
		s.do(chromedp.SendKeys(chromedp.CSS("input[name=user_code]"), da.UserCode),
			chromedp.Click(`//button[normalize-space()="Continue"]`),
			chromedp.WaitVisible(`//button[normalize-space()="Authorize"]`))
		if decision == "Authorize" {
			f = s.page("device-consent")
			check(t, "device-consent", f, first, appName, "Authorize "+appName)
			if !strings.Contains(f.Text, da.UserCode) || !strings.Contains(f.Text, "another device") {
				t.Errorf("device-consent:\n%s", f.Text)
			}
		}
		// The consent page has a #confirm-code too: wait for the result's heading.
		s.do(chromedp.Click(fmt.Sprintf(`//button[normalize-space()=%q]`, decision)),
			chromedp.WaitVisible(`//main[contains(@class,"ok") or contains(@class,"neutral")]/h1`))
		if decision == "Authorize" {
			f = s.page("device-done")
			check(t, "device-done", f, first, appName, "Device signed in")
		} else {
			f = s.page("device-denied")
			check(t, "device-denied", f, first, appName, "Request denied")
			if f.Tone != "neutral" || f.H1Color == failedH1 {
				t.Errorf("device-denied looks like a failure (%s, %s)", f.Tone, f.H1Color)
			}
		}
	}

	// Another app's own password form: a wrong password shows it again with
	// a message; an Authenticator error offers "Try again".
	pw := newBackend(t, passwordAuth{})
	l = startLogin(t, pw, appName)
	s.do(chromedp.Navigate(l.authURL), chromedp.WaitVisible(chromedp.CSS("input[name=password]")),
		chromedp.SendKeys(chromedp.CSS("input[name=username]"), "ada"),
		chromedp.SendKeys(chromedp.CSS("input[name=password]"), "wrong"),
		chromedp.Click(`//button[normalize-space()="Sign in"]`), chromedp.WaitVisible(chromedp.CSS(".error")))
	f = s.page("password-wrong")
	check(t, "password-wrong", f, first, appName, "Sign in")
	if !strings.Contains(f.Text, "Wrong username or password.") || strings.Contains(f.Text, "Development") {
		t.Errorf("password-wrong:\n%s", f.Text)
	}
	s.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('input[name=username]').value = 'locked'`),
		chromedp.SendKeys(chromedp.CSS("input[name=password]"), "x"),
		chromedp.Click(`//button[normalize-space()="Sign in"]`), chromedp.WaitVisible(`//a[normalize-space()="Try again"]`))
	f = s.page("signin-failed")
	check(t, "signin-failed", f, first, appName, "Sign-in failed")
	s.do(chromedp.Click(`//a[normalize-space()="Try again"]`), chromedp.WaitVisible(chromedp.CSS("input[name=password]")),
		chromedp.SendKeys(chromedp.CSS("input[name=username]"), "ada"),
		chromedp.SendKeys(chromedp.CSS("input[name=password]"), "right"),
		chromedp.Click(`//button[normalize-space()="Sign in"]`),
		chromedp.WaitVisible(`//button[normalize-space()="Authorize"]`),
		chromedp.Click(`//button[normalize-space()="Authorize"]`), chromedp.WaitVisible(chromedp.CSS("main.ok")))
	if err := l.wait(t); err != nil {
		t.Errorf("Login after a wrong password and a retry: %v", err)
	}

	reqs.mu.Lock()
	defer reqs.mu.Unlock()
	for _, u := range reqs.urls {
		if !strings.HasPrefix(u, "http://127.0.0.1:") {
			t.Errorf("a page made a request off this machine: %s", u)
		}
	}
	if len(reqs.urls) == 0 {
		t.Error("no request recorded")
	}
}

// passwordAuth is an app's own username and password form: ada/right signs
// in, a wrong password shows the form again, "locked" is an error.
type passwordAuth struct{}

func (passwordAuth) Authenticate(w http.ResponseWriter, r *http.Request, p server.SignInPrompt) (*server.Identity, error) {
	page := p.SignInPage()
	page.Fields = []server.SignInField{
		{Name: "username", Label: "Username", Autocomplete: "username"},
		{Name: "password", Label: "Password", Type: "password", Autocomplete: "current-password"},
	}
	status := http.StatusOK
	if r.Method == http.MethodPost {
		user, pass := r.PostForm.Get("username"), r.PostForm.Get("password")
		switch {
		case user == "locked":
			return nil, errors.New("This account is locked; ask your administrator.")
		case user == "ada" && pass == "right":
			return &server.Identity{Subject: "user-ada", Email: "ada@example.com"}, nil
		}
		page.Fields[0].Value = user
		page.Error = "Wrong username or password."
		status = http.StatusUnauthorized
	}
	if err := p.Render(w, status, "signin.html", page); err != nil {
		return nil, err
	}
	return nil, server.ErrResponded
}
