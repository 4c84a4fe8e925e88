// Package clilogin gives a Go command-line tool a browser login: it opens the
// authorization server's sign-in page, catches the result on a one-shot
// loopback server (RFC 8252, authorization code with PKCE), verifies the JWT
// it receives, keeps it in a tokenstore.Store and refreshes it before it
// expires.
//
// A CLI builds one Client from a Config and calls Login for its "login"
// command, Status for "status", Token (or TokenSource, or HTTPClient) wherever
// it needs to call its API, and Logout for "logout".
//
// It works with a keyloop server and with any OAuth 2.0 or OpenID Connect
// provider. Every endpoint is discovered from the server's RFC 8414 or
// OpenID Connect metadata (or given in Config.Endpoints when a provider
// publishes none); only the issuer URL is configured. Access tokens are
// verified when the server says how (keyloop servers: a JWT checked
// against the server's JWKS with EdDSA, ES256, RS256 or PS256, never
// "none" or HMAC, for "iss", "aud" when one is configured or advertised,
// and "exp"/"nbf"/"iat" with a small leeway); other providers' access
// tokens are taken as their token endpoint returns them (see
// AccessTokenMode). With the "openid" scope, the ID token is verified and
// names the user.
//
// Login prints the URL first, then opens the browser and shows a spinner with
// the elapsed time on a terminal (plain lines elsewhere). Over SSH, in a
// container or with Config.NoBrowser it runs in paste mode: the user signs in
// on any machine and pastes back the address the browser ended on, while the
// loopback listener keeps waiting; whichever arrives first wins. The browser
// is sent to a clean /done URL (the code leaves the address bar) that shows a
// self-contained success or failure page, customizable with Config.Pages.
// Where no browser can open and nothing can be pasted back (CI, no
// terminal), or with Config.Device, it uses the device flow (RFC 8628)
// instead: it prints a short URL and a code, the user approves on any other
// device, and Login polls the server until then.
//
// Refresh tokens rotate, so a refresh's answer holds the only live one: it is
// saved before the new access token is verified, the token request finishes
// even when the caller's ctx ends, and a refresh token the server refused
// (invalid_grant) marks the login ended in the store, so no process sends
// it again (see Token).
//
// Errors callers act on are sentinels (ErrNotLoggedIn, ErrLoginRequired,
// ErrLoginEnded, ErrStorage, ErrServerUnreachable, ErrAccessDenied,
// ErrStateMismatch, …) usable with errors.Is; a login that times out or is
// canceled returns an error wrapping ctx.Err(). A store that cannot be read
// is never reported as "not logged in", and a server that does not answer
// is named with the endpoint and how long it was given. What a CLI prints
// for an error is Message(err): a sentence, not an error chain. No error,
// and nothing printed, ever contains a token, a refresh token or an
// authorization code.
package clilogin

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/keyloop/keyloop/internal/shell"
	"github.com/keyloop/keyloop/tokenstore"
)

// Config configures a Client. Only Issuer, ClientID and AppName are required;
// every other zero value is documented on its field.
type Config struct {
	// Issuer is the authorization server's issuer URL, as the provider
	// publishes it ("https://tenant.auth0.com/",
	// "https://login.microsoftonline.com/TENANT-ID/v2.0"). Every endpoint
	// is discovered from its metadata: RFC 8414
	// (/.well-known/oauth-authorization-server) or OpenID Connect Discovery
	// (/.well-known/openid-configuration), for an issuer with a path in
	// each standard's form (see Login). The metadata's "issuer" must be
	// this URL; one terminating "/" more or less is accepted, and from then
	// on the published form is compared exactly (the callback's "iss", the
	// tokens' "iss"). The stored login's key ignores a terminating "/", so
	// both forms share one login. It must be https, except for loopback
	// hosts (127.0.0.0/8, [::1], localhost). Required, also with
	// Endpoints, where it names the provider in messages and in the
	// store.
	Issuer string
	// Endpoints, when set, are the provider's endpoints and nothing is
	// discovered: for providers that publish no metadata (GitHub OAuth
	// apps). Nil means discovery from Issuer.
	Endpoints *Endpoints
	// ClientID is the OAuth client ID the server registered for this CLI.
	// Required.
	ClientID string
	// AppName is the CLI's name ("mytool"): the keychain service name, the
	// config directory name, and the name in messages. Required.
	AppName string
	// Profile names one of several side-by-side logins. Empty means
	// "default".
	Profile string
	// LoginCommand is the command that signs in again, as messages show it
	// ("mytool login --server https://staging.example.com"). Empty means
	// AppName + " login", plus " --profile NAME" when Profile is set.
	// cobralogin sets it to carry --server and --profile in the form the
	// user gave them (flag or environment variable).
	LoginCommand string
	// Scopes are requested at login (the authorization request and the
	// device flow). With "openid" among them (OpenID Connect), Login sends
	// a nonce, requires an ID token in the answer and verifies it (see
	// Login), and the login's identity comes from it. Providers that issue
	// a refresh token only when asked need "offline_access" (Auth0, Okta,
	// Entra ID, Keycloak, Zitadel) or an AuthParams entry (Google:
	// access_type=offline).
	//
	// Nil means the default, decided from the server's metadata, so one
	// Config works with a keyloop server and with an OpenID Provider:
	//   - a keyloop server (its metadata has access_token_issuer), or
	//     Endpoints set: no scope;
	//   - an OpenID Provider (its metadata came from
	//     /.well-known/openid-configuration or lists "openid" in
	//     scopes_supported) with a jwks_uri: "openid" (as kubelogin and
	//     oauth2cli ask for it), plus each of "profile", "email" (so the
	//     login names the user) and "offline_access" (so it refreshes)
	//     that scopes_supported lists;
	//   - any other server: no scope.
	// Providers that refuse a request without a scope (Zitadel, Okta,
	// Entra ID) are OpenID Providers, so the default satisfies them. An
	// empty, non-nil slice requests no scope from any server.
	Scopes []string
	// Audience, when set, must be in a verified access token's "aud", and
	// (with AccessTokenAuto) makes access tokens verified. Empty skips the
	// audience check unless the server's metadata names one
	// (access_token_audience).
	Audience string
	// AccessTokenVerification says whether access tokens are verified (see
	// AccessTokenMode). The zero value, AccessTokenAuto, verifies them when
	// the server's metadata says how (keyloop servers do) or Audience is
	// set, and otherwise accepts them as the token endpoint returned them.
	AccessTokenVerification AccessTokenMode
	// ClientSecret is the secret of a provider that issues one to
	// installed apps (a Google "Desktop app" client, a GitHub OAuth app).
	// Shipped inside a CLI it is not secret (RFC 8252 §8.5); PKCE is what
	// protects the code. Empty means a public client: no client
	// authentication, client_id in the request body ("none").
	ClientSecret string
	// AuthStyle says how ClientSecret is sent to the token and revocation
	// endpoints: oauth2.AuthStyleInHeader (client_secret_basic, RFC 6749
	// §2.3.1) or oauth2.AuthStyleInParams (client_secret_post). The zero
	// value, oauth2.AuthStyleAutoDetect, follows the metadata's
	// token_endpoint_auth_methods_supported: client_secret_basic when it is
	// listed or the list is absent (RFC 8414's default), else
	// client_secret_post; with Endpoints, client_secret_post. Ignored
	// without a ClientSecret.
	AuthStyle oauth2.AuthStyle
	// AuthParams are extra parameters of the authorization request, and of
	// the device authorization request of the device flow (RFC 8628 §3.1):
	// "prompt" ("consent", "select_account"), "access_type"="offline"
	// (Google's refresh tokens), "audience" (Auth0's API), "login_hint",
	// "domain_hint". New refuses the parameters Login sets itself
	// (response_type, client_id, redirect_uri, scope, state, nonce,
	// code_challenge, code_challenge_method). Nil adds none.
	AuthParams url.Values
	// RedirectURL is the loopback redirect URI registered at the
	// provider, for a provider that needs an exact match or a host other
	// than 127.0.0.1: "http://localhost/callback" (Entra ID, which
	// requires localhost and ignores the port),
	// "http://127.0.0.1:8400/oauth/callback" (a fixed port and path). Its
	// scheme is http; its host 127.0.0.1, [::1] or localhost (the listener
	// then binds 127.0.0.1 and, on the same port when free, [::1]); its
	// port a number, or none for a kernel-chosen one (RFC 8252 §7.3); its
	// path the callback path. Empty means http://127.0.0.1:PORT/callback
	// on the first usable ListenAddrs. Set at most one of RedirectURL and
	// ListenAddrs.
	RedirectURL string

	// Store keeps tokens. Nil means tokenstore's default for AppName: the
	// OS keychain, falling back to a 0600 file under the user config
	// directory when no keychain is available. It is opened on first use,
	// not by New.
	//
	// When Store also implements tokenstore.Locker, refreshes, logins and
	// logouts hold its lock, so several processes sharing the store make
	// one refresh, not one each. When it implements tokenstore.Locator,
	// Status and Login report where the token is kept.
	Store tokenstore.Store
	// TokenEnv names an environment variable that, when set, is the access
	// token: nothing is read from or written to Store ("MYTOOL_TOKEN").
	// Token returns it as is, Status describes it (claims decoded without
	// verification, for display only), and Login and Logout refuse with
	// ErrTokenFromEnv. Empty disables the override.
	TokenEnv string

	// HTTPClient is used for discovery, token, JWKS, userinfo and
	// revocation requests.
	// Nil means a client with a 30 s timeout. The Client uses a copy whose
	// CheckRedirect never follows a redirect of a POST (token, revocation),
	// so a code or refresh token is never re-sent to another address; other
	// redirects go to HTTPClient's own CheckRedirect (nil: at most 10).
	HTTPClient *http.Client
	// Stdout receives what Login prints for the user (the URL, the
	// confirmation code, progress, paste-mode prompts). Nil means os.Stderr,
	// not os.Stdout, so a command's standard output stays clean for its own
	// results (cobralogin passes the command's ErrOrStderr).
	Stdout io.Writer
	// OpenBrowser opens url in a browser. Nil means $BROWSER when set (a
	// command; "%s" in it is replaced by the URL, else the URL is appended),
	// else the system opener (github.com/pkg/browser) with its output
	// silenced. Login does not wait for it to return before listening for
	// the callback; an error is reported to Stdout and the login goes on.
	OpenBrowser func(ctx context.Context, url string) error
	// NoBrowser turns on paste mode (see Login): no browser is opened, the
	// user opens the printed URL on any machine and pastes back the address
	// the browser ended on, while the loopback listener waits as usual.
	// False still turns paste mode on automatically in a headless session
	// (SSH, or no display on Linux) when neither OpenBrowser nor $BROWSER is
	// set.
	NoBrowser bool
	// Device chooses when Login uses the device authorization grant (RFC
	// 8628) instead of the browser: it prints a short URL and a code, the
	// user approves on any device (a phone, another computer), and Login
	// polls the server. DeviceAlways always uses it ("mytool login
	// --device"); DeviceNever never does. The zero value, DeviceAuto, uses
	// it only when a browser login cannot finish here and the server offers
	// it (device_authorization_endpoint in its metadata): no browser will be
	// opened (a headless session, see NoBrowser, with neither OpenBrowser
	// nor $BROWSER set; NoBrowser itself asks for paste mode and keeps it)
	// and nobody can paste the URL back (Stdin is nil and os.Stdin is not a
	// terminal, or $CI is set as CI services do).
	Device DeviceMode
	// Stdin is where paste mode reads the pasted URL, one per line. Nil
	// means os.Stdin when it is a terminal or a pipe; otherwise (a file,
	// /dev/null, closed) paste mode only prints the URL and waits for the
	// loopback callback. A goroutine reading Stdin may stay blocked in Read
	// after Login returns, until the next line or the end of Stdin; it then
	// discards that line and exits. Give an io.Reader that ends (or not
	// os.Stdin) when the program reads Stdin again after Login.
	Stdin io.Reader
	// Terminal says whether Login animates its progress (a spinner with the
	// elapsed time, redrawn with "\r"). The zero value, TerminalAuto,
	// animates only when Stdout is a terminal; TerminalPlain never does.
	Terminal TerminalMode
	// Pages renders the pages the loopback listener shows in the browser.
	// It must define the templates "success" (the login succeeded) and
	// "failure" (it failed, or a stray request was refused), executed with a
	// PageData. The response's Content-Security-Policy allows no external
	// assets: inline <style> and <script> need nonce="{{.Nonce}}", images
	// must be data: URLs. Nil means DefaultPages(). When a custom template
	// fails to execute, the default page is served instead.
	Pages *template.Template

	// ListenAddrs are the loopback addresses the callback listener tries, in
	// order ("127.0.0.1:0", "127.0.0.1:8400", "[::1]:0"). Only the hosts
	// 127.0.0.1 and [::1] are accepted: they are the loopback redirect URIs
	// of RFC 8252 §7.3 that authorization servers accept with any port (not
	// "localhost", not other 127.0.0.0/8 addresses, which servers refuse as
	// redirect URIs; RedirectURL offers localhost). Nil means
	// "127.0.0.1:0" (a kernel-chosen port), or what RedirectURL says.
	ListenAddrs []string
	// Leeway is the clock skew allowed when checking exp/nbf/iat. Zero means
	// 30 seconds; more than 5 minutes is refused by New.
	Leeway time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time

	// OnRefreshError is called when Token (or the TokenSource, or the
	// HTTPClient) tried to refresh a token that is in its refresh window,
	// failed, and went on with the old token because it is still valid.
	// CLIs typically log it ("could not refresh the token: …"). The error
	// wraps ErrRefreshFailed and never contains a token. It is also called,
	// with an error wrapping ErrNotSaved, when a refresh succeeded but the
	// new login could not be stored; the new token is used all the same.
	// Nil means such failures are not reported (the next call tries again,
	// at most every 30 seconds per Client).
	OnRefreshError func(error)
}

// Client logs a CLI user in and hands out valid tokens. It is safe for
// concurrent use.
type Client struct {
	cfg    Config
	key    string
	hc     *http.Client
	out    io.Writer
	leeway time.Duration
	now    func() time.Time

	storeOnce sync.Once
	store     tokenstore.Store
	storeErr  error

	// refreshSem serialises refreshes within this process (a channel so
	// waiting honours ctx); the store's Locker serialises across processes.
	refreshSem chan struct{}

	mu           sync.Mutex
	cached       *tokenstore.Record // last record read or written, never modified
	unsaved      *tokenstore.Record // a rotated login the store refused; it overrides the stored one
	retryRefresh time.Time          // no refresh attempt before this, after a failure

	// wait sleeps between device flow polls; nil means a timer. Tests
	// replace it.
	wait func(ctx context.Context, d time.Duration) error

	redirect redirectTarget // the parsed Config.RedirectURL
}

// refreshRetryDelay is how long a Client waits after a failed refresh before
// it tries again, while the old token is still valid.
const refreshRetryDelay = 30 * time.Second

// finishRefreshTimeout bounds each of verifying and saving a refreshed
// login, which run even when the caller's ctx has ended: the server has
// rotated the refresh token, so the stored one is spent.
const finishRefreshTimeout = 10 * time.Second

// finishCtx is a context for work that must finish after the server acted
// (saving a rotated refresh token, marking a login ended): not canceled
// with ctx, bounded by finishRefreshTimeout.
func finishCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), finishRefreshTimeout)
}

// AccessTokenMode says whether a Client verifies the access tokens it
// receives. A verified token must be a JWT signed by a key of the server's
// key set (access_token_jwks_uri, else jwks_uri), with the expected "iss"
// (access_token_issuer, else the issuer) and "aud" (Config.Audience, else
// access_token_audience; unchecked when neither is set), and "exp"; its
// "exp" is the login's expiry and its "sub" the user. An access token that
// is not verified is the provider's business: an opaque string, or a JWT
// addressed to another API (Auth0 with an API audience, Entra ID's tokens
// for Microsoft Graph), which a client cannot or must not check. It is
// accepted as the token endpoint returned it over TLS, which is its
// authority; its lifetime is the answer's expires_in (unknown when absent:
// it is used until an API refuses it, then refreshed), and the identity
// comes from the ID token or userinfo.
type AccessTokenMode int

const (
	// AccessTokenAuto verifies access tokens when the server's metadata
	// says how (access_token_issuer, access_token_jwks_uri or
	// access_token_audience, as keyloop servers publish) or
	// Config.Audience is set; otherwise they are not verified.
	AccessTokenAuto AccessTokenMode = iota
	// AccessTokenJWT always verifies access tokens; one that is not a
	// valid JWT fails the login (ErrInvalidToken).
	AccessTokenJWT
	// AccessTokenOpaque never verifies access tokens.
	AccessTokenOpaque
)

// reservedAuthParams are the authorization request parameters Login sets.
var reservedAuthParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method"}

// New checks cfg and returns a Client. It does no I/O.
func New(cfg Config) (*Client, error) {
	switch {
	case cfg.Issuer == "":
		return nil, fmt.Errorf("%w: Issuer is required", ErrInvalidConfig)
	case cfg.ClientID == "":
		return nil, fmt.Errorf("%w: ClientID is required", ErrInvalidConfig)
	case cfg.AppName == "":
		return nil, fmt.Errorf("%w: AppName is required", ErrInvalidConfig)
	case cfg.Leeway < 0 || cfg.Leeway > maxLeeway:
		return nil, fmt.Errorf("%w: Leeway must be from 0 to %s", ErrInvalidConfig, maxLeeway)
	case cfg.AccessTokenVerification < AccessTokenAuto || cfg.AccessTokenVerification > AccessTokenOpaque:
		return nil, fmt.Errorf("%w: unknown AccessTokenVerification %d", ErrInvalidConfig, cfg.AccessTokenVerification)
	case cfg.AuthStyle < oauth2.AuthStyleAutoDetect || cfg.AuthStyle > oauth2.AuthStyleInHeader:
		return nil, fmt.Errorf("%w: unknown AuthStyle %d", ErrInvalidConfig, cfg.AuthStyle)
	}
	if err := checkServerURL("Issuer", cfg.Issuer); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if u, _ := url.Parse(cfg.Issuer); u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return nil, fmt.Errorf("%w: Issuer must not have a query or fragment", ErrInvalidConfig)
	}
	if e := cfg.Endpoints; e != nil {
		for _, f := range []struct {
			name, u  string
			required bool
		}{
			{"Endpoints.Authorization", e.Authorization, true}, {"Endpoints.Token", e.Token, true},
			{"Endpoints.Revocation", e.Revocation, false}, {"Endpoints.JWKS", e.JWKS, false},
			{"Endpoints.Userinfo", e.Userinfo, false}, {"Endpoints.DeviceAuthorization", e.DeviceAuthorization, false},
		} {
			if f.u == "" && !f.required {
				continue
			}
			if f.u == "" {
				return nil, fmt.Errorf("%w: %s is required", ErrInvalidConfig, f.name)
			}
			if err := checkServerURL(f.name, f.u); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
			}
		}
		if strings.Contains(e.Authorization, "#") {
			return nil, fmt.Errorf("%w: Endpoints.Authorization must not have a fragment", ErrInvalidConfig)
		}
	}
	for _, k := range reservedAuthParams {
		if cfg.AuthParams.Has(k) {
			return nil, fmt.Errorf("%w: AuthParams must not set %q: Login sets it", ErrInvalidConfig, k)
		}
	}
	if cfg.Pages != nil && (cfg.Pages.Lookup("success") == nil || cfg.Pages.Lookup("failure") == nil) {
		return nil, fmt.Errorf("%w: Pages must define the templates \"success\" and \"failure\"", ErrInvalidConfig)
	}
	if cfg.Device < DeviceAuto || cfg.Device > DeviceNever {
		return nil, fmt.Errorf("%w: unknown Device mode %d", ErrInvalidConfig, cfg.Device)
	}
	if cfg.Terminal < TerminalAuto || cfg.Terminal > TerminalPlain {
		return nil, fmt.Errorf("%w: unknown Terminal mode %d", ErrInvalidConfig, cfg.Terminal)
	}
	redirect, err := parseRedirectURL(cfg.RedirectURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	switch {
	case cfg.RedirectURL != "" && len(cfg.ListenAddrs) > 0:
		return nil, fmt.Errorf("%w: set RedirectURL or ListenAddrs, not both", ErrInvalidConfig)
	case len(cfg.ListenAddrs) == 0:
		cfg.ListenAddrs = []string{"127.0.0.1:0"}
	}
	for _, a := range cfg.ListenAddrs {
		if err := checkListenAddr(a); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	c := &Client{
		cfg: cfg, key: tokenstore.Key(cfg.Profile, strings.TrimSuffix(cfg.Issuer, "/"), cfg.ClientID),
		hc: cfg.HTTPClient, out: cfg.Stdout, leeway: cfg.Leeway, now: cfg.Now,
		refreshSem: make(chan struct{}, 1), redirect: redirect,
	}
	c.hc = noPostRedirects(cfg.HTTPClient)
	if c.out == nil {
		c.out = os.Stderr
	}
	if c.leeway == 0 {
		c.leeway = 30 * time.Second
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// redirectTarget is the parsed Config.RedirectURL.
type redirectTarget struct {
	host string // "127.0.0.1", "[::1]" or "localhost"; "" when RedirectURL is empty
	port string // "0" for a kernel-chosen port
	path string // the callback path
}

// parseRedirectURL checks Config.RedirectURL; the empty string gives the
// default target (ListenAddrs, path /callback).
func parseRedirectURL(raw string) (redirectTarget, error) {
	if raw == "" {
		return redirectTarget{path: callbackPath}, nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Opaque != "" || u.User != nil {
		return redirectTarget{}, fmt.Errorf("RedirectURL %q must be an http URL on a loopback host (RFC 8252 §7.3)", raw)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return redirectTarget{}, fmt.Errorf("RedirectURL %q must not have a query or fragment", raw)
	}
	t := redirectTarget{host: u.Hostname(), port: u.Port(), path: u.EscapedPath()}
	switch t.host {
	case "127.0.0.1", "localhost":
	case "::1":
		t.host = "[::1]"
	default:
		return redirectTarget{}, fmt.Errorf("RedirectURL %q: the host must be 127.0.0.1, [::1] or localhost", raw)
	}
	if t.port == "" {
		t.port = "0"
	}
	if _, err := strconv.ParseUint(t.port, 10, 16); err != nil {
		return redirectTarget{}, fmt.Errorf("RedirectURL %q: the port must be a number from 0 to 65535", raw)
	}
	if t.path == "" {
		t.path = "/"
	}
	if t.path == donePath {
		return redirectTarget{}, fmt.Errorf("RedirectURL %q: the path %s is the listener's own page", raw, donePath)
	}
	return t, nil
}

// noPostRedirects returns a copy of hc (nil: a client with a 30 s timeout)
// that does not follow redirects of POST requests: 307 and 308 would re-send
// the body, with its code, verifier or token, to wherever the server points.
// The caller then sees the 3xx response.
func noPostRedirects(hc *http.Client) *http.Client {
	cp := http.Client{Timeout: 30 * time.Second}
	if hc != nil {
		cp = *hc
	}
	next := cp.CheckRedirect
	cp.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if via[0].Method != http.MethodGet && via[0].Method != http.MethodHead {
			return http.ErrUseLastResponse
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &cp
}

// checkListenAddr accepts host:port with host 127.0.0.1 or ::1 and a
// numeric port.
func checkListenAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("listen address %q: %v", a, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !(ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback)) || strings.Contains(host, "%") {
		return fmt.Errorf("listen address %q: host must be 127.0.0.1 or [::1], the loopback redirect hosts servers accept (RFC 8252 §7.3)", a)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (port != "0" && n == 0) {
		return fmt.Errorf("listen address %q: port must be a number from 0 to 65535", a)
	}
	return nil
}

// isLoopbackHost reports whether host (no port) is a loopback name or IP.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkServerURL requires an absolute https URL, or http for loopback hosts.
func checkServerURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%s %q is not an absolute URL", what, raw)
	}
	if u.User != nil {
		return fmt.Errorf("%s %q must not contain user info", what, raw)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
	default:
		return fmt.Errorf("%s %q must use https (plain http only for loopback hosts)", what, raw)
	}
	return nil
}

// Session describes a stored login, as Login and Status return it. Subject
// and Account come from the verified ID token, else the verified access
// token, else userinfo; Expiry from the verified access token's "exp", else
// the token response's expires_in (for the TokenEnv override, all
// unverified: see Location).
type Session struct {
	// Subject is the user's stable ID at the server ("sub"); empty when
	// nothing verified names the user (an opaque access token without
	// OpenID Connect).
	Subject string
	// Account is a name to show the user: the token's "email", else
	// "preferred_username", else "name"; empty when it carries none of them.
	Account string
	// Issuer is the authorization server the login belongs to
	// (Config.Issuer).
	Issuer string
	// Expiry is when the access token expires; zero when unknown (an
	// opaque token without expires_in: it is used until an API refuses
	// it). When CanRefresh is true, Token refreshes the token before then
	// (in the last quarter of its lifetime).
	Expiry time.Time
	// Location is where the token is kept: the store's Location when it
	// implements tokenstore.Locator (else the zero Location), or KindEnv for
	// the TokenEnv override. For KindEnv, Subject, Account, Issuer and
	// Expiry are decoded from the token WITHOUT verifying it, for display
	// only; they may be empty when the token is not a JWT.
	Location tokenstore.Location
	// CanRefresh reports whether the login holds a refresh token (and the
	// server a token endpoint), so Token can renew it after Expiry without
	// a new browser login. Always false for KindEnv.
	CanRefresh bool
	// Ended is set when the server refused to refresh this login
	// (ErrLoginEnded): it needs a new sign-in. Subject and Account still
	// say whose login it was; Expiry is that of its last access token.
	Ended *LoginEnd
}

// Usable reports whether s can give a token at now without a new sign-in:
// not ended, and its access token still valid or refreshable. An expiry
// that is unknown (a TokenEnv token that is not a JWT) counts as valid.
func (s *Session) Usable(now time.Time) bool {
	switch {
	case s.Ended != nil:
		return false
	case s.Expiry.IsZero() || now.Before(s.Expiry):
		return true
	}
	return s.CanRefresh
}

// LoginEnd says when and why the server ended a login.
type LoginEnd struct {
	// At is when this client learnt it (the refused refresh).
	At time.Time
	// Reason classifies why (EndExpired, EndRevoked, EndReused, EndRefused).
	Reason EndReason
	// Description is the server's error_description, sanitized; may be
	// empty.
	Description string
}

// EndReason classifies why a login ended.
type EndReason string

// The reasons a login ends, as read from the server's invalid_grant answer
// and what the client knows.
const (
	// EndExpired: the login is past the server's maximum lifetime.
	EndExpired EndReason = "expired"
	// EndRevoked: the login was revoked (a logout elsewhere, an admin, a
	// deleted user).
	EndRevoked EndReason = "revoked"
	// EndReused: the refresh token was presented twice, so the server
	// ended the login (RFC 9700 §4.14): the answer to an earlier refresh
	// was lost, or the token was copied.
	EndReused EndReason = "reused"
	// EndRefused: the server refused the refresh token without saying why.
	EndRefused EndReason = "refused"
)

// Sentinel errors, usable with errors.Is.
var (
	// ErrNotLoggedIn means no login is stored for this profile.
	ErrNotLoggedIn = errors.New("clilogin: not logged in")
	// ErrLoginRequired means a new login is needed: none is stored, or the
	// stored token expired and could not be refreshed. Its message names
	// the command to run.
	ErrLoginRequired = errors.New("clilogin: login required")
	// ErrAccessDenied means the user (or the server) denied the request
	// (error=access_denied on the callback).
	ErrAccessDenied = errors.New("clilogin: access denied")
	// ErrStateMismatch means a callback that ended the flow did not belong
	// to it. Callbacks with a wrong state do not end a login (they get a
	// 400 and the login waits on); it is returned where a callback must be
	// judged on its own, such as a URL pasted in paste mode.
	ErrStateMismatch = errors.New("clilogin: state mismatch")
	// ErrIssuerMismatch means the callback's "iss" (RFC 9207) or the
	// metadata's "issuer" is not the configured issuer: a mix-up attack or
	// a misconfiguration. It ends a login.
	ErrIssuerMismatch = errors.New("clilogin: issuer mismatch")
	// ErrInvalidToken means a token from the server failed verification.
	ErrInvalidToken = errors.New("clilogin: invalid token")
	// ErrDiscovery means the server's metadata could not be fetched or is
	// not usable.
	ErrDiscovery = errors.New("clilogin: discovery failed")
	// ErrRefreshFailed wraps the reasons a refresh failed.
	ErrRefreshFailed = errors.New("clilogin: refresh failed")
	// ErrRevocationFailed is returned (wrapped) by Logout when the stored
	// login was deleted but the server could not be told to revoke it.
	ErrRevocationFailed = errors.New("clilogin: revocation failed")
	// ErrNotSaved is reported to Config.OnRefreshError when a refresh
	// succeeded but the new login could not be stored: the token returned
	// is valid, but the next run may need a new login.
	ErrNotSaved = errors.New("clilogin: the refreshed login could not be stored")
	// ErrTokenFromEnv means the TokenEnv variable is set, so Login and
	// Logout do not touch storage.
	ErrTokenFromEnv = errors.New("clilogin: token comes from the environment")
	// ErrInvalidConfig means New was given an unusable Config.
	ErrInvalidConfig = errors.New("clilogin: invalid config")
	// ErrLoginEnded means the server refused the stored login's refresh
	// token (RFC 6749 invalid_grant): the login was revoked, its refresh
	// token was used twice, or it is past its lifetime. The store records
	// it, so no process sends that refresh token again, and Status reports
	// it (Session.Ended). It comes with ErrLoginRequired.
	ErrLoginEnded = errors.New("clilogin: login ended")
	// ErrStorage means the token store could not be read or written for a
	// reason other than "nothing stored": a keychain that cannot be
	// reached (tokenstore.ErrKeychainUnavailable), a file that cannot be
	// read. Whether a login exists is then unknown; it is never reported
	// as ErrNotLoggedIn.
	ErrStorage = errors.New("clilogin: token store failed")
)

// CallbackError is the error a login ends with when the server redirects back
// with an RFC 6749 "error" other than access_denied (which is
// ErrAccessDenied). Code and Description are sanitized: printable ASCII only,
// bounded in length.
type CallbackError struct {
	Code        string // RFC 6749 error code, e.g. "invalid_request"
	Description string // error_description, may be empty
}

func (e *CallbackError) Error() string {
	if e.Description == "" {
		return "clilogin: the server refused the login: " + e.Code
	}
	return fmt.Sprintf("clilogin: the server refused the login: %s: %s", e.Code, e.Description)
}

// UserMessage is the sentence Message shows.
func (e *CallbackError) UserMessage() string {
	if e.Description == "" {
		return sentence("The server refused the sign-in (" + e.Code + ")")
	}
	return sentence("The server refused the sign-in (" + e.Code + ": " + e.Description + ")")
}

// ServerError is an RFC 6749 §5.2 error answer from the token or revocation
// endpoint (or any answer other than 200 from them), sanitized like
// CallbackError.
type ServerError struct {
	Endpoint    string // "token" or "revocation"
	URL         string // the endpoint's URL; empty when unknown
	Status      int    // HTTP status code
	Code        string // RFC 6749 error code, e.g. "invalid_grant"; empty when the body had none
	Description string // error_description, may be empty
}

func (e *ServerError) Error() string {
	return "clilogin: " + e.describe()
}

func (e *ServerError) describe() string {
	s := fmt.Sprintf("%s endpoint answered %d", e.Endpoint, e.Status)
	if e.URL != "" {
		s = fmt.Sprintf("%s endpoint %s answered %d", e.Endpoint, e.URL, e.Status)
	}
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// UserMessage is the sentence Message shows.
func (e *ServerError) UserMessage() string { return sentence("The " + e.describe()) }

// loginCommand is the command the user runs to log in again.
func (c *Client) loginCommand() string {
	if c.cfg.LoginCommand != "" {
		return c.cfg.LoginCommand
	}
	cmd := c.cfg.AppName + " login"
	if c.cfg.Profile != "" {
		cmd += " --profile " + shell.Quote(c.cfg.Profile)
	}
	return cmd
}

// loginRequired is an error wrapping ErrLoginRequired (and cause) whose
// message says why and names the command to run.
func (c *Client) loginRequired(why string, cause error) error {
	msg := fmt.Sprintf("clilogin: %s; run `%s`", why, c.loginCommand())
	errs := []error{ErrLoginRequired}
	if cause != nil {
		msg += " (" + cause.Error() + ")"
		errs = append(errs, cause)
	}
	return &userError{msg: msg, user: sentence(upperFirst(why)) + " Run `" + c.loginCommand() + "` to sign in again.", errs: errs}
}

// sanitize keeps RFC 6749 error-text characters (printable ASCII except '"'
// and '\') and cuts s to max bytes.
func sanitize(s string, max int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < max; i++ {
		ch := s[i]
		if ch >= 0x20 && ch <= 0x7e && ch != '"' && ch != '\\' {
			b.WriteByte(ch)
		}
	}
	return b.String()
}

// sanitizeCode keeps the characters RFC 6749 error codes use.
func sanitizeCode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 64; i++ {
		ch := s[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-' || ch == '.' {
			b.WriteByte(ch)
		}
	}
	if b.Len() == 0 {
		return "unknown_error"
	}
	return b.String()
}

// maxLeeway bounds Config.Leeway: a larger skew would make "exp" meaningless.
const maxLeeway = 5 * time.Minute
