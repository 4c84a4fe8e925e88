package clerk

import (
	"strings"
)

// The "cat" (token category) header values of Clerk's JWTs
// (clerk/javascript packages/backend/src/tokens/jwtCategories.ts, kept in
// sync there with Clerk's servers).
const (
	SessionTokenCategory  = "cl_B7d4PD111AAA"
	TemplateTokenCategory = "cl_B7d4PD222AAA"
	M2MTokenCategory      = "cl_B7d4PD333AAA"
	// IgnoreTokenCategory is stamped on every token by instances with
	// Clerk's use_ignore_jwt_cat setting: it says nothing about the kind of
	// token, which is then told apart by its claims.
	IgnoreTokenCategory = "cl_I7d4PD111III"
)

// TemplateClaim is the claim only the CLI's JWT template carries, with the
// template's name as value (e.g. "keyloop_template": "cli"). Every template
// of an instance is signed with the same key and issuer, so without it the
// bearer middleware could not tell the CLI's tokens from the tokens of any
// other template the instance has.
const TemplateClaim = "keyloop_template"

// Kinds of Clerk tokens, as Clerk's backend SDK tells them apart.
const (
	kindSession  = "session token"
	kindTemplate = "JWT template token"
	kindM2M      = "M2M token"
	kindOAuth    = "OAuth access token"
	kindMachine  = "machine token or API key"
)

// opaqueMachineKind reports whether token is one of Clerk's opaque machine
// tokens, by prefix: M2M "mt_", OAuth "oat_", API key "ak_"
// (clerk/javascript packages/backend/src/tokens/machine.ts).
func opaqueMachineKind(token string) bool {
	for _, p := range []string{"mt_", "oat_", "ak_"} {
		if strings.HasPrefix(token, p) {
			return true
		}
	}
	return false
}

// oauthType reports whether typ marks an OAuth 2.0 JWT access token
// (RFC 9068 section 2.1), as Clerk's OAuth server issues them.
func oauthType(typ string) bool { return typ == "at+jwt" || typ == "application/at+jwt" }

// tokenKind tells a Clerk JWT's kind from its header and claims the way
// Clerk's backend SDK does (tokens/verify.ts verifyMachineAuthToken and
// jwtCategories.ts): typ "at+jwt" is an OAuth access token; a "sub" starting
// "mch_" or the M2M category is an M2M token; a session or template
// category says so; with the ignore category or none, a "sid" claim marks a
// session token (JWT templates cannot carry sid), else a template token.
func tokenKind(header, claims map[string]any) string {
	typ, _ := header["typ"].(string)
	cat, _ := header["cat"].(string)
	sub, _ := claims["sub"].(string)
	switch {
	case oauthType(typ):
		return kindOAuth
	case strings.HasPrefix(sub, "mch_") || cat == M2MTokenCategory:
		return kindM2M
	case cat == SessionTokenCategory:
		return kindSession
	case cat == TemplateTokenCategory:
		return kindTemplate
	}
	if _, ok := claims["sid"]; ok {
		return kindSession
	}
	return kindTemplate
}

// foreignCategory reports whether the "cat" header, when present, names a
// category other than want and the ignore category: Clerk's rule
// (jwtCategories.ts isNonSessionJwtCategory) for refusing a token of
// another kind before anything else.
func foreignCategory(header map[string]any, want string) (string, bool) {
	raw, present := header["cat"]
	if !present {
		return "", false
	}
	cat, _ := raw.(string)
	if cat == want || cat == IgnoreTokenCategory {
		return "", false
	}
	switch cat {
	case SessionTokenCategory:
		return kindSession, true
	case TemplateTokenCategory:
		return kindTemplate, true
	case M2MTokenCategory:
		return kindM2M, true
	}
	return "token of an unknown category", true
}

// actor returns the "act" claim when it names an actor, or nil (a template's
// "{{session.actor}}" is null for sessions that are not impersonated).
func actor(claims map[string]any) map[string]any {
	a, _ := claims["act"].(map[string]any)
	if len(a) == 0 {
		return nil
	}
	return a
}
