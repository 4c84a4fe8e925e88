package clerk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
// On GET it writes a page that loads Clerk's browser SDK (with
// data-clerk-proxy-url and data-clerk-domain when configured, and
// Clerk.load({isSatellite, signInUrl, signUpUrl})). When load() returns
// with Clerk.loaded false, clerk-js is taking the browser elsewhere (a
// signed-out satellite syncs with the primary domain first) and the page
// waits. Then, as clerk-js tells the states apart:
//
//   - signed out (no Clerk.session): Clerk.redirectToSignIn, back to the
//     same URL;
//   - pending (Clerk.session set but Clerk.isSignedIn false: tasks such as
//     choosing an organization): Clerk.redirectToTasks (or the sign-in page,
//     which shows the tasks), back to the same URL;
//   - signed in: posts Clerk.session.getToken({skipCache: true}) — a token
//     minted now for this page's origin, not a cached one minted for
//     another — with the CSRF field to p.Action.
//
// It returns server.ErrResponded.
//
// On POST it verifies the posted session token (VerifySessionToken), checks
// with the Backend API that the Clerk session is active and not an
// unallowed impersonation (session.Get), and reads the user (user.Get),
// refusing banned and locked users. A pending session gets the sign-in page
// again, which sends the browser to finish its tasks; other refusals are
// returned as errors the handler shows.
func (p *Provider) Authenticate(w http.ResponseWriter, r *http.Request, prompt server.SignInPrompt) (*server.Identity, error) {
	if r.Method != http.MethodPost {
		p.renderSignIn(w, http.StatusOK, prompt, false)
		return nil, server.ErrResponded
	}
	id, err := p.identify(r.Context(), r.PostFormValue(SessionTokenField))
	if errors.Is(err, ErrSessionPending) {
		// The browser's Clerk session has tasks to finish (clerk-js may
		// not have known yet): send it there and back.
		p.renderSignIn(w, http.StatusConflict, prompt, true)
		return nil, server.ErrResponded
	}
	return id, err
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
	act := claims.Actor
	if len(s.Actor) > 0 && string(s.Actor) != "null" && act == nil {
		// The Backend API knows the session as impersonated even though
		// the token did not say so.
		if !p.cfg.AllowImpersonation {
			return nil, refuse(ErrImpersonation, "the Clerk session was started by impersonation", nil)
		}
		act = map[string]any{"sub": actorSub(s.Actor)}
	}
	u, err := p.users.Get(ctx, claims.Subject)
	if err != nil {
		return nil, apiError("user.Get", err)
	}
	if u.Banned || u.Locked {
		return nil, blockedError(u)
	}
	id := &server.Identity{
		Subject:   claims.Subject,
		SessionID: claims.SessionID,
		Email:     primaryEmail(u),
		Name:      strings.TrimSpace(deref(u.FirstName) + " " + deref(u.LastName)),
	}
	if act != nil {
		sub, _ := act["sub"].(string)
		id.Claims = map[string]any{"act": act}
		// The consent page shows Email: make the impersonation visible
		// there.
		id.Email = strings.TrimSpace(id.Email + " (impersonated by " + sub + ")")
	}
	return id, nil
}

func blockedError(u *sdk.User) error {
	if u.Banned {
		return fmt.Errorf("%w: banned", ErrUserBlocked)
	}
	return fmt.Errorf("%w: locked (too many failed sign-in attempts, or locked by an administrator)", ErrUserBlocked)
}

// actorSub returns the "sub" of a Backend API session's actor object.
func actorSub(raw json.RawMessage) string {
	var a struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(raw, &a)
	return a.Sub
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

// loadOptions are the options the page passes to Clerk.load().
type loadOptions struct {
	IsSatellite bool   `json:"isSatellite,omitempty"`
	SignInURL   string `json:"signInUrl,omitempty"`
	SignUpURL   string `json:"signUpUrl,omitempty"`
}

type pageData struct {
	server.SignInPrompt
	PublishableKey string
	ClerkJSURL     string
	ProxyURL       string
	Domain         string
	LoadOptions    loadOptions
	TokenField     string
	// Pending is set when the backend found the posted session pending:
	// the page goes to the tasks whatever clerk-js says.
	Pending bool
}

func (p *Provider) renderSignIn(w http.ResponseWriter, status int, prompt server.SignInPrompt, pending bool) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", p.csp(prompt.Nonce))
	w.WriteHeader(status)
	_ = signInPage.Execute(w, pageData{
		SignInPrompt:   prompt,
		PublishableKey: p.cfg.PublishableKey,
		ClerkJSURL:     p.cfg.ClerkJSURL,
		ProxyURL:       p.cfg.ProxyURL,
		Domain:         p.cfg.Domain,
		LoadOptions:    loadOptions{IsSatellite: p.cfg.IsSatellite, SignInURL: p.cfg.SignInURL, SignUpURL: p.cfg.SignUpURL},
		TokenField:     SessionTokenField,
		Pending:        pending,
	})
}

// csp allows what Clerk's CSP guide lists for the parts of clerk-js this
// page uses: scripts from the Frontend API the browser talks to (or the
// proxy) and ClerkJSURL, Cloudflare's bot protection and Clerk's abuse and
// fraud protection (Protect: scripts, frames, and connections on any port)
// hosts, img.clerk.com, workers from 'self' and blob:, and the Frontend
// API for connections. The page mounts no Clerk UI components, so it needs
// no 'unsafe-inline' styles: its own <style> carries the nonce.
func (p *Provider) csp(nonce string) string {
	js := p.cfg.ClerkJSURL
	if u, err := url.Parse(js); err == nil {
		js = origin(u)
	}
	fapi := frontendOrigin(p.d.browserFAPI)
	scripts := "'nonce-" + nonce + "' " + fapi
	if js != fapi {
		scripts += " " + js
	}
	return strings.Join([]string{
		"default-src 'none'",
		"script-src " + scripts + " https://challenges.cloudflare.com https://*.protect.clerk.com",
		"connect-src " + fapi + " https://*.protect.clerk.com:*",
		"img-src https://img.clerk.com",
		"style-src 'nonce-" + nonce + "'",
		"worker-src 'self' blob:",
		"frame-src https://challenges.cloudflare.com https://*.protect.clerk.com",
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
<script async crossorigin="anonymous" data-clerk-publishable-key="{{.PublishableKey}}"{{with .ProxyURL}} data-clerk-proxy-url="{{.}}"{{end}}{{with .Domain}} data-clerk-domain="{{.}}"{{end}} src="{{.ClerkJSURL}}" nonce="{{.Nonce}}"></script>
</head><body>
<h1>Signing in{{with .ClientName}} to {{.}}{{end}}</h1>
<p id="status" role="status"{{if .Pending}} data-pending{{end}}>{{if .Pending}}Your Clerk account has a step to finish first…{{else}}Checking your Clerk session…{{end}}</p>
<noscript><p>This sign-in needs JavaScript.</p></noscript>
<form id="clerk-form" method="post" action="{{.Action}}">
<input type="hidden" name="{{.CSRFField}}" value="{{.CSRFToken}}">
<input type="hidden" name="{{.TokenField}}" value="">
</form>
<script nonce="{{.Nonce}}">
window.addEventListener("load", async function () {
  var status = document.getElementById("status");
  // Leave for Clerk at most once a minute per step; coming back in the same
  // state means it did not stick.
  function once(step, message) {
    var key = "keyloop-clerk-" + step + ":" + location.pathname + location.search;
    var last = Number(sessionStorage.getItem(key) || 0);
    if (Date.now() - last < 60000) throw new Error(message);
    sessionStorage.setItem(key, String(Date.now()));
  }
  try {
    if (!window.Clerk) throw new Error("Clerk's browser SDK did not load");
    await Clerk.load({{.LoadOptions}});
    if (!Clerk.loaded) {
      // clerk-js is taking the browser elsewhere (a satellite syncing its
      // session with the primary domain) and comes back here.
      status.textContent = "Connecting to your Clerk session…";
      setTimeout(function () {
        status.textContent = "Sign-in with Clerk failed: Clerk's browser SDK did not finish loading";
      }, 20000);
      return;
    }
    // Read after load(): clerk-js has removed its own query parameters
    // (__clerk_synced, __clerk_db_jwt), which must not come back here.
    var back = location.href;
    var redirect = {redirectUrl: back, signInForceRedirectUrl: back, signUpForceRedirectUrl: back};
    if (!Clerk.session) {
      once("signin", "still signed out after signing in with Clerk (are cookies blocked?)");
      status.textContent = "Redirecting to sign-in…";
      await Clerk.redirectToSignIn(redirect);
      return;
    }
    if (status.hasAttribute("data-pending") || !Clerk.isSignedIn) {
      // A pending session: clerk-js sets Clerk.session but not isSignedIn
      // until its tasks are done (or the backend found it pending).
      once("tasks", "your Clerk account still has a step to finish (" + (Clerk.session.currentTask ? Clerk.session.currentTask.key : "pending") + ")");
      status.textContent = "Finishing your Clerk sign-in…";
      if (Clerk.session.currentTask && typeof Clerk.redirectToTasks === "function") {
        await Clerk.redirectToTasks(redirect);
      } else {
        await Clerk.redirectToSignIn(redirect);
      }
      return;
    }
    var token = await Clerk.session.getToken({skipCache: true});
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
