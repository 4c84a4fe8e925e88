// Package clerk makes Clerk the identity layer and token minter of a keyloop
// backend (package server).
//
// A *Provider is both the server.Authenticator and the server.Minter:
//
//   - Authenticate renders a sign-in step that loads Clerk's browser SDK
//     (clerk-js v6) with the publishable key — and the proxy URL, satellite
//     domain and sign-in URL when configured — sends a signed-out user to
//     Clerk's sign-in and a user with a pending session to its tasks, and
//     posts a fresh Clerk session token; the posted token is verified with
//     the official Go SDK (github.com/clerk/clerk-sdk-go/v2) plus the checks
//     Clerk's own backend SDK makes and the Go SDK leaves out: the token's
//     kind (the "cat" header, or its claims on instances that stamp the
//     ignore category), "typ", a required "azp" among the authorized
//     parties, exp, sid, the issuer of each setup (proxy, satellite), the
//     session status ("pending" sessions are sent to finish their tasks)
//     and impersonation; the Clerk session must be active and the user
//     neither banned nor locked.
//   - Mint mints the configured Clerk JWT template (default "cli", 7 days)
//     for the Clerk session with session.CreateToken and checks what Clerk
//     returned (signing key, issuer, TemplateClaim, audience, actor); a
//     refresh mints again only while the Clerk session is active and the
//     user neither banned nor locked.
//   - KeyInfo points clients at the Clerk instance's JWKS and issuer, so a
//     CLI verifies Clerk-minted tokens with no Clerk-specific code.
//   - CheckAccessToken lets the bearer middleware accept only the tokens
//     Mint produced: Backend API-minted (no "azp") tokens of the configured
//     template (TemplateClaim).
//   - CheckSetup checks the instance's JWT template through the Backend API.
//
// WebhookHandler verifies Clerk's Svix-signed webhooks and revokes keyloop
// login sessions when a user is deleted, banned or locked, or a Clerk
// session ends.
//
// Package clerktest is a local fake of Clerk for tests.
package clerk

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	sdk "github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/jwks"
	"github.com/clerk/clerk-sdk-go/v2/jwt"
	"github.com/clerk/clerk-sdk-go/v2/jwttemplate"
	"github.com/clerk/clerk-sdk-go/v2/session"
	"github.com/clerk/clerk-sdk-go/v2/user"

	"github.com/keyloop/keyloop/server"
)

// Provider is Clerk as keyloop's identity layer: a server.Authenticator and
// a server.Minter. It is safe for concurrent use and keeps no per-request
// state, so several instances may run behind one load balancer.
type Provider struct {
	cfg       Config
	d         derived
	sessions  *session.Client
	users     *user.Client
	jwks      *jwks.Client
	templates *jwttemplate.Client
	keys      keyCache
}

var (
	_ server.Authenticator = (*Provider)(nil)
	_ server.Minter        = (*Provider)(nil)
)

// New returns a Provider for the Clerk instance in cfg. It refuses (with
// ErrConfig) every configuration Clerk cannot serve: a proxy on a
// development instance or on another site than the sign-in page, a
// satellite without Domain or ProxyURL or with both, a development
// satellite without SignInURL, a satellite SignInURL on the satellite's own
// origin.
func New(cfg Config) (*Provider, error) {
	cfg, d, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cc := &sdk.ClientConfig{}
	cc.Key = sdk.String(cfg.SecretKey)
	cc.HTTPClient = cfg.HTTPClient
	if cfg.APIURL != "" {
		cc.URL = sdk.String(cfg.APIURL)
	}
	p := &Provider{
		cfg: cfg, d: d,
		sessions: session.NewClient(cc), users: user.NewClient(cc), jwks: jwks.NewClient(cc),
		templates: jwttemplate.NewClient(cc),
	}
	p.keys.fetch = p.fetchKeys
	p.keys.now = cfg.Now
	return p, nil
}

// FrontendAPI returns the Frontend API URL the provider uses (configured or
// derived from the publishable key): the "iss" of minted tokens.
func (p *Provider) FrontendAPI() string { return p.cfg.FrontendAPIURL }

// SessionClaims are the verified claims of a Clerk session token.
type SessionClaims struct {
	// Subject is the Clerk user ID ("user_…").
	Subject string
	// SessionID is the Clerk session ID ("sess_…").
	SessionID string
	// AuthorizedParty is the origin the token was issued to.
	AuthorizedParty string
	// Expiry is the token's "exp".
	Expiry time.Time
	// Actor is the "act" claim of a session started by impersonation
	// ({"iss", "sid", "sub": the impersonator's user ID}), else nil. Only
	// set when Config.AllowImpersonation lets such sessions through.
	Actor map[string]any
}

// VerifySessionToken verifies a Clerk session token (what the browser SDK's
// Clerk.session.getToken() returns), following Clerk's backend SDK
// (packages/backend tokens/verify.ts, jwt/verifyJwt.ts, jwt/assertions.ts)
// plus clerk-sdk-go v2's issuer check:
//
//   - opaque machine tokens ("mt_", "oat_", "ak_") are refused;
//   - "typ", when present, must be "JWT" (an OAuth access token is
//     "at+jwt");
//   - "cat", when present, must be the session or the ignore category;
//   - RS256 signature with the instance's key from the Backend API JWKS;
//     exp (required), nbf and iat with Leeway;
//   - "iss" is the Frontend API URL, the proxy URL with a proxy, or the
//     satellite's Frontend API on a satellite;
//   - "sub" is a user ("mch_…" is a machine), "sid" is present (no
//     template token has one), "azp" is present and an authorized party;
//   - "sts", when present, is "active" ("pending": ErrSessionPending);
//   - "act" (impersonation) only with Config.AllowImpersonation.
//
// Errors wrap ErrSessionToken and, where it applies, ErrTemplateToken,
// ErrMissingClaim, ErrAuthorizedParty, ErrSessionPending (and
// ErrSessionInactive) or ErrImpersonation. They never quote the token.
func (p *Provider) VerifySessionToken(ctx context.Context, token string) (*SessionClaims, error) {
	if token == "" {
		return nil, refuse(ErrMissingClaim, "no session token posted", nil)
	}
	if opaqueMachineKind(token) {
		return nil, refuse(ErrTemplateToken, "a Clerk "+kindMachine+" is not a session token", nil)
	}
	header, err := jwtHeader(token)
	if err != nil {
		return nil, refuse(nil, "malformed token", nil)
	}
	if typ, ok := header["typ"]; ok && typ != "JWT" {
		if s, _ := typ.(string); oauthType(s) {
			return nil, refuse(ErrTemplateToken, "a Clerk "+kindOAuth+" (typ at+jwt) is not a session token", nil)
		}
		return nil, refuse(nil, "the typ header is not JWT", nil)
	}
	if kind, foreign := foreignCategory(header, SessionTokenCategory); foreign {
		return nil, refuse(ErrTemplateToken, "the cat header marks a "+kind+", not a session token", nil)
	}
	kid, _ := header["kid"].(string)
	key, err := p.keys.get(ctx, kid)
	if err != nil {
		return nil, err
	}
	verified, err := jwt.Verify(ctx, &jwt.VerifyParams{
		Token:  token,
		JWK:    key,
		Clock:  clock{p.cfg.Now},
		Leeway: p.cfg.Leeway,
		// The issuer is checked below against every issuer of this setup;
		// clerk-sdk-go checks only one (or none on satellites).
		IsSatellite: true,
	})
	if err != nil {
		return nil, refuse(nil, "", sanitize(err))
	}
	// The signature is verified: the claims can be read.
	claims, err := jwtClaims(token)
	if err != nil {
		return nil, refuse(nil, "malformed token", nil)
	}
	if !slices.Contains(p.d.sessionIssuers, verified.Issuer) {
		return nil, refuse(nil, "wrong issuer: want "+strings.Join(p.d.sessionIssuers, " or "), nil)
	}
	switch kind := tokenKind(header, claims); {
	case kind == kindSession:
	case kind == kindTemplate && verified.SessionID == "":
		return nil, refuse(ErrTemplateToken, "no sid: a "+kindTemplate+", not a session token", nil, ErrMissingClaim)
	default:
		return nil, refuse(ErrTemplateToken, "a Clerk "+kind+" is not a session token", nil)
	}
	switch {
	case verified.AuthorizedParty == "":
		return nil, refuse(ErrAuthorizedParty, "no azp (the page that asked for the token sent no Origin)", nil)
	case !slices.Contains(p.cfg.AuthorizedParties, verified.AuthorizedParty):
		return nil, refuse(ErrAuthorizedParty, "azp is not an authorized party", nil)
	case verified.Expiry == nil:
		return nil, refuse(ErrMissingClaim, "no exp", nil)
	case verified.SessionID == "":
		return nil, refuse(ErrMissingClaim, "no sid", nil)
	case verified.Subject == "":
		return nil, refuse(ErrMissingClaim, "no sub", nil)
	}
	if sts, ok := claims["sts"].(string); ok && sts != "active" {
		if sts == "pending" {
			return nil, refuse(ErrSessionPending, "the Clerk session has tasks to finish", nil, ErrSessionInactive)
		}
		return nil, refuse(ErrSessionInactive, "the session token's status is not active", nil)
	}
	act := actor(claims)
	if act != nil && !p.cfg.AllowImpersonation {
		return nil, refuse(ErrImpersonation, "the Clerk session was started by impersonation", nil)
	}
	return &SessionClaims{
		Subject:         verified.Subject,
		SessionID:       verified.SessionID,
		AuthorizedParty: verified.AuthorizedParty,
		Expiry:          time.Unix(*verified.Expiry, 0),
		Actor:           act,
	}, nil
}

// sanitize keeps the SDK's verification errors but drops the ones that quote
// token contents.
func sanitize(err error) error {
	msg := err.Error()
	if strings.HasPrefix(msg, "invalid issuer") {
		return errors.New("wrong issuer")
	}
	if strings.HasPrefix(msg, "invalid signing algorithm") {
		return errors.New("wrong signing algorithm")
	}
	if strings.HasPrefix(msg, "invalid authorized party") {
		return errors.New("azp is not an authorized party")
	}
	return err
}

// activeSession returns the Clerk session, or an error wrapping
// ErrSessionInactive (and ErrSessionPending for "pending") with its
// status.
func (p *Provider) activeSession(ctx context.Context, id string) (*sdk.Session, error) {
	s, err := p.sessions.Get(ctx, id)
	if err != nil {
		return nil, apiError("session.Get", err)
	}
	if s.Status != "active" {
		return nil, &sessionStatusError{status: s.Status}
	}
	return s, nil
}

type clock struct{ now func() time.Time }

func (c clock) Now() time.Time { return c.now().UTC() }

// keyCache holds the instance's JWKS, fetched from the Backend API with the
// SDK and refreshed when a token names an unknown kid (at most every
// keyRefetch) or after keyTTL.
type keyCache struct {
	fetch func(context.Context) (*sdk.JSONWebKeySet, error)
	now   func() time.Time

	mu      sync.Mutex
	keys    map[string]*sdk.JSONWebKey
	fetched time.Time
}

const (
	keyTTL     = time.Hour
	keyRefetch = 10 * time.Second
)

func (c *keyCache) get(ctx context.Context, kid string) (*sdk.JSONWebKey, error) {
	if kid == "" {
		return nil, refuse(nil, "no kid header", nil)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if k, ok := c.keys[kid]; ok && now.Sub(c.fetched) < keyTTL {
		return k, nil
	}
	if c.keys == nil || now.Sub(c.fetched) >= keyRefetch {
		set, err := c.fetch(ctx)
		if err != nil {
			return nil, err
		}
		c.keys = map[string]*sdk.JSONWebKey{}
		for _, k := range set.Keys {
			if k != nil && k.KeyID != "" {
				c.keys[k.KeyID] = k
			}
		}
		c.fetched = now
	}
	if k, ok := c.keys[kid]; ok {
		return k, nil
	}
	return nil, refuse(nil, "unknown signing key", nil)
}

func (p *Provider) fetchKeys(ctx context.Context) (*sdk.JSONWebKeySet, error) {
	set, err := p.jwks.Get(ctx, &jwks.GetParams{})
	if err != nil {
		return nil, apiError("jwks.Get", err)
	}
	return set, nil
}

// jwtHeader decodes a compact JWT's protected header without verifying it.
func jwtHeader(token string) (map[string]any, error) {
	h, _, ok := strings.Cut(token, ".")
	if !ok {
		return nil, errors.New("not a JWT")
	}
	return decodeSegment(h)
}

func frontendOrigin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return origin(u)
}
