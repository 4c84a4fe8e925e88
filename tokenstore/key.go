package tokenstore

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strings"
)

// DefaultProfile is the profile name Key uses when none is given.
const DefaultProfile = "default"

// Key returns the storage key for one login: the given profile (DefaultProfile
// when empty) against one authorization server (issuer) as one client.
//
// Keys are stable across versions and releases, readable
// ("work@auth.example.com-8f6c57013642") and safe as keychain account names
// and, after the File store's escaping, as file names. Two logins that differ
// in profile, issuer or client ID never share a key: the suffix is a hash of
// all three, and the readable part only helps a person browsing their keychain.
func Key(profile, issuer, clientID string) string {
	if profile == "" {
		profile = DefaultProfile
	}
	sum := sha256.Sum256([]byte(profile + "\x00" + issuer + "\x00" + clientID))
	host := issuer
	if u, err := url.Parse(issuer); err == nil && u.Host != "" {
		host = u.Host
	}
	return readable(profile, 32) + "@" + readable(strings.ToLower(host), 64) + "-" + hex.EncodeToString(sum[:6])
}

// readable keeps the characters that are safe everywhere and replaces the
// others with '_', truncating to max bytes.
func readable(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// fileName returns a file name for key that is safe on every OS: no path
// separators, no leading dot, no reserved Windows device names, no
// characters that differ only in case (for case-insensitive file systems).
// The mapping is injective: lower-case letters, digits, '.', '-', '_' and
// '@' stand for themselves, every other byte becomes %XX, and a name longer
// than 120 bytes is cut and ends in '~' plus a hash of the whole key ('~'
// never appears otherwise).
func fileName(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '@', c == '.' && i > 0:
			b.WriteByte(c)
		default:
			b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
		}
	}
	name := b.String()
	if len(name) > 120 {
		sum := sha256.Sum256([]byte(key))
		name = name[:95] + "~" + hex.EncodeToString(sum[:12])
	}
	if name == "" {
		name = "%"
	}
	stem, _, _ := strings.Cut(name, ".")
	switch stem {
	case "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8", "com9",
		"lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9":
		name = "%" + strings.ToUpper(hex.EncodeToString([]byte{name[0]})) + name[1:]
	}
	return name
}
