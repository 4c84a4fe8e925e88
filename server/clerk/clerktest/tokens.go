package clerktest

import (
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// category returns the "cat" header for a token of the kind, or the ignore
// value on instances that stamp it on every token.
func (f *Fake) category(kind string) string {
	if f.opts.IgnoreCategory {
		return IgnoreTokenCategory
	}
	return kind
}

// SessionToken mints a session token for the session as the Frontend API
// does for Clerk.session.getToken() on a page at origin (its "azp"; empty
// leaves azp out, as Clerk does for requests without an Origin). It works
// for pending sessions too (sts "pending"). mutate, when not nil, may change
// the claims and header before signing, to build malformed tokens for tests;
// a nil header value removes that header.
func (f *Fake) SessionToken(sessionID, origin string, mutate func(claims jwt.MapClaims, header map[string]any)) (string, error) {
	f.mu.Lock()
	sp, ok := f.sessions[sessionID]
	var s Session // a copy: EndSession may change the original
	if ok {
		s = *f.refreshLocked(sp)
	}
	iss := f.issuerLocked()
	f.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("clerktest: no session %s", sessionID)
	}
	return f.sessionToken(&s, origin, iss, mutate)
}

func (f *Fake) sessionToken(s *Session, origin, iss string, mutate func(jwt.MapClaims, map[string]any)) (string, error) {
	now := f.opts.Now()
	claims := jwt.MapClaims{
		"exp": now.Add(60 * time.Second).Unix(),
		"iat": now.Unix(),
		"nbf": now.Add(-10 * time.Second).Unix(),
		"iss": iss,
		"jti": randomID(10),
		"sid": s.ID,
		"sts": s.Status,
		"sub": s.UserID,
		"v":   2,
	}
	if origin != "" {
		claims["azp"] = origin
	}
	if a := actorJSON(s); a != nil {
		claims["act"] = a
	}
	header := map[string]any{"cat": f.category(SessionTokenCategory), "typ": "JWT"}
	if mutate != nil {
		mutate(claims, header)
	}
	return f.sign(claims, header, false)
}

// TemplateToken mints a JWT template token for the session as the Backend
// API does (POST /v1/sessions/{id}/tokens/{template}): no azp, and the
// template's lifetime when expiresIn is zero.
func (f *Fake) TemplateToken(sessionID, templateName string, expiresIn time.Duration) (string, error) {
	tok, apiErr := f.templateToken(sessionID, templateName, expiresIn, "", "")
	if apiErr != nil {
		return "", fmt.Errorf("clerktest: %s", apiErr.Errors[0].LongMessage)
	}
	return tok, nil
}

// FrontendTemplateToken mints a JWT template token as the Frontend API does
// for a signed-in browser at origin calling
// Clerk.session.getToken({template}): azp is the origin and the lifetime is
// the template's own (the Frontend API takes no expires_in_seconds).
func (f *Fake) FrontendTemplateToken(sessionID, templateName, origin string) (string, error) {
	tok, apiErr := f.templateToken(sessionID, templateName, 0, origin, "")
	if apiErr != nil {
		return "", fmt.Errorf("clerktest: %s", apiErr.Errors[0].LongMessage)
	}
	return tok, nil
}

// templateToken mints a template token; azp is set when not empty; iss
// overrides the instance issuer when not empty.
func (f *Fake) templateToken(sessionID, templateName string, expiresIn time.Duration, azp, iss string) (string, *apiErrorBody) {
	f.mu.Lock()
	var s Session // a copy: EndSession may change the original
	var u User
	sp, ok := f.sessions[sessionID]
	if ok {
		s = *f.refreshLocked(sp)
		if uu, found := f.users[s.UserID]; found {
			u = *uu
		}
	}
	if iss == "" {
		iss = f.issuerLocked()
	}
	f.mu.Unlock()
	if !ok || s.Status != StatusActive {
		return "", notFound("session")
	}
	tmpl, ok := f.opts.Templates[templateName]
	if !ok {
		return "", notFound("JWT template")
	}
	if expiresIn == 0 {
		expiresIn = tmpl.Lifetime
		if expiresIn == 0 {
			expiresIn = 60 * time.Second
		}
	}
	now := f.opts.Now()
	claims := jwt.MapClaims{}
	repl := strings.NewReplacer(
		"{{user.id}}", u.ID,
		"{{user.primary_email_address}}", u.Email,
		"{{user.first_name}}", u.FirstName,
		"{{user.last_name}}", u.LastName,
		"{{user.full_name}}", strings.TrimSpace(u.FirstName+" "+u.LastName),
	)
	for k, v := range tmpl.Claims {
		if str, isStr := v.(string); isStr {
			if str == "{{session.actor}}" {
				if a := actorJSON(&s); a != nil {
					v = a
				} else {
					v = nil
				}
			} else {
				v = repl.Replace(str)
			}
		}
		claims[k] = v
	}
	// Default claims, which templates cannot override; sid, v, pla and fea
	// are never in template tokens (Clerk docs, "JWT templates").
	for _, k := range []string{"sid", "v", "pla", "fea", "azp"} {
		delete(claims, k)
	}
	for k, v := range map[string]any{
		"exp": now.Add(expiresIn).Unix(),
		"iat": now.Unix(),
		"nbf": now.Add(-5 * time.Second).Unix(),
		"iss": iss,
		"jti": randomID(10),
		"sub": s.UserID,
	} {
		claims[k] = v
	}
	if azp != "" {
		claims["azp"] = azp
	}
	tok, err := f.sign(claims, map[string]any{"cat": f.category(TemplateTokenCategory), "typ": "JWT"}, tmpl.CustomSigningKey)
	if err != nil {
		return "", &apiErrorBody{status: 500, Errors: []apiError{{Message: "internal error", LongMessage: err.Error(), Code: "internal_clerk_error"}}}
	}
	return tok, nil
}

// MachineToken mints an M2M token JWT for the machine ("mch_…"), signed by
// the instance key like every other token: "sub" is the machine ID.
func (f *Fake) MachineToken(machineID string) (string, error) {
	if !strings.HasPrefix(machineID, "mch_") {
		return "", fmt.Errorf("clerktest: machine IDs start with mch_")
	}
	now := f.opts.Now()
	claims := jwt.MapClaims{
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"iss": f.Issuer(), "jti": "mt_" + randomID(12), "sub": machineID,
	}
	return f.sign(claims, map[string]any{"cat": f.category(M2MTokenCategory), "typ": "JWT"}, false)
}

// OAuthAccessToken mints an OAuth access token JWT, as Clerk's OAuth server
// does for an OAuth application clientID when the session's user consents:
// "typ" is "at+jwt" (RFC 9068), with client_id and scope. It also carries
// the session's sid (see the package doc).
func (f *Fake) OAuthAccessToken(sessionID, clientID string) (string, error) {
	s, ok := f.Session(sessionID)
	if !ok {
		return "", fmt.Errorf("clerktest: no session %s", sessionID)
	}
	now := f.opts.Now()
	claims := jwt.MapClaims{
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"iss": f.Issuer(), "jti": "oat_" + randomID(12), "sub": s.UserID, "sid": s.ID,
		"client_id": clientID, "scope": "profile email",
	}
	header := map[string]any{"typ": "at+jwt"}
	if f.opts.IgnoreCategory {
		header["cat"] = IgnoreTokenCategory
	}
	return f.sign(claims, header, false)
}

func (f *Fake) sign(claims jwt.MapClaims, header map[string]any, custom bool) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	key := f.key
	t.Header["kid"] = f.KeyID
	if custom {
		key = f.customKey
		t.Header["kid"] = "custom_" + f.KeyID
	}
	for k, v := range header {
		if v == nil {
			delete(t.Header, k)
			continue
		}
		t.Header[k] = v
	}
	return t.SignedString(key)
}
