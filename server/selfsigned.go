package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultTokenLifetime is the lifetime of access tokens SelfSigned mints when
// SelfSignedConfig.Lifetime is zero.
const DefaultTokenLifetime = 7 * 24 * time.Hour

// SelfSignedConfig configures a SelfSigned minter.
type SelfSignedConfig struct {
	// Issuer is the "iss" of minted tokens, normally the Handler's
	// Config.Issuer. Required.
	Issuer string
	// Keys is the shared, rotating key set tokens are signed with (see
	// KeySet and LoadKeyDir): what several replicas, or one backend that
	// rotates its keys, use. Exactly one of Keys and Key is required, unless
	// AllowEphemeralKey is set.
	Keys *KeySet
	// Key is a single signing key: an ed25519.PrivateKey (EdDSA), an ECDSA
	// P-256 key (ES256) or an RSA key of at least 2048 bits (RS256); any
	// crypto.Signer with such a public key works (a KMS or HSM key, say).
	// It is the same as a Keys set of that one key.
	Key crypto.Signer
	// KeyID is the "kid" of Key. Empty means the RFC 7638 JWK thumbprint
	// of its public key. Only with Key.
	KeyID string
	// AllowEphemeralKey, when Keys and Key are both nil, signs with a fresh
	// Ed25519 key that lives only as long as the process: every restart
	// invalidates every token, and replicas refuse each other's tokens. It
	// is for tests and throwaway demos; without it, a missing key is an
	// error, so a key file that failed to load cannot go unnoticed.
	AllowEphemeralKey bool
	// Algorithm is the JWS "alg" of access tokens, chosen among the active
	// keys of Keys (e.g. "RS256" when the set also holds an RS256 key for
	// OpenID Connect ID tokens). Empty means the key set's primary key.
	Algorithm string
	// Lifetime is how long minted tokens are valid. Zero means
	// DefaultTokenLifetime (7 days). It is also how long a retired key must
	// stay published after it stopped signing (see KeySet).
	Lifetime time.Duration
	// Audience is the "aud" of minted tokens: the API they are for, which
	// a resource server that checks audience (RequireToken, a Kubernetes
	// API server's "audiences") is configured with. The handler publishes
	// it as "access_token_audience" and the keyloop CLI checks it. It must
	// not be a client ID (ID tokens are addressed to those). Empty means
	// Issuer: the backend that mounts the handler is the API.
	Audience string
	// CanRefresh, when set, is asked before every refresh mint; a non-nil
	// error refuses the refresh (the error is wrapped with
	// ErrRefreshRefused), e.g. for a deleted or locked user. Nil allows all
	// refreshes. It must be safe for concurrent use.
	CanRefresh func(ctx context.Context, id Identity) error
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// SelfSigned is a Minter that signs JWTs with its own keys and publishes the
// public keys as a JWKS (it implements KeySetPublisher). It is safe for
// concurrent use. With a KeySet, keys rotated by KeySet.Reload are used from
// the next Mint on.
//
// Minted tokens are RFC 9068 JWT access tokens (header "typ": "at+jwt")
// and carry iss, sub, aud, exp, iat, nbf, jti, sid (the keyloop login
// session), auth_time, client_id and azp, scope (the granted scopes, when
// any), and email, email_verified and name when known, plus
// Identity.Claims that do not collide with those.
type SelfSigned struct {
	cfg  SelfSignedConfig
	keys *KeySet
}

// NewSelfSigned returns a SelfSigned minter; errors wrap ErrInvalidConfig.
func NewSelfSigned(cfg SelfSignedConfig) (*SelfSigned, error) {
	bad := func(msg string) (*SelfSigned, error) {
		return nil, fmt.Errorf("%w: SelfSignedConfig: %s", ErrInvalidConfig, msg)
	}
	if cfg.Issuer == "" {
		return bad("Issuer is required")
	}
	keys := cfg.Keys
	switch {
	case keys != nil && cfg.Key != nil:
		return bad("set Keys or Key, not both")
	case keys != nil && cfg.KeyID != "":
		return bad("KeyID goes with Key; a KeySet names its own keys")
	case keys == nil && cfg.Key == nil && !cfg.AllowEphemeralKey:
		return bad("Keys or Key is required (a generated key would change on every restart and differ between replicas; set AllowEphemeralKey for tests and throwaway demos)")
	case keys == nil:
		k := cfg.Key
		if k == nil {
			var err error
			if k, err = GenerateKey(); err != nil {
				return nil, err
			}
		}
		var err error
		if keys, err = NewKeySet([]SigningKey{{ID: cfg.KeyID, Key: k}}); err != nil {
			return nil, err
		}
	}
	if _, err := keys.Signer(cfg.Algorithm); err != nil {
		return nil, fmt.Errorf("%w: SelfSignedConfig.Algorithm: %w", ErrInvalidConfig, err)
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = DefaultTokenLifetime
	}
	if cfg.Audience == "" {
		cfg.Audience = cfg.Issuer
	}
	if cfg.Lifetime < 0 {
		return bad("Lifetime is negative")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &SelfSigned{cfg: cfg, keys: keys}, nil
}

// signer is the key that signs now.
func (s *SelfSigned) signer() (SigningKey, error) { return s.keys.Signer(s.cfg.Algorithm) }

// KeyID returns the "kid" of the tokens Mint signs now.
func (s *SelfSigned) KeyID() string { k, _ := s.signer(); return k.ID }

// Algorithm returns the JWS "alg" of the tokens Mint signs now (EdDSA,
// ES256 or RS256).
func (s *SelfSigned) Algorithm() string { k, _ := s.signer(); return k.Algorithm }

// KeySet returns the minter's key set: the shared one from
// SelfSignedConfig.Keys, or a set of the single Key. The Handler verifies
// with it (RequireToken sees rotated keys at once), and an OpenID provider
// signs ID tokens with KeySet().Signer("RS256").
func (s *SelfSigned) KeySet() *KeySet { return s.keys }

// JWKS implements KeySetPublisher: every key of the key set.
func (s *SelfSigned) JWKS() ([]byte, error) { return s.keys.JWKS() }

// KeyInfo implements Minter: the handler serves the keys itself.
func (s *SelfSigned) KeyInfo() KeyInfo {
	return KeyInfo{TokenIssuer: s.cfg.Issuer, Audience: s.cfg.Audience}
}

// reservedClaims are set by Mint and never taken from Identity.Claims.
var reservedClaims = []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "auth_time", "client_id", "azp",
	"scope", "email", "email_verified", "name"}

// Mint implements Minter.
func (s *SelfSigned) Mint(ctx context.Context, g Grant) (*MintedToken, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("server: mint: %w", err)
	}
	if g.Identity.Subject == "" {
		return nil, errors.New("server: mint: identity has no subject")
	}
	if g.Refresh && s.cfg.CanRefresh != nil {
		if err := s.cfg.CanRefresh(ctx, g.Identity); err != nil {
			if errors.Is(err, ErrRefreshRefused) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %w", ErrRefreshRefused, err)
		}
	}
	now := s.cfg.Now().Truncate(time.Second)
	exp := now.Add(s.cfg.Lifetime)
	claims := jwt.MapClaims{}
	for k, v := range g.Identity.Claims {
		claims[k] = v
	}
	for _, k := range reservedClaims {
		delete(claims, k)
	}
	claims["iss"] = s.cfg.Issuer
	claims["sub"] = g.Identity.Subject
	claims["aud"] = s.cfg.Audience
	claims["iat"], claims["nbf"], claims["exp"] = now.Unix(), now.Unix(), exp.Unix()
	claims["jti"] = randomID()
	if g.LoginSessionID != "" {
		claims["sid"] = g.LoginSessionID
	}
	if !g.AuthTime.IsZero() {
		claims["auth_time"] = g.AuthTime.Unix()
	}
	if g.ClientID != "" {
		claims["client_id"], claims["azp"] = g.ClientID, g.ClientID
	}
	if len(g.Scopes) > 0 {
		claims["scope"] = strings.Join(g.Scopes, " ")
	}
	if g.Identity.Email != "" {
		claims["email"] = g.Identity.Email
		claims["email_verified"] = g.Identity.EmailVerified
	}
	if g.Identity.Name != "" {
		claims["name"] = g.Identity.Name
	}
	key, err := s.signer()
	if err != nil {
		return nil, err
	}
	tok, err := key.sign("at+jwt", claims) // RFC 9068 §2.1
	if err != nil {
		return nil, err
	}
	return &MintedToken{AccessToken: tok, Expiry: exp}, nil
}

// signWith signs msg with any crypto.Signer in the JWS encoding of alg.
func signWith(key crypto.Signer, alg string, msg []byte) ([]byte, error) {
	switch alg {
	case "EdDSA":
		return key.Sign(rand.Reader, msg, crypto.Hash(0))
	case "ES256":
		d := sha256.Sum256(msg)
		der, err := key.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			return nil, err
		}
		var sig struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(der, &sig); err != nil {
			return nil, err
		}
		out := make([]byte, 64)
		sig.R.FillBytes(out[:32])
		sig.S.FillBytes(out[32:])
		return out, nil
	case "RS256":
		d := sha256.Sum256(msg)
		return key.Sign(rand.Reader, d[:], crypto.SHA256)
	}
	return nil, fmt.Errorf("unsupported alg %q", alg)
}

// keyAlg returns the JWS algorithm for pub, checking it as publicJWK does,
// without building the JWK.
func keyAlg(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return "EdDSA", nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("%w: ECDSA keys must use P-256", ErrInvalidConfig)
		}
		return "ES256", nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("%w: RSA keys must have at least 2048 bits", ErrInvalidConfig)
		}
		return "RS256", nil
	}
	_, _, err := publicJWK(pub)
	return "", err
}

// publicJWK returns the JWS algorithm for pub and its JWK members.
func publicJWK(pub crypto.PublicKey) (string, map[string]any, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return "EdDSA", map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64(k)}, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", nil, fmt.Errorf("%w: ECDSA keys must use P-256", ErrInvalidConfig)
		}
		b, err := k.Bytes() // 0x04 || X || Y
		if err != nil {
			return "", nil, fmt.Errorf("%w: ECDSA key: %w", ErrInvalidConfig, err)
		}
		return "ES256", map[string]any{"kty": "EC", "crv": "P-256", "x": b64(b[1:33]), "y": b64(b[33:])}, nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", nil, fmt.Errorf("%w: RSA keys must have at least 2048 bits", ErrInvalidConfig)
		}
		return "RS256", map[string]any{"kty": "RSA", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}, nil
	}
	return "", nil, fmt.Errorf("%w: unsupported key type %T (want Ed25519, ECDSA P-256 or RSA)", ErrInvalidConfig, pub)
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of jwk,
// which holds only the required members; encoding/json sorts map keys, which
// is the canonical member order RFC 7638 asks for.
func thumbprint(jwk map[string]any) string {
	b, _ := json.Marshal(jwk)
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// GenerateKey returns a new Ed25519 signing key.
func GenerateKey() (crypto.Signer, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("server: generating key: %w", err)
	}
	return k, nil
}

// LoadOrCreateKeyFile loads a PEM "PRIVATE KEY" (PKCS #8) signing key from
// path, or, when the file does not exist, generates an Ed25519 key and writes
// it there with mode 0600 (its directory created with mode 0700). Creation is
// atomic: concurrent callers all end up with the same key. A key file that
// group or others can read is refused. It is meant for dev mode; production
// keys belong in a secret manager.
func LoadOrCreateKeyFile(path string) (crypto.Signer, error) {
	return loadOrCreateKeyFile(path, GenerateKey)
}

// LoadOrCreateRSAKeyFile is LoadOrCreateKeyFile with an RSA-2048 key when it
// creates one: a key for Config.IDTokenKey, since RS256 is the ID-token
// algorithm every OpenID relying party accepts. An existing file is loaded
// whatever its key type.
func LoadOrCreateRSAKeyFile(path string) (crypto.Signer, error) {
	return loadOrCreateKeyFile(path, func() (crypto.Signer, error) {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("server: generating key: %w", err)
		}
		return k, nil
	})
}

func loadOrCreateKeyFile(path string, generate func() (crypto.Signer, error)) (crypto.Signer, error) {
	b, err := loadOrCreateFile(path, func() ([]byte, error) {
		k, err := generate()
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, fmt.Errorf("server: encoding key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	})
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("server: key file %s: no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("server: key file %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("server: key file %s: %T is not a signing key", path, k)
	}
	return s, nil
}

// LoadOrCreateSecretFile loads a 32-byte secret (such as DevConfig.Key) from
// path, or creates one there like LoadOrCreateKeyFile does.
func LoadOrCreateSecretFile(path string) ([]byte, error) {
	b, err := loadOrCreateFile(path, func() ([]byte, error) {
		k := make([]byte, 32)
		_, err := rand.Read(k)
		return k, err
	})
	if err != nil {
		return nil, err
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("server: secret file %s: want 32 bytes, have %d", path, len(b))
	}
	return b, nil
}

func loadOrCreateFile(path string, create func() ([]byte, error)) ([]byte, error) {
	for range 3 {
		b, err := readPrivateFile(path, 1<<16)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return b, err
		}
		data, err := create()
		if err != nil {
			return nil, err
		}
		dir := filepath.Dir(path)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("server: creating %s: %w", dir, err)
		}
		tmp, err := writeTemp(path, data)
		if err != nil {
			return nil, fmt.Errorf("server: creating %s: %w", path, err)
		}
		// Link fails when path exists: a concurrent creator won, and the
		// loop reads its file.
		werr := os.Link(tmp, path)
		if errors.Is(werr, fs.ErrExist) {
			werr = nil
		}
		os.Remove(tmp)
		if werr != nil {
			return nil, fmt.Errorf("server: creating %s: %w", path, werr)
		}
	}
	return nil, fmt.Errorf("server: creating %s: gave up", path)
}

// writeTemp writes data to a new 0600 file beside path, synced to disk, and
// returns its name; the caller links or renames it into place.
func writeTemp(path string, data []byte) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return "", err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o600)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

// readPrivateFile reads path, refusing a file others may read or one larger
// than limit bytes.
func readPrivateFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("server: %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("server: %s is not a regular file (%v); give the path of the key file itself", path, st.Mode().Type())
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("server: %s: mode %v lets others read it; chmod 600", path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("server: %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("server: %s: larger than %d bytes", path, limit)
	}
	return b, nil
}
