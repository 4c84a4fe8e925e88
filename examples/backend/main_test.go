package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/clerk/clerktest"
)

// startRun runs the backend in-process with args until the test ends, and
// returns its issuer URL, checked against the contract's first stdout line,
// and a func that stops it and reports run's error.
func startRun(t *testing.T, args ...string) (issuer string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, pw); pw.Close() }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("backend: %v (%v)", err, <-done)
	}
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`^keyloop backend listening on (http://127\.0\.0\.1:[1-9][0-9]*)\n$`).FindStringSubmatch(line)
	if m == nil {
		cancel()
		t.Fatalf("first line %q", line)
	}
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { stop() })
	return m[1], stop
}

func TestBackend(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	issuer, stop := startRun(t, "-addr", ":0", "-data", data, "-token-ttl", "20s")
	ctx := context.Background()
	resp, err := http.Get(issuer + server.MetadataPath)
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if md["issuer"] != issuer || md["jwks_uri"] != issuer+"/oauth/jwks" {
		t.Fatalf("metadata %v", md)
	}
	resp, err = http.Get(issuer + "/api/me")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("/api/me without token: %d", resp.StatusCode)
	}
	for name, mode := range map[string]os.FileMode{"": 0o700, "signing-key.pem": 0o600, "dev-cookie.key": 0o600} {
		st, err := os.Stat(filepath.Join(data, name))
		if err != nil || st.Mode().Perm() != mode {
			t.Fatalf("%s: %v %v", name, err, st)
		}
	}
	// The minted-token path: a token from the persisted key passes /api/me.
	key, err := server.LoadOrCreateKeyFile(filepath.Join(data, "signing-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	mint, _ := server.NewSelfSigned(server.SelfSignedConfig{Issuer: issuer, Key: key, Lifetime: 20 * time.Second})
	tok, _ := mint.Mint(ctx, server.Grant{Identity: server.Identity{Subject: "dev|x", Email: "ada@example.com"}, ClientID: "mytool"})
	req, _ := http.NewRequest("GET", issuer+"/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var me map[string]string
	json.NewDecoder(resp.Body).Decode(&me)
	resp.Body.Close()
	if resp.StatusCode != 200 || me["sub"] != "dev|x" || me["email"] != "ada@example.com" || me["expiry"] == "" {
		t.Fatalf("/api/me: %d %v", resp.StatusCode, me)
	}
	if err := stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// Clerk mode, against the one local fake of Clerk: the metadata sends clients
// to Clerk's keys and issuer, /api/me accepts a Clerk template token and
// refuses a Clerk session token, and the webhook route revokes on
// user.deleted.
func TestBackendClerkMode(t *testing.T) {
	fake := clerktest.New(t, clerktest.Options{})
	t.Setenv("CLERK_SECRET_KEY", fake.SecretKey)
	t.Setenv("CLERK_PUBLISHABLE_KEY", fake.PublishableKey)
	t.Setenv("CLERK_FRONTEND_API_URL", fake.FrontendAPIURL)
	t.Setenv("CLERK_API_URL", fake.APIURL)
	t.Setenv("CLERK_WEBHOOK_SECRET", fake.WebhookSecret)
	clearClerkEnv(t)

	ctx := context.Background()
	issuer, stop := startRun(t, "-addr", "127.0.0.1:0", "-data", t.TempDir())

	resp, err := http.Get(issuer + server.MetadataPath)
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if md["issuer"] != issuer || md["jwks_uri"] != issuer+"/oauth/jwks" ||
		md["access_token_jwks_uri"] != fake.FrontendAPIURL+"/.well-known/jwks.json" || md["access_token_issuer"] != fake.FrontendAPIURL {
		t.Fatalf("metadata does not point at Clerk's keys and issuer: %v", md)
	}

	user := fake.CreateUser("ada@example.com")
	sess, err := fake.SignIn(user.ID, issuer)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := fake.TemplateToken(sess.ID, "cli", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sessTok, err := fake.SessionToken(sess.ID, issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	get := func(tok string) int {
		req, _ := http.NewRequest("GET", issuer+"/api/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(tmpl); code != 200 {
		t.Fatalf("/api/me with a Clerk template token: %d; want 200", code)
	}
	if code := get(sessTok); code != 401 {
		t.Fatalf("/api/me with a Clerk session token: %d; want 401", code)
	}
	// A template token the signed-in browser minted itself (no consent).
	browserTok, err := fake.FrontendTemplateToken(sess.ID, "cli", issuer)
	if err != nil {
		t.Fatal(err)
	}
	if code := get(browserTok); code != 401 {
		t.Fatalf("/api/me with a browser-minted template token: %d; want 401", code)
	}
	// The same, asked for without an Origin: Clerk leaves azp out.
	noOriginTok, err := fake.FrontendTemplateToken(sess.ID, "cli", "")
	if err != nil {
		t.Fatal(err)
	}
	if code := get(noOriginTok); code != 401 {
		t.Fatalf("/api/me with a template token minted through the Frontend API without Origin: %d; want 401", code)
	}
	if code, err := fake.SendWebhook(ctx, issuer+"/webhooks/clerk", "user.deleted", map[string]any{"id": user.ID, "object": "user", "deleted": true}); err != nil || code != 200 {
		t.Fatalf("webhook: %d, %v", code, err)
	}
	if code := get(tmpl); code != 401 {
		t.Fatalf("/api/me after user.deleted: %d; want 401", code)
	}
	if err := stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// clearClerkEnv empties the Clerk variables a test does not set.
func clearClerkEnv(t *testing.T) {
	for _, v := range []string{"CLERK_JWT_TEMPLATE", "CLERK_AUDIENCE", "CLERK_PROXY_URL", "CLERK_IS_SATELLITE",
		"CLERK_DOMAIN", "CLERK_SIGN_IN_URL", "CLERK_SIGN_UP_URL", "CLERK_ALLOW_IMPERSONATION"} {
		t.Setenv(v, "")
	}
}

// Clerk mode refuses to start on a set-up Clerk cannot serve or that the
// README's checklist forbids, saying what to change.
func TestBackendClerkModeRefusesBadSetup(t *testing.T) {
	bare := clerktest.DefaultTemplates()
	delete(bare["cli"].Claims, "keyloop_template")
	for _, tc := range []struct {
		name string
		opts clerktest.Options
		env  map[string]string
		want string
	}{
		{"template without the marker claim", clerktest.Options{Templates: bare}, nil, `"keyloop_template": "cli"`},
		{"proxy on a development instance", clerktest.Options{}, map[string]string{"CLERK_PROXY_URL": "http://127.0.0.1:1/__clerk"}, "production instances only"},
		{"satellite flag not a boolean", clerktest.Options{}, map[string]string{"CLERK_IS_SATELLITE": "yes please"}, "CLERK_IS_SATELLITE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := clerktest.New(t, tc.opts)
			clearClerkEnv(t)
			t.Setenv("CLERK_SECRET_KEY", fake.SecretKey)
			t.Setenv("CLERK_PUBLISHABLE_KEY", fake.PublishableKey)
			t.Setenv("CLERK_FRONTEND_API_URL", fake.FrontendAPIURL)
			t.Setenv("CLERK_API_URL", fake.APIURL)
			t.Setenv("CLERK_WEBHOOK_SECRET", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-data", t.TempDir()}, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
