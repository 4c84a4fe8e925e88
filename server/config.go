package server

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"regexp"
	"time"
)

// ErrInvalidConfig is wrapped by New, NewSelfSigned, NewVerifier and
// NewDevAuthenticator when their configuration is unusable.
var ErrInvalidConfig = errors.New("server: invalid configuration")

// Defaults and limits of Config.
const (
	// DefaultCodeTTL and MaxCodeTTL bound how long an authorization code is
	// valid.
	DefaultCodeTTL = 60 * time.Second
	MaxCodeTTL     = 60 * time.Second
	// DefaultRefreshTokenMaxLifetime is the absolute cap on a login session
	// (all refreshes after one browser sign-in).
	DefaultRefreshTokenMaxLifetime = 30 * 24 * time.Hour
	// DefaultPendingTTL is how long a browser has to finish sign-in and
	// consent after the authorization request.
	DefaultPendingTTL = 10 * time.Minute
	// DefaultRefreshTokenReuseGrace and MaxRefreshTokenReuseGrace bound
	// Config.RefreshTokenReuseGrace. 30 s is Okta's default; Auth0 and AWS
	// Cognito offer 0–60 s.
	DefaultRefreshTokenReuseGrace = 30 * time.Second
	MaxRefreshTokenReuseGrace     = time.Minute
	// DefaultIDTokenLifetime is the lifetime of ID tokens.
	DefaultIDTokenLifetime = time.Hour
)

// Client is a registered OAuth client (a CLI). All clients are public
// clients: no secret, PKCE S256 required, loopback redirect URIs only; those
// with DeviceFlow may also log in with the device authorization grant.
type Client struct {
	// ID is the client_id. Required; 1–64 characters from [A-Za-z0-9._-].
	ID string
	// Name is shown on the consent page ("Authorize mytool …"). Empty means
	// ID.
	Name string
	// RedirectHosts narrows the loopback hosts the client may use, from
	// "127.0.0.1", "[::1]" and "localhost". Empty means all three.
	RedirectHosts []string
	// DeviceFlow lets the client use the device authorization grant (RFC
	// 8628, see Config.DeviceFlow) besides the browser login. False means
	// the device endpoints refuse it with unauthorized_client.
	DeviceFlow bool
}

// Brand customizes the pages the handler renders.
type Brand struct {
	// Name is the application's name, shown above every page's heading and
	// in page titles ("Authorize mytool · Acme"). Empty means the Name of the
	// client (CLI) the login is for, so the backend's pages carry the same
	// name as the CLI's own; pages not tied to a client (an unknown client,
	// an expired request, the device code entry) show the only client's
	// Name when there is one, else the issuer's host.
	Name string
	// AccentColor is the color of buttons and focus rings, as "#rgb" or
	// "#rrggbb", in light and dark mode alike. Empty means a neutral blue,
	// #2457d6.
	AccentColor string
}

// defaultAccent is Brand.AccentColor's default.
const defaultAccent = "#2457d6"

// Config configures a Handler. Only Issuer, Clients, Authenticator and Minter
// are required.
type Config struct {
	// Issuer is the authorization server's issuer URL (RFC 8414): scheme
	// and host, optionally a port, no path, query or fragment, e.g.
	// "https://auth.example.com" or, for local development,
	// "http://127.0.0.1:8787". All endpoints live under it; mount the
	// handler at the application root. Required.
	Issuer string
	// Clients are the registered CLIs. At least one is required.
	Clients []Client
	// Authenticator signs browser users in. Required (DevAuthenticator for
	// development, server/clerk for Clerk).
	Authenticator Authenticator
	// Minter mints access tokens. Required (SelfSigned, or server/clerk).
	Minter Minter
	// State keeps pending authorizations, codes, refresh tokens and
	// revocation markers. Nil means NewMemoryStateStore(), which serves one
	// process only.
	State StateStore
	// RevocationCacheTTL is VerifierConfig.RevocationCacheTTL for
	// RequireToken and VerifyToken: how long a revocation recorded by
	// another instance sharing State may take to be honoured here (this
	// instance honours its own at once). Zero means
	// DefaultRevocationCacheTTL (5 s); negative means no cache (up to two
	// State Gets per request). The token and revocation endpoints always
	// read State.
	RevocationCacheTTL time.Duration
	// RevocationFailOpen is VerifierConfig.RevocationFailOpen for
	// RequireToken and VerifyToken: false (the default) refuses tokens
	// with 503 while State cannot say whether they were revoked; true
	// accepts verified tokens then. The OAuth endpoints always fail closed.
	RevocationFailOpen bool
	// CodeTTL is how long an authorization code is valid. Zero means
	// DefaultCodeTTL; more than MaxCodeTTL (60 s) is an error.
	CodeTTL time.Duration
	// RefreshTokenMaxLifetime is the absolute cap on refreshes after a
	// browser sign-in; afterwards the user must sign in again. It is also
	// the TTL of revocation markers, so it should be at least the access
	// token lifetime. Zero means DefaultRefreshTokenMaxLifetime (30 days).
	RefreshTokenMaxLifetime time.Duration
	// RefreshTokenReuseGrace is how long after a refresh token was rotated
	// it may be presented once more without counting as reuse: the
	// response that carried its successor may have been lost (a dropped
	// connection, a client timeout, Ctrl+C after the server answered). That
	// retry gets the same successor refresh token again, so the login goes
	// on with one current token, plus a fresh access token. It holds only
	// for the immediate predecessor of the current token, only while that
	// successor is unused, and only once; the successor is kept in State
	// encrypted under a key derived from its predecessor, so a copy of the
	// store yields no usable token. Any other reuse revokes the whole login
	// session (RFC 9700 §4.14.2).
	//
	// The trade-off: a stolen refresh token presented within the grace
	// period after its owner rotated it gets the current refresh token
	// instead of revoking the login at once; the reuse is detected when
	// either party refreshes later than the grace period after the other.
	// Zero means DefaultRefreshTokenReuseGrace (30 s); a negative value turns
	// the grace period off (every reuse revokes); more than
	// MaxRefreshTokenReuseGrace (1 minute) is an error.
	RefreshTokenReuseGrace time.Duration
	// PendingTTL is how long the browser has between the authorization
	// request and the consent decision. Zero means DefaultPendingTTL.
	PendingTTL time.Duration
	// IDTokenKeys signs the ID tokens the handler issues to clients that
	// ask for the "openid" scope (OpenID Connect Core §3.1.3.3), whatever
	// the Minter: with Clerk, access tokens are Clerk's but ID tokens are
	// the handler's own. It signs with its active RS256 key (an RSA key of
	// at least 2048 bits; RS256 is the one algorithm every OpenID relying
	// party must accept), or, when it has none, with its first algorithm
	// (ES256 or EdDSA, which some relying parties refuse: Kubernetes does
	// not take EdDSA). Its keys are served at JWKSPath, the jwks_uri of both
	// metadata documents, and rotate as KeySet describes. At most one of
	// IDTokenKeys and IDTokenKey may be set. When neither is, the handler
	// signs with the Minter's KeySet when the Minter is a SelfSigned whose
	// set has an active RS256 key, and otherwise with an RSA-2048 key
	// generated on first use that lives as long as the process: its ID
	// tokens stop verifying after a restart and on other replicas, so set
	// one when either matters (LoadKeyDir, LoadOrCreateRSAKeyFile).
	IDTokenKeys *KeySet
	// IDTokenKey is a single ID-token key, the same as an IDTokenKeys set
	// of that one key: an RSA key (RS256), an ECDSA P-256 key (ES256) or an
	// ed25519.PrivateKey (EdDSA); any crypto.Signer with such a public key
	// works (a KMS or HSM key, say).
	IDTokenKey crypto.Signer
	// IDTokenKeyID is the "kid" of IDTokenKey. Empty means the RFC 7638
	// JWK thumbprint of its public key. Only with IDTokenKey.
	IDTokenKeyID string
	// IDTokenLifetime is how long ID tokens are valid ("exp" − "iat").
	// Zero means DefaultIDTokenLifetime (1 hour); relying parties such as
	// kubelogin refresh when it ends.
	IDTokenLifetime time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Logger receives one line per notable event (approvals, denials,
	// token grants, refresh reuse, revocations, internal errors). It never
	// receives tokens, codes, state values or keys. Nil means no logging.
	Logger *slog.Logger
	// Brand customizes page titles and colors.
	Brand Brand
	// DeviceFlow configures the device authorization grant (RFC 8628) for
	// the clients that opt in with Client.DeviceFlow; its zero value is
	// sound (10-minute codes, 5 s polling, rate-limited user code entry).
	DeviceFlow DeviceFlowConfig
	// Templates, when set, replaces built-in page templates by file name
	// and adds pages of the application's own. Every page is executed with
	// a Page (Brand, Nonce, Style, and the page's Data):
	//   - "layout.html" defines "layout", which calls "title" and
	//     "content" (and the optional "tone", the card's class);
	//   - "consent.html" reads a ConsentPage, "error.html" an ErrorPage,
	//     "signin.html" a SignInPage (the sign-in form of DevAuthenticator
	//     and of any Authenticator that wants one), "device.html" (the
	//     device flow's code entry) and "device-done.html" (its result);
	//     each defines "title" and "content";
	//   - any other "*.html" file at the root is a page of its own, which an
	//     Authenticator renders with SignInPrompt.Render.
	// Files it lacks keep the built-in version. Nil means the built-ins.
	// Pages are html/template files parsed by New (errors wrap
	// ErrInvalidConfig); they may load nothing from elsewhere (the CSP is
	// default-src 'none' with a style nonce).
	Templates fs.FS
}

var clientIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
var colorRE = regexp.MustCompile(`^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)

func (c Config) withDefaults() (Config, error) {
	bad := func(format string, a ...any) (Config, error) {
		return c, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	u, err := url.Parse(c.Issuer)
	if c.Issuer == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return bad("Issuer must be an http(s) URL with a host and no path, query or fragment")
	}
	c.Issuer = u.Scheme + "://" + u.Host
	if len(c.Clients) == 0 {
		return bad("at least one Client is required")
	}
	seen := map[string]bool{}
	clients := make([]Client, len(c.Clients))
	for i, cl := range c.Clients {
		if !clientIDRE.MatchString(cl.ID) {
			return bad("client ID %q must be 1–64 characters from [A-Za-z0-9._-]", cl.ID)
		}
		if seen[cl.ID] {
			return bad("client ID %q registered twice", cl.ID)
		}
		seen[cl.ID] = true
		for _, h := range cl.RedirectHosts {
			if !loopbackHosts[h] {
				return bad("client %q: redirect host %q is not 127.0.0.1, [::1] or localhost", cl.ID, h)
			}
		}
		if cl.Name == "" {
			cl.Name = cl.ID
		}
		clients[i] = cl
	}
	c.Clients = clients
	if c.Authenticator == nil {
		return bad("Authenticator is required")
	}
	if c.Minter == nil {
		return bad("Minter is required")
	}
	if c.State == nil {
		c.State = NewMemoryStateStore()
	}
	switch {
	case c.CodeTTL == 0:
		c.CodeTTL = DefaultCodeTTL
	case c.CodeTTL < 0 || c.CodeTTL > MaxCodeTTL:
		return bad("CodeTTL must be between 0 and %v", MaxCodeTTL)
	}
	switch {
	case c.RefreshTokenMaxLifetime == 0:
		c.RefreshTokenMaxLifetime = DefaultRefreshTokenMaxLifetime
	case c.RefreshTokenMaxLifetime < 0:
		return bad("RefreshTokenMaxLifetime is negative")
	}
	switch {
	case c.RefreshTokenReuseGrace == 0:
		c.RefreshTokenReuseGrace = DefaultRefreshTokenReuseGrace
	case c.RefreshTokenReuseGrace > MaxRefreshTokenReuseGrace:
		return bad("RefreshTokenReuseGrace must be at most %v", MaxRefreshTokenReuseGrace)
	}
	switch {
	case c.PendingTTL == 0:
		c.PendingTTL = DefaultPendingTTL
	case c.PendingTTL < 0:
		return bad("PendingTTL is negative")
	}
	switch {
	case c.IDTokenLifetime == 0:
		c.IDTokenLifetime = DefaultIDTokenLifetime
	case c.IDTokenLifetime < 0:
		return bad("IDTokenLifetime is negative")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.DeviceFlow, err = c.DeviceFlow.withDefaults(c.Issuer); err != nil {
		return c, err
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Brand.AccentColor == "" {
		c.Brand.AccentColor = defaultAccent
	}
	if !colorRE.MatchString(c.Brand.AccentColor) {
		return bad("Brand.AccentColor must be #rgb or #rrggbb")
	}
	return c, nil
}
