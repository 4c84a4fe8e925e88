package clerk

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
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

// Config configures a Provider. Only SecretKey, PublishableKey and one of
// Issuer or AuthorizedParties are required; the fields for proxies
// (ProxyURL) and satellite domains (IsSatellite, Domain, SignInURL) mirror
// the clerk-js options of the same names.
type Config struct {
	// SecretKey is the Clerk secret key ("sk_live_…"/"sk_test_…") the
	// Backend API calls are made with. Required; keep it server-side.
	SecretKey string
	// PublishableKey is the Clerk publishable key ("pk_live_…"/"pk_test_…")
	// put in the sign-in page. Required. It encodes the instance's Frontend
	// API host: "https://" + the base64 text after "pk_test_"/"pk_live_",
	// with the trailing "$" removed.
	PublishableKey string
	// FrontendAPIURL is the Clerk Frontend API URL, e.g.
	// "https://clerk.example.com": the "iss" of the tokens Clerk signs and
	// the base of its JWKS (/.well-known/jwks.json). Empty means ProxyURL
	// when a primary domain has a proxy (clerk-sdk-go v2 requires iss ==
	// the proxy URL), else the URL the publishable key encodes.
	FrontendAPIURL string
	// ProxyURL is the URL of your proxy of the Frontend API, e.g.
	// "https://app.example.com/__clerk", as entered in the Dashboard
	// (Domains → Frontend API → Set proxy configuration). The sign-in page
	// hands it to clerk-js (data-clerk-proxy-url), loads clerk-js from it
	// and its CSP allows it; the session tokens clerk-js gets through it are
	// issued by it. Empty means no proxy. Clerk proxies production
	// instances only, and the proxy must be on the sign-in page's site: New
	// refuses a proxy with a development key (pk_test_) or on another site.
	ProxyURL string
	// IsSatellite says the sign-in page (Issuer's origin) is on a satellite
	// domain of the instance, whose sessions come from the primary domain.
	// It needs Domain or ProxyURL (not both), and SignInURL on development
	// instances, as clerk-js does.
	IsSatellite bool
	// Domain is the satellite domain (clerk-js's domain option,
	// data-clerk-domain), e.g. "satellite.example.com". Only with
	// IsSatellite. On a production instance clerk-js then talks to
	// https://clerk.<Domain>, whose session tokens are accepted too.
	Domain string
	// SignInURL is the sign-in page signed-out users are sent to, e.g. the
	// primary domain's "https://example.com/sign-in". Empty means the
	// instance's hosted sign-in (Account Portal). Required for satellites of
	// development instances; a satellite's SignInURL must be on another
	// origin than the satellite.
	SignInURL string
	// SignUpURL is the sign-up page, passed to clerk-js like SignInURL.
	// Empty means the instance's default.
	SignUpURL string
	// JWTTemplate is the name of the Clerk JWT template access tokens are
	// minted from. Empty means DefaultJWTTemplate ("cli"). The template
	// must carry the claim TemplateClaim ("keyloop_template") with this
	// name as value: the bearer middleware (CheckAccessToken) accepts only
	// tokens that do, so other templates of the instance are no access
	// tokens for the CLI's API.
	JWTTemplate string
	// Audience is the "aud" the JWT template sets, published to clients and
	// checked by the bearer middleware. Empty means the template sets none.
	Audience string
	// TokenLifetime is the lifetime of minted access tokens
	// (expires_in_seconds, which overrides the template's own lifetime).
	// Zero means DefaultTokenLifetime (7 days); other values are clamped to
	// MinTokenLifetime … MaxTokenLifetime. Keep it at most the server's
	// RefreshTokenMaxLifetime: revocations (bans, deletions) are remembered
	// that long.
	TokenLifetime time.Duration
	// Issuer is the keyloop backend's issuer URL (server.Config's). Its
	// origin is the sign-in page's origin and the default authorized party.
	Issuer string
	// AuthorizedParties are the origins ("https://app.example.com") whose
	// session tokens are accepted: a session token must carry an "azp"
	// among them (as Clerk's backend SDK requires once authorized parties
	// are set). Empty means the origin of Issuer; New fails if both are
	// empty.
	AuthorizedParties []string
	// AllowImpersonation lets sessions started by impersonation (an "act"
	// claim) sign in. False, the default, refuses them: a CLI token minted
	// for one looks like the user's own. When true, the JWT template must
	// carry "act": "{{session.actor}}" — Mint refuses to hand out a token
	// that hides the actor — and the consent page names the actor.
	AllowImpersonation bool
	// APIURL is the Clerk Backend API base URL the SDK calls, including the
	// version path, like the SDK's default "https://api.clerk.com/v1"; a URL
	// with no path gets "/v1" appended. Empty means the SDK's default.
	APIURL string
	// ClerkJSURL is the URL of Clerk's browser SDK loaded by the sign-in
	// page. Empty means the Frontend API the browser talks to (ProxyURL,
	// https://clerk.<Domain> on a production satellite, else
	// FrontendAPIURL) + "/npm/@clerk/clerk-js@6/dist/clerk.browser.js":
	// clerk-js v6, the major Clerk's docs load (v5 is in long-term support
	// until January 2027).
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

// ClerkJSPath is where Clerk serves clerk-js v6 from a Frontend API host
// (or a proxy of it).
const ClerkJSPath = "/npm/@clerk/clerk-js@6/dist/clerk.browser.js"

// derived holds what withDefaults works out from a Config.
type derived struct {
	production bool
	pageOrigin string
	// browserFAPI is the Frontend API clerk-js talks to from the page.
	browserFAPI string
	// sessionIssuers are the accepted "iss" of session tokens.
	sessionIssuers []string
}

func (c Config) withDefaults() (Config, derived, error) {
	var d derived
	if c.SecretKey == "" {
		return c, d, fmt.Errorf("%w: SecretKey is empty", ErrConfig)
	}
	if c.PublishableKey == "" {
		return c, d, fmt.Errorf("%w: PublishableKey is empty", ErrConfig)
	}
	keyFAPI, err := FrontendAPIURL(c.PublishableKey)
	if err != nil {
		return c, d, err
	}
	d.production = strings.HasPrefix(c.PublishableKey, "pk_live_")

	if len(c.AuthorizedParties) == 0 {
		iu, err := url.Parse(c.Issuer)
		if c.Issuer == "" || err != nil || iu.Host == "" {
			return c, d, fmt.Errorf("%w: set AuthorizedParties or Issuer (the sign-in page's origin)", ErrConfig)
		}
		c.AuthorizedParties = []string{origin(iu)}
	}
	d.pageOrigin = c.AuthorizedParties[0]
	if iu, err := url.Parse(c.Issuer); c.Issuer != "" && err == nil && iu.Host != "" {
		d.pageOrigin = origin(iu)
	}

	if c.ProxyURL != "" {
		pu, err := url.Parse(c.ProxyURL)
		if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" || pu.RawQuery != "" || pu.Fragment != "" {
			return c, d, fmt.Errorf("%w: ProxyURL must be an absolute http(s) URL such as https://app.example.com/__clerk", ErrConfig)
		}
		if !d.production {
			return c, d, fmt.Errorf("%w: ProxyURL is set but Clerk proxies production instances only (the publishable key is a development key, pk_test_)", ErrConfig)
		}
		if pg, err := url.Parse(d.pageOrigin); err == nil && !sameSite(pu.Hostname(), pg.Hostname()) {
			return c, d, fmt.Errorf("%w: ProxyURL %s is not on the sign-in page's site %s; Clerk requires the proxy on your application's domain", ErrConfig, pu.Host, pg.Host)
		}
		c.ProxyURL = strings.TrimSuffix(c.ProxyURL, "/")
	}
	if c.Domain != "" {
		if !c.IsSatellite {
			return c, d, fmt.Errorf("%w: Domain is the domain of a satellite application; set IsSatellite too", ErrConfig)
		}
		c.Domain = strings.TrimPrefix(strings.TrimPrefix(c.Domain, "https://"), "http://")
		if c.Domain == "" || strings.ContainsAny(c.Domain, "/?#@ ") {
			return c, d, fmt.Errorf("%w: Domain must be a host name such as satellite.example.com", ErrConfig)
		}
	}
	if c.IsSatellite {
		switch {
		case c.Domain == "" && c.ProxyURL == "":
			return c, d, fmt.Errorf("%w: a satellite needs Domain or ProxyURL (clerk-js refuses to load without one)", ErrConfig)
		case c.Domain != "" && c.ProxyURL != "":
			return c, d, fmt.Errorf("%w: set Domain or ProxyURL for a satellite, not both (a proxy replaces the satellite's Frontend API domain)", ErrConfig)
		case !d.production && c.SignInURL == "":
			return c, d, fmt.Errorf("%w: a satellite of a development instance needs SignInURL (the primary domain's sign-in page)", ErrConfig)
		}
	}
	for name, raw := range map[string]string{"SignInURL": c.SignInURL, "SignUpURL": c.SignUpURL} {
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return c, d, fmt.Errorf("%w: %s must be an absolute http(s) URL", ErrConfig, name)
		}
		if c.IsSatellite && origin(u) == d.pageOrigin {
			return c, d, fmt.Errorf("%w: a satellite's %s must be on the primary domain, not on the satellite's origin %s", ErrConfig, name, d.pageOrigin)
		}
	}

	switch {
	case c.FrontendAPIURL != "":
	case c.ProxyURL != "" && !c.IsSatellite:
		c.FrontendAPIURL = c.ProxyURL
	default:
		c.FrontendAPIURL = keyFAPI
	}
	u, err := url.Parse(c.FrontendAPIURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return c, d, fmt.Errorf("%w: FrontendAPIURL must be an http(s) URL", ErrConfig)
	}
	c.FrontendAPIURL = strings.TrimSuffix(c.FrontendAPIURL, "/")

	// Where clerk-js sends its Frontend API calls (clerk-js core/fapiClient.ts
	// buildUrl: the proxy URL, else https://<domain> on production, else the
	// publishable key's host) and which issuers its session tokens carry.
	d.browserFAPI = c.FrontendAPIURL
	d.sessionIssuers = []string{c.FrontendAPIURL}
	switch {
	case c.ProxyURL != "":
		d.browserFAPI = c.ProxyURL
		d.sessionIssuers = append(d.sessionIssuers, c.ProxyURL)
	case c.IsSatellite && d.production:
		d.browserFAPI = "https://clerk." + strings.TrimPrefix(c.Domain, "clerk.")
		d.sessionIssuers = append(d.sessionIssuers, d.browserFAPI)
	}
	d.sessionIssuers = slices.Compact(d.sessionIssuers)

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
	if c.APIURL != "" {
		au, err := url.Parse(c.APIURL)
		if err != nil || au.Host == "" {
			return c, d, fmt.Errorf("%w: APIURL must be an absolute URL", ErrConfig)
		}
		if au.Path == "" || au.Path == "/" {
			c.APIURL = strings.TrimSuffix(c.APIURL, "/") + "/v1"
		}
	}
	if c.ClerkJSURL == "" {
		c.ClerkJSURL = d.browserFAPI + ClerkJSPath
	}
	if ju, err := url.Parse(c.ClerkJSURL); err != nil || ju.Host == "" {
		return c, d, fmt.Errorf("%w: ClerkJSURL must be an absolute URL", ErrConfig)
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
	return c, d, nil
}

// sameSite reports whether two hosts can share first-party cookies, as a
// proxy of the Frontend API and the page using it must: the same IP
// address, or host names that share their last two labels (a coarse
// registrable domain; it accepts a.co.uk with b.co.uk, never a different
// domain).
func sameSite(a, b string) bool {
	if a == b {
		return true
	}
	if net.ParseIP(a) != nil || net.ParseIP(b) != nil {
		return false
	}
	last2 := func(h string) string {
		parts := strings.Split(strings.TrimSuffix(h, "."), ".")
		if len(parts) < 2 {
			return h
		}
		return strings.Join(parts[len(parts)-2:], ".")
	}
	return last2(a) == last2(b)
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
