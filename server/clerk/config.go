package clerk

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Default values of Config fields.
const (
	DefaultJWTTemplate   = "cli"
	DefaultTokenLifetime = 7 * 24 * time.Hour
	// MinTokenLifetime and MaxTokenLifetime are the bounds Clerk accepts
	// for expires_in_seconds (30 … 315360000 s).
	MinTokenLifetime = 30 * time.Second
	MaxTokenLifetime = 315360000 * time.Second
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
	DefaultLeeway = 5 * time.Second
)

// Config configures a Provider. Only SecretKey, PublishableKey (or
// FrontendAPIURL) and one of Issuer or AuthorizedParties are required.
type Config struct {
	// SecretKey is the Clerk secret key ("sk_live_…"/"sk_test_…") the
	// Backend API calls are made with. Required; keep it server-side.
	SecretKey string
	// PublishableKey is the Clerk publishable key ("pk_live_…"/"pk_test_…")
	// put in the sign-in page. Required. Unless FrontendAPIURL is set, the
	// Frontend API URL is derived from it: "https://" + the base64 text
	// after "pk_test_"/"pk_live_", with the trailing "$" removed.
	PublishableKey string
	// FrontendAPIURL is the Clerk Frontend API URL, e.g.
	// "https://clerk.example.com" (or your proxy URL). It is the "iss" of
	// the tokens Clerk signs and serves the instance's JWKS. Empty means
	// derived from PublishableKey.
	FrontendAPIURL string
	// JWTTemplate is the name of the Clerk JWT template access tokens are
	// minted from. Empty means DefaultJWTTemplate ("cli").
	JWTTemplate string
	// Audience is the "aud" the JWT template sets, published to clients and
	// checked by the bearer middleware. Empty means the template sets none.
	Audience string
	// TokenLifetime is the lifetime of minted access tokens
	// (expires_in_seconds). Zero means DefaultTokenLifetime (7 days); other
	// values are clamped to MinTokenLifetime … MaxTokenLifetime.
	TokenLifetime time.Duration
	// Issuer is the keyloop backend's issuer URL (server.Config's). Its
	// origin is the default authorized party.
	Issuer string
	// AuthorizedParties are the origins ("https://app.example.com") whose
	// session tokens are accepted: a session token's "azp", when present,
	// must be one of them. Empty means the origin of Issuer; New fails if
	// both are empty.
	AuthorizedParties []string
	// APIURL is the Clerk Backend API base URL the SDK calls, including the
	// version path, like the SDK's default "https://api.clerk.com/v1"; a URL
	// with no path gets "/v1" appended. Empty means the SDK's default.
	APIURL string
	// ClerkJSURL is the URL of Clerk's browser SDK loaded by the sign-in
	// page. Empty means FrontendAPIURL +
	// "/npm/@clerk/clerk-js@5/dist/clerk.browser.js", as Clerk's docs load it.
	ClerkJSURL string
	// HTTPClient makes the Backend API calls. Nil means a client with a
	// 10-second timeout.
	HTTPClient *http.Client
	// Now is the clock for token checks and webhook timestamps. Nil means
	// time.Now.
	Now func() time.Time
	// Leeway is the clock skew allowed on exp, nbf and iat of session
	// tokens. Zero means DefaultLeeway.
	Leeway time.Duration
	// WebhookSecret is the Svix signing secret ("whsec_…") of the Clerk
	// webhook endpoint. Empty means WebhookHandler refuses to be built.
	WebhookSecret string
	// WebhookReplays remembers delivered webhook message IDs. Nil means an
	// in-memory ReplayGuard, which only serves one process.
	WebhookReplays ReplayGuard
}

// clerkJSPath is where Clerk serves clerk-js v5 from a Frontend API host.
const clerkJSPath = "/npm/@clerk/clerk-js@5/dist/clerk.browser.js"

func (c Config) withDefaults() (Config, error) {
	if c.SecretKey == "" {
		return c, fmt.Errorf("%w: SecretKey is empty", ErrConfig)
	}
	if c.PublishableKey == "" {
		return c, fmt.Errorf("%w: PublishableKey is empty", ErrConfig)
	}
	if c.FrontendAPIURL == "" {
		fapi, err := FrontendAPIURL(c.PublishableKey)
		if err != nil {
			return c, err
		}
		c.FrontendAPIURL = fapi
	}
	u, err := url.Parse(c.FrontendAPIURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return c, fmt.Errorf("%w: FrontendAPIURL must be an http(s) URL", ErrConfig)
	}
	c.FrontendAPIURL = strings.TrimSuffix(c.FrontendAPIURL, "/")
	if c.JWTTemplate == "" {
		c.JWTTemplate = DefaultJWTTemplate
	}
	switch {
	case c.TokenLifetime == 0:
		c.TokenLifetime = DefaultTokenLifetime
	case c.TokenLifetime < MinTokenLifetime:
		c.TokenLifetime = MinTokenLifetime
	case c.TokenLifetime > MaxTokenLifetime:
		c.TokenLifetime = MaxTokenLifetime
	}
	if len(c.AuthorizedParties) == 0 {
		iu, err := url.Parse(c.Issuer)
		if c.Issuer == "" || err != nil || iu.Host == "" {
			return c, fmt.Errorf("%w: set AuthorizedParties or Issuer (the sign-in page's origin)", ErrConfig)
		}
		c.AuthorizedParties = []string{iu.Scheme + "://" + iu.Host}
	}
	if c.APIURL != "" {
		au, err := url.Parse(c.APIURL)
		if err != nil || au.Host == "" {
			return c, fmt.Errorf("%w: APIURL must be an absolute URL", ErrConfig)
		}
		if au.Path == "" || au.Path == "/" {
			c.APIURL = strings.TrimSuffix(c.APIURL, "/") + "/v1"
		}
	}
	if c.ClerkJSURL == "" {
		c.ClerkJSURL = c.FrontendAPIURL + clerkJSPath
	}
	if ju, err := url.Parse(c.ClerkJSURL); err != nil || ju.Host == "" {
		return c, fmt.Errorf("%w: ClerkJSURL must be an absolute URL", ErrConfig)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.WebhookReplays == nil {
		c.WebhookReplays = NewMemoryReplayGuard(c.Now)
	}
	return c, nil
}

// FrontendAPIURL derives the Frontend API URL from a publishable key:
// "https://" + the base64-decoded text after "pk_test_" or "pk_live_",
// without its trailing "$".
func FrontendAPIURL(publishableKey string) (string, error) {
	rest, ok := strings.CutPrefix(publishableKey, "pk_test_")
	if !ok {
		rest, ok = strings.CutPrefix(publishableKey, "pk_live_")
	}
	if !ok {
		return "", fmt.Errorf("%w: publishable key must start with pk_test_ or pk_live_", ErrConfig)
	}
	raw, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(rest, "="))
	}
	if err != nil {
		return "", fmt.Errorf("%w: publishable key is not base64 after its prefix", ErrConfig)
	}
	host := strings.TrimSuffix(string(raw), "$")
	if host == "" || strings.ContainsAny(host, "/?#@ ") {
		return "", fmt.Errorf("%w: publishable key does not encode a Frontend API host", ErrConfig)
	}
	return "https://" + host, nil
}

func origin(u *url.URL) string { return u.Scheme + "://" + u.Host }
