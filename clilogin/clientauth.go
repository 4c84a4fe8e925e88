package clilogin

import (
	"encoding/base64"
	"net/url"
	"slices"

	"golang.org/x/oauth2"
)

// Client authentication methods at the token and revocation endpoints, as
// RFC 7591 §2 names them (token_endpoint_auth_method).
const (
	authNone   = ""                    // a public client: client_id in the body
	authBasic  = "client_secret_basic" // RFC 6749 §2.3.1, HTTP Basic
	authInBody = "client_secret_post"  // RFC 6749 §2.3.1, client_secret in the body
)

// authMethod decides how this client authenticates at md's token endpoint:
// none without a ClientSecret; else Config.AuthStyle, or, when it is
// AuthStyleAutoDetect, what the metadata lists (client_secret_basic when
// listed or when the list is absent, RFC 8414's default; else
// client_secret_post), client_secret_post with Config.Endpoints.
func (c *Client) authMethod(md *metadata) string {
	if c.cfg.ClientSecret == "" {
		return authNone
	}
	switch c.cfg.AuthStyle {
	case oauth2.AuthStyleInHeader:
		return authBasic
	case oauth2.AuthStyleInParams:
		return authInBody
	}
	if c.cfg.Endpoints != nil {
		return authInBody
	}
	methods := md.TokenEndpointAuthMethodsSupported
	if len(methods) == 0 || slices.Contains(methods, authBasic) || !slices.Contains(methods, authInBody) {
		return authBasic
	}
	return authInBody
}

// recordAuth is the method for a stored login: what was decided at login,
// unless the program no longer has a secret (then none), or the record
// predates the choice (then Config.AuthStyle's, basic by default).
func (c *Client) recordAuth(stored string) string {
	switch {
	case c.cfg.ClientSecret == "":
		return authNone
	case stored != "":
		return stored
	case c.cfg.AuthStyle == oauth2.AuthStyleInParams:
		return authInBody
	}
	return authBasic
}

// authenticate adds the client's credentials to the form of a token or
// revocation request, and returns the Authorization header to send (""
// for none): client_id in the form for none and client_secret_post (with
// client_secret for the latter), or HTTP Basic with both form-encoded
// first, as RFC 6749 §2.3.1 says (and golang.org/x/oauth2 does).
func (c *Client) authenticate(form url.Values, method string) string {
	switch method {
	case authBasic:
		form.Del("client_id")
		cred := url.QueryEscape(c.cfg.ClientID) + ":" + url.QueryEscape(c.cfg.ClientSecret)
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(cred))
	case authInBody:
		form.Set("client_id", c.cfg.ClientID)
		form.Set("client_secret", c.cfg.ClientSecret)
	default:
		form.Set("client_id", c.cfg.ClientID)
	}
	return ""
}
