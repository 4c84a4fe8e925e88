package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"

	"golang.org/x/oauth2"

	"github.com/keyloop/keyloop/server"
)

// SessionAuthenticator signs the browser user in from the app's own web
// session: the cookie its sign-in page sets. With no session, it sends the
// browser to that page, which sends it back to the login afterwards.
type SessionAuthenticator struct {
	// Cookie is the name of the app's session cookie. It must reach
	// /oauth/signin: Path "/" on the issuer's host.
	Cookie string
	// Lookup returns the signed-in user of a session cookie value; ok is
	// false for an unknown or ended session.
	Lookup func(r *http.Request, session string) (u User, ok bool)
	// SignInURL is the app's sign-in page. It takes the address to return
	// to in its "next" parameter (a path on this host: check that).
	SignInURL string
}

// User is the app's own user record.
type User struct{ ID, Email, Name string }

// Authenticate implements server.Authenticator.
func (a *SessionAuthenticator) Authenticate(w http.ResponseWriter, r *http.Request, p server.SignInPrompt) (*server.Identity, error) {
	if c, err := r.Cookie(a.Cookie); err == nil {
		if u, ok := a.Lookup(r, c.Value); ok {
			return &server.Identity{Subject: u.ID, Email: u.Email, Name: u.Name}, nil
		}
	}
	// Not signed in: the app's own sign-in page, then back to p.Action,
	// where this method runs again and finds the session.
	http.Redirect(w, r, a.SignInURL+"?next="+url.QueryEscape(p.Action), http.StatusSeeOther)
	return nil, server.ErrResponded
}

// An Authenticator that takes the user from the app's existing session
// cookie, redirecting to the app's own sign-in page and back when there is
// none. The browser here is an http.Client with a cookie jar.
func ExampleAuthenticator() {
	// The app's own sign-in: a form that checks the password, sets the
	// session cookie and returns to "next".
	sessions := map[string]User{}
	app := http.NewServeMux()
	app.HandleFunc("GET /signin", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<form method="post" action="/signin?next=%s">…</form>`, url.QueryEscape(r.URL.Query().Get("next")))
	})
	app.HandleFunc("POST /signin", func(w http.ResponseWriter, r *http.Request) {
		if r.PostFormValue("user") != "ada" || r.PostFormValue("password") != "correct horse" {
			http.Error(w, "wrong user or password", http.StatusUnauthorized)
			return
		}
		sessions["s-1"] = User{ID: "user_42", Email: "ada@example.com", Name: "Ada"}
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "s-1", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		next := r.URL.Query().Get("next")
		if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
			next = "/" // only ever a path on this host: no open redirect
		}
		http.Redirect(w, r, next, http.StatusSeeOther)
	})

	srv := httptest.NewUnstartedServer(app)
	issuer := "http://" + srv.Listener.Addr().String()
	key, _ := server.GenerateKey()
	minter, _ := server.NewSelfSigned(server.SelfSignedConfig{Issuer: issuer, Key: key})
	h, err := server.New(server.Config{
		Issuer:  issuer,
		Clients: []server.Client{{ID: "mytool", Name: "mytool"}},
		Authenticator: &SessionAuthenticator{
			Cookie:    "session",
			SignInURL: "/signin",
			Lookup: func(_ *http.Request, s string) (User, bool) {
				u, ok := sessions[s]
				return u, ok
			},
		},
		Minter: minter,
	})
	if err != nil {
		panic(err)
	}
	defer h.Close()
	app.Handle(server.MetadataPath, h)
	app.Handle("/oauth/", h)
	srv.Start()
	defer srv.Close()

	// The CLI's side: its authorization request (clilogin builds it).
	cli := &oauth2.Config{ClientID: "mytool", RedirectURL: "http://127.0.0.1:9/callback",
		Endpoint: oauth2.Endpoint{AuthURL: issuer + server.AuthorizePath}}
	authURL := cli.AuthCodeURL("state-1", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	show := func(resp *http.Response, err error) string {
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.StatusCode, resp.Request.URL.Path)
		return string(body)
	}
	// No session yet: the app's sign-in page, whose form returns to the
	// login afterwards.
	page := show(browser.Get(authURL))
	action := regexp.MustCompile(`action="([^"]+)"`).FindStringSubmatch(page)[1]
	// Signing in there brings the browser back to the login: the consent
	// page, for the user of the session.
	consent := show(browser.PostForm(issuer+action, url.Values{"user": {"ada"}, "password": {"correct horse"}}))
	fmt.Println(regexp.MustCompile(`<h1[^>]*>([^<]*)</h1>`).FindStringSubmatch(consent)[1],
		strings.Contains(consent, "ada@example.com"))
	// Output:
	// 200 /signin
	// 200 /oauth/signin
	// Authorize mytool? true
}
