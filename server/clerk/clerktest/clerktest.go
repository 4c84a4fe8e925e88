// Package clerktest is a local, faithful fake of the parts of Clerk that
// server/clerk uses, for tests. It is the one Clerk fake in this repository.
//
// One Fake serves, on a loopback httptest server:
//
//   - the Backend API under /v1 (what github.com/clerk/clerk-sdk-go/v2 calls
//     when its backend URL points at Fake.APIURL): GET /v1/jwks,
//     GET /v1/sessions/{id}, POST /v1/sessions/{id}/tokens/{template} (body
//     {"expires_in_seconds": N}, answer {"object":"token","jwt":"…"}) and
//     GET /v1/users/{id}. Requests need "Authorization: Bearer <SecretKey>".
//     Errors use Clerk's body {"errors":[{"message","long_message","code"}],
//     "clerk_trace_id"} with Clerk's status codes (401, 404, 422).
//   - the Frontend API at its root (Fake.FrontendAPIURL): GET
//     /.well-known/jwks.json, GET /v1/client and POST
//     /v1/client/sessions/{id}/tokens (the calls the browser SDK makes, with
//     a "__client" cookie and credentialed CORS), and a sign-in page at
//     /sign-in (an e-mail field and a "Sign in" button) that signs the
//     browser in and returns to redirect_url.
//   - a stand-in for the browser SDK at the path Clerk serves it from,
//     /npm/@clerk/clerk-js@5/dist/clerk.browser.js, exposing exactly what the
//     keyloop page uses: Clerk.load(), Clerk.user, Clerk.session,
//     Clerk.session.getToken() and Clerk.redirectToSignIn(options).
//
// Tokens are RS256 JWTs signed with one instance key whose "kid" is "ins_…",
// with a "cat" header: SessionTokenCategory for session tokens (claims azp,
// exp, iat, iss, jti, nbf, sid, sts, sub, v) and TemplateTokenCategory for
// JWT template tokens (azp when known, exp, iat, iss, jti, nbf, sub and the
// template's claims; no sid). The issuer is FrontendAPIURL.
//
// Methods change the state the way Clerk's dashboard or users would
// (EndSession, RevokeSession, DeleteUser) and deliver Svix-signed webhooks
// (SendWebhook, SignWebhook) with the secret WebhookSecret.
package clerktest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	svix "github.com/svix/svix-webhooks/go"
)

// The "cat" (token category) header values Clerk puts on its JWTs.
const (
	SessionTokenCategory  = "cl_B7d4PD111AAA"
	TemplateTokenCategory = "cl_B7d4PD222AAA"
)

// ClerkJSPath is where the fake serves its stand-in for the browser SDK: the
// path Clerk serves clerk-js v5 from on a Frontend API host.
const ClerkJSPath = "/npm/@clerk/clerk-js@5/dist/clerk.browser.js"

// ClientCookie is the name of the Frontend API cookie that identifies the
// browser's Clerk client.
const ClientCookie = "__client"

// Session statuses, as Clerk's Backend API names them.
const (
	StatusActive  = "active"
	StatusEnded   = "ended"
	StatusRevoked = "revoked"
	StatusRemoved = "removed"
	StatusExpired = "expired"
)

// Template is a JWT template of the fake instance.
type Template struct {
	// Claims are the template's claims. String values "{{user.id}}",
	// "{{user.primary_email_address}}", "{{user.first_name}}" and
	// "{{user.last_name}}" are replaced like Clerk's shortcodes; other
	// values are copied as they are (e.g. "aud").
	Claims map[string]any
	// Lifetime is the default token lifetime when a request has no
	// expires_in_seconds. Zero means 60 seconds, Clerk's default.
	Lifetime time.Duration
}

// Options configures a Fake. The zero value is a usable fake with one
// template "cli" carrying {"aud": "keyloop-test", "email":
// "{{user.primary_email_address}}"}.
type Options struct {
	// Templates are the instance's JWT templates by name. Nil means the
	// default "cli" template above.
	Templates map[string]Template
	// AllowedOrigins are the origins the Frontend API answers credentialed
	// CORS requests from and the sign-in page redirects back to. Nil means
	// any http(s) loopback origin.
	AllowedOrigins []string
	// SessionLifetime is how long a session lives after sign-in. Zero means
	// 7 days, Clerk's default maximum session lifetime.
	SessionLifetime time.Duration
	// Now is the fake's clock. Nil means time.Now.
	Now func() time.Time
}

// User is a user of the fake instance.
type User struct {
	ID        string // "user_…", the "sub" of Clerk's tokens
	Email     string // the primary e-mail address
	FirstName string // may be empty
	LastName  string // may be empty
}

// Session is a session of the fake instance.
type Session struct {
	ID       string // "sess_…", the "sid" of session tokens
	ClientID string // the Clerk client (browser) the session belongs to
	UserID   string // the User's ID
	Status   string // "active", "ended", "revoked", … as Clerk reports it
	// Origin is the origin the browser signed in from; it becomes "azp".
	Origin    string
	CreatedAt time.Time // when the session was created
	ExpireAt  time.Time // when Clerk ends it
}

// Fake is a running fake Clerk instance. Its methods are safe for concurrent
// use.
type Fake struct {
	// URL is the base URL of the fake (http://127.0.0.1:PORT).
	URL string
	// APIURL is the Backend API base URL for the SDK: URL + "/v1".
	APIURL string
	// FrontendAPIURL is the Frontend API URL and the "iss" of its tokens
	// (equal to URL).
	FrontendAPIURL string
	// SecretKey authorizes Backend API requests ("sk_test_…").
	SecretKey string
	// PublishableKey is "pk_test_" + base64(host + "$") of the fake.
	PublishableKey string
	// WebhookSecret is the Svix signing secret ("whsec_…").
	WebhookSecret string
	// KeyID is the "kid" of the instance key ("ins_…").
	KeyID string

	srv  *httptest.Server
	key  *rsa.PrivateKey
	opts Options
	wh   *svix.Webhook

	mu       sync.Mutex
	users    map[string]*User
	sessions map[string]*Session
	clients  map[string][]string // client ID → session IDs
	requests []string
}

// New starts a fake Clerk on a loopback port; it stops when the test ends.
func New(t testing.TB, opts Options) *Fake {
	t.Helper()
	f, err := Start(opts)
	if err != nil {
		t.Fatalf("clerktest: %v", err)
	}
	t.Cleanup(f.Close)
	return f
}

// Start starts a fake Clerk on a loopback port. Call Close when done.
func Start(opts Options) (*Fake, error) {
	if opts.Templates == nil {
		opts.Templates = map[string]Template{"cli": {Claims: map[string]any{
			"aud":   "keyloop-test",
			"email": "{{user.primary_email_address}}",
		}}}
	}
	if opts.SessionLifetime == 0 {
		opts.SessionLifetime = 7 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	f := &Fake{
		key:           key,
		opts:          opts,
		SecretKey:     "sk_test_" + randomID(16),
		WebhookSecret: "whsec_" + base64.StdEncoding.EncodeToString(secret),
		KeyID:         "ins_" + randomID(12),
		users:         map[string]*User{},
		sessions:      map[string]*Session{},
		clients:       map[string][]string{},
	}
	if f.wh, err = svix.NewWebhook(f.WebhookSecret); err != nil {
		return nil, err
	}
	f.srv = httptest.NewServer(f.routes())
	f.URL = f.srv.URL
	f.APIURL = f.URL + "/v1"
	f.FrontendAPIURL = f.URL
	host := strings.TrimPrefix(f.URL, "http://")
	f.PublishableKey = "pk_test_" + base64.StdEncoding.EncodeToString([]byte(host+"$"))
	return f, nil
}

// Close stops the fake's server.
func (f *Fake) Close() { f.srv.Close() }

// Requests returns "METHOD PATH" of every request the fake answered, in
// order, for tests that check which calls were made.
func (f *Fake) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// CreateUser adds a user with the e-mail address and returns it.
func (f *Fake) CreateUser(email string) User {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.createUserLocked(email)
}

func (f *Fake) createUserLocked(email string) *User {
	for _, u := range f.users {
		if strings.EqualFold(u.Email, email) {
			return u
		}
	}
	first, _, _ := strings.Cut(email, "@")
	u := &User{ID: "user_" + randomID(12), Email: email, FirstName: first}
	f.users[u.ID] = u
	return u
}

// SignIn creates an active session for the user as if a browser at origin
// signed in, and returns it.
func (f *Fake) SignIn(userID, origin string) (Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, err := f.signInLocked(userID, "client_"+randomID(12), origin)
	if err != nil {
		return Session{}, err
	}
	return *s, nil
}

func (f *Fake) signInLocked(userID, clientID, origin string) (*Session, error) {
	if _, ok := f.users[userID]; !ok {
		return nil, fmt.Errorf("clerktest: no user %s", userID)
	}
	now := f.opts.Now()
	s := &Session{
		ID: "sess_" + randomID(12), ClientID: clientID, UserID: userID, Status: StatusActive,
		Origin: origin, CreatedAt: now, ExpireAt: now.Add(f.opts.SessionLifetime),
	}
	f.sessions[s.ID] = s
	f.clients[clientID] = append(f.clients[clientID], s.ID)
	return s, nil
}

// Session returns the session with the ID.
func (f *Fake) Session(id string) (Session, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[id]
	if !ok {
		return Session{}, false
	}
	return *f.refreshLocked(s), true
}

// UserByEmail returns the user with the e-mail address.
func (f *Fake) UserByEmail(email string) (User, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range f.users {
		if strings.EqualFold(u.Email, email) {
			return *u, true
		}
	}
	return User{}, false
}

// Sessions returns the sessions of the user, oldest first.
func (f *Fake) Sessions(userID string) []Session {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Session
	for _, s := range f.sessions {
		if s.UserID == userID {
			out = append(out, *f.refreshLocked(s))
		}
	}
	slices.SortFunc(out, func(a, b Session) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

// refreshLocked expires a session whose time is up.
func (f *Fake) refreshLocked(s *Session) *Session {
	if s.Status == StatusActive && !f.opts.Now().Before(s.ExpireAt) {
		s.Status = StatusExpired
	}
	return s
}

// EndSession ends the session (the user signed out).
func (f *Fake) EndSession(id string) error { return f.setStatus(id, StatusEnded) }

// RevokeSession revokes the session (from the dashboard or the Backend API).
func (f *Fake) RevokeSession(id string) error { return f.setStatus(id, StatusRevoked) }

func (f *Fake) setStatus(id, status string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[id]
	if !ok {
		return fmt.Errorf("clerktest: no session %s", id)
	}
	s.Status = status
	return nil
}

// DeleteUser deletes the user; the user's sessions become "removed".
func (f *Fake) DeleteUser(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[id]; !ok {
		return fmt.Errorf("clerktest: no user %s", id)
	}
	delete(f.users, id)
	for _, s := range f.sessions {
		if s.UserID == id && s.Status == StatusActive {
			s.Status = StatusRemoved
		}
	}
	return nil
}

// SessionToken mints a session token for the session as the Frontend API
// does for Clerk.session.getToken() on a page at origin (its "azp"; empty
// leaves azp out). mutate, when not nil, may change the claims and header
// before signing, to build malformed tokens for tests.
func (f *Fake) SessionToken(sessionID, origin string, mutate func(claims jwt.MapClaims, header map[string]any)) (string, error) {
	s, ok := f.Session(sessionID) // a copy: EndSession may change the original
	if !ok {
		return "", fmt.Errorf("clerktest: no session %s", sessionID)
	}
	now := f.opts.Now()
	claims := jwt.MapClaims{
		"exp": now.Add(60 * time.Second).Unix(),
		"iat": now.Unix(),
		"nbf": now.Add(-10 * time.Second).Unix(),
		"iss": f.FrontendAPIURL,
		"jti": randomID(10),
		"sid": s.ID,
		"sts": s.Status,
		"sub": s.UserID,
		"v":   2,
	}
	if origin != "" {
		claims["azp"] = origin
	}
	header := map[string]any{"cat": SessionTokenCategory}
	if mutate != nil {
		mutate(claims, header)
	}
	return f.sign(claims, header)
}

// TemplateToken mints a JWT template token for the session as the Backend
// API does, with the template's lifetime when expiresIn is zero.
func (f *Fake) TemplateToken(sessionID, templateName string, expiresIn time.Duration) (string, error) {
	tok, apiErr := f.templateToken(sessionID, templateName, expiresIn)
	if apiErr != nil {
		return "", fmt.Errorf("clerktest: %s", apiErr.Errors[0].LongMessage)
	}
	return tok, nil
}

func (f *Fake) templateToken(sessionID, templateName string, expiresIn time.Duration) (string, *apiErrorBody) {
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
	for k, v := range tmpl.Claims {
		if str, isStr := v.(string); isStr {
			v = strings.NewReplacer(
				"{{user.id}}", u.ID,
				"{{user.primary_email_address}}", u.Email,
				"{{user.first_name}}", u.FirstName,
				"{{user.last_name}}", u.LastName,
			).Replace(str)
		}
		claims[k] = v
	}
	for k, v := range map[string]any{
		"exp": now.Add(expiresIn).Unix(),
		"iat": now.Unix(),
		"nbf": now.Add(-10 * time.Second).Unix(),
		"iss": f.FrontendAPIURL,
		"jti": randomID(10),
		"sub": s.UserID,
	} {
		claims[k] = v
	}
	if s.Origin != "" {
		claims["azp"] = s.Origin
	}
	tok, err := f.sign(claims, map[string]any{"cat": TemplateTokenCategory})
	if err != nil {
		return "", &apiErrorBody{status: 500, Errors: []apiError{{Message: "internal error", LongMessage: err.Error(), Code: "internal_clerk_error"}}}
	}
	return tok, nil
}

func (f *Fake) sign(claims jwt.MapClaims, header map[string]any) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = f.KeyID
	for k, v := range header {
		if v == nil {
			delete(t.Header, k)
			continue
		}
		t.Header[k] = v
	}
	return t.SignedString(f.key)
}

// JWKS returns the instance's JSON Web Key Set document.
func (f *Fake) JWKS() []byte {
	pub := f.key.PublicKey
	b, _ := json.Marshal(map[string]any{"keys": []map[string]any{{
		"use": "sig", "kty": "RSA", "kid": f.KeyID, "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}})
	return b
}

// PublicKey returns the instance's public signing key.
func (f *Fake) PublicKey() *rsa.PublicKey { return &f.key.PublicKey }

// SignWebhook returns the Svix headers (svix-id, svix-timestamp,
// svix-signature) for delivering body as message msgID at time ts.
func (f *Fake) SignWebhook(msgID string, ts time.Time, body []byte) http.Header {
	sig, _ := f.wh.Sign(msgID, ts, body)
	h := http.Header{}
	h.Set("svix-id", msgID)
	h.Set("svix-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("svix-signature", sig)
	h.Set("Content-Type", "application/json")
	return h
}

// WebhookEvent returns the JSON body of a Clerk webhook event of the type
// with the data object.
func WebhookEvent(eventType string, data any) []byte {
	b, _ := json.Marshal(map[string]any{
		"object": "event", "type": eventType, "data": data,
		"timestamp": time.Now().UnixMilli(), "instance_id": "ins_fake",
	})
	return b
}

// SendWebhook delivers a signed Clerk event to target (a webhook endpoint
// URL) as Svix would, with a fresh message ID and the fake's clock, and
// returns the response status code.
func (f *Fake) SendWebhook(ctx context.Context, target, eventType string, data any) (int, error) {
	body := WebhookEvent(eventType, data)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header = f.SignWebhook("msg_"+randomID(12), f.opts.Now(), body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// SessionData is the "data" of session webhook events for the session.
func (f *Fake) SessionData(id string) map[string]any {
	s, _ := f.Session(id)
	return sessionJSON(&s)
}

// ---- HTTP ----

type apiError struct {
	Message     string `json:"message"`
	LongMessage string `json:"long_message"`
	Code        string `json:"code"`
}

type apiErrorBody struct {
	status       int
	Errors       []apiError `json:"errors"`
	ClerkTraceID string     `json:"clerk_trace_id"`
}

func notFound(what string) *apiErrorBody {
	return &apiErrorBody{status: http.StatusNotFound, Errors: []apiError{{
		Message: "not found", LongMessage: "The requested " + what + " could not be found", Code: "resource_not_found",
	}}}
}

func writeAPIError(w http.ResponseWriter, e *apiErrorBody) {
	e.ClerkTraceID = randomID(16)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Clerk-Trace-Id", e.ClerkTraceID)
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(e)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *Fake) routes() http.Handler {
	mux := http.NewServeMux()
	// Backend API.
	mux.HandleFunc("GET /v1/jwks", f.backend(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(f.JWKS())
	}))
	mux.HandleFunc("GET /v1/sessions/{id}", f.backend(func(w http.ResponseWriter, r *http.Request) {
		s, ok := f.Session(r.PathValue("id"))
		if !ok {
			writeAPIError(w, notFound("session"))
			return
		}
		writeJSON(w, sessionJSON(&s))
	}))
	mux.HandleFunc("POST /v1/sessions/{id}/tokens/{template}", f.backend(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			ExpiresInSeconds *int64 `json:"expires_in_seconds"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			writeAPIError(w, &apiErrorBody{status: http.StatusBadRequest, Errors: []apiError{{
				Message: "Request body invalid", LongMessage: "The request body is invalid. Please consult the API documentation for more information.", Code: "request_body_invalid",
			}}})
			return
		}
		var expiresIn time.Duration
		if body.ExpiresInSeconds != nil {
			n := *body.ExpiresInSeconds
			if n < 30 || n > 315360000 {
				writeAPIError(w, &apiErrorBody{status: http.StatusUnprocessableEntity, Errors: []apiError{{
					Message: "is invalid", LongMessage: "expires_in_seconds must be between 30 and 315360000", Code: "form_param_value_invalid",
				}}})
				return
			}
			expiresIn = time.Duration(n) * time.Second
		}
		tok, apiErr := f.templateToken(r.PathValue("id"), r.PathValue("template"), expiresIn)
		if apiErr != nil {
			writeAPIError(w, apiErr)
			return
		}
		writeJSON(w, map[string]any{"object": "token", "jwt": tok})
	}))
	mux.HandleFunc("GET /v1/users/{id}", f.backend(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		u, ok := f.users[r.PathValue("id")]
		var uc User
		if ok {
			uc = *u
		}
		f.mu.Unlock()
		if !ok {
			writeAPIError(w, notFound("resource"))
			return
		}
		writeJSON(w, userJSON(&uc))
	}))
	// Frontend API.
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_, _ = w.Write(f.JWKS())
	})
	mux.HandleFunc("OPTIONS /v1/client/", f.cors(func(w http.ResponseWriter, r *http.Request) {}))
	mux.HandleFunc("GET /v1/client", f.cors(f.getClient))
	mux.HandleFunc("POST /v1/client/sessions/{id}/tokens", f.cors(f.clientToken))
	mux.HandleFunc("GET /sign-in", f.signInPage)
	mux.HandleFunc("POST /sign-in", f.signInSubmit)
	mux.HandleFunc("GET "+ClerkJSPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_, _ = w.Write(clerkJS)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.URL.Path)
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
}

// backend checks the Backend API's bearer secret key.
func (f *Fake) backend(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.SecretKey {
			writeAPIError(w, &apiErrorBody{status: http.StatusUnauthorized, Errors: []apiError{{
				Message: "Invalid authentication", LongMessage: "Unable to authenticate the request, you need to supply an active API key", Code: "authentication_invalid",
			}}})
			return
		}
		h(w, r)
	}
}

func (f *Fake) originAllowed(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || origin == "" || u.Host == "" || u.Path != "" {
		return false
	}
	if f.opts.AllowedOrigins == nil {
		return (u.Scheme == "http" || u.Scheme == "https") && (u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost" || u.Hostname() == "::1")
	}
	for _, o := range f.opts.AllowedOrigins {
		if o == origin {
			return true
		}
	}
	return false
}

// cors answers credentialed CORS for allowed origins, as the Frontend API
// does for the browser SDK.
func (f *Fake) cors(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" {
			if !f.originAllowed(origin) {
				writeAPIError(w, &apiErrorBody{status: http.StatusForbidden, Errors: []apiError{{
					Message: "Origin not allowed", LongMessage: "The request origin is not an allowed origin of this instance", Code: "origin_invalid",
				}}})
				return
			}
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Set("Access-Control-Allow-Credentials", "true")
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST")
			w.Header().Set("Vary", "Origin")
		}
		h(w, r)
	}
}

func (f *Fake) clientID(r *http.Request) string {
	c, err := r.Cookie(ClientCookie)
	if err != nil {
		return ""
	}
	return c.Value
}

// getClient answers the browser SDK's GET /v1/client: the browser's active
// sessions, each with its user.
func (f *Fake) getClient(w http.ResponseWriter, r *http.Request) {
	cid := f.clientID(r)
	f.mu.Lock()
	var sessions []map[string]any
	last := ""
	for _, id := range f.clients[cid] {
		s := f.refreshLocked(f.sessions[id])
		u, ok := f.users[s.UserID]
		if s.Status != StatusActive || !ok {
			continue
		}
		sj := sessionJSON(s)
		sj["user"] = userJSON(u)
		sessions = append(sessions, sj)
		last = s.ID
	}
	f.mu.Unlock()
	if cid == "" || sessions == nil {
		writeJSON(w, map[string]any{"response": nil, "client": nil})
		return
	}
	writeJSON(w, map[string]any{"response": map[string]any{
		"object": "client", "id": cid, "sessions": sessions, "last_active_session_id": last,
	}})
}

// clientToken answers POST /v1/client/sessions/{id}/tokens: a fresh session
// token whose azp is the requesting page's origin.
func (f *Fake) clientToken(w http.ResponseWriter, r *http.Request) {
	cid, sid := f.clientID(r), r.PathValue("id")
	f.mu.Lock()
	owned := false
	for _, id := range f.clients[cid] {
		if id == sid && f.refreshLocked(f.sessions[id]).Status == StatusActive {
			owned = true
		}
	}
	f.mu.Unlock()
	if cid == "" || !owned {
		writeAPIError(w, &apiErrorBody{status: http.StatusUnauthorized, Errors: []apiError{{
			Message: "Signed out", LongMessage: "You are signed out", Code: "signed_out",
		}}})
		return
	}
	tok, err := f.SessionToken(sid, r.Header.Get("Origin"), nil)
	if err != nil {
		writeAPIError(w, notFound("session"))
		return
	}
	writeJSON(w, map[string]any{"object": "token", "jwt": tok})
}

var signInPage = template.Must(template.New("signin").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in — fake Clerk</title></head>
<body><h1>Sign in</h1>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/sign-in">
<input type="hidden" name="redirect_url" value="{{.RedirectURL}}">
<label>E-mail <input type="email" name="email" id="email" required></label>
<button type="submit">Sign in</button>
</form></body></html>`))

func (f *Fake) checkRedirect(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return "", errors.New("redirect_url must be an absolute URL")
	}
	if !f.originAllowed(u.Scheme + "://" + u.Host) {
		return "", errors.New("redirect_url is not on an allowed origin")
	}
	return u.String(), nil
}

func (f *Fake) signInPage(w http.ResponseWriter, r *http.Request) {
	redirect, err := f.checkRedirect(r.URL.Query().Get("redirect_url"))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_ = signInPage.Execute(w, map[string]string{"Error": err.Error()})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = signInPage.Execute(w, map[string]string{"RedirectURL": redirect})
}

func (f *Fake) signInSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
	redirect, err := f.checkRedirect(r.PostFormValue("redirect_url"))
	email := strings.TrimSpace(r.PostFormValue("email"))
	if err == nil && !strings.Contains(email, "@") {
		err = errors.New("enter an e-mail address")
	}
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_ = signInPage.Execute(w, map[string]string{"Error": err.Error(), "RedirectURL": r.PostFormValue("redirect_url")})
		return
	}
	ru, _ := url.Parse(redirect)
	f.mu.Lock()
	cid := f.clientID(r)
	if cid == "" {
		cid = "client_" + randomID(12)
	}
	u := f.createUserLocked(email)
	_, err = f.signInLocked(u.ID, cid, ru.Scheme+"://"+ru.Host)
	f.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: ClientCookie, Value: cid, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, redirect, http.StatusSeeOther)
}

func sessionJSON(s *Session) map[string]any {
	return map[string]any{
		"object": "session", "id": s.ID, "client_id": s.ClientID, "user_id": s.UserID, "status": s.Status,
		"last_active_at": s.CreatedAt.UnixMilli(), "expire_at": s.ExpireAt.UnixMilli(),
		"abandon_at": s.CreatedAt.Add(30 * 24 * time.Hour).UnixMilli(),
		"created_at": s.CreatedAt.UnixMilli(), "updated_at": s.CreatedAt.UnixMilli(),
	}
}

func userJSON(u *User) map[string]any {
	emailID := "idn_" + strings.TrimPrefix(u.ID, "user_")
	return map[string]any{
		"object": "user", "id": u.ID, "first_name": u.FirstName, "last_name": u.LastName,
		"primary_email_address_id": emailID,
		"email_addresses": []map[string]any{{
			"id": emailID, "object": "email_address", "email_address": u.Email,
			"verification": map[string]any{"status": "verified", "strategy": "email_code"},
		}},
		"public_metadata": map[string]any{}, "created_at": 0, "updated_at": 0,
	}
}

//go:embed clerk.browser.js
var clerkJS []byte

func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
