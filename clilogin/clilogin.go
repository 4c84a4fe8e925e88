// Package clilogin gives a Go command-line tool a browser login: it opens the
// authorization server's sign-in page, catches the result on a one-shot
// loopback server (RFC 8252, authorization code with PKCE), verifies the JWT
// it receives, keeps it in a tokenstore.Store and refreshes it before it
// expires.
package clilogin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/keyloop/keyloop/tokenstore"
)

// Config configures a Client. Only Issuer, ClientID and AppName are required;
// every other zero value is documented on its field.
type Config struct {
	// Issuer is the authorization server's issuer URL; every endpoint is
	// discovered from its RFC 8414 metadata at
	// Issuer + "/.well-known/oauth-authorization-server". Required.
	Issuer string
	// ClientID is the OAuth client ID the server registered for this CLI.
	// Required.
	ClientID string
	// AppName is the CLI's name ("mytool"): the keychain service name, the
	// config directory name, and the name in messages. Required.
	AppName string
	// Profile names one of several side-by-side logins. Empty means
	// "default".
	Profile string
	// Scopes are requested at login. Nil requests none.
	Scopes []string
	// Audience, when set, must be in the access token's "aud". Empty skips
	// the audience check unless the server's metadata names one.
	Audience string

	// Store keeps tokens. Nil means tokenstore's default for AppName: the
	// OS keychain, falling back to a 0600 file under the user config
	// directory when no keychain is available.
	Store tokenstore.Store
	// TokenEnv names an environment variable that, when set, is the access
	// token: nothing is read from or written to Store ("MYTOOL_TOKEN").
	// Empty disables the override.
	TokenEnv string

	// HTTPClient is used for discovery, token, JWKS and revocation requests.
	// Nil means a client with a 30 s timeout.
	HTTPClient *http.Client
	// Stdout receives what the user must see (the URL, the confirmation
	// code). Nil means os.Stderr, so a command's stdout stays clean.
	Stdout io.Writer
	// OpenBrowser opens url in a browser. Nil means $BROWSER when set, else
	// the system opener (github.com/pkg/browser) with its output silenced.
	OpenBrowser func(ctx context.Context, url string) error
	// NoBrowser skips opening a browser; the URL is printed either way.
	NoBrowser bool

	// ListenAddrs are the loopback addresses the callback listener tries, in
	// order ("127.0.0.1:0", "127.0.0.1:8400", "[::1]:0"). Only loopback IPs
	// are accepted. Nil means "127.0.0.1:0" (a kernel-chosen port).
	ListenAddrs []string
	// Leeway is the clock skew allowed when checking exp/nbf/iat. Zero means
	// 30 seconds.
	Leeway time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Client logs a CLI user in and hands out valid tokens. It is safe for
// concurrent use.
type Client struct {
	cfg Config
}

// New checks cfg and returns a Client. It does no I/O.
func New(cfg Config) (*Client, error) {
	return nil, errors.New("clilogin: not implemented")
}

// Session describes a stored login.
type Session struct {
	Subject    string
	Account    string // e-mail or name when the token carries one
	Issuer     string
	Expiry     time.Time
	Location   tokenstore.Location // where the token is kept (KindEnv for the env override)
	CanRefresh bool
}

// Login runs the browser flow and stores the verified token.
func (c *Client) Login(ctx context.Context) (*Session, error) {
	return nil, errors.New("clilogin: not implemented")
}

// Status reports the stored login without refreshing it; ErrNotLoggedIn when
// there is none.
func (c *Client) Status(ctx context.Context) (*Session, error) {
	return nil, errors.New("clilogin: not implemented")
}

// Token returns a valid access token, refreshing it first when less than a
// quarter of its lifetime (at most 24 h) remains.
func (c *Client) Token(ctx context.Context) (*oauth2.Token, error) {
	return nil, errors.New("clilogin: not implemented")
}

// TokenSource returns an oauth2.TokenSource backed by Token(ctx).
func (c *Client) TokenSource(ctx context.Context) oauth2.TokenSource { return nil }

// HTTPClient returns an *http.Client that sends the bearer token and, on a
// 401, refreshes once and retries idempotent requests.
func (c *Client) HTTPClient(ctx context.Context) *http.Client { return nil }

// Logout revokes the token at the server (best effort, bounded) and deletes
// the stored entry.
func (c *Client) Logout(ctx context.Context) error {
	return errors.New("clilogin: not implemented")
}

// Sentinel errors, usable with errors.Is.
var (
	ErrNotLoggedIn   = errors.New("clilogin: not logged in")
	ErrLoginRequired = errors.New("clilogin: login required")
	ErrAccessDenied  = errors.New("clilogin: access denied")
	ErrStateMismatch = errors.New("clilogin: state mismatch")
)
