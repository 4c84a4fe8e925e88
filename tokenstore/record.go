package tokenstore

import (
	"encoding/json"
	"fmt"
	"time"
)

// Secret is a string that must not be shown: String, GoString, Format and
// MarshalText all redact it. Use Reveal to get the value.
//
// A Record marshals its secrets through its own encoding, not through
// Secret's, so they survive MarshalRecord.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String returns a redacted form.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString returns a redacted form, for %#v.
func (s Secret) GoString() string { return `tokenstore.Secret("[redacted]")` }

// MarshalText returns a redacted form, so encoding/json and friends never
// write the value by accident.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Format implements fmt.Formatter so that every verb redacts.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	_, _ = f.Write([]byte(s.String()))
}

// RecordVersion is the format version MarshalRecord writes.
const RecordVersion = 1

// Record is what a CLI login keeps: the tokens and what is needed to refresh
// and revoke them without asking the server's metadata again.
type Record struct {
	AccessToken  Secret    // the access token (a JWT for keyloop servers)
	RefreshToken Secret    // empty when the server issued none
	TokenType    string    // "Bearer" when empty
	Expiry       time.Time // the access token's expiry
	IssuedAt     time.Time // when the access token was issued; Expiry-IssuedAt is its lifetime

	Issuer             string // the authorization server's issuer URL
	ClientID           string // the OAuth client ID the tokens were issued to
	TokenEndpoint      string // where refresh_token grants go
	RevocationEndpoint string // empty when the server has none
	JWKSURI            string // where the keys verifying access tokens are
	TokenIssuer        string // expected "iss" of access tokens; Issuer when empty
	Audience           string // expected "aud" of access tokens; unchecked when empty

	Subject string // the "sub" of the verified access token
	Account string // a display name for the account (e-mail when known)
}

type recordJSON struct {
	Version            int       `json:"version"`
	AccessToken        string    `json:"access_token"`
	RefreshToken       string    `json:"refresh_token,omitempty"`
	TokenType          string    `json:"token_type,omitempty"`
	Expiry             time.Time `json:"expiry"`
	IssuedAt           time.Time `json:"issued_at,omitzero"`
	Issuer             string    `json:"issuer"`
	ClientID           string    `json:"client_id"`
	TokenEndpoint      string    `json:"token_endpoint"`
	RevocationEndpoint string    `json:"revocation_endpoint,omitempty"`
	JWKSURI            string    `json:"jwks_uri,omitempty"`
	TokenIssuer        string    `json:"token_issuer,omitempty"`
	Audience           string    `json:"audience,omitempty"`
	Subject            string    `json:"subject,omitempty"`
	Account            string    `json:"account,omitempty"`
}

// MarshalRecord encodes r in the current format version.
func MarshalRecord(r *Record) ([]byte, error) {
	if r == nil || r.AccessToken == "" {
		return nil, fmt.Errorf("tokenstore: record has no access token")
	}
	return json.Marshal(recordJSON{
		Version: RecordVersion, AccessToken: string(r.AccessToken), RefreshToken: string(r.RefreshToken),
		TokenType: r.TokenType, Expiry: r.Expiry.UTC(), IssuedAt: r.IssuedAt.UTC(), Issuer: r.Issuer, ClientID: r.ClientID,
		TokenEndpoint: r.TokenEndpoint, RevocationEndpoint: r.RevocationEndpoint, JWKSURI: r.JWKSURI,
		TokenIssuer: r.TokenIssuer, Audience: r.Audience, Subject: r.Subject, Account: r.Account,
	})
}

// UnmarshalRecord decodes a value written by MarshalRecord of this or an
// earlier version. A value it cannot read gives an error wrapping ErrCorrupt
// that does not quote the value.
func UnmarshalRecord(b []byte) (*Record, error) {
	var j recordJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%w: not a token record (%d bytes)", ErrCorrupt, len(b))
	}
	switch {
	case j.Version < 1:
		return nil, fmt.Errorf("%w: token record has no version", ErrCorrupt)
	case j.Version > RecordVersion:
		return nil, fmt.Errorf("%w: token record version %d is newer than this program reads (%d); upgrade it",
			ErrCorrupt, j.Version, RecordVersion)
	case j.AccessToken == "":
		return nil, fmt.Errorf("%w: token record has no access token", ErrCorrupt)
	}
	return &Record{
		AccessToken: Secret(j.AccessToken), RefreshToken: Secret(j.RefreshToken), TokenType: j.TokenType,
		Expiry: j.Expiry, IssuedAt: j.IssuedAt, Issuer: j.Issuer, ClientID: j.ClientID,
		TokenEndpoint: j.TokenEndpoint, RevocationEndpoint: j.RevocationEndpoint, JWKSURI: j.JWKSURI,
		TokenIssuer: j.TokenIssuer, Audience: j.Audience, Subject: j.Subject, Account: j.Account,
	}, nil
}
