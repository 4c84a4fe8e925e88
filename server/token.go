package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxTokenParamLen bounds codes and refresh tokens presented to the token
// and revocation endpoints (real ones are 43 characters, JWTs a few KiB).
const maxTokenParamLen = 16 << 10

// refreshRecord is what a refresh token stands for.
type refreshRecord struct {
	ClientID  string    `json:"client_id"`
	SessionID string    `json:"sid"`
	Identity  Identity  `json:"identity"`
	AuthTime  time.Time `json:"auth_time"`
	Scopes    []string  `json:"scopes,omitempty"` // granted at the authorization request
}

// tokenResponse is the RFC 6749 §5.1 success body, with OpenID Connect
// Core §3.1.3.3's id_token.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// oauthError is an RFC 6749 §5.2 error response.
type oauthError struct {
	status int
	Code   string `json:"error"`
	Desc   string `json:"error_description,omitempty"`
}

func oerr(status int, code, desc string) *oauthError {
	return &oauthError{status: status, Code: code, Desc: desc}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	if e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeJSON(w, e.status, e)
}

// readForm reads a bounded form-encoded POST body. Parameters in the URL
// query are ignored; repeated parameters are refused.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return nil, oerr(http.StatusMethodNotAllowed, "invalid_request", "use POST")
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, oerr(http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, oerr(http.StatusRequestEntityTooLarge, "invalid_request", "request body too large")
	}
	if err != nil {
		return nil, oerr(http.StatusBadRequest, "invalid_request", "request body unreadable")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, oerr(http.StatusBadRequest, "invalid_request", "malformed form body")
	}
	for k, vs := range form {
		if len(vs) > 1 {
			return nil, oerr(http.StatusBadRequest, "invalid_request", duplicateParam(k))
		}
	}
	return form, nil
}

// clientFor identifies the public client from client_id in the form or from
// HTTP Basic authentication with an empty secret (what x/oauth2's
// auto-detection tries first). required makes a missing client_id an error.
func (h *Handler) clientFor(w http.ResponseWriter, r *http.Request, form url.Values, required bool) (*Client, *oauthError) {
	id := form.Get("client_id")
	if user, pass, ok := r.BasicAuth(); ok {
		u, err := url.QueryUnescape(user)
		if err != nil || pass != "" || (id != "" && id != u) {
			w.Header().Set("WWW-Authenticate", `Basic realm="keyloop"`)
			return nil, oerr(http.StatusUnauthorized, "invalid_client", "public clients authenticate with client_id only")
		}
		id = u
	}
	if id == "" {
		if required {
			return nil, oerr(http.StatusBadRequest, "invalid_request", "client_id is required")
		}
		return nil, nil
	}
	c, ok := h.clients[id]
	if !ok {
		// RFC 7235 §3.1: every 401 names a scheme.
		w.Header().Set("WWW-Authenticate", `Basic realm="keyloop"`)
		return nil, oerr(http.StatusUnauthorized, "invalid_client", "unknown client")
	}
	return &c, nil
}

// token serves TokenPath.
func (h *Handler) token(w http.ResponseWriter, r *http.Request) {
	form, e := readForm(w, r)
	if e == nil {
		var client *Client
		if client, e = h.clientFor(w, r, form, true); e == nil {
			var resp *tokenResponse
			switch gt := form.Get("grant_type"); gt {
			case "authorization_code":
				resp, e = h.codeGrant(r.Context(), client, form)
			case "refresh_token":
				resp, e = h.refreshGrant(r.Context(), client, form)
			case DeviceCodeGrantType:
				resp, e = h.deviceGrant(r.Context(), client, form)
			case "":
				e = oerr(http.StatusBadRequest, "invalid_request", "grant_type is required")
			default:
				e = oerr(http.StatusBadRequest, "unsupported_grant_type", "supported: "+strings.Join(h.grantTypes(), ", "))
			}
			if e == nil {
				writeJSON(w, http.StatusOK, resp)
				return
			}
		}
	}
	writeOAuthError(w, e)
}

var errInvalidGrant = oerr(http.StatusBadRequest, "invalid_grant", "the code is invalid, expired, already used, or was issued for another client or redirect_uri")

func (h *Handler) codeGrant(ctx context.Context, client *Client, form url.Values) (*tokenResponse, *oauthError) {
	code, redirect, verifier := form.Get("code"), form.Get("redirect_uri"), form.Get("code_verifier")
	switch {
	case code == "":
		return nil, oerr(http.StatusBadRequest, "invalid_request", "code is required")
	case redirect == "":
		return nil, oerr(http.StatusBadRequest, "invalid_request", "redirect_uri is required")
	case verifier == "":
		return nil, oerr(http.StatusBadRequest, "invalid_request", "code_verifier is required (PKCE)")
	case !isVerifier(verifier):
		return nil, oerr(http.StatusBadRequest, "invalid_request", "code_verifier must be 43-128 unreserved characters")
	case len(code) > maxTokenParamLen:
		return nil, errInvalidGrant
	}
	// The code is read, everything the exchange hands out is prepared and
	// stored, and only then is the code taken (the commit): a state store
	// failing at any earlier step leaves the code redeemable, and of
	// concurrent exchanges only the one whose Take wins hands anything out.
	hc := hashSecret(code)
	b, err := h.cfg.State.Get(ctx, keyCode+hc)
	if errors.Is(err, ErrStateNotFound) {
		return nil, h.codeReused(ctx, client, hc)
	}
	if err != nil {
		return nil, h.errStateDown(ctx, "loading the code", err)
	}
	var rec codeRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		h.log.ErrorContext(ctx, "server: token: unreadable code record", "err", err)
		return nil, oerr(http.StatusInternalServerError, "server_error", "")
	}
	now := h.cfg.Now()
	if !now.Before(rec.Expires) || rec.ClientID != client.ID || rec.RedirectURI != redirect || !pkceMatches(verifier, rec.Challenge) {
		// A failed attempt burns the code: whoever holds it with the wrong
		// verifier, client or redirect_uri is not the CLI that started the
		// login.
		if err := h.cfg.State.Delete(ctx, keyCode+hc); err != nil {
			h.log.ErrorContext(ctx, "server: token: burning a code after a failed attempt", "err", err)
		}
		return nil, errInvalidGrant
	}
	// The user may have been revoked (RevokeSubject, a Clerk webhook)
	// between consent and this exchange; a token minted now would carry a
	// later "iat" and pass RequireToken's subject check.
	revoked, err := isRevoked(ctx, h.cfg.State, "", rec.Identity.SessionID, rec.Identity.Subject, rec.AuthTime)
	if err != nil {
		return nil, h.errStateDown(ctx, "revocation check", err)
	}
	if revoked {
		h.cfg.State.Delete(ctx, keyCode+hc)
		return nil, oerr(http.StatusBadRequest, "invalid_grant", "the sign-in was revoked; sign in again")
	}
	rr := refreshRecord{ClientID: client.ID, SessionID: rec.SessionID, Identity: rec.Identity, AuthTime: rec.AuthTime, Scopes: rec.Scopes}
	// The code-used marker is stored with the refresh token, before the
	// Take or with it, so a second redemption always finds it (RFC 6749
	// §4.1.2).
	used := StatePut{Key: keyCodeUsed + hc, Value: []byte(rec.SessionID), TTL: h.cfg.PendingTTL}
	resp, e := h.mint(ctx, rr, false, rec.Scopes, rec.Nonce)
	if e != nil {
		return nil, e
	}
	if sp, ok := h.cfg.State.(StateSwapPutter); ok {
		// One step: the code is deleted (it is never changed once
		// stored, so the record read above is the one to match) and the
		// refresh token and the marker stored, or nothing is.
		rt, entries, e := h.newRefresh(ctx, rr, used)
		if e != nil {
			return nil, e
		}
		swapped, err := sp.SwapAndPut(ctx, keyCode+hc, b, nil, 0, entries)
		if err != nil {
			return nil, h.errStateDown(ctx, "redeeming the code and storing the new refresh token", err)
		}
		if !swapped { // a concurrent exchange won
			return nil, h.codeReused(ctx, client, hc)
		}
		resp.RefreshToken = rt
	} else {
		if resp.RefreshToken, e = h.storeRefresh(ctx, rr, used); e != nil {
			return nil, e
		}
		if _, err := h.cfg.State.Take(ctx, keyCode+hc); err != nil {
			h.dropRefresh(context.WithoutCancel(ctx), resp.RefreshToken)
			if errors.Is(err, ErrStateNotFound) { // a concurrent exchange won
				return nil, h.codeReused(ctx, client, hc)
			}
			return nil, h.errStateDown(ctx, "redeeming the code", err)
		}
	}
	h.log.InfoContext(ctx, "server: token issued", "grant_type", "authorization_code", "client_id", client.ID, "sub", rec.Identity.Subject, "sid", rec.SessionID)
	return resp, nil
}

// codeReused answers an exchange of a code that is gone: unknown, expired,
// burnt, or used. A used one had its login session revoked (RFC 6749
// §4.1.2: tokens issued from a code used twice should be revoked).
func (h *Handler) codeReused(ctx context.Context, client *Client, hc string) *oauthError {
	sid, err := h.cfg.State.Get(ctx, keyCodeUsed+hc)
	switch {
	case errors.Is(err, ErrStateNotFound):
	case err != nil:
		return h.errStateDown(ctx, "looking up a used code", err)
	default:
		if err := h.revokeSession(ctx, string(sid)); err != nil {
			return h.errStateDown(ctx, "revoking the session of a reused code", err)
		}
		h.log.WarnContext(ctx, "server: authorization code reused; login session revoked", "client_id", client.ID, "sid", string(sid))
	}
	return errInvalidGrant
}

// retryAfter is the Retry-After (seconds) of temporarily_unavailable
// answers.
const retryAfter = "5"

// mintAndIssue mints an access token with scopes, an ID token when scopes
// include "openid" (nonce is the authorization request's, "" otherwise),
// and a new refresh token for rec, stored with the extra entries (see
// storeRefresh).
func (h *Handler) mintAndIssue(ctx context.Context, rec refreshRecord, refresh bool, scopes []string, nonce string, extra ...StatePut) (*tokenResponse, *oauthError) {
	resp, e := h.mint(ctx, rec, refresh, scopes, nonce)
	if e != nil {
		return nil, e
	}
	if resp.RefreshToken, e = h.storeRefresh(ctx, rec, extra...); e != nil {
		return nil, e
	}
	return resp, nil
}

// mint mints an access token with scopes for rec, and an ID token when
// scopes include "openid".
func (h *Handler) mint(ctx context.Context, rec refreshRecord, refresh bool, scopes []string, nonce string) (*tokenResponse, *oauthError) {
	m, err := h.cfg.Minter.Mint(ctx, Grant{
		Identity: rec.Identity, ClientID: rec.ClientID, LoginSessionID: rec.SessionID, AuthTime: rec.AuthTime, Refresh: refresh,
		Scopes: scopes,
	})
	if errors.Is(err, ErrRefreshRefused) {
		h.log.InfoContext(ctx, "server: token: minter refused", "client_id", rec.ClientID, "sub", rec.Identity.Subject, "err", err)
		return nil, oerr(http.StatusBadRequest, "invalid_grant", "the identity layer refused to issue a token; sign in again")
	}
	if err != nil {
		h.log.ErrorContext(ctx, "server: token: mint failed", "client_id", rec.ClientID, "err", err)
		return nil, oerr(http.StatusInternalServerError, "server_error", "")
	}
	now := h.cfg.Now()
	resp := &tokenResponse{AccessToken: m.AccessToken, TokenType: "Bearer", ExpiresIn: max(0, int64(m.Expiry.Sub(now)/time.Second)),
		Scope: strings.Join(scopes, " ")}
	if resp.IDToken, err = h.idTokenFor(rec, scopes, nonce, m.AccessToken, now); err != nil {
		h.log.ErrorContext(ctx, "server: token: ID token", "client_id", rec.ClientID, "err", err)
		return nil, oerr(http.StatusInternalServerError, "server_error", "")
	}
	return resp, nil
}

// storeRefresh stores a new refresh token for rec, valid until the login's
// cap, and returns it; "" when the cap is reached (no refresh token). The
// extra entries are stored with it, in one step where the StateStore can
// (putAll), and are stored even when there is no refresh token.
func (h *Handler) storeRefresh(ctx context.Context, rec refreshRecord, extra ...StatePut) (string, *oauthError) {
	rt, entries, e := h.newRefresh(ctx, rec, extra...)
	if e != nil {
		return "", e
	}
	if err := h.putAll(ctx, entries); err != nil {
		h.dropRefresh(context.WithoutCancel(ctx), rt)
		what := "storing the new refresh token"
		if len(extra) > 0 {
			what = "storing the new refresh token and the code-used marker"
		}
		return "", h.errStateDown(ctx, what, err)
	}
	return rt, nil
}

// newRefresh returns a new refresh token for rec, valid until the login's
// cap, and the entries that store it (the token's record and its reuse
// marker) followed by extra; "" and extra alone when the cap is reached.
func (h *Handler) newRefresh(ctx context.Context, rec refreshRecord, extra ...StatePut) (string, []StatePut, *oauthError) {
	ttl := rec.AuthTime.Add(h.cfg.RefreshTokenMaxLifetime).Sub(h.cfg.Now())
	if ttl <= 0 {
		return "", extra, nil
	}
	rt := randomID()
	ht := hashSecret(rt)
	b, err := json.Marshal(rec)
	if err != nil {
		h.log.ErrorContext(ctx, "server: token: encoding the refresh token record", "err", err)
		return "", nil, oerr(http.StatusInternalServerError, "server_error", "")
	}
	return rt, append([]StatePut{
		{Key: keyRefreshKnown + ht, Value: []byte(rec.SessionID), TTL: ttl},
		{Key: keyRefresh + ht, Value: b, TTL: ttl},
	}, extra...), nil
}

// putAll stores entries: in one PutBatch when the StateStore is a
// StateBatchPutter (one commit or round trip instead of one per entry),
// else with Put, in order, stopping at the first error.
func (h *Handler) putAll(ctx context.Context, entries []StatePut) error {
	switch {
	case len(entries) == 0:
		return nil
	case len(entries) > 1:
		if bp, ok := h.cfg.State.(StateBatchPutter); ok {
			return bp.PutBatch(ctx, entries)
		}
	}
	for _, e := range entries {
		if err := h.cfg.State.Put(ctx, e.Key, e.Value, e.TTL); err != nil {
			return err
		}
	}
	return nil
}

// dropRefresh deletes a refresh token storeRefresh stored that was never
// handed out.
func (h *Handler) dropRefresh(ctx context.Context, rt string) {
	if rt == "" {
		return
	}
	ht := hashSecret(rt)
	for _, k := range []string{keyRefresh + ht, keyRefreshKnown + ht} {
		if err := h.cfg.State.Delete(ctx, k); err != nil {
			h.log.ErrorContext(ctx, "server: token: deleting an unused refresh token", "err", err)
		}
	}
}

func isVerifier(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0) {
			return false
		}
	}
	return true
}

func pkceMatches(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	return constantEqual(base64.RawURLEncoding.EncodeToString(sum[:]), challenge)
}

// revoke serves RevokePath (RFC 7009). Revoking a refresh token (current or
// already rotated) ends its whole login session. Revoking an access token
// that verifies and carries "sid" ends that session too: its refresh tokens
// stop working and RequireToken refuses its access tokens. Unknown, invalid
// and foreign tokens get 200, as RFC 7009 §2.2 asks.
func (h *Handler) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, e := readForm(w, r)
	var client *Client
	if e == nil {
		client, e = h.clientFor(w, r, form, false)
	}
	tok := form.Get("token")
	if e == nil && tok == "" {
		e = oerr(http.StatusBadRequest, "invalid_request", "token is required")
	}
	if e != nil {
		writeOAuthError(w, e)
		return
	}
	sameClient := func(id string) bool { return client == nil || id == "" || client.ID == id }
	if len(tok) <= maxTokenParamLen {
		if e := h.revokeToken(ctx, tok, sameClient); e != nil {
			writeOAuthError(w, e)
			return
		}
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// revokeToken ends the login session of tok, a refresh token (current or
// rotated) or an access token, when sameClient accepts its client. Tokens
// it does not know are not an error (RFC 7009 §2.2); a state store or key
// set that cannot answer is (the client must learn that nothing was
// revoked).
func (h *Handler) revokeToken(ctx context.Context, tok string, sameClient func(string) bool) *oauthError {
	ht := hashSecret(tok)
	sid, err := h.cfg.State.Get(ctx, keyRefreshKnown+ht)
	switch {
	case err == nil:
		b, err := h.cfg.State.Get(ctx, keyRefresh+ht)
		var rec refreshRecord
		switch {
		case errors.Is(err, ErrStateNotFound): // rotated away: its session still ends
		case err != nil:
			return h.errStateDown(ctx, "loading the refresh token to revoke", err)
		case json.Unmarshal(b, &rec) == nil && !sameClient(rec.ClientID):
			return nil
		}
		if err := h.revokeSession(ctx, string(sid)); err != nil {
			return h.errStateDown(ctx, "revoking a login session", err)
		}
		if err := h.cfg.State.Delete(ctx, keyRefresh+ht); err != nil {
			// The session marker refuses the token anyway.
			h.log.ErrorContext(ctx, "server: revoke: deleting the refresh token", "err", err)
		}
		h.log.InfoContext(ctx, "server: login session revoked", "via", "refresh_token", "sid", string(sid))
	case !errors.Is(err, ErrStateNotFound):
		return h.errStateDown(ctx, "looking up the token to revoke", err)
	case strings.Count(tok, ".") == 2:
		c, err := h.verifier.verify(ctx, tok, false)
		if errors.Is(err, ErrKeysUnavailable) {
			h.log.ErrorContext(ctx, "server: revoke: verifying an access token", "err", err)
			return oerr(http.StatusServiceUnavailable, "temporarily_unavailable", "the token's signing keys cannot be fetched right now; retry shortly")
		}
		if err != nil || c.SessionID == "" || !sameClient(c.ClientID) {
			return nil
		}
		if err := h.revokeSession(ctx, c.SessionID); err != nil {
			return h.errStateDown(ctx, "revoking a login session", err)
		}
		h.log.InfoContext(ctx, "server: login session revoked", "via", "access_token", "sid", c.SessionID)
	}
	return nil
}
