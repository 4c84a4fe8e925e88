package redisstate_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/redisstate"
)

// benchMiddleware returns RequireToken around a trivial handler, with state
// as the handler's StateStore, and an access token it accepts.
func benchMiddleware(b *testing.B, state server.StateStore, cacheTTL time.Duration) (http.Handler, string) {
	key, _ := server.GenerateKey()
	m, err := server.NewSelfSigned(server.SelfSignedConfig{Issuer: "https://i.example", Key: key})
	if err != nil {
		b.Fatal(err)
	}
	h, err := server.New(server.Config{Issuer: "https://i.example", Clients: []server.Client{{ID: "mytool"}},
		Authenticator: noAuth{}, Minter: m, State: state, RevocationCacheTTL: cacheTTL})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	tok, err := m.Mint(context.Background(), server.Grant{Identity: server.Identity{Subject: "u"}, ClientID: "mytool", LoginSessionID: "s"})
	if err != nil {
		b.Fatal(err)
	}
	return h.RequireToken(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})), tok.AccessToken
}

type noAuth struct{}

func (noAuth) Authenticate(http.ResponseWriter, *http.Request, server.SignInPrompt) (*server.Identity, error) {
	return nil, server.ErrResponded
}

func serveLoop(b *testing.B, h http.Handler, tok string) {
	req := httptest.NewRequest("GET", "/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("RequireToken: %d %s", w.Code, w.Body)
		}
	}
}

// BenchmarkRequireTokenRedis measures the bearer middleware with its state
// in Redis against the same middleware with in-memory state ("x-baseline"):
// with the revocation cache (the default), Redis adds no round trip per
// request.
func BenchmarkRequireTokenRedis(b *testing.B) {
	benchRequireToken(b, 0)
}

// BenchmarkRequireTokenRedisUncached is the same with the revocation cache
// off (RevocationCacheTTL < 0): two Redis round trips per request, what the
// cache saves.
func BenchmarkRequireTokenRedisUncached(b *testing.B) {
	benchRequireToken(b, -1)
}

func benchRequireToken(b *testing.B, cacheTTL time.Duration) {
	r := testenv.Redis(b)
	rs, err := redisstate.Open(r.URL, redisstate.Options{Prefix: "bench:"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rs.Close() })
	mem, memTok := benchMiddleware(b, server.NewMemoryStateStore(), cacheTTL)
	red, redTok := benchMiddleware(b, rs, cacheTTL)
	var baseNs float64
	b.Run("baseline", func(b *testing.B) {
		serveLoop(b, mem, memTok)
		baseNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("measured", func(b *testing.B) {
		serveLoop(b, red, redTok)
		if baseNs > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseNs, "x-baseline")
		}
	})
}
