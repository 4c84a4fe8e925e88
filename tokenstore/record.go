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

// RecordVersion is the newest format version MarshalRecord writes and
// UnmarshalRecord reads. A Record without Pending, Ended, LostRefreshAt and
// AccessTokenOpaque is written as version 1, which older releases read; one
// with Pending, Ended or LostRefreshAt as version 2, and one with
// AccessTokenOpaque as version 3, which older releases refuse ("upgrade
// it") rather than misread (they would serve an unverified token, call a
// dead login logged in, or fail to refresh a login whose access tokens are
// not JWTs).
const RecordVersion = 3

// Pending is an access token the token endpoint returned that has not been
// verified yet: a refresh's answer is saved before the token is checked, so
// the rotated refresh token that came with it is never lost. The next use
// verifies it and moves it into the Record.
type Pending struct {
	// AccessToken is the token as the token endpoint returned it.
	AccessToken Secret
	TokenType   string    // "Bearer" when empty
	Expiry      time.Time // from the response's expires_in; zero when unknown. A JWT's own "exp" replaces it.
	// ReceivedAt is when the answer arrived.
	ReceivedAt time.Time
	// IDToken is the OpenID Connect ID token that came with it; empty when
	// none came (the Record's IDToken then stays).
	IDToken Secret
}

// Ended records that the server refused the login's refresh token
// (RFC 6749 invalid_grant at refresh): the login needs a new sign-in.
type Ended struct {
	// At is when the refusal arrived.
	At time.Time
	// Reason is the CLI library's classification: "expired", "revoked",
	// "reused" or "refused" (no more specific cause known).
	Reason string
	// Description is the server's error_description, sanitized; may be
	// empty.
	Description string
}

// Record is what a CLI login keeps: the tokens and what is needed to refresh
// and revoke them without asking the server's metadata again.
type Record struct {
	AccessToken  Secret    // the access token (a JWT for keyloop servers)
	RefreshToken Secret    // empty when the server issued none
	TokenType    string    // "Bearer" when empty
	Expiry       time.Time // the access token's expiry; zero when unknown (an opaque token without expires_in)
	IssuedAt     time.Time // when the access token was issued; Expiry-IssuedAt is its lifetime
	// IDToken is the last OpenID Connect ID token the server issued (at
	// login, or with a refresh); empty when it issued none.
	IDToken Secret
	// AccessTokenOpaque is set when the client does not verify the access
	// tokens (opaque ones, or JWTs for another audience): they are taken
	// as the token endpoint returned them, and Expiry comes from
	// expires_in.
	AccessTokenOpaque bool

	Issuer             string // the authorization server's issuer URL
	ClientID           string // the OAuth client ID the tokens were issued to
	TokenEndpoint      string // where refresh_token grants go
	RevocationEndpoint string // empty when the server has none
	JWKSURI            string // where the keys verifying access tokens are
	TokenIssuer        string // expected "iss" of access tokens; Issuer when empty
	Audience           string // expected "aud" of access tokens; unchecked when empty
	IssuerJWKSURI      string // the issuer's own key set (jwks_uri), which verifies ID tokens; empty when none
	// TokenAuth is how the client authenticates at the token and
	// revocation endpoints: "" (none: a public client),
	// "client_secret_basic" or "client_secret_post". The secret itself is
	// not stored; it comes from the program's configuration.
	TokenAuth string

	Subject string // the user's "sub": from the verified ID token, else the verified access token, else userinfo
	Account string // a display name for the account (e-mail when known)

	// Pending, when set, is the access token of a refresh whose answer was
	// saved before the token was verified; RefreshToken is already the one
	// that came with it. AccessToken and Expiry still describe the last
	// verified token.
	Pending *Pending
	// Ended, when set, marks a login the server refused to refresh: it
	// needs a new sign-in. AccessToken and RefreshToken are then empty
	// (never sent again); Subject and Account say whose login it was.
	Ended *Ended
	// LostRefreshAt, when set, is when a refresh with RefreshToken was sent
	// and its answer never arrived: the server may have rotated the token.
	LostRefreshAt time.Time
}

type pendingJSON struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type,omitempty"`
	Expiry      time.Time `json:"expiry,omitzero"`
	ReceivedAt  time.Time `json:"received_at,omitzero"`
	IDToken     string    `json:"id_token,omitempty"`
}

type endedJSON struct {
	At          time.Time `json:"at"`
	Reason      string    `json:"reason"`
	Description string    `json:"description,omitempty"`
}

type recordJSON struct {
	Version            int          `json:"version"`
	AccessToken        string       `json:"access_token"`
	RefreshToken       string       `json:"refresh_token,omitempty"`
	TokenType          string       `json:"token_type,omitempty"`
	Expiry             time.Time    `json:"expiry"`
	IssuedAt           time.Time    `json:"issued_at,omitzero"`
	IDToken            string       `json:"id_token,omitempty"`
	AccessTokenOpaque  bool         `json:"access_token_opaque,omitempty"`
	Issuer             string       `json:"issuer"`
	ClientID           string       `json:"client_id"`
	TokenEndpoint      string       `json:"token_endpoint"`
	RevocationEndpoint string       `json:"revocation_endpoint,omitempty"`
	JWKSURI            string       `json:"jwks_uri,omitempty"`
	TokenIssuer        string       `json:"token_issuer,omitempty"`
	Audience           string       `json:"audience,omitempty"`
	IssuerJWKSURI      string       `json:"issuer_jwks_uri,omitempty"`
	TokenAuth          string       `json:"token_auth,omitempty"`
	Subject            string       `json:"subject,omitempty"`
	Account            string       `json:"account,omitempty"`
	Pending            *pendingJSON `json:"pending,omitempty"`
	Ended              *endedJSON   `json:"ended,omitempty"`
	LostRefreshAt      time.Time    `json:"lost_refresh_at,omitzero"`
}

// MarshalRecord encodes r: as version 1 when it has no Pending, Ended or
// LostRefreshAt, else as version 2. A record needs an access token unless
// it is Ended.
func MarshalRecord(r *Record) ([]byte, error) {
	if r == nil || (r.AccessToken == "" && r.Ended == nil) {
		return nil, fmt.Errorf("tokenstore: record has no access token")
	}
	j := recordJSON{
		Version: 1, AccessToken: string(r.AccessToken), RefreshToken: string(r.RefreshToken),
		TokenType: r.TokenType, Expiry: r.Expiry.UTC(), IssuedAt: r.IssuedAt.UTC(), Issuer: r.Issuer, ClientID: r.ClientID,
		TokenEndpoint: r.TokenEndpoint, RevocationEndpoint: r.RevocationEndpoint, JWKSURI: r.JWKSURI,
		TokenIssuer: r.TokenIssuer, Audience: r.Audience, Subject: r.Subject, Account: r.Account,
		LostRefreshAt: r.LostRefreshAt.UTC(), IDToken: string(r.IDToken), AccessTokenOpaque: r.AccessTokenOpaque,
		IssuerJWKSURI: r.IssuerJWKSURI, TokenAuth: r.TokenAuth,
	}
	if p := r.Pending; p != nil {
		if p.AccessToken == "" {
			return nil, fmt.Errorf("tokenstore: record's pending token is empty")
		}
		j.Pending = &pendingJSON{AccessToken: string(p.AccessToken), TokenType: p.TokenType, Expiry: p.Expiry.UTC(),
			ReceivedAt: p.ReceivedAt.UTC(), IDToken: string(p.IDToken)}
	}
	if e := r.Ended; e != nil {
		j.Ended = &endedJSON{At: e.At.UTC(), Reason: e.Reason, Description: e.Description}
	}
	if j.Pending != nil || j.Ended != nil || !r.LostRefreshAt.IsZero() {
		j.Version = 2
	}
	if r.AccessTokenOpaque {
		j.Version = 3
	}
	return json.Marshal(j)
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
	case j.AccessToken == "" && j.Ended == nil:
		return nil, fmt.Errorf("%w: token record has no access token", ErrCorrupt)
	case j.Pending != nil && j.Pending.AccessToken == "":
		return nil, fmt.Errorf("%w: token record's pending token is empty", ErrCorrupt)
	}
	r := &Record{
		AccessToken: Secret(j.AccessToken), RefreshToken: Secret(j.RefreshToken), TokenType: j.TokenType,
		Expiry: j.Expiry, IssuedAt: j.IssuedAt, Issuer: j.Issuer, ClientID: j.ClientID,
		TokenEndpoint: j.TokenEndpoint, RevocationEndpoint: j.RevocationEndpoint, JWKSURI: j.JWKSURI,
		TokenIssuer: j.TokenIssuer, Audience: j.Audience, Subject: j.Subject, Account: j.Account,
		LostRefreshAt: j.LostRefreshAt, IDToken: Secret(j.IDToken), AccessTokenOpaque: j.AccessTokenOpaque,
		IssuerJWKSURI: j.IssuerJWKSURI, TokenAuth: j.TokenAuth,
	}
	if p := j.Pending; p != nil {
		r.Pending = &Pending{AccessToken: Secret(p.AccessToken), TokenType: p.TokenType, Expiry: p.Expiry,
			ReceivedAt: p.ReceivedAt, IDToken: Secret(p.IDToken)}
	}
	if e := j.Ended; e != nil {
		r.Ended = &Ended{At: e.At, Reason: e.Reason, Description: e.Description}
	}
	return r, nil
}
