package server_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/keyloop/keyloop/server"
	"golang.org/x/oauth2"
)

// syncBuf is a bytes.Buffer safe for the handler's concurrent logging.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Logs name events but never carry codes, tokens, state or CSRF values.
func TestLogsCarryNoSecrets(t *testing.T) {
	var buf syncBuf
	e := newEnv(t, envOpts{configure: func(c *server.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}})
	cfg := e.oauthConfig("mytool")
	verifier, state := oauth2.GenerateVerifier(), "state-"+oauth2.GenerateVerifier()
	_, consent := newBrowser(t).login(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), "ada@example.com", "authorize")
	code := e.lastCallback().Get("code")
	tok, err := cfg.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Exchange(context.Background(), code, oauth2.VerifierOption(verifier)) // reuse
	_, m := e.refresh(tok.RefreshToken)
	e.refresh(tok.RefreshToken) // refused: the code reuse revoked the session
	e.postForm(server.RevokePath, url.Values{"token": {tok.AccessToken}})
	tok2 := e.login()
	_, m2 := e.refresh(tok2.RefreshToken)
	e.refresh(tok2.RefreshToken) // within the grace period
	e.refresh(tok2.RefreshToken) // reuse
	logs := buf.String()
	for _, want := range []string{"authorization approved", "token issued", "reuse detected", "code reused", "within the grace period"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in logs", want)
		}
	}
	secrets := []string{code, tok.AccessToken, tok.RefreshToken, tok2.AccessToken, tok2.RefreshToken, state, verifier, csrfRE.FindStringSubmatch(consent.body)[1]}
	for _, m := range []map[string]any{m, m2} {
		if rt, ok := m["refresh_token"].(string); ok {
			secrets = append(secrets, rt)
		}
	}
	for _, s := range secrets {
		if s == "" || strings.Contains(logs, s) {
			t.Fatalf("a secret is in the logs (or empty):\n%s", logs)
		}
	}
}
