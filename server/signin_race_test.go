package server_test

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/keyloop/keyloop/server"
	"golang.org/x/oauth2"
)

// gateAuth renders a one-button sign-in form and signs in the user named
// in the "who" field; a POST for a name in hold waits until its channel is
// closed, after telling entered.
type gateAuth struct {
	entered chan string
	hold    map[string]chan struct{}
}

func (a *gateAuth) Authenticate(w http.ResponseWriter, r *http.Request, p server.SignInPrompt) (*server.Identity, error) {
	if r.Method != http.MethodPost {
		fmt.Fprintf(w, `<form method="post" action="%s"><input type="hidden" name="csrf_token" value="%s"><button>Sign in</button></form>`,
			html.EscapeString(p.Action), html.EscapeString(p.CSRFToken))
		return nil, server.ErrResponded
	}
	who := r.PostForm.Get("who")
	if c, ok := a.hold[who]; ok {
		a.entered <- who
		<-c
	}
	return &server.Identity{Subject: who, Email: who + "@example.com"}, nil
}

// A sign-in POST that finishes after a concurrent sign-in and consent
// decision already turned the pending authorization into a code must not
// bring the pending authorization back (which would let the consent page
// issue a second code for one authorization request).
func TestSlowSignInCannotRestoreUsedRequest(t *testing.T) {
	release := make(chan struct{})
	auth := &gateAuth{entered: make(chan string, 1), hold: map[string]chan struct{}{"slow": release}}
	e := newEnv(t, envOpts{configure: func(c *server.Config) { c.Authenticator = auth }})
	cfg := e.oauthConfig("mytool")
	b := newBrowser(t)
	signin := b.get(cfg.AuthCodeURL("state-1", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	m, c := formActionRE.FindStringSubmatch(signin.body), csrfRE.FindStringSubmatch(signin.body)
	if m == nil || c == nil {
		t.Fatalf("no sign-in form:\n%s", signin.body)
	}
	action, _ := signin.url.Parse(html.UnescapeString(m[1]))
	post := func(who string) (*http.Response, string, error) {
		form := url.Values{"csrf_token": {html.UnescapeString(c[1])}, "who": {who}}
		req, _ := http.NewRequest("POST", action.String(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := b.c.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body), nil
	}

	var wg sync.WaitGroup
	var slowResp *http.Response
	var slowBody string
	var slowErr error
	wg.Go(func() { slowResp, slowBody, slowErr = post("slow") })
	<-auth.entered // the slow sign-in has read the pending authorization

	resp, body, err := post("fast")
	if err != nil || resp.StatusCode != 200 || !strings.Contains(body, ">Authorize</button>") {
		t.Fatalf("fast sign-in: %v, %v:\n%s", err, resp, body)
	}
	consent := page{status: resp.StatusCode, url: resp.Request.URL, header: resp.Header, body: body}
	if p := b.submit(consent, url.Values{"decision": {"authorize"}}); p.body != "callback received" {
		t.Fatalf("consent: %d %s", p.status, p.body)
	}
	first := e.lastCallback().Get("code")
	if first == "" {
		t.Fatalf("no code after consent: %v", e.lastCallback())
	}

	close(release)
	wg.Wait()
	if slowErr != nil {
		t.Fatal(slowErr)
	}
	if strings.Contains(slowBody, ">Authorize</button>") {
		// The used request is back: a second decision mints a second code.
		p := b.submit(page{status: slowResp.StatusCode, url: slowResp.Request.URL, body: slowBody}, url.Values{"decision": {"authorize"}})
		t.Fatalf("the slow sign-in restored the used authorization request; consenting again gave %d, code %t",
			p.status, e.lastCallback().Get("code") != first)
	}
	if slowResp.StatusCode != 400 || !strings.Contains(slowBody, "expired or was already used") {
		t.Fatalf("slow sign-in: %d\n%s", slowResp.StatusCode, slowBody)
	}
}
