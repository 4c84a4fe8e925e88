// Package clerktest is a local, faithful fake of the parts of Clerk that
// server/clerk uses, for tests. It is the one Clerk fake in this repository,
// and it models Clerk as Clerk's own sources describe it (clerk/javascript's
// backend and clerk-js packages, clerk-sdk-go v2, Clerk's docs), so that an
// adapter sharing a wrong idea of Clerk fails against it.
//
// One Fake serves, on a loopback httptest server:
//
//   - the Backend API under /v1 (what github.com/clerk/clerk-sdk-go/v2 calls
//     when its backend URL points at Fake.APIURL): GET /v1/jwks,
//     GET /v1/jwt_templates, GET /v1/sessions/{id},
//     POST /v1/sessions/{id}/tokens/{template} (body
//     {"expires_in_seconds": N}, answer {"object":"token","jwt":"…"}) and
//     GET /v1/users/{id}. Requests need "Authorization: Bearer <SecretKey>".
//     Errors use Clerk's body {"errors":[{"message","long_message","code"}],
//     "clerk_trace_id"} with Clerk's status codes (401, 404, 422).
//   - the Frontend API at its root (Fake.FrontendAPIURL): GET
//     /.well-known/jwks.json, GET /v1/client, POST
//     /v1/client/sessions/{id}/tokens (a session token) and POST
//     /v1/client/sessions/{id}/tokens/{template} (a JWT template token minted
//     by the browser), with a "__client" cookie and credentialed CORS, and
//     GET /v1/client/sync (a production satellite's sync with the primary
//     domain: back to redirect_url with __clerk_synced=true); a sign-in page
//     at /sign-in (an e-mail field and a "Sign in" button) that signs the
//     browser in, shows the session's pending tasks (a "Continue" button)
//     and returns to redirect_url, or, as a development instance's primary
//     domain, sends a satellite that came to sync (__clerk_satellite_url)
//     back with __clerk_synced=true.
//   - a stand-in for the browser SDK at the path Clerk serves clerk-js v6
//     from (ClerkJSPath), exposing what keyloop's page uses: Clerk.load(),
//     Clerk.loaded, Clerk.user, Clerk.session (status, currentTask, getToken
//     with skipCache and template), Clerk.isSignedIn, Clerk.redirectToSignIn
//     and Clerk.redirectToTasks, honouring data-clerk-proxy-url,
//     data-clerk-domain and the satellite options of load() the way clerk-js
//     does: a signed-out satellite's load() leaves for the primary domain to
//     sync and returns with Clerk.loaded false.
//
// What it models, and from where:
//
//   - Token categories: the "cat" header is SessionTokenCategory,
//     TemplateTokenCategory or M2MTokenCategory, or IgnoreTokenCategory on
//     every token when Options.IgnoreCategory is set (Clerk's
//     use_ignore_jwt_cat instance setting; clerk/javascript
//     packages/backend/src/tokens/jwtCategories.ts).
//   - Session tokens (Clerk docs, "Session tokens", v2 claims): azp (the
//     requesting page's Origin, absent without one), exp, iat, iss, jti, nbf,
//     sid, sts (the session status), sub, v=2, and act when impersonated.
//     The Frontend API hands out tokens for pending sessions too (sts
//     "pending"), as clerk-js keeps such a session in Clerk.session.
//   - JWT template tokens (Clerk docs, "JWT templates"): the template's
//     claims with shortcodes replaced, plus exp, iat, iss, jti, nbf, sub; never
//     sid. azp only when minted through the Frontend API (a browser's
//     Clerk.session.getToken({template})), with the template's own lifetime;
//     Backend API tokens carry no azp and honour expires_in_seconds. A
//     template with a custom signing key signs with a key that is not in the
//     instance JWKS.
//   - Machine tokens: M2M JWTs with "sub" starting "mch_", and OAuth access
//     token JWTs with "typ" "at+jwt" (RFC 9068; clerk/javascript
//     packages/backend/src/tokens/machine.ts). Clerk's docs do not list the
//     OAuth token's claims; the fake gives it the user's sid as well, the
//     worst case for a verifier that only looks for sid.
//   - Session statuses (Backend API): active, pending (tasks such as
//     "choose-organization"), ended, revoked, removed, expired, abandoned,
//     replaced.
//   - Proxies (Clerk docs, "Proxying the Clerk Frontend API"): after
//     SetProxyURL, the Frontend API answers browser calls only through the
//     proxy (Clerk-Proxy-Url and Clerk-Secret-Key headers), and every token's
//     iss is the proxy URL (clerk-sdk-go v2 jwt.Verify requires iss ==
//     ProxyURL). Proxying needs a production instance (Options.Production).
//   - Bans and locks: BanUser revokes the user's sessions and LockUser does
//     not; both show in the user object ("banned", "locked") that the
//     Backend API and user.updated webhooks carry. Clerk has no user.banned
//     or user.locked event.
//
// Methods change the state the way Clerk's dashboard or users would
// (EndSession, RevokeSession, SetSessionStatus, DeleteUser, BanUser,
// LockUser, Impersonate, SetProxyURL) and deliver Svix-signed webhooks
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
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// The "cat" (token category) header values Clerk puts on its JWTs
// (clerk/javascript packages/backend/src/tokens/jwtCategories.ts).
const (
	SessionTokenCategory  = "cl_B7d4PD111AAA"
	TemplateTokenCategory = "cl_B7d4PD222AAA"
	M2MTokenCategory      = "cl_B7d4PD333AAA"
	// IgnoreTokenCategory is stamped on every token by instances with
	// use_ignore_jwt_cat; it says nothing about the kind of token.
	IgnoreTokenCategory = "cl_I7d4PD111III"
)

// ClerkJSPath is where the fake serves its stand-in for the browser SDK: the
// path Clerk serves clerk-js v6 from on a Frontend API host.
const ClerkJSPath = "/npm/@clerk/clerk-js@6/dist/clerk.browser.js"

// ClientCookie is the name of the Frontend API cookie that identifies the
// browser's Clerk client.
const ClientCookie = "__client"

// Session statuses, as Clerk's Backend API names them.
const (
	StatusActive    = "active"
	StatusPending   = "pending"
	StatusEnded     = "ended"
	StatusRevoked   = "revoked"
	StatusRemoved   = "removed"
	StatusExpired   = "expired"
	StatusAbandoned = "abandoned"
	StatusReplaced  = "replaced"
)

// Session task keys (Clerk's SessionTask["key"]).
const (
	TaskChooseOrganization = "choose-organization"
	TaskResetPassword      = "reset-password"
	TaskSetupMFA           = "setup-mfa"
)

// ActorIssuer is the "iss" inside the act claim of sessions started by
// impersonation from the Clerk Dashboard.
const ActorIssuer = "https://dashboard.clerk.com"

// TemplateMarker is the claim keyloop's README tells users to put in the CLI
// JWT template, with the template's name as value (see server/clerk).
const TemplateMarker = "keyloop_template"

// Template is a JWT template of the fake instance.
type Template struct {
	// Claims are the template's claims. String values "{{user.id}}",
	// "{{user.primary_email_address}}", "{{user.first_name}}",
	// "{{user.last_name}}", "{{user.full_name}}" are replaced like Clerk's
	// shortcodes, and a value that is exactly "{{session.actor}}" becomes
	// the session's actor object (null when not impersonated); other values
	// are copied as they are (e.g. "aud").
	Claims map[string]any
	// Lifetime is the default token lifetime, used for tokens minted without
	// expires_in_seconds (all Frontend API template tokens). Zero means 60
	// seconds, Clerk's default.
	Lifetime time.Duration
	// CustomSigningKey makes the template sign with a key of its own, which
	// is not in the instance JWKS (the Dashboard's "Custom signing key").
	CustomSigningKey bool
}

// DefaultTemplates returns the templates of a fake made with nil
// Options.Templates: one "cli" template as keyloop's README describes it.
func DefaultTemplates() map[string]Template {
	return map[string]Template{"cli": {Claims: map[string]any{
		"aud":          "keyloop-test",
		"email":        "{{user.primary_email_address}}",
		TemplateMarker: "cli",
	}}}
}

// Options configures a Fake. The zero value is a usable development
// instance with DefaultTemplates.
type Options struct {
	// Templates are the instance's JWT templates by name. Nil means
	// DefaultTemplates().
	Templates map[string]Template
	// AllowedOrigins are the origins the Frontend API answers credentialed
	// CORS requests from and the sign-in page redirects back to (a
	// production instance's domain and its Allowed Subdomains). Nil means
	// any http(s) loopback origin, like a development instance.
	AllowedOrigins []string
	// SessionLifetime is how long a session lives after sign-in. Zero means
	// 7 days, Clerk's default maximum session lifetime.
	SessionLifetime time.Duration
	// Production makes a production instance: keys start with pk_live_ and
	// sk_live_, and proxying (SetProxyURL) is possible.
	Production bool
	// IgnoreCategory stamps IgnoreTokenCategory on every token, as instances
	// with use_ignore_jwt_cat do.
	IgnoreCategory bool
	// SessionTasks are the tasks every new sign-in must complete (e.g.
	// TaskChooseOrganization); the session stays "pending" until the
	// browser completes them on the sign-in page. Nil means none.
	SessionTasks []string
	// Now is the fake's clock. Nil means time.Now.
	Now func() time.Time
}

// User is a user of the fake instance.
type User struct {
	ID        string // "user_…", the "sub" of Clerk's tokens
	Email     string // the primary e-mail address
	FirstName string // may be empty
	LastName  string // may be empty
	// Banned and Locked are the user object's "banned" and "locked".
	Banned bool
	Locked bool
}

// Session is a session of the fake instance.
type Session struct {
	ID       string // "sess_…", the "sid" of session tokens
	ClientID string // the Clerk client (browser) the session belongs to
	UserID   string // the User's ID
	Status   string // StatusActive, StatusPending, … as Clerk reports it
	// Origin is the origin the browser signed in from; the session's last
	// active token carries it as "azp".
	Origin string
	// Tasks are the pending session tasks, first one current.
	Tasks []string
	// ActorID is the impersonator's user ID when the session was started
	// by impersonation, else empty.
	ActorID   string
	CreatedAt time.Time // when the session was created
	ExpireAt  time.Time // when Clerk ends it (its maximum lifetime)
}

// Fake is a running fake Clerk instance. Its methods are safe for concurrent
// use.
type Fake struct {
	// URL is the base URL of the fake (http://127.0.0.1:PORT).
	URL string
	// APIURL is the Backend API base URL for the SDK: URL + "/v1".
	APIURL string
	// FrontendAPIURL is the Frontend API URL (equal to URL). It is the
	// "iss" of tokens until a proxy is configured (SetProxyURL).
	FrontendAPIURL string
	// SecretKey authorizes Backend API requests ("sk_test_…", "sk_live_…").
	SecretKey string
	// PublishableKey is "pk_test_" (or "pk_live_") + base64(host + "$").
	PublishableKey string
	// WebhookSecret is the Svix signing secret ("whsec_…").
	WebhookSecret string
	// KeyID is the "kid" of the instance key ("ins_…").
	KeyID string

	srv       *httptest.Server
	key       *rsa.PrivateKey
	customKey *rsa.PrivateKey
	opts      Options
	wh        *svix.Webhook

	mu       sync.Mutex
	proxyURL string
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
		opts.Templates = DefaultTemplates()
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
	var customKey *rsa.PrivateKey // a template's own key, not in the JWKS
	for _, t := range opts.Templates {
		if t.CustomSigningKey && customKey == nil {
			if customKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				return nil, err
			}
		}
	}
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	env := "test"
	if opts.Production {
		env = "live"
	}
	f := &Fake{
		key:           key,
		customKey:     customKey,
		opts:          opts,
		SecretKey:     "sk_" + env + "_" + randomID(16),
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
	f.PublishableKey = "pk_" + env + "_" + base64.StdEncoding.EncodeToString([]byte(host+"$"))
	return f, nil
}

// Close stops the fake's server.
func (f *Fake) Close() { f.srv.Close() }

// Requests returns "METHOD PATH" of every request the fake answered, in
// order, for tests that check which calls were made; a request with a query
// has "?" and its parameter names (sorted, joined by "&", without values)
// appended, e.g. "GET /sign-in?redirect_url".
func (f *Fake) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// SetProxyURL configures a proxy of the Frontend API, as the Dashboard's
// Domains page does ("Set proxy configuration"): from then on the Frontend
// API answers browser requests only through the proxy, and tokens carry the
// proxy URL as "iss". Clerk allows it on production instances only; an
// empty URL removes the proxy.
func (f *Fake) SetProxyURL(proxyURL string) error {
	if proxyURL != "" && !f.opts.Production {
		return fmt.Errorf("clerktest: proxying does not work for development instances")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.proxyURL = strings.TrimSuffix(proxyURL, "/")
	return nil
}

// Issuer returns the "iss" of the tokens the instance mints now: the proxy
// URL when one is configured, else FrontendAPIURL.
func (f *Fake) Issuer() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issuerLocked()
}

func (f *Fake) issuerLocked() string {
	if f.proxyURL != "" {
		return f.proxyURL
	}
	return f.FrontendAPIURL
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

// SignIn creates a session for the user as if a browser at origin signed
// in, and returns it. The session is "pending" while Options.SessionTasks
// are to be done, else "active".
func (f *Fake) SignIn(userID, origin string) (Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, err := f.signInLocked(userID, "client_"+randomID(12), origin, "")
	if err != nil {
		return Session{}, err
	}
	return *s, nil
}

// Impersonate creates a session for userID started by actorID through an
// actor token (the Dashboard's "Impersonate user"): its tokens carry an
// "act" claim naming the actor.
func (f *Fake) Impersonate(actorID, userID, origin string) (Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[actorID]; !ok {
		return Session{}, fmt.Errorf("clerktest: no user %s", actorID)
	}
	s, err := f.signInLocked(userID, "client_"+randomID(12), origin, actorID)
	if err != nil {
		return Session{}, err
	}
	return *s, nil
}

func (f *Fake) signInLocked(userID, clientID, origin, actorID string) (*Session, error) {
	u, ok := f.users[userID]
	if !ok {
		return nil, fmt.Errorf("clerktest: no user %s", userID)
	}
	if u.Banned || u.Locked {
		return nil, fmt.Errorf("clerktest: user %s is banned or locked and cannot sign in", userID)
	}
	now := f.opts.Now()
	s := &Session{
		ID: "sess_" + randomID(12), ClientID: clientID, UserID: userID, Status: StatusActive,
		Origin: origin, ActorID: actorID, CreatedAt: now, ExpireAt: now.Add(f.opts.SessionLifetime),
		Tasks: slices.Clone(f.opts.SessionTasks),
	}
	if len(s.Tasks) > 0 {
		s.Status = StatusPending
	}
	f.sessions[s.ID] = s
	f.clients[clientID] = append(f.clients[clientID], s.ID)
	return s, nil
}

// AddTask makes the session pending until the task is done.
func (f *Fake) AddTask(sessionID, task string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[sessionID]
	if !ok {
		return fmt.Errorf("clerktest: no session %s", sessionID)
	}
	s.Tasks = append(s.Tasks, task)
	if s.Status == StatusActive {
		s.Status = StatusPending
	}
	return nil
}

// CompleteTasks completes the session's tasks: a pending session becomes
// active.
func (f *Fake) CompleteTasks(sessionID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[sessionID]
	if !ok {
		return fmt.Errorf("clerktest: no session %s", sessionID)
	}
	f.completeTasksLocked(s)
	return nil
}

func (f *Fake) completeTasksLocked(s *Session) {
	s.Tasks = nil
	if s.Status == StatusPending {
		s.Status = StatusActive
	}
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
	if (s.Status == StatusActive || s.Status == StatusPending) && !f.opts.Now().Before(s.ExpireAt) {
		s.Status = StatusExpired
	}
	return s
}

// live reports whether the session can still get session tokens: active,
// or pending its tasks.
func live(s *Session) bool { return s.Status == StatusActive || s.Status == StatusPending }

// EndSession ends the session (the user signed out).
func (f *Fake) EndSession(id string) error { return f.SetSessionStatus(id, StatusEnded) }

// RevokeSession revokes the session (from the dashboard or the Backend API).
func (f *Fake) RevokeSession(id string) error { return f.SetSessionStatus(id, StatusRevoked) }

// SetSessionStatus sets the session's status, e.g. StatusAbandoned or
// StatusReplaced (a single-session client signed into another account).
func (f *Fake) SetSessionStatus(id, status string) error {
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
		if s.UserID == id && live(s) {
			s.Status = StatusRemoved
		}
	}
	return nil
}

// BanUser bans the user (Dashboard or POST /v1/users/{id}/ban): the user
// cannot sign in and the user's sessions are revoked.
func (f *Fake) BanUser(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[id]
	if !ok {
		return fmt.Errorf("clerktest: no user %s", id)
	}
	u.Banned = true
	for _, s := range f.sessions {
		if s.UserID == id && live(s) {
			s.Status = StatusRevoked
		}
	}
	return nil
}

// LockUser locks the user (too many failed attempts, or POST
// /v1/users/{id}/lock): the user cannot sign in; sessions are left as they
// are.
func (f *Fake) LockUser(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[id]
	if !ok {
		return fmt.Errorf("clerktest: no user %s", id)
	}
	u.Locked = true
	return nil
}

// UserData is the "data" of user.updated webhook events for the user: the
// Backend API user object, with "banned" and "locked".
func (f *Fake) UserData(id string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[id]
	if !ok {
		return map[string]any{"id": id, "object": "user"}
	}
	return userJSON(u)
}

// SessionData is the "data" of session webhook events for the session.
func (f *Fake) SessionData(id string) map[string]any {
	s, _ := f.Session(id)
	return sessionJSON(&s)
}

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

// JWKS returns the instance's JSON Web Key Set document. A template's custom
// signing key is not in it.
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

func sessionJSON(s *Session) map[string]any {
	m := map[string]any{
		"object": "session", "id": s.ID, "client_id": s.ClientID, "user_id": s.UserID, "status": s.Status,
		"last_active_at": s.CreatedAt.UnixMilli(), "expire_at": s.ExpireAt.UnixMilli(),
		"abandon_at": s.CreatedAt.Add(30 * 24 * time.Hour).UnixMilli(),
		"created_at": s.CreatedAt.UnixMilli(), "updated_at": s.CreatedAt.UnixMilli(),
		"actor": nil,
	}
	if a := actorJSON(s); a != nil {
		m["actor"] = a
	}
	tasks := []map[string]any{}
	for _, t := range s.Tasks {
		tasks = append(tasks, map[string]any{"key": t})
	}
	m["tasks"] = tasks
	return m
}

// actorJSON is the session's actor as the Backend API and the act claim
// carry it, or nil.
func actorJSON(s *Session) map[string]any {
	if s.ActorID == "" {
		return nil
	}
	return map[string]any{"iss": ActorIssuer, "sid": "sess_actor_" + strings.TrimPrefix(s.ID, "sess_"), "sub": s.ActorID}
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
		"banned": u.Banned, "locked": u.Locked,
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
