package clilogin_test

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"time"

	"golang.org/x/oauth2"

	"github.com/keyloop/keyloop/clilogin"
	"github.com/keyloop/keyloop/tokenstore"
)

// A CLI's "login" command: run the browser flow, with a time limit and
// Ctrl+C canceling it.
func ExampleClient_Login() {
	client, err := clilogin.New(clilogin.Config{
		Issuer:   "http://127.0.0.1:8787", // the backend; endpoints come from its metadata
		ClientID: "mytool",
		AppName:  "mytool",
		TokenEnv: "MYTOOL_TOKEN",
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()

	sess, err := client.Login(ctx)
	switch {
	case errors.Is(err, clilogin.ErrAccessDenied):
		log.Fatal("the sign-in was denied in the browser")
	case err != nil:
		log.Fatal(err) // timeouts say what to do, and wrap ctx.Err()
	}
	fmt.Printf("Logged in as %s until %s\n", sess.Account, sess.Expiry.Format(time.RFC1123))
}

// A CLI's "token" command prints a valid access token, refreshing it first
// when it is close to expiry. Here the token comes from the TokenEnv
// override, so nothing is read from the keychain.
func ExampleClient_Token() {
	os.Setenv("MYTOOL_TOKEN", "example-token")
	defer os.Unsetenv("MYTOOL_TOKEN")

	client, err := clilogin.New(clilogin.Config{
		Issuer: "http://127.0.0.1:8787", ClientID: "mytool", AppName: "mytool",
		TokenEnv: "MYTOOL_TOKEN",
		OnRefreshError: func(err error) {
			log.Printf("warning: %v", err) // the old token is still valid and is used
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	tok, err := client.Token(context.Background())
	if errors.Is(err, clilogin.ErrLoginRequired) {
		log.Fatal(err) // "clilogin: …; run `mytool login`"
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.Type(), tok.AccessToken)
	// Output: Bearer example-token
}

// HTTPClient sends the bearer token with every request and, when the API
// answers 401, refreshes once and retries idempotent requests.
func ExampleClient_HTTPClient() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "the API saw %q\n", r.Header.Get("Authorization"))
	}))
	defer api.Close()
	os.Setenv("MYTOOL_TOKEN", "example-token")
	defer os.Unsetenv("MYTOOL_TOKEN")

	client, err := clilogin.New(clilogin.Config{
		Issuer: "http://127.0.0.1:8787", ClientID: "mytool", AppName: "mytool", TokenEnv: "MYTOOL_TOKEN",
	})
	if err != nil {
		log.Fatal(err)
	}
	resp, err := client.HTTPClient(context.Background()).Get(api.URL + "/api/me")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(os.Stdout, resp.Body)
	// Output: the API saw "Bearer example-token"
}

// A CLI brands the success page with its own template and keeps the default
// failure page. The page runs under a strict Content-Security-Policy: inline
// styles need the response's nonce, and nothing may load from elsewhere.
func ExampleDefaultPages() {
	pages := template.Must(clilogin.DefaultPages().Parse(`{{define "success"}}<!doctype html>
<html lang="en"><title>{{.Title}}</title><style nonce="{{.Nonce}}">body{font:1rem system-ui}</style>
<h1>{{.Title}}</h1><p>Welcome, {{.Account}}! Head back to your terminal.</p>{{end}}`))
	if _, err := clilogin.New(clilogin.Config{
		Issuer: "http://127.0.0.1:8787", ClientID: "mytool", AppName: "mytool", Pages: pages,
	}); err != nil {
		log.Fatal(err)
	}
	// What the browser gets after a successful login (the nonce is random
	// per response):
	_ = pages.ExecuteTemplate(os.Stdout, "success", clilogin.PageData{
		AppName: "mytool", OK: true, Title: "Signed in to mytool", Account: "ada@example.com", Nonce: "Zm9v",
	})
	// Output:
	// <!doctype html>
	// <html lang="en"><title>Signed in to mytool</title><style nonce="Zm9v">body{font:1rem system-ui}</style>
	// <h1>Signed in to mytool</h1><p>Welcome, ada@example.com! Head back to your terminal.</p>
}

// Over SSH or in a container the browser cannot reach the CLI's loopback
// listener. In paste mode (NoBrowser, or detected automatically) the user
// opens the printed URL on any machine, signs in, and pastes back the address
// of the page that failed to load; the listener keeps waiting meanwhile, so
// a browser on this machine still works.
func ExampleClient_Login_paste() {
	client, err := clilogin.New(clilogin.Config{
		Issuer: "http://127.0.0.1:8787", ClientID: "mytool", AppName: "mytool",
		NoBrowser: true,
		Stdin:     os.Stdin, // the default when stdin is a terminal or a pipe
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	sess, err := client.Login(ctx)
	if errors.Is(err, clilogin.ErrStateMismatch) {
		log.Fatal("the pasted URL belongs to another login") // after 5 tries
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Println("Logged in as", sess.Account)
}

// A login on a machine without a browser (a CI runner, a TV-like console):
// the device flow prints a URL and a code, the user approves on their phone,
// and Login returns once the server says so. With DeviceAuto (the zero
// value) Login picks it by itself where no browser can open and nothing can
// be pasted back.
func ExampleClient_Login_device() {
	client, err := clilogin.New(clilogin.Config{
		Issuer: "http://127.0.0.1:8787", ClientID: "mytool", AppName: "mytool",
		Device: clilogin.DeviceAlways,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	sess, err := client.Login(ctx)
	switch {
	case errors.Is(err, clilogin.ErrAccessDenied), errors.Is(err, clilogin.ErrDeviceCodeExpired):
		log.Fatal(clilogin.Message(err)) // "The sign-in was denied on the other device, …"
	case err != nil:
		log.Fatal(clilogin.Message(err))
	}
	fmt.Println("Logged in as", sess.Account)
}

// A CLI's "status" command reads the stored login without any network call.
// With an in-memory store nothing is stored yet, so the user is told to log
// in.
func ExampleClient_Status() {
	client, err := clilogin.New(clilogin.Config{
		Issuer: "http://127.0.0.1:8787", ClientID: "mytool", AppName: "mytool",
		Store: tokenstore.NewMemory(), // nil means the OS keychain with a file fallback
	})
	if err != nil {
		log.Fatal(err)
	}
	sess, err := client.Status(context.Background())
	if errors.Is(err, clilogin.ErrNotLoggedIn) {
		fmt.Println("not logged in:", err)
		return
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s until %s (%s)\n", sess.Account, sess.Expiry, sess.Location.Kind)
	// Output: not logged in: clilogin: not logged in
}

// A CLI's "logout" command revokes the token at the server and deletes it
// here. With the server unreachable it still logs out locally and says the
// server could not be told.
func ExampleClient_Logout() {
	client, err := clilogin.New(clilogin.Config{Issuer: "http://127.0.0.1:8787", ClientID: "mytool", AppName: "mytool"})
	if err != nil {
		log.Fatal(err)
	}
	switch err := client.Logout(context.Background()); {
	case errors.Is(err, clilogin.ErrNotLoggedIn):
		fmt.Println("not logged in; nothing to do")
	case errors.Is(err, clilogin.ErrRevocationFailed):
		fmt.Println("logged out here; the server could not be told:", err)
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println("logged out")
	}
}

// TokenSource plugs the login into anything that takes an
// oauth2.TokenSource, such as oauth2.NewClient or a gRPC credential.
func ExampleClient_TokenSource() {
	os.Setenv("MYTOOL_TOKEN", "example-token")
	defer os.Unsetenv("MYTOOL_TOKEN")
	client, err := clilogin.New(clilogin.Config{
		Issuer: "http://127.0.0.1:8787", ClientID: "mytool", AppName: "mytool", TokenEnv: "MYTOOL_TOKEN",
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	httpClient := oauth2.NewClient(ctx, client.TokenSource(ctx))
	_ = httpClient // use it for API calls
	tok, err := client.TokenSource(ctx).Token()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.AccessToken)
	// Output: example-token
}

// What a CLI prints when a call fails: Message's sentence, not the error
// chain a developer logs.
func ExampleMessage() {
	err := fmt.Errorf("refresh: %w", &clilogin.UnreachableError{
		Endpoint: "token endpoint", URL: "https://auth.example.com/oauth/token", Waited: 30 * time.Second, Timeout: true,
	})
	fmt.Println(err)
	fmt.Println(clilogin.Message(err))
	fmt.Println(errors.Is(err, clilogin.ErrServerUnreachable))
	// Output:
	// refresh: clilogin: the token endpoint https://auth.example.com/oauth/token did not answer within 30s
	// The token endpoint https://auth.example.com/oauth/token did not answer within 30s. Check that the server is up and reachable, then try again.
	// true
}

// A status command decides its exit code with Usable: a login that ended
// at the server, or an expired token that cannot be refreshed, needs a new
// sign-in.
func ExampleSession_Usable() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, s := range []*clilogin.Session{
		{Account: "ada@example.com", Expiry: now.Add(time.Hour)},
		{Account: "ada@example.com", Expiry: now.Add(-time.Hour), CanRefresh: true},
		{Account: "ada@example.com", Expiry: now.Add(-time.Hour)},
		{Account: "ada@example.com", Ended: &clilogin.LoginEnd{At: now, Reason: clilogin.EndRevoked}},
	} {
		why := ""
		if s.Ended != nil {
			why = " (" + s.Ended.Explain() + ")"
		}
		fmt.Printf("usable=%v%s\n", s.Usable(now), why)
	}
	// Output:
	// usable=true
	// usable=true
	// usable=false
	// usable=false (the server revoked it.)
}
