package clerk

import (
	"context"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	sdk "github.com/clerk/clerk-sdk-go/v2"

	"github.com/keyloop/keyloop/server"
)

// SessionTokenField is the form field the sign-in page posts the Clerk
// session token in.
const SessionTokenField = "clerk_session_token"

// Authenticate implements server.Authenticator.
//
// On GET it writes a page that loads Clerk's browser SDK; a signed-out user
// is sent to Clerk's sign-in with Clerk.redirectToSignIn and comes back to
// the same URL; a signed-in browser posts Clerk.session.getToken() with the
// CSRF field to p.Action. It returns server.ErrResponded.
//
// On POST it verifies the posted session token (VerifySessionToken), checks
// with the Backend API that the Clerk session is active (session.Get) and
// reads the user's e-mail address and name (user.Get).
func (p *Provider) Authenticate(w http.ResponseWriter, r *http.Request, prompt server.SignInPrompt) (*server.Identity, error) {
	if r.Method != http.MethodPost {
		p.renderSignIn(w, prompt)
		return nil, server.ErrResponded
	}
	return p.identify(r.Context(), r.PostFormValue(SessionTokenField))
}

func (p *Provider) identify(ctx context.Context, token string) (*server.Identity, error) {
	claims, err := p.VerifySessionToken(ctx, token)
	if err != nil {
		return nil, err
	}
	s, err := p.activeSession(ctx, claims.SessionID)
	if err != nil {
		return nil, err
	}
	if s.UserID != claims.Subject {
		return nil, refuse(nil, "the session belongs to another user", nil)
	}
	u, err := p.users.Get(ctx, claims.Subject)
	if err != nil {
		return nil, apiError("user.Get", err)
	}
	return &server.Identity{
		Subject:   claims.Subject,
		SessionID: claims.SessionID,
		Email:     primaryEmail(u),
		Name:      strings.TrimSpace(deref(u.FirstName) + " " + deref(u.LastName)),
	}, nil
}

func primaryEmail(u *sdk.User) string {
	for _, e := range u.EmailAddresses {
		if e != nil && u.PrimaryEmailAddressID != nil && e.ID == *u.PrimaryEmailAddressID {
			return e.EmailAddress
		}
	}
	return ""
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

type pageData struct {
	server.SignInPrompt
	PublishableKey string
	ClerkJSURL     string
	TokenField     string
}

func (p *Provider) renderSignIn(w http.ResponseWriter, prompt server.SignInPrompt) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", p.csp(prompt.Nonce))
	_ = signInPage.Execute(w, pageData{
		SignInPrompt:   prompt,
		PublishableKey: p.cfg.PublishableKey,
		ClerkJSURL:     p.cfg.ClerkJSURL,
		TokenField:     SessionTokenField,
	})
}

// csp allows the Clerk JS origin, the Frontend API and the page's nonce, as
// Clerk's CSP guide lists, and nothing else.
func (p *Provider) csp(nonce string) string {
	js := p.cfg.ClerkJSURL
	if u, err := url.Parse(js); err == nil {
		js = origin(u)
	}
	fapi := frontendOrigin(p.cfg.FrontendAPIURL)
	return strings.Join([]string{
		"default-src 'none'",
		"script-src 'nonce-" + nonce + "' " + js + " " + fapi + " https://challenges.cloudflare.com",
		"connect-src " + fapi,
		"img-src https://img.clerk.com",
		"style-src 'nonce-" + nonce + "'",
		"worker-src 'self' blob:",
		"frame-src https://challenges.cloudflare.com",
		"form-action 'self'",
		"base-uri 'none'",
		"frame-ancestors 'none'",
	}, "; ")
}

var signInPage = template.Must(template.New("clerk-signin").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Signing in{{with .ClientName}} to {{.}}{{end}}</title>
<style nonce="{{.Nonce}}">body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}</style>
<script async crossorigin="anonymous" data-clerk-publishable-key="{{.PublishableKey}}" src="{{.ClerkJSURL}}" nonce="{{.Nonce}}"></script>
</head><body>
<h1>Signing in{{with .ClientName}} to {{.}}{{end}}</h1>
<p id="status" role="status">Checking your Clerk session…</p>
<noscript><p>This sign-in needs JavaScript.</p></noscript>
<form id="clerk-form" method="post" action="{{.Action}}">
<input type="hidden" name="{{.CSRFField}}" value="{{.CSRFToken}}">
<input type="hidden" name="{{.TokenField}}" value="">
</form>
<script nonce="{{.Nonce}}">
window.addEventListener("load", async function () {
  var status = document.getElementById("status");
  try {
    if (!window.Clerk) throw new Error("Clerk's browser SDK did not load");
    await Clerk.load();
    if (!Clerk.user || !Clerk.session) {
      // Go to Clerk's sign-in once and come back here; a second signed-out
      // visit within a minute means the sign-in did not stick.
      var key = "keyloop-clerk-redirect:" + location.pathname + location.search;
      var last = Number(sessionStorage.getItem(key) || 0);
      if (Date.now() - last < 60000) throw new Error("still signed out after signing in with Clerk (are cookies blocked?)");
      sessionStorage.setItem(key, String(Date.now()));
      status.textContent = "Redirecting to sign-in…";
      await Clerk.redirectToSignIn({signInForceRedirectUrl: location.href, signUpForceRedirectUrl: location.href});
      return;
    }
    var token = await Clerk.session.getToken();
    if (!token) throw new Error("Clerk returned no session token");
    var form = document.getElementById("clerk-form");
    form.elements[{{.TokenField}}].value = token;
    status.textContent = "Signed in, continuing…";
    form.submit();
  } catch (e) {
    status.textContent = "Sign-in with Clerk failed: " + (e && e.message ? e.message : e);
  }
});
</script>
</body></html>
`))
