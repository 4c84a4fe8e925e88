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
	"testing"
	"time"

	"github.com/keyloop/keyloop/server"
)

func TestBackend(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-addr", ":0", "-data", data, "-token-ttl", "20s"}, pw) }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^keyloop backend listening on (http://127\.0\.0\.1:[1-9][0-9]*)\n$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("first line %q", line)
	}
	issuer := m[1]
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
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestBackendRefusesClerkModeUntilWired(t *testing.T) {
	t.Setenv("CLERK_SECRET_KEY", "sk_test_x")
	if err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-data", t.TempDir()}, io.Discard); err == nil {
		t.Fatal("started with CLERK_SECRET_KEY set")
	}
}
