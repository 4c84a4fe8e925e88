package server_test

import (
	"context"
	"fmt"
	"html"
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

// PasswordAuthenticator signs users in with the app's own username and
// password, on the handler's built-in sign-in form. A wrong password shows
// the form again with a message; the login request stays valid.
type PasswordAuthenticator struct {
	// Check returns the user whose password this is; ok is false otherwise.
	Check func(ctx context.Context, username, password string) (u User, ok bool)
}

// Authenticate implements server.Authenticator.
func (a PasswordAuthenticator) Authenticate(w http.ResponseWriter, r *http.Request, p server.SignInPrompt) (*server.Identity, error) {
	page := p.SignInPage()
	page.Fields = []server.SignInField{
		{Name: "username", Label: "Username", Autocomplete: "username"},
		{Name: "password", Label: "Password", Type: "password", Autocomplete: "current-password"},
	}
	status := http.StatusOK
	if r.Method == http.MethodPost { // the handler has parsed the form and checked its CSRF token
		username := r.PostForm.Get("username")
		if u, ok := a.Check(r.Context(), username, r.PostForm.Get("password")); ok {
			return &server.Identity{Subject: u.ID, Email: u.Email, Name: u.Name}, nil
		}
		page.Fields[0].Value = username
		page.Error = "Wrong username or password."
		status = http.StatusUnauthorized
	}
	if err := p.Render(w, status, "signin.html", page); err != nil {
		return nil, err // an unknown page or unreadable data: the handler shows a server error
	}
	return nil, server.ErrResponded
}

// An Authenticator with its own form on the built-in sign-in page, which
// asks again after a wrong password instead of ending the login.
func ExampleSignInPrompt_SignInPage() {
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	key, _ := server.GenerateKey()
	minter, _ := server.NewSelfSigned(server.SelfSignedConfig{Issuer: issuer, Key: key})
	h, err := server.New(server.Config{
		Issuer:  issuer,
		Clients: []server.Client{{ID: "mytool", Name: "mytool"}},
		Authenticator: PasswordAuthenticator{Check: func(_ context.Context, username, password string) (User, bool) {
			return User{ID: "user_42", Email: "ada@example.com"}, username == "ada" && password == "correct horse"
		}},
		Minter: minter,
	})
	if err != nil {
		panic(err)
	}
	defer h.Close()
	srv.Config.Handler = h
	srv.Start()
	defer srv.Close()

	cli := &oauth2.Config{ClientID: "mytool", RedirectURL: "http://127.0.0.1:9/callback",
		Endpoint: oauth2.Endpoint{AuthURL: issuer + server.AuthorizePath}}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	var page string
	show := func(resp *http.Response, err error) {
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		page = string(b)
		h1 := regexp.MustCompile(`<h1[^>]*>([^<]*)</h1>`).FindStringSubmatch(page)[1]
		msg := regexp.MustCompile(`<p class="error" role="alert">([^<]*)</p>`).FindStringSubmatch(page)
		if msg != nil {
			h1 += " — " + msg[1]
		}
		fmt.Println(resp.StatusCode, h1)
	}
	submit := func(fields url.Values) {
		action := regexp.MustCompile(`<form method="post" action="([^"]+)">`).FindStringSubmatch(page)[1]
		fields.Set(server.CSRFField, regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindStringSubmatch(page)[1])
		show(browser.PostForm(issuer+html.UnescapeString(action), fields))
	}
	show(browser.Get(cli.AuthCodeURL("state-1", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))))
	submit(url.Values{"username": {"ada"}, "password": {"wrong"}})
	submit(url.Values{"username": {"ada"}, "password": {"correct horse"}})
	fmt.Println(strings.Contains(page, "ada@example.com"))
	// Output:
	// 200 Sign in to continue to mytool
	// 401 Sign in to continue to mytool — Wrong username or password.
	// 200 Authorize mytool?
	// true
}
