package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/keyloop/keyloop/server"
)

// flakyJWKS serves a key set's JWKS, or fails as told: 503, or a hang until
// the request's context ends.
type flakyJWKS struct {
	srv  *httptest.Server
	hits atomic.Int64

	mu   sync.Mutex
	mode string // "ok", "503", "hang"
	jwks []byte
}

func newFlakyJWKS(t *testing.T, jwks []byte, mode string) *flakyJWKS {
	f := &flakyJWKS{mode: mode, jwks: jwks}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		f.mu.Lock()
		mode, body := f.mode, f.jwks
		f.mu.Unlock()
		switch mode {
		case "503":
			http.Error(w, "upstream down", http.StatusServiceUnavailable)
		case "hang":
			<-r.Context().Done()
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *flakyJWKS) set(mode string) {
	f.mu.Lock()
	f.mode = mode
	f.mu.Unlock()
}

func (f *flakyJWKS) setJWKS(b []byte) {
	f.mu.Lock()
	f.jwks = b
	f.mu.Unlock()
}

// remoteFixture is a key set, a token it signed, and a Verifier reading its
// JWKS through a flakyJWKS.
type remoteFixture struct {
	ks   *server.KeySet
	jwks *flakyJWKS
	v    *server.Verifier
	tok  string
}

func newRemoteFixture(t *testing.T, mode string, mod func(*server.VerifierConfig)) *remoteFixture {
	t.Helper()
	ks, err := server.NewKeySet([]server.SigningKey{{ID: "k1", Key: mustKey(t)}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ks.JWKS()
	f := &remoteFixture{ks: ks, jwks: newFlakyJWKS(t, b, mode)}
	cfg := server.VerifierConfig{Issuer: "https://i", JWKSURL: f.jwks.srv.URL}
	if mod != nil {
		mod(&cfg)
	}
	if f.v, err = server.NewVerifier(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.v.Close() })
	f.tok = f.sign(t, "")
	return f
}

func (f *remoteFixture) sign(t *testing.T, alg string) string {
	t.Helper()
	k, err := f.ks.Signer(alg)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := k.Sign(jwt.MapClaims{"iss": "https://i", "sub": "u1", "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// verify runs one Verify with a generous deadline that only guards against
// a hang. It may run on any goroutine.
func (f *remoteFixture) verify(t *testing.T, tok string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := f.v.Verify(ctx, tok)
	if ctx.Err() != nil {
		t.Errorf("Verify still blocked after 30 s (err %v)", err)
	}
	return err
}

// A remote JWKS that answers 503 on first use and recovers shortly after
// (it used to cost a 5-minute ban and a Verify blocked for a minute). During the outage each Verify fails fast with an error
// that says the keys are unavailable (not that the token is invalid); once
// the endpoint answers again, the valid token verifies after a few retries
// (the backoff starts at 1 s), not after a 5-minute ban.
func TestVerifierRemoteJWKSOutageAtFirstUse(t *testing.T) {
	f := newRemoteFixture(t, "503", nil)
	for range 3 {
		err := f.verify(t, f.tok)
		if !errors.Is(err, server.ErrKeysUnavailable) || errors.Is(err, server.ErrInvalidToken) {
			t.Errorf("Verify during the outage: %v; want ErrKeysUnavailable", err)
			break
		}
	}
	f.jwks.set("ok")
	deadline := time.Now().Add(30 * time.Second)
	tries := 0
	for {
		tries++
		err := f.verify(t, f.tok)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a valid token still refused 30 s after the JWKS recovered (%d tries): %v", tries, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Once fetched, the keys outlive a later outage.
	f.jwks.set("503")
	if err := f.verify(t, f.tok); err != nil {
		t.Fatalf("cached key refused during a later outage: %v", err)
	}
}

// A JWKS endpoint that hangs costs each Verify at most the fetch timeout,
// and concurrent callers share one fetch.
func TestVerifierRemoteJWKSHang(t *testing.T) {
	f := newRemoteFixture(t, "hang", func(c *server.VerifierConfig) { c.JWKSFetchTimeout = 500 * time.Millisecond })
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() { errs[i] = f.verify(t, f.tok) })
	}
	wg.Wait()
	for _, err := range errs {
		if !errors.Is(err, server.ErrKeysUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Verify against a hanging JWKS: %v", err)
		}
	}
	if n := f.jwks.hits.Load(); n != 1 {
		t.Fatalf("%d fetches for 20 concurrent Verify calls; want 1 shared", n)
	}
	// A caller whose own context ends first gets its own error and leaves
	// the fetch to the others.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.v.Verify(ctx, f.tok); !errors.Is(err, server.ErrKeysUnavailable) {
		t.Fatalf("canceled Verify: %v", err)
	}
}

// Tokens with key IDs the JWKS lacks trigger a refetch at most every
// JWKSUnknownKIDInterval; a key published later is found by the first
// refetch after that.
func TestVerifierRemoteJWKSUnknownKIDRateLimited(t *testing.T) {
	f := newRemoteFixture(t, "ok", nil)
	if err := f.verify(t, f.tok); err != nil {
		t.Fatal(err)
	}
	other, _ := server.NewKeySet([]server.SigningKey{{ID: "stranger", Key: mustKey(t)}})
	k, _ := other.Signer("")
	forged, _ := k.Sign(jwt.MapClaims{"iss": "https://i", "sub": "u1", "exp": time.Now().Add(time.Hour).Unix()})
	for range 50 {
		if err := f.verify(t, forged); !errors.Is(err, server.ErrInvalidToken) {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	if n := f.jwks.hits.Load(); n > 2 {
		t.Fatalf("%d JWKS fetches for 50 tokens with an unknown kid; want at most 2", n)
	}

	// Rotation: the remote set gains a key; with a short interval, the
	// first token signed by it is verified after one refetch.
	g := newRemoteFixture(t, "ok", func(c *server.VerifierConfig) { c.JWKSUnknownKIDInterval = time.Millisecond })
	if err := g.verify(t, g.tok); err != nil {
		t.Fatal(err)
	}
	k1, _ := g.ks.Signer("")
	if err := g.ks.Replace([]server.SigningKey{k1, {ID: "k2", Key: mustKey(t)}}, "k2"); err != nil {
		t.Fatal(err)
	}
	b, _ := g.ks.JWKS()
	g.jwks.setJWKS(b)
	time.Sleep(5 * time.Millisecond)
	before := g.jwks.hits.Load()
	if err := g.verify(t, g.sign(t, "")); err != nil {
		t.Fatalf("token of a newly published key: %v", err)
	}
	if g.jwks.hits.Load() != before+1 {
		t.Fatalf("%d fetches for one new kid", g.jwks.hits.Load()-before)
	}
}

// RequireToken answers 503 with Retry-After while the keys are unavailable:
// a client must not take a valid token for a dead one.
func TestRequireTokenKeysUnavailable(t *testing.T) {
	f := newRemoteFixture(t, "503", nil)
	h := f.v.RequireToken(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	req := httptest.NewRequest("GET", "/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+f.tok)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" || rec.Header().Get("WWW-Authenticate") != "" {
		t.Fatalf("%d %v %s", rec.Code, rec.Header(), rec.Body)
	}
}
