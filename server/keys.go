package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// ErrNoSigningKey is wrapped by KeySet.Signer when no key signs for the
// requested algorithm.
var ErrNoSigningKey = errors.New("server: no signing key")

// SigningKey is one key of a KeySet: a private key and its JWS identity.
type SigningKey struct {
	// ID is the "kid" header of tokens the key signs and its JWKS key ID.
	// Empty means the RFC 7638 JWK thumbprint of the public key.
	ID string
	// Key is the private key: an ed25519.PrivateKey (EdDSA), an ECDSA P-256
	// key (ES256) or an RSA key of at least 2048 bits (RS256); any
	// crypto.Signer with such a public key works (a KMS or HSM key, say).
	// Required.
	Key crypto.Signer
	// Algorithm is the JWS "alg" the key signs with. Empty means the one
	// its type implies (EdDSA, ES256 or RS256); NewKeySet fills it in and
	// refuses any other value.
	Algorithm string
}

// Sign returns claims as a compact JWS (a JWT) signed with k, with the
// header {"alg": k.Algorithm, "kid": k.ID, "typ": "JWT"}. Keys from
// KeySet.Signer have been checked; for others an empty Algorithm is the one
// the key type implies.
func (k SigningKey) Sign(claims jwt.Claims) (string, error) { return k.sign("JWT", claims) }

// sign is Sign with the header's "typ" (RFC 7515 §4.1.9), such as
// "at+jwt" for RFC 9068 access tokens.
func (k SigningKey) sign(typ string, claims jwt.Claims) (string, error) {
	if k.Key == nil {
		return "", errors.New("server: signing: no key")
	}
	alg, err := keyAlg(k.Key.Public())
	if err != nil {
		return "", err
	}
	if k.Algorithm != "" && k.Algorithm != alg {
		return "", fmt.Errorf("server: signing with key %s: algorithm %s does not fit its key type (%s)", k.ID, k.Algorithm, alg)
	}
	// The JWS Compact Serialization (RFC 7515 §7.1) of a protected header
	// with alg, kid and typ, as golang-jwt encodes it, without its maps.
	header, err := json.Marshal(jwsHeader{Alg: alg, Kid: k.ID, Typ: typ})
	if err != nil {
		return "", fmt.Errorf("server: signing with key %s: %w", k.ID, err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("server: signing with key %s: %w", k.ID, err)
	}
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, enc.EncodedLen(len(header))+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(ed25519SigLen*2))
	buf = enc.AppendEncode(buf, header)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	sig, err := signWith(k.Key, alg, buf)
	if err != nil {
		return "", fmt.Errorf("server: signing with key %s: %w", k.ID, err)
	}
	buf = append(buf, '.')
	return string(enc.AppendEncode(buf, sig)), nil
}

// jwsHeader is the protected header of the JWTs the server signs.
type jwsHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// ed25519SigLen is an Ed25519 signature's length in bytes; the buffer of
// sign has room for up to twice that (an ES256 one fits; RSA grows it).
const ed25519SigLen = 64

// KeySet is a set of signing keys that replicas share and rotate without
// downtime, in the way RFC 7517 key sets are meant to be used: the JWKS
// publishes every key of the set, and exactly one active key per algorithm
// signs. A key is in one of three states:
//
//   - published: in the set, in the JWKS, verifying tokens, not signing;
//   - active: also signing (for its algorithm; the first active key is the
//     primary one, which signs access tokens unless
//     SelfSignedConfig.Algorithm asks for another algorithm);
//   - retired: gone from the set; tokens it signed no longer verify.
//
// Rotating a key is three steps, each taken on every replica (KeySet.Reload,
// or a restart) before the next one starts:
//
//  1. Add the new key, published only. Wait until every replica and every
//     cache of the JWKS has it: the reload interval plus the JWKS
//     Cache-Control max-age (5 minutes) is enough.
//  2. Make the new key active; the old key stays published.
//  3. Retire the old key once the last token it signed has expired: the
//     access token lifetime (SelfSignedConfig.Lifetime) plus the verifiers'
//     leeway after step 2.
//
// No token fails verification at any point: every token in circulation was
// signed by a key that every verifier knows.
//
// A KeySet comes from NewKeySet (keys in memory, e.g. from a secret manager
// or ParseKeys of an environment variable) or LoadKeyDir (one file per key
// and an "active" file; Reload re-reads the directory). It is safe for
// concurrent use; a Reload or Replace swaps the whole set at once.
type KeySet struct {
	cur atomic.Pointer[keySnapshot]

	mu   sync.Mutex // serializes Reload and Replace
	load func() ([]SigningKey, []string, error)
	src  string // where load reads from, for messages
}

// keySnapshot is one immutable state of a KeySet.
type keySnapshot struct {
	keys    []SigningKey // in order
	byID    map[string]int
	active  map[string]int // alg → index into keys
	primary int
	jwks    []byte
	desc    string
}

// NewKeySet returns a KeySet holding keys, of which the ones named by active
// (key IDs) sign: at most one per algorithm, and the first of them is the
// primary key. When active is empty and keys holds a single key, that key is
// active. Errors wrap ErrInvalidConfig and name the offending key ID, never
// key material.
func NewKeySet(keys []SigningKey, active ...string) (*KeySet, error) {
	snap, err := newKeySnapshot(keys, active)
	if err != nil {
		return nil, err
	}
	ks := &KeySet{}
	ks.cur.Store(snap)
	return ks, nil
}

// Replace swaps the whole set for keys and active, validated as NewKeySet
// does; on error the set is unchanged. It is how an application that keeps
// keys elsewhere (a secret manager) rotates them.
func (ks *KeySet) Replace(keys []SigningKey, active ...string) error {
	snap, err := newKeySnapshot(keys, active)
	if err != nil {
		return err
	}
	ks.mu.Lock()
	ks.cur.Store(snap)
	ks.mu.Unlock()
	return nil
}

func newKeySnapshot(keys []SigningKey, active []string) (*keySnapshot, error) {
	bad := func(format string, a ...any) (*keySnapshot, error) {
		return nil, fmt.Errorf("%w: key set: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	if len(keys) == 0 {
		return bad("no keys")
	}
	s := &keySnapshot{keys: make([]SigningKey, len(keys)), byID: map[string]int{}, active: map[string]int{}}
	var jwks []any
	for i, k := range keys {
		if k.Key == nil {
			return bad("key %d (%q) has no private key", i+1, k.ID)
		}
		alg, jwk, err := publicJWK(k.Key.Public())
		if err != nil {
			return bad("key %q: %w", k.ID, err)
		}
		if k.Algorithm != "" && k.Algorithm != alg {
			return bad("key %q: algorithm %s does not fit its key type (%s)", k.ID, k.Algorithm, alg)
		}
		k.Algorithm = alg
		if k.ID == "" {
			k.ID = thumbprint(jwk)
		}
		if _, dup := s.byID[k.ID]; dup {
			return bad("key ID %q appears twice", k.ID)
		}
		s.byID[k.ID] = i
		s.keys[i] = k
		jwk["kid"], jwk["alg"], jwk["use"] = k.ID, alg, "sig"
		jwks = append(jwks, jwk)
	}
	if len(active) == 0 {
		if len(keys) > 1 {
			return bad("%d keys and none named active; name the key that signs", len(keys))
		}
		active = []string{s.keys[0].ID}
	}
	for n, id := range active {
		i, ok := s.byID[id]
		if !ok {
			return bad("active key %q is not in the set", id)
		}
		alg := s.keys[i].Algorithm
		if j, dup := s.active[alg]; dup {
			return bad("keys %q and %q are both active for %s; only one key per algorithm signs", s.keys[j].ID, id, alg)
		}
		s.active[alg] = i
		if n == 0 {
			s.primary = i
		}
	}
	var err error
	if s.jwks, err = json.Marshal(map[string]any{"keys": jwks}); err != nil {
		return nil, fmt.Errorf("server: encoding JWKS: %w", err)
	}
	var d []string
	for i, k := range s.keys {
		state := "published"
		if j, ok := s.active[k.Algorithm]; ok && j == i {
			state = "active"
			if i == s.primary {
				state = "active, primary"
			}
		}
		d = append(d, fmt.Sprintf("%s %s (%s)", k.ID, k.Algorithm, state))
	}
	s.desc = strings.Join(d, ", ")
	return s, nil
}

// Signer returns the active key for the JWS algorithm alg ("EdDSA", "ES256"
// or "RS256"); an empty alg means the primary key. It returns an error
// wrapping ErrNoSigningKey when no key of alg is active. Keys the set only
// publishes are never returned.
func (ks *KeySet) Signer(alg string) (SigningKey, error) {
	s := ks.cur.Load()
	if alg == "" {
		return s.keys[s.primary], nil
	}
	i, ok := s.active[alg]
	if !ok {
		return SigningKey{}, fmt.Errorf("%w for %s in the key set (%s)", ErrNoSigningKey, alg, s.desc)
	}
	return s.keys[i], nil
}

// Algorithms returns the JWS algorithms the set can sign with now, the
// primary key's first.
func (ks *KeySet) Algorithms() []string {
	s := ks.cur.Load()
	out := []string{s.keys[s.primary].Algorithm}
	for _, k := range s.keys {
		if _, ok := s.active[k.Algorithm]; ok && !slices.Contains(out, k.Algorithm) {
			out = append(out, k.Algorithm)
		}
	}
	return out
}

// JWKS returns the JSON Web Key Set (RFC 7517) of every key in the set,
// published and active, with "kid", "alg" and "use" set. It implements
// KeySetPublisher.
func (ks *KeySet) JWKS() ([]byte, error) {
	return append([]byte(nil), ks.cur.Load().jwks...), nil
}

// PublicKey returns the public key with the given ID and its algorithm, for
// verifying a token; ok is false when the set has no such key.
func (ks *KeySet) PublicKey(kid string) (pub crypto.PublicKey, alg string, ok bool) {
	s := ks.cur.Load()
	i, ok := s.byID[kid]
	if !ok {
		return nil, "", false
	}
	return s.keys[i].Key.Public(), s.keys[i].Algorithm, true
}

// String describes the set without key material, e.g.
// "2026-01 EdDSA (published), 2026-06 EdDSA (active, primary)".
func (ks *KeySet) String() string { return ks.cur.Load().desc }

// Reload re-reads the set's source (the directory of LoadKeyDir) and swaps
// the new set in. When the source is unreadable or invalid, the set keeps
// its keys and Reload returns the error: a bad edit never takes signing keys
// away. A KeySet made by NewKeySet has no source; Reload returns nil.
func (ks *KeySet) Reload(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("server: reloading keys: %w", err)
	}
	if ks.load == nil {
		return nil
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	keys, active, err := ks.load()
	if err != nil {
		return err
	}
	snap, err := newKeySnapshot(keys, active)
	if err != nil {
		return fmt.Errorf("%w (in %s)", err, ks.src)
	}
	ks.cur.Store(snap)
	return nil
}

// Watch calls Reload every interval until ctx ends, and passes each
// Reload error to onError (nil: errors are dropped; the set keeps its
// keys). It returns when ctx ends. Run it in a goroutine:
//
//	go keys.Watch(ctx, 30*time.Second, func(err error) { log.Print(err) })
func (ks *KeySet) Watch(ctx context.Context, interval time.Duration, onError func(error)) {
	if interval <= 0 {
		interval = DefaultKeyReloadInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := ks.Reload(ctx); err != nil && onError != nil && ctx.Err() == nil {
				onError(err)
			}
		}
	}
}

// DefaultKeyReloadInterval is the interval KeySet.Watch uses when given
// none.
const DefaultKeyReloadInterval = 30 * time.Second

// ActiveKeysFile is the name of the file in a key directory that lists the
// IDs of the active keys (see LoadKeyDir).
const ActiveKeysFile = "active"

// maxKeyFile bounds the size of a key file.
const maxKeyFile = 64 << 10

// LoadKeyDir loads a KeySet from dir, which holds one private key per file
// and a file named "active":
//
//	dir/2026-01.pem   a key with ID "2026-01" (the file name without extension)
//	dir/2026-06.pem
//	dir/rsa-1.jwk     a private JWK; its "kid", if any, must match the file name
//	dir/active        "2026-06\nrsa-1\n": the IDs of the keys that sign
//
// Key files end in .pem (PKCS #8 "PRIVATE KEY", SEC 1 "EC PRIVATE KEY" or
// PKCS #1 "RSA PRIVATE KEY", as written by openssl genpkey), .jwk or .json
// (one private JWK, RFC 7517). The active file lists key IDs separated by
// white space or newlines; the first one is the primary key; at most one
// per algorithm. With a single key file, the active file may be left out.
// Files whose names start with "." are skipped (Kubernetes secret volumes
// keep their bookkeeping there); any other file is an error, so a typo
// cannot silently drop a key. Every file must be readable by its owner only
// (chmod 600; defaultMode 0400 for a Kubernetes secret volume).
//
// Reload re-reads dir; see KeySet for the rotation steps.
func LoadKeyDir(dir string) (*KeySet, error) {
	ks := &KeySet{src: dir, load: func() ([]SigningKey, []string, error) { return readKeyDir(dir) }}
	keys, active, err := ks.load()
	if err != nil {
		return nil, err
	}
	snap, err := newKeySnapshot(keys, active)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, dir)
	}
	ks.cur.Store(snap)
	return ks, nil
}

func readKeyDir(dir string) ([]SigningKey, []string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("server: key directory: %w", err)
	}
	var (
		keys      []SigningKey
		active    []string
		hasActive bool
	)
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			return nil, nil, fmt.Errorf("server: key directory %s: %s is a directory; the directory holds key files and %q only", dir, name, ActiveKeysFile)
		}
		if name == ActiveKeysFile {
			b, err := readPrivateFile(path, maxKeyFile)
			if err != nil {
				return nil, nil, err
			}
			active, hasActive = strings.Fields(string(b)), true
			if len(active) == 0 {
				return nil, nil, fmt.Errorf("server: key directory %s: %s is empty; write the ID of the key that signs into it", dir, ActiveKeysFile)
			}
			continue
		}
		ext := filepath.Ext(name)
		id := strings.TrimSuffix(name, ext)
		switch ext {
		case ".pem", ".jwk", ".json":
		default:
			return nil, nil, fmt.Errorf("server: key directory %s: %s is neither a key file (.pem, .jwk, .json) nor %q", dir, name, ActiveKeysFile)
		}
		b, err := readPrivateFile(path, maxKeyFile)
		if err != nil {
			return nil, nil, err
		}
		ks, err := ParseKeys(b)
		if err != nil {
			return nil, nil, fmt.Errorf("server: key file %s: %w", path, err)
		}
		if len(ks) != 1 {
			return nil, nil, fmt.Errorf("server: key file %s holds %d keys; put one key in each file", path, len(ks))
		}
		if ks[0].ID != "" && ks[0].ID != id {
			return nil, nil, fmt.Errorf("server: key file %s: its kid %q differs from the file name; the file name is the key ID", path, ks[0].ID)
		}
		ks[0].ID = id
		keys = append(keys, ks[0])
	}
	if len(keys) == 0 {
		return nil, nil, fmt.Errorf("server: key directory %s holds no key files (.pem, .jwk, .json)", dir)
	}
	if !hasActive && len(keys) > 1 {
		return nil, nil, fmt.Errorf("server: key directory %s holds %d keys and no %q file; write the ID of the key that signs into %s", dir, len(keys), ActiveKeysFile, filepath.Join(dir, ActiveKeysFile))
	}
	return keys, active, nil
}

// ParseKeys parses private signing keys from PEM or JSON, as kept in a file
// or an environment variable:
//
//   - one or more PEM blocks: "PRIVATE KEY" (PKCS #8), "EC PRIVATE KEY"
//     (SEC 1) or "RSA PRIVATE KEY" (PKCS #1); IDs are left empty (NewKeySet
//     uses the RFC 7638 thumbprint);
//   - a private JWK (RFC 7517), or a JWK Set {"keys": [...]} of them; IDs
//     come from their "kid".
//
// Errors never contain key material.
func ParseKeys(data []byte) ([]SigningKey, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("server: no key data")
	}
	if data[0] == '{' {
		return parseJWKKeys(data)
	}
	var keys []SigningKey
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			if len(bytes.TrimSpace(rest)) != 0 {
				return nil, errors.New("server: key data is neither PEM nor a JWK")
			}
			break
		}
		var (
			k   any
			err error
		)
		switch blk.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			return nil, fmt.Errorf("server: PEM block %q is not a private key (want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)", blk.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("server: PEM %s: %w", blk.Type, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("server: PEM %s: %T is not a signing key", blk.Type, k)
		}
		keys = append(keys, SigningKey{Key: s})
	}
	if len(keys) == 0 {
		return nil, errors.New("server: key data is neither PEM nor a JWK")
	}
	return keys, nil
}

func parseJWKKeys(data []byte) ([]SigningKey, error) {
	var probe struct {
		Keys []json.RawMessage `json:"keys"`
		KTY  string            `json:"kty"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, errors.New("server: key data is not valid JSON")
	}
	raws := probe.Keys
	if probe.KTY != "" {
		raws = []json.RawMessage{data}
	}
	if len(raws) == 0 {
		return nil, errors.New("server: JSON key data holds no JWK (want a private JWK or {\"keys\": [...]})")
	}
	keys := make([]SigningKey, 0, len(raws))
	for i, raw := range raws {
		var meta struct {
			KID string `json:"kid"`
			ALG string `json:"alg"`
			D   string `json:"d"`
		}
		json.Unmarshal(raw, &meta)
		name := meta.KID
		if name == "" {
			name = fmt.Sprint("#", i+1)
		}
		if meta.D == "" {
			return nil, fmt.Errorf("server: JWK %s is a public key; a key set needs private keys", name)
		}
		j, err := jwkset.NewJWKFromRawJSON(raw, jwkset.JWKMarshalOptions{Private: true}, jwkset.JWKValidateOptions{})
		if err != nil {
			return nil, fmt.Errorf("server: JWK %s: %w", name, err)
		}
		s, ok := j.Key().(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("server: JWK %s: %T is not a signing key", name, j.Key())
		}
		keys = append(keys, SigningKey{ID: meta.KID, Key: s, Algorithm: meta.ALG})
	}
	return keys, nil
}
