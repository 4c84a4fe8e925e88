package server

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// refreshEntry is the value under keyRefresh: a live refresh token's record,
// or, once the token was rotated, a marker naming its successor for the
// grace period (Config.RefreshTokenReuseGrace).
type refreshEntry struct {
	refreshRecord
	// Next is the hashed successor; set once the token was rotated.
	Next string `json:"next,omitempty"`
	// Sealed is the successor refresh token, encrypted with a key only the
	// holder of this (the predecessor) token can derive.
	Sealed []byte `json:"sealed,omitempty"`
	// Until ends the grace period.
	Until time.Time `json:"until,omitzero"`
	// Replayed is set when the grace period was used.
	Replayed bool `json:"replayed,omitempty"`
}

var errBadRefresh = oerr(http.StatusBadRequest, "invalid_grant", "the refresh token is invalid, expired, revoked or was issued to another client")

// errStateDown answers a request the state store could not serve; nothing
// was consumed, so the client may retry the same request.
func (h *Handler) errStateDown(ctx context.Context, what string, err error) *oauthError {
	h.log.ErrorContext(ctx, "server: token: "+what, "err", err)
	return oerr(http.StatusServiceUnavailable, "temporarily_unavailable", "the login state is unavailable; retry shortly")
}

// refreshGrant redeems a refresh token (RFC 6749 §6) with rotation and
// reuse detection (RFC 9700 §4.14.2), tolerating one lost response within
// Config.RefreshTokenReuseGrace.
//
// The token's entry is read, the access token minted, the successor
// stored, and only then is the entry swapped for the rotated marker with
// CompareAndSwap: of concurrent redemptions exactly one rotates, and a
// failure before the swap leaves the token usable.
func (h *Handler) refreshGrant(ctx context.Context, client *Client, form url.Values) (*tokenResponse, *oauthError) {
	rt := form.Get("refresh_token")
	_, scopeOK := parseScope(form.Get("scope"))
	switch {
	case rt == "":
		return nil, oerr(http.StatusBadRequest, "invalid_request", "refresh_token is required")
	case len(form.Get("scope")) > maxScopeLen || !scopeOK:
		return nil, oerr(http.StatusBadRequest, "invalid_scope", "scope must be space-separated scope tokens (RFC 6749 section 3.3)")
	case len(rt) > maxTokenParamLen:
		return nil, errBadRefresh
	}
	ht := hashSecret(rt)
	b, ent, e := h.loadRefresh(ctx, client, ht)
	if e != nil {
		return nil, e
	}
	if ent.Next != "" {
		return h.replayInGrace(ctx, client, form, rt, ht, b, ent, nil)
	}
	rec := ent.refreshRecord
	if e := h.checkRefresh(ctx, client, rec); e != nil {
		return nil, e
	}
	scopes, e := refreshScopes(form, rec.Scopes)
	if e != nil {
		return nil, e
	}
	resp, e := h.mint(ctx, rec, true, scopes, "")
	if e != nil {
		return nil, e
	}
	// With a StateSwapPutter the successor is stored with the rotation,
	// in one step; otherwise before it, and deleted if the rotation fails.
	sp, oneStep := h.cfg.State.(StateSwapPutter)
	next, entries, e := h.newRefresh(ctx, rec)
	if e != nil {
		return nil, e
	}
	if !oneStep {
		if err := h.putAll(ctx, entries); err != nil {
			h.dropRefresh(context.WithoutCancel(ctx), next)
			return nil, h.errStateDown(ctx, "storing the new refresh token", err)
		}
	}
	grace := h.cfg.RefreshTokenReuseGrace
	var marker []byte
	if next != "" && grace > 0 {
		sealed, err := sealSuccessor(rt, next)
		if err != nil {
			return nil, h.errStateDown(ctx, "sealing the successor refresh token", err)
		}
		if marker, err = json.Marshal(refreshEntry{Next: hashSecret(next), Sealed: sealed, Until: h.cfg.Now().Add(grace)}); err != nil {
			return nil, h.errStateDown(ctx, "encoding the rotated refresh token", err)
		}
	}
	ttl := grace
	if marker == nil {
		ttl = 0 // no grace period: the swap is a compare-and-delete
	}
	var swapped bool
	var err error
	if oneStep {
		swapped, err = sp.SwapAndPut(ctx, keyRefresh+ht, b, marker, ttl, entries)
	} else {
		swapped, err = h.cfg.State.CompareAndSwap(ctx, keyRefresh+ht, b, marker, ttl)
		if err != nil || !swapped {
			h.dropRefresh(context.WithoutCancel(ctx), next)
		}
	}
	if err != nil {
		return nil, h.errStateDown(ctx, "rotating the refresh token", err)
	}
	if !swapped {
		// A concurrent request rotated it first: this one is a replay of
		// a token that was rotated a moment ago.
		b, ent, e := h.loadRefresh(ctx, client, ht)
		if e != nil {
			return nil, e
		}
		if ent.Next == "" {
			return nil, h.errStateDown(ctx, "rotating the refresh token", errors.New("the token changed but was not rotated"))
		}
		return h.replayInGrace(ctx, client, form, rt, ht, b, ent, resp)
	}
	resp.RefreshToken = next
	h.log.InfoContext(ctx, "server: token issued", "grant_type", "refresh_token", "client_id", client.ID, "sub", rec.Identity.Subject, "sid", rec.SessionID)
	return resp, nil
}

// loadRefresh reads the entry of the hashed refresh token ht. An unknown
// token gets invalid_grant; a token that was rotated and whose grace period
// is over is reuse, which revokes its login session.
func (h *Handler) loadRefresh(ctx context.Context, client *Client, ht string) ([]byte, refreshEntry, *oauthError) {
	var ent refreshEntry
	b, err := h.cfg.State.Get(ctx, keyRefresh+ht)
	if errors.Is(err, ErrStateNotFound) {
		return nil, ent, h.refreshReused(ctx, client, ht)
	}
	if err != nil {
		return nil, ent, h.errStateDown(ctx, "loading the refresh token", err)
	}
	if err := json.Unmarshal(b, &ent); err != nil {
		h.log.ErrorContext(ctx, "server: token: refresh token entry unreadable", "err", err)
		return nil, ent, oerr(http.StatusInternalServerError, "server_error", "")
	}
	if ent.Next == "" && ent.ClientID != client.ID {
		return nil, ent, errBadRefresh
	}
	return b, ent, nil
}

// refreshReused handles a refresh token that is not (or no longer) live: if
// it was ever issued, it was rotated before, and presenting it again revokes
// its whole login session (RFC 9700 §4.14.2).
func (h *Handler) refreshReused(ctx context.Context, client *Client, ht string) *oauthError {
	sid, err := h.cfg.State.Get(ctx, keyRefreshKnown+ht)
	if errors.Is(err, ErrStateNotFound) {
		return errBadRefresh
	}
	if err != nil {
		return h.errStateDown(ctx, "checking for refresh token reuse", err)
	}
	if err := h.revokeSession(ctx, string(sid)); err != nil {
		return h.errStateDown(ctx, "revoking the login session after refresh token reuse", err)
	}
	h.log.WarnContext(ctx, "server: refresh token reuse detected; login session revoked", "client_id", client.ID, "sid", string(sid))
	return errBadRefresh
}

// checkRefresh refuses a refresh of rec past the login's cap or after a
// revocation.
func (h *Handler) checkRefresh(ctx context.Context, client *Client, rec refreshRecord) *oauthError {
	if rec.ClientID != client.ID {
		return errBadRefresh
	}
	if !h.cfg.Now().Before(rec.AuthTime.Add(h.cfg.RefreshTokenMaxLifetime)) {
		return oerr(http.StatusBadRequest, "invalid_grant", "the login session reached its maximum lifetime; sign in again")
	}
	revoked, err := isRevoked(ctx, h.cfg.State, rec.SessionID, rec.Identity.SessionID, rec.Identity.Subject, rec.AuthTime)
	if err != nil {
		return h.errStateDown(ctx, "revocation check", err)
	}
	if revoked {
		return oerr(http.StatusBadRequest, "invalid_grant", "the login session was revoked; sign in again")
	}
	return nil
}

// replayInGrace answers a rotated refresh token presented again (ht, whose
// entry b/ent names its successor). Within the grace period, while the
// successor is unused and only once, it is the retry of a request whose
// response was lost: the answer carries the same successor refresh token,
// so the login goes on with one current token, and a fresh access token
// (minted unless resp already holds one). Anything else is reuse.
func (h *Handler) replayInGrace(ctx context.Context, client *Client, form url.Values, rt, ht string, b []byte, ent refreshEntry, resp *tokenResponse) (*tokenResponse, *oauthError) {
	now := h.cfg.Now()
	if ent.Replayed || !now.Before(ent.Until) {
		return nil, h.refreshReused(ctx, client, ht)
	}
	nb, err := h.cfg.State.Get(ctx, keyRefresh+ent.Next)
	if errors.Is(err, ErrStateNotFound) {
		// The successor is gone (rotated long ago, or past the cap).
		return nil, h.refreshReused(ctx, client, ht)
	}
	if err != nil {
		return nil, h.errStateDown(ctx, "loading the successor refresh token", err)
	}
	var nent refreshEntry
	if err := json.Unmarshal(nb, &nent); err != nil {
		h.log.ErrorContext(ctx, "server: token: refresh token entry unreadable", "err", err)
		return nil, oerr(http.StatusInternalServerError, "server_error", "")
	}
	if nent.Next != "" {
		// The successor was used already: this token is not the immediate
		// predecessor of the current one any more.
		return nil, h.refreshReused(ctx, client, ht)
	}
	rec := nent.refreshRecord
	if e := h.checkRefresh(ctx, client, rec); e != nil {
		return nil, e
	}
	next, err := openSuccessor(rt, ent.Sealed)
	if err != nil {
		h.log.ErrorContext(ctx, "server: token: opening the successor refresh token", "err", err)
		return nil, oerr(http.StatusInternalServerError, "server_error", "")
	}
	if resp == nil {
		scopes, e := refreshScopes(form, rec.Scopes)
		if e != nil {
			return nil, e
		}
		if resp, e = h.mint(ctx, rec, true, scopes, ""); e != nil {
			return nil, e
		}
	}
	marked := ent
	marked.Replayed = true
	mb, err := json.Marshal(marked)
	if err != nil {
		return nil, h.errStateDown(ctx, "encoding the rotated refresh token", err)
	}
	swapped, err := h.cfg.State.CompareAndSwap(ctx, keyRefresh+ht, b, mb, ent.Until.Sub(now))
	if err != nil {
		return nil, h.errStateDown(ctx, "marking the grace period used", err)
	}
	if !swapped {
		// Another replay of the same token won: this one is reuse.
		return nil, h.refreshReused(ctx, client, ht)
	}
	resp.RefreshToken = next
	h.log.InfoContext(ctx, "server: rotated refresh token presented again within the grace period; its successor was sent again",
		"client_id", client.ID, "sub", rec.Identity.Subject, "sid", rec.SessionID)
	return resp, nil
}

// sealSuccessor encrypts next (AES-256-GCM) under a key derived from prev,
// so the state store holds the successor of a rotated token in a form only
// the holder of prev can open: a copy of the store yields no usable token.
func sealSuccessor(prev, next string) ([]byte, error) {
	aead, err := graceAEAD(prev)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, []byte(next), []byte(keyRefresh)), nil
}

func openSuccessor(prev string, sealed []byte) (string, error) {
	aead, err := graceAEAD(prev)
	if err != nil {
		return "", err
	}
	if len(sealed) < aead.NonceSize() {
		return "", errors.New("sealed successor too short")
	}
	p, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(keyRefresh))
	if err != nil {
		return "", err
	}
	return string(p), nil
}

func graceAEAD(prev string) (cipher.AEAD, error) {
	mac := hmac.New(sha256.New, []byte(prev))
	mac.Write([]byte("keyloop refresh token grace v1"))
	block, err := aes.NewCipher(mac.Sum(nil))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// refreshScopes returns the scopes a refresh grants (RFC 6749 §6): the
// request's scope, which may narrow the login's grant and never widen it
// (invalid_scope), or the whole grant when the request names none. The
// new refresh token keeps the whole grant. The request's scope was checked
// for syntax already.
func refreshScopes(form url.Values, granted []string) ([]string, *oauthError) {
	if !form.Has("scope") {
		return granted, nil
	}
	asked, _ := parseScope(form.Get("scope"))
	for _, sc := range asked {
		if !slices.Contains(granted, sc) {
			return nil, oerr(http.StatusBadRequest, "invalid_scope", "the scope asks for more than the login granted")
		}
	}
	return asked, nil
}
