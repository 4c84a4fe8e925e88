package server

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// userInfo serves UserInfoPath, OpenID Connect Core §5.3: GET or POST with
// an access token the handler's Minter issued, as a bearer token in the
// Authorization header (RFC 6750 §2.1) or, on a POST, in a form body's
// access_token (§2.2); never in the URL. It answers the user's "sub", plus
// "email" and "email_verified" for the "email" scope and "name" for
// "profile", taken from the verified access token: a token with a "scope"
// claim (SelfSigned's) must include "openid" and gets the claims its scopes
// grant; a token without one (a Clerk JWT template's) gets the claims it
// carries itself, so the answer never tells its bearer more than the token
// does.
//
// Errors follow RFC 6750 §3: no token is 401 with a bare "Bearer"
// challenge; a refused token is 401 invalid_token; a token without "openid"
// is 403 insufficient_scope; a malformed request is 400 invalid_request.
// When the StateStore is unreachable (ErrStateUnavailable) the revocation
// check cannot be made: 503 temporarily_unavailable with Retry-After.
func (h *Handler) userInfo(w http.ResponseWriter, r *http.Request) {
	challenge := func(status int, code, desc string) {
		v := "Bearer"
		if code != "" {
			v += fmt.Sprintf(` error=%q`, code)
			if desc != "" {
				v += fmt.Sprintf(`, error_description=%q`, desc)
			}
			if code == "insufficient_scope" {
				v += `, scope="openid"`
			}
		}
		w.Header().Set("WWW-Authenticate", v)
		if code == "" {
			code = "unauthorized" // the body RequireToken answers too
		}
		writeJSON(w, status, oauthError{Code: code, Desc: desc})
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		challenge(http.StatusMethodNotAllowed, "invalid_request", "use GET or POST")
		return
	}
	if r.URL.Query().Has("access_token") {
		challenge(http.StatusBadRequest, "invalid_request", "send the access token in the Authorization header, not in the URL")
		return
	}
	tok, inHeader := bearerToken(r)
	if !inHeader && len(r.Header.Values("Authorization")) > 0 {
		challenge(http.StatusBadRequest, "invalid_request", "the Authorization header must be one Bearer token")
		return
	}
	if r.Method == http.MethodPost {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
			form, perr := url.ParseQuery(string(body))
			if err != nil || perr != nil || len(form["access_token"]) > 1 {
				challenge(http.StatusBadRequest, "invalid_request", "malformed form body")
				return
			}
			if form.Has("access_token") {
				if inHeader {
					// RFC 6750 §2: one method per request.
					challenge(http.StatusBadRequest, "invalid_request", "the access token was sent twice")
					return
				}
				tok = form.Get("access_token")
			}
		}
	}
	if tok == "" {
		challenge(http.StatusUnauthorized, "", "")
		return
	}
	c, err := h.verifier.Verify(r.Context(), tok)
	if errors.Is(err, ErrRevocationUnavailable) || errors.Is(err, ErrStateUnavailable) {
		// The revocation check could not be made: not the token's fault.
		h.log.ErrorContext(r.Context(), "server: userinfo: revocation check", "err", err)
		writeOAuthError(w, oerr(http.StatusServiceUnavailable, "temporarily_unavailable", "the server cannot check revocations right now; retry shortly"))
		return
	}
	if err != nil {
		desc := "the access token is invalid or expired"
		if errors.Is(err, ErrTokenRevoked) {
			desc = "the login was revoked"
		}
		challenge(http.StatusUnauthorized, "invalid_token", desc)
		return
	}
	out := map[string]any{"sub": c.Subject}
	if sc, ok := c.Raw["scope"].(string); ok {
		scopes := strings.Fields(sc)
		if !slices.Contains(scopes, ScopeOpenID) {
			challenge(http.StatusForbidden, "insufficient_scope", "the access token was not issued for the openid scope")
			return
		}
		id := Identity{Email: c.Email, Name: c.Name}
		id.EmailVerified, _ = c.Raw["email_verified"].(bool)
		addProfileClaims(out, id, scopes)
	} else {
		for _, k := range []string{"email", "email_verified", "name"} {
			if v, ok := c.Raw[k]; ok {
				out[k] = v
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}
