package server

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// OpenID Connect: the handler is an OpenID Provider for its clients. A client
// that asks for the "openid" scope gets an ID token in every token response
// (code exchange and refresh), signed with the handler's own key
// (Config.IDTokenKey) whatever the Minter, and can call UserInfoPath with its
// access token.
//
// Scopes. The handler understands "openid", "profile" ("name"), "email"
// ("email", "email_verified") and "offline_access", and ignores every other
// scope value, as OpenID Connect Core §3.1.2.1 asks; the token response's
// "scope" lists what was granted (RFC 6749 §5.1). A malformed scope (a
// character outside RFC 6749 §3.3's scope-token set) is invalid_scope.
// Refresh tokens are issued on every code exchange whether or not
// "offline_access" was asked for: the clients are CLIs that keep their
// login between runs, which OpenID Connect Core §11 leaves to the provider;
// "offline_access" is granted, and echoed, when asked for.

// Scope values the handler grants.
const (
	ScopeOpenID        = "openid"
	ScopeProfile       = "profile"
	ScopeEmail         = "email"
	ScopeOfflineAccess = "offline_access"
)

// supportedScopes are the granted scopes, in the order responses list them.
var supportedScopes = []string{ScopeOpenID, ScopeProfile, ScopeEmail, ScopeOfflineAccess}

// parseScope returns the supported scopes in s (a space-separated RFC 6749
// §3.3 scope), deduplicated, in supportedScopes order, and whether s is
// well-formed. Unknown scope values are dropped.
func parseScope(s string) ([]string, bool) {
	if s == "" {
		return nil, true
	}
	asked := map[string]bool{}
	for _, tok := range strings.Split(s, " ") {
		if tok == "" {
			continue // tolerate doubled spaces; a scope-token is never empty
		}
		for i := 0; i < len(tok); i++ {
			// scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
			if c := tok[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
				return nil, false
			}
		}
		asked[tok] = true
	}
	var out []string
	for _, sc := range supportedScopes {
		if asked[sc] {
			out = append(out, sc)
		}
	}
	return out, true
}

// idTokenSigner signs the handler's ID tokens and publishes their public
// keys. It is the seam between OpenID Connect and key management.
// Implementations are safe for concurrent use.
type idTokenSigner interface {
	// sign returns the compact JWS of claims with "alg", "kid" and
	// "typ":"JWT" headers.
	sign(claims map[string]any) (string, error)
	// algorithm is the JWS "alg" of the ID tokens sign makes.
	algorithm() string
	// publicJWKS returns the JWKS document (RFC 7517) of the public keys
	// relying parties verify ID tokens with: JWK objects with "kid", "alg"
	// and "use". Equal documents stand for equal keys.
	publicJWKS() ([]byte, error)
}

// keySetSigner signs with the active key of one algorithm of a KeySet, so
// ID-token keys rotate like access-token keys (KeySet.Reload).
type keySetSigner struct {
	ks  *KeySet
	alg string
}

// newKeySetSigner signs with RS256 when ks can (what every relying party
// accepts), else with ks's first algorithm.
func newKeySetSigner(ks *KeySet) (*keySetSigner, error) {
	algs := ks.Algorithms()
	if len(algs) == 0 {
		return nil, fmt.Errorf("%w: the key set has no active key", ErrNoSigningKey)
	}
	alg := algs[0]
	if slices.Contains(algs, "RS256") {
		alg = "RS256"
	}
	return &keySetSigner{ks: ks, alg: alg}, nil
}

func (s *keySetSigner) algorithm() string { return s.alg }

func (s *keySetSigner) sign(claims map[string]any) (string, error) {
	k, err := s.ks.Signer(s.alg)
	if err != nil {
		return "", err
	}
	return k.Sign(jwt.MapClaims(claims))
}

func (s *keySetSigner) publicJWKS() ([]byte, error) { return s.ks.JWKS() }

// lazyRSASigner generates an RSA-2048 key on first use (no ID-token key
// configured and a Minter whose keys cannot sign RS256), so handlers that
// never issue an ID token never pay for the key generation.
type lazyRSASigner struct {
	once sync.Once
	s    *keySetSigner
	err  error
}

func (l *lazyRSASigner) get() (*keySetSigner, error) {
	l.once.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			l.err = fmt.Errorf("server: generating the ID token key: %w", err)
			return
		}
		ks, err := NewKeySet([]SigningKey{{Key: k}})
		if err != nil {
			l.err = err
			return
		}
		l.s, l.err = newKeySetSigner(ks)
	})
	return l.s, l.err
}

func (l *lazyRSASigner) algorithm() string { return "RS256" }

func (l *lazyRSASigner) publicJWKS() ([]byte, error) {
	s, err := l.get()
	if err != nil {
		return nil, err
	}
	return s.publicJWKS()
}

func (l *lazyRSASigner) sign(claims map[string]any) (string, error) {
	s, err := l.get()
	if err != nil {
		return "", err
	}
	return s.sign(claims)
}

// newIDTokenSigner picks the ID-token keys as Config.IDTokenKeys documents.
func newIDTokenSigner(cfg Config) (idTokenSigner, error) {
	ks := cfg.IDTokenKeys
	switch {
	case ks != nil && cfg.IDTokenKey != nil:
		return nil, errors.New("set IDTokenKeys or IDTokenKey, not both")
	case ks != nil && cfg.IDTokenKeyID != "":
		return nil, errors.New("IDTokenKeyID goes with IDTokenKey; a KeySet names its own keys")
	case cfg.IDTokenKey != nil:
		var err error
		if ks, err = NewKeySet([]SigningKey{{ID: cfg.IDTokenKeyID, Key: cfg.IDTokenKey}}); err != nil {
			return nil, fmt.Errorf("IDTokenKey: %w", err)
		}
	}
	if ks != nil {
		s, err := newKeySetSigner(ks)
		if err != nil {
			return nil, fmt.Errorf("IDTokenKeys: %w", err)
		}
		return s, nil
	}
	if ss, ok := cfg.Minter.(*SelfSigned); ok {
		if _, err := ss.KeySet().Signer("RS256"); err == nil {
			return &keySetSigner{ks: ss.KeySet(), alg: "RS256"}, nil
		}
	}
	return &lazyRSASigner{}, nil
}

// halfHash is the OpenID Connect Core §3.1.3.6 hash of an access token
// ("at_hash"): the left half of its hash with the hash function of the ID
// token's alg (SHA-512 for EdDSA with Ed25519, per the errata), base64url.
func halfHash(alg, token string) string {
	var h hash.Hash
	switch alg {
	case "EdDSA":
		h = sha512.New()
	default: // RS256, ES256
		h = sha256.New()
	}
	h.Write([]byte(token))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// idTokenFor returns the ID token for an issued access token (OpenID
// Connect Core §2, §3.1.3.6), or "" when "openid" was not granted. nonce is
// the authorization request's ("" on refresh, OpenID Connect Core §12.2:
// the refresh is not an authentication request). The claims: iss, sub, aud
// and azp (the client ID), exp, iat, auth_time (Identity.AuthTime, else the
// handler's sign-in step; the same on refresh), nonce when given, at_hash,
// sid (the keyloop login session);
// "email" and "email_verified" with the "email" scope, "name" with
// "profile", each when known.
func (h *Handler) idTokenFor(rec refreshRecord, scopes []string, nonce, accessToken string, now time.Time) (string, error) {
	if !slices.Contains(scopes, ScopeOpenID) {
		return "", nil
	}
	now = now.Truncate(time.Second)
	c := map[string]any{
		"iss":     h.cfg.Issuer,
		"sub":     rec.Identity.Subject,
		"aud":     rec.ClientID,
		"azp":     rec.ClientID,
		"iat":     now.Unix(),
		"exp":     now.Add(h.cfg.IDTokenLifetime).Unix(),
		"at_hash": halfHash(h.idSigner.algorithm(), accessToken),
	}
	if at := rec.Identity.AuthTime; !at.IsZero() {
		c["auth_time"] = at.Unix()
	} else if !rec.AuthTime.IsZero() {
		c["auth_time"] = rec.AuthTime.Unix()
	}
	if nonce != "" {
		c["nonce"] = nonce
	}
	if rec.SessionID != "" {
		c["sid"] = rec.SessionID
	}
	addProfileClaims(c, rec.Identity, scopes)
	tok, err := h.idSigner.sign(c)
	if err != nil {
		return "", fmt.Errorf("server: signing the ID token: %w", err)
	}
	return tok, nil
}

// addProfileClaims adds the claims the "email" and "profile" scopes grant
// (OpenID Connect Core §5.4) and id knows.
func addProfileClaims(c map[string]any, id Identity, scopes []string) {
	if slices.Contains(scopes, ScopeEmail) && id.Email != "" {
		c["email"] = id.Email
		c["email_verified"] = id.EmailVerified
	}
	if slices.Contains(scopes, ScopeProfile) && id.Name != "" {
		c["name"] = id.Name
	}
}
