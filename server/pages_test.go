package server_test

import (
	"errors"
	"html"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/keyloop/keyloop/server"
)

// authFunc adapts a function to server.Authenticator.
type authFunc func(w http.ResponseWriter, r *http.Request, p server.SignInPrompt) (*server.Identity, error)

func (f authFunc) Authenticate(w http.ResponseWriter, r *http.Request, p server.SignInPrompt) (*server.Identity, error) {
	return f(w, r, p)
}

// withAuth configures the env's handler with a.
func withAuth(a server.Authenticator, more ...func(*server.Config)) envOpts {
	return envOpts{configure: func(c *server.Config) {
		c.Authenticator = a
		for _, f := range more {
			f(c)
		}
	}}
}

// Render with a page name that is no page is an error the Authenticator can
// return (the handler answers with a server error page), never a panic; so
// is data the page's template cannot read.
func TestSignInPromptRenderErrors(t *testing.T) {
	for _, tc := range []struct {
		name, page string
		data       any
		unknown    bool
	}{
		{"unknown page", "password.html", nil, true},
		{"wrong data", "signin.html", 42, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var renderErr error
			e := newEnv(t, withAuth(authFunc(func(w http.ResponseWriter, r *http.Request, p server.SignInPrompt) (*server.Identity, error) {
				renderErr = p.Render(w, http.StatusOK, tc.page, tc.data)
				if renderErr != nil {
					return nil, renderErr
				}
				return nil, server.ErrResponded
			})))
			p := newBrowser(t).get(authURL(e, nil))
			if renderErr == nil || errors.Is(renderErr, server.ErrUnknownPage) != tc.unknown {
				t.Fatalf("Render: %v (want an error; ErrUnknownPage: %v)", renderErr, tc.unknown)
			}
			if p.status != http.StatusInternalServerError || !strings.Contains(p.body, "Server error") || !strings.Contains(p.body, "Try again") {
				t.Errorf("the handler answered %d:\n%s", p.status, p.body)
			}
			if strings.Contains(p.body, tc.page) {
				t.Errorf("the page shows the internal error:\n%s", p.body)
			}
		})
	}
}

// A page of the application's own, from Config.Templates, renders through
// SignInPrompt.Render in the handler's layout and brand.
func TestAuthenticatorOwnPage(t *testing.T) {
	e := newEnv(t, withAuth(authFunc(func(w http.ResponseWriter, r *http.Request, p server.SignInPrompt) (*server.Identity, error) {
		if err := p.Render(w, http.StatusOK, "sso.html", map[string]string{"Org": "Acme"}); err != nil {
			return nil, err
		}
		return nil, server.ErrResponded
	}), func(c *server.Config) {
		c.Templates = fstest.MapFS{"sso.html": {Data: []byte(`{{define "title"}}SSO{{end}}{{define "content"}}<h1>Sign in with {{.Data.Org}} SSO</h1>{{end}}`)}}
	}))
	p := newBrowser(t).get(authURL(e, nil))
	if p.status != 200 || !strings.Contains(p.body, "Sign in with Acme SSO") || !strings.Contains(p.body, `<p class="brand">My Tool</p>`) {
		t.Fatalf("%d:\n%s", p.status, p.body)
	}
}

// The built-in sign-in form serves any Authenticator; the dev page's "any
// e-mail address is accepted" is on the dev page only.
func TestDevNoticeOnlyOnDevPage(t *testing.T) {
	const notice = "any well-formed e-mail address is accepted"
	dev := newEnv(t, envOpts{})
	if p := newBrowser(t).get(authURL(dev, nil)); !strings.Contains(p.body, notice) {
		t.Errorf("the dev page lacks its notice:\n%s", p.body)
	}
	e := newEnv(t, withAuth(authFunc(func(w http.ResponseWriter, r *http.Request, p server.SignInPrompt) (*server.Identity, error) {
		page := p.SignInPage()
		page.Fields = []server.SignInField{{Name: "username", Label: "Username", Autocomplete: "username"}, {Name: "password", Label: "Password", Type: "password"}}
		if err := p.Render(w, http.StatusOK, "signin.html", page); err != nil {
			return nil, err
		}
		return nil, server.ErrResponded
	})))
	p := newBrowser(t).get(authURL(e, nil))
	if p.status != 200 || strings.Contains(p.body, notice) || strings.Contains(p.body, "Development") {
		t.Errorf("another Authenticator's sign-in page says it is the dev page: %d\n%s", p.status, p.body)
	}
	for _, want := range []string{`name="username"`, `type="password"`, `autocomplete="username"`, "Sign in to continue to My Tool"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the form lacks %s:\n%s", want, p.body)
		}
	}
}

// passwordAuth accepts ada/right; a wrong password shows the form again with
// a message; user "locked" gets an error (the handler's failure page).
var passwordAuth = authFunc(func(w http.ResponseWriter, r *http.Request, p server.SignInPrompt) (*server.Identity, error) {
	page := p.SignInPage()
	page.Fields = []server.SignInField{{Name: "username", Label: "Username"}, {Name: "password", Label: "Password", Type: "password"}}
	status := http.StatusOK
	if r.Method == http.MethodPost {
		user, pass := r.PostForm.Get("username"), r.PostForm.Get("password")
		switch {
		case user == "locked":
			return nil, errors.New("This account is locked.")
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
})

var retryRE = regexp.MustCompile(`<a class="button primary" href="([^"]+)">Try again</a>`)

// A wrong password is not a dead end: the form comes back with a message,
// and after an Authenticator error the failure page links back to the
// sign-in step of the same, still valid request.
func TestSignInCanBeRetried(t *testing.T) {
	e := newEnv(t, withAuth(passwordAuth))
	b := newBrowser(t)
	form := b.get(authURL(e, nil))
	p := b.submit(form, url.Values{"username": {"ada"}, "password": {"wrong"}})
	if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "Wrong username or password.") || !strings.Contains(p.body, `value="ada"`) {
		t.Fatalf("wrong password: %d\n%s", p.status, p.body)
	}
	p = b.submit(p, url.Values{"username": {"locked"}, "password": {"x"}})
	m := retryRE.FindStringSubmatch(p.body)
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "This account is locked.") || m == nil {
		t.Fatalf("authenticator error: %d\n%s", p.status, p.body)
	}
	if strings.Contains(p.body, "start the login again") {
		t.Errorf("the failure page sends the user back to the terminal although the request is valid:\n%s", p.body)
	}
	retry, _ := p.url.Parse(html.UnescapeString(m[1]))
	p = b.get(retry.String())
	if p.status != 200 || !strings.Contains(p.body, `name="password"`) {
		t.Fatalf("Try again: %d\n%s", p.status, p.body)
	}
	p = b.submit(p, url.Values{"username": {"ada"}, "password": {"right"}})
	if p.status != 200 || !strings.Contains(p.body, ">Authorize</button>") || !strings.Contains(p.body, "ada@example.com") {
		t.Fatalf("after a retry: %d\n%s", p.status, p.body)
	}
	if p = b.submit(p, url.Values{"decision": {"authorize"}}); e.lastCallback().Get("code") == "" {
		t.Fatalf("no code after the retried sign-in: %d %v", p.status, e.lastCallback())
	}
}

var returnRE = regexp.MustCompile(`<a class="button primary" href="([^"]+)">Back to your terminal</a>`)

// An unknown client is logged, its page names it and says what to do, and
// a button (never an automatic redirect, RFC 6749 §4.1.2.1) takes the
// browser back to the CLI's loopback address with unauthorized_client, so
// the terminal stops waiting.
func TestUnknownClient(t *testing.T) {
	var logs syncBuf
	e := newEnv(t, envOpts{configure: func(c *server.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	}})
	p := newBrowser(t).get(authURL(e, map[string][]string{"client_id": {"othercli"}, "state": {"st-9"}}))
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "Unknown application") || !strings.Contains(p.body, "“othercli”") {
		t.Fatalf("%d:\n%s", p.status, p.body)
	}
	if !strings.Contains(logs.String(), "unknown client") || !strings.Contains(logs.String(), "client_id=othercli") {
		t.Errorf("the unknown client is not logged:\n%s", logs.String())
	}
	if e.lastCallback() != nil {
		t.Fatalf("the handler redirected to the unknown client's URI by itself: %v", e.lastCallback())
	}
	m := returnRE.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no way back to the terminal:\n%s", p.body)
	}
	back := html.UnescapeString(m[1])
	if !strings.HasPrefix(back, e.callbackURL()+"?") {
		t.Fatalf("the button goes to %s", back)
	}
	newBrowser(t).get(back)
	q := e.lastCallback()
	if q.Get("error") != "unauthorized_client" || q.Get("state") != "st-9" || q.Get("iss") != e.issuer ||
		!strings.Contains(q.Get("error_description"), "othercli") {
		t.Errorf("the CLI got %v", q)
	}

	// No usable redirect_uri or state: no button.
	for _, over := range []map[string][]string{
		{"client_id": {"othercli"}, "redirect_uri": {"https://evil.example/cb"}},
		{"client_id": {"othercli"}, "state": nil},
	} {
		p := newBrowser(t).get(authURL(e, over))
		if p.status != http.StatusBadRequest || strings.Contains(p.body, "Back to your terminal") || strings.Contains(p.body, "evil.example") {
			t.Errorf("%v: %d\n%s", over, p.status, p.body)
		}
	}
	// A malformed client_id is not echoed, on the page or to the CLI.
	p = newBrowser(t).get(authURL(e, map[string][]string{"client_id": {"<b>x</b>"}}))
	if p.status != http.StatusBadRequest || strings.Contains(p.body, "&lt;b&gt;") || strings.Contains(p.body, "%3Cb%3E") {
		t.Errorf("a malformed client_id is echoed: %d\n%s", p.status, p.body)
	}
}

// The pages carry the application's name from configuration: Brand.Name,
// else the client's Name, else (no client known) the issuer's host; never
// "keyloop". The consent page's words hold in paste mode too, where the
// browser runs on another machine than the terminal.
func TestPagesNameTheApp(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	_, consent := b.login(authURL(e, nil), "ada@example.com", "authorize")
	host := strings.TrimPrefix(e.issuer, "http://")
	expired := b.get(e.issuer + server.SignInPath + "?req=" + strings.Repeat("A", 43))
	for name, p := range map[string]page{"consent": consent, "expired": expired} {
		if strings.Contains(strings.ToLower(p.body), "keyloop") {
			t.Errorf("%s page says keyloop:\n%s", name, p.body)
		}
	}
	if !strings.Contains(consent.body, `<p class="brand">My Tool</p>`) || !strings.Contains(consent.body, "<title>Authorize My Tool · My Tool</title>") {
		t.Errorf("consent page brand:\n%s", consent.body)
	}
	if strings.Contains(consent.body, "this computer") {
		t.Errorf("the consent page assumes the browser and the terminal share a computer:\n%s", consent.body)
	}
	if !strings.Contains(expired.body, `<p class="brand">`+host+`</p>`) {
		t.Errorf("a page with no client should name the issuer's host %s:\n%s", host, expired.body)
	}

	branded := newEnv(t, envOpts{configure: func(c *server.Config) { c.Brand.Name = "Acme" }})
	_, consent = newBrowser(t).login(authURL(branded, nil), "ada@example.com", "authorize")
	if !strings.Contains(consent.body, `<p class="brand">Acme</p>`) {
		t.Errorf("Brand.Name is not used:\n%s", consent.body)
	}
}
