package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/redisstate"
)

// -redis keeps the login state in Redis: a pending authorization started
// on the backend is a key in that Redis.
func TestBackendRedis(t *testing.T) {
	r := testenv.Redis(t)
	issuer, _ := startRun(t, "-addr", ":0", "-data", t.TempDir(), "-redis", r.URL)
	q := url.Values{"client_id": {"mytool"}, "redirect_uri": {"http://127.0.0.1:9/cb"}, "response_type": {"code"},
		"state": {"s"}, "code_challenge_method": {"S256"}, "code_challenge": {strings.Repeat("a", 43)}}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(issuer + server.AuthorizePath + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, server.SignInPath+"?req=") {
		t.Fatalf("authorize: %d → %s", resp.StatusCode, loc)
	}
	id := strings.TrimPrefix(loc, server.SignInPath+"?req=")
	if got := redisKeys(t, r, "keyloop:pending:"+id); got != 1 {
		t.Fatalf("the pending authorization is not in Redis (%d keys)", got)
	}
}

func redisKeys(t *testing.T, r *testenv.RedisServer, key string) int {
	t.Helper()
	s, err := redisstate.Open(r.URL, redisstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n, err := s.Client().Exists(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// An unusable -redis stops the backend at start with a message naming the
// flag and the problem.
func TestBackendRedisErrors(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"unix://" + filepath.Join(t.TempDir(), "none.sock"), "none.sock"},
		{"http://localhost:6379", "not redis, rediss or unix"},
	} {
		err := run(context.Background(), []string{"-addr", ":0", "-data", t.TempDir(), "-redis", tc.url}, io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), "-redis: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("-redis %s: %v; want an error about -redis mentioning %q", tc.url, err, tc.want)
		}
	}
}
