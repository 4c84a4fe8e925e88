package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"time"
)

// DefaultDevSignInLifetime is how long DevAuthenticator remembers a browser
// sign-in when DevConfig.Lifetime is zero.
const DefaultDevSignInLifetime = 30 * 24 * time.Hour

// devCookie is the name of DevAuthenticator's sign-in cookie.
const devCookie = "keyloop_dev_signin"

// DevConfig configures a DevAuthenticator.
type DevConfig struct {
	// Key signs the cookie that remembers a browser's sign-in (HMAC-SHA256).
	// At least 32 bytes. Required. Keep it across restarts
	// (LoadOrCreateSecretFile) so browsers stay signed in; a new key signs
	// every browser out.
	Key []byte
	// Lifetime is how long a browser stays signed in. Zero means
	// DefaultDevSignInLifetime.
	Lifetime time.Duration
	// Secure marks the cookie Secure (set it when the issuer is https).
	Secure bool
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// DevAuthenticator is an Authenticator for development: a page with an
// e-mail field and a "Sign in" button that believes any well-formed address.
// It must never be used in production. The Subject of an identity is
// "dev|" followed by the first 16 bytes of SHA-256 of the lower-cased address
// in hex, so it is stable across restarts and keys; Email is the address as
// typed. The sign-in is remembered in an HMAC-signed, HttpOnly cookie.
type DevAuthenticator struct {
	cfg DevConfig
}

// NewDevAuthenticator returns a DevAuthenticator; configuration errors wrap
// ErrInvalidConfig.
func NewDevAuthenticator(cfg DevConfig) (*DevAuthenticator, error) {
	if len(cfg.Key) < 32 {
		return nil, fmt.Errorf("%w: DevConfig.Key must have at least 32 bytes", ErrInvalidConfig)
	}
	cfg.Key = append([]byte(nil), cfg.Key...)
	if cfg.Lifetime == 0 {
		cfg.Lifetime = DefaultDevSignInLifetime
	}
	if cfg.Lifetime < 0 {
		return nil, fmt.Errorf("%w: DevConfig.Lifetime is negative", ErrInvalidConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &DevAuthenticator{cfg: cfg}, nil
}

// DevSubject returns the Subject DevAuthenticator gives the address email.
func DevSubject(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(email)))
	return "dev|" + hex.EncodeToString(sum[:16])
}

// devNotice is the dev sign-in page's notice, on that page only.
const devNotice = "Development sign-in: any well-formed e-mail address is accepted."

// Authenticate implements Authenticator.
func (d *DevAuthenticator) Authenticate(w http.ResponseWriter, r *http.Request, p SignInPrompt) (*Identity, error) {
	if r.Method == http.MethodPost {
		email := strings.TrimSpace(r.PostForm.Get("email"))
		if !validEmail(email) {
			return nil, d.page(w, http.StatusBadRequest, p, email, "Enter a valid e-mail address.")
		}
		now := d.cfg.Now()
		http.SetCookie(w, &http.Cookie{
			Name: devCookie, Value: d.sign(email, now.Add(d.cfg.Lifetime), now), Path: "/oauth", MaxAge: int(d.cfg.Lifetime / time.Second),
			HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: d.cfg.Secure,
		})
		return &Identity{Subject: DevSubject(email), Email: email, AuthTime: now}, nil
	}
	if c, err := r.Cookie(devCookie); err == nil {
		if email, at, ok := d.verify(c.Value); ok {
			if !p.AuthenticatedAfter.IsZero() && at.Before(p.AuthenticatedAfter) {
				return nil, d.page(w, http.StatusOK, p, email, "The application asks you to sign in again.")
			}
			return &Identity{Subject: DevSubject(email), Email: email, AuthTime: at}, nil
		}
	}
	return nil, d.page(w, http.StatusOK, p, "", "")
}

func (d *DevAuthenticator) page(w http.ResponseWriter, status int, p SignInPrompt, email, msg string) error {
	page := p.SignInPage()
	page.Notice, page.Email, page.Error = devNotice, email, msg
	render := p.Render
	if render == nil {
		render = func(w http.ResponseWriter, status int, name string, data any) error {
			return defaultPages.execute(w, status, p.ClientName, setPageHeaders(w), name, data)
		}
	}
	if err := render(w, status, "signin.html", page); err != nil {
		return err
	}
	return ErrResponded
}

func validEmail(s string) bool {
	if len(s) == 0 || len(s) > 254 {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == "" && strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".")
}

// cookie value: base64url(email) "." expiry-unix "." signed-in-unix "."
// base64url(hmac)
func (d *DevAuthenticator) sign(email string, exp, signedIn time.Time) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(email)) + "." + strconv.FormatInt(exp.Unix(), 10) +
		"." + strconv.FormatInt(signedIn.Unix(), 10)
	return payload + "." + d.mac(payload)
}

func (d *DevAuthenticator) mac(payload string) string {
	m := hmac.New(sha256.New, d.cfg.Key)
	m.Write([]byte("keyloop-dev-signin:" + payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// verify returns the address and sign-in time of a valid, unexpired cookie.
func (d *DevAuthenticator) verify(v string) (string, time.Time, bool) {
	i := strings.LastIndexByte(v, '.')
	if i < 0 || !hmac.Equal([]byte(v[i+1:]), []byte(d.mac(v[:i]))) {
		return "", time.Time{}, false
	}
	parts := strings.Split(v[:i], ".")
	if len(parts) != 3 {
		return "", time.Time{}, false
	}
	exp, err1 := strconv.ParseInt(parts[1], 10, 64)
	at, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || !d.cfg.Now().Before(time.Unix(exp, 0)) {
		return "", time.Time{}, false
	}
	email, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || !validEmail(string(email)) {
		return "", time.Time{}, false
	}
	return string(email), time.Unix(at, 0), true
}
