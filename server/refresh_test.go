package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyloop/keyloop/server"
)

// spyState records every value written to a StateStore and can make
// CompareAndSwap fail.
type spyState struct {
	server.StateStore
	mu      sync.Mutex
	written [][]byte
	failCAS atomic.Bool
}

func (s *spyState) record(v []byte) {
	s.mu.Lock()
	s.written = append(s.written, append([]byte(nil), v...))
	s.mu.Unlock()
}

func (s *spyState) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	s.record(value)
	return s.StateStore.Put(ctx, key, value, ttl)
}

func (s *spyState) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if s.failCAS.Load() {
		return false, errors.New("spy: store unreachable")
	}
	s.record(value)
	return s.StateStore.CompareAndSwap(ctx, key, old, value, ttl)
}

func (s *spyState) holds(secret string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.written {
		if bytes.Contains(v, []byte(secret)) {
			return true
		}
	}
	return false
}

// refreshOK refreshes rt and returns the new access and refresh tokens.
func (e *env) refreshOK(rt string) (at, next string) {
	e.t.Helper()
	st, m := e.refresh(rt)
	if st != 200 {
		e.t.Fatalf("refresh: %d %v", st, m)
	}
	return m["access_token"].(string), m["refresh_token"].(string)
}

// loginRevoked checks that the login of rt (its current refresh token) and
// at (one of its access tokens) has ended.
func (e *env) loginRevoked(rt, at string) {
	e.t.Helper()
	if st, m := e.refresh(rt); st != 400 || m["error"] != "invalid_grant" {
		e.t.Fatalf("current refresh token of a revoked login: %d %v", st, m)
	}
	if st, _ := e.apiMe(at); st != 401 {
		e.t.Fatalf("access token of a revoked login: %d", st)
	}
}

// A response lost in flight (the server rotated, the client never saw the
// answer): the retry with the old refresh token within the grace period
// gets the same successor the lost response carried, so the login goes on
// with one current token. A second retry is reuse and ends the login.
func TestRefreshGraceReplayOnce(t *testing.T) {
	spy := &spyState{}
	e := newEnv(t, envOpts{configure: func(c *server.Config) { spy.StateStore = c.State; c.State = spy }})
	tok := e.login()

	// The first refresh answer is lost: the transport drops it after the
	// server committed.
	lost := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			err = errors.New("connection reset by peer")
		}
		return nil, err
	})}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"mytool"}}
	if _, err := lost.PostForm(e.issuer+server.TokenPath, form); err == nil {
		t.Fatal("the lossy transport delivered a response")
	}

	e.clock.Advance(server.DefaultRefreshTokenReuseGrace - time.Second)
	at, rt2 := e.refreshOK(tok.RefreshToken)
	if rt2 == tok.RefreshToken || at == tok.AccessToken {
		t.Fatal("the retry got the old tokens back")
	}
	if st, _ := e.apiMe(at); st != 200 {
		t.Fatalf("access token from the retry: %d", st)
	}
	if spy.holds(rt2) {
		t.Fatal("the state store holds the successor refresh token in the clear")
	}
	// The retry's successor is the family's current token.
	at3, rt3 := e.refreshOK(rt2)

	// A second retry of the same old token is reuse: the login ends.
	if st, m := e.refresh(tok.RefreshToken); st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("second retry: %d %v", st, m)
	}
	e.loginRevoked(rt3, at3)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A second retry revokes even when the first retry's answer was also lost.
func TestRefreshGraceSecondReplayRevokes(t *testing.T) {
	e := newEnv(t, envOpts{})
	tok := e.login()
	e.refreshOK(tok.RefreshToken)
	at, rt2 := e.refreshOK(tok.RefreshToken)
	if st, _ := e.refresh(tok.RefreshToken); st != 400 {
		t.Fatalf("second replay: %d", st)
	}
	e.loginRevoked(rt2, at)
}

// Outside the grace period, presenting a rotated refresh token revokes the
// whole login, as RFC 9700 §4.14.2 asks.
func TestRefreshReuseOutsideGraceRevokes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
		wait  time.Duration
	}{
		{"default grace, just after", 0, server.DefaultRefreshTokenReuseGrace},
		{"default grace, much later", 0, time.Hour},
		{"short grace", 2 * time.Second, 2 * time.Second},
		{"grace off", -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{configure: func(c *server.Config) { c.RefreshTokenReuseGrace = tc.grace }})
			tok := e.login()
			at, rt2 := e.refreshOK(tok.RefreshToken)
			e.clock.Advance(tc.wait)
			if st, m := e.refresh(tok.RefreshToken); st != 400 || m["error"] != "invalid_grant" {
				t.Fatalf("reuse: %d %v", st, m)
			}
			e.loginRevoked(rt2, at)
		})
	}
}

// Only the immediate predecessor of the current refresh token qualifies:
// once its successor was used, presenting it is reuse, even within the
// grace period.
func TestRefreshGraceOnlyForImmediatePredecessor(t *testing.T) {
	e := newEnv(t, envOpts{})
	tok := e.login()
	_, rt2 := e.refreshOK(tok.RefreshToken)
	at3, rt3 := e.refreshOK(rt2)
	if st, _ := e.refresh(tok.RefreshToken); st != 400 {
		t.Fatalf("replay of the grandparent token: %d", st)
	}
	e.loginRevoked(rt3, at3)
}

// The grace period holds across replicas sharing one StateStore: rotated on
// A, retried once on B; a second retry on A revokes the login on both.
func TestRefreshGraceAcrossReplicas(t *testing.T) {
	shared := server.NewMemoryStateStore()
	clock := newClock()
	share := func(c *server.Config) { c.State, c.Now = shared, clock.Now }
	a := newEnv(t, envOpts{configure: share, selfSigned: func(c *server.SelfSignedConfig) { c.Now = clock.Now }})
	b := newEnv(t, envOpts{configure: share, selfSigned: func(c *server.SelfSignedConfig) { c.Now = clock.Now }})
	tok := a.login()
	a.refreshOK(tok.RefreshToken)
	at, rt2 := b.refreshOK(tok.RefreshToken)
	if st, _ := a.refresh(tok.RefreshToken); st != 400 {
		t.Fatalf("second retry on A: %d", st)
	}
	b.loginRevoked(rt2, at)
	if st, _ := a.refresh(rt2); st != 400 {
		t.Fatalf("A still refreshes the revoked login: %d", st)
	}
}

// A store that fails while rotating: the client gets a retryable error, and
// its refresh token still works afterwards (nothing was consumed).
func TestRefreshStoreFailureKeepsToken(t *testing.T) {
	spy := &spyState{}
	e := newEnv(t, envOpts{configure: func(c *server.Config) { spy.StateStore = c.State; c.State = spy }})
	tok := e.login()
	spy.failCAS.Store(true)
	st, m, h := e.postForm(server.TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"mytool"}})
	if st != 503 || m["error"] != "temporarily_unavailable" {
		t.Fatalf("rotation with the store down: %d %v %v", st, m, h)
	}
	spy.failCAS.Store(false)
	at, rt2 := e.refreshOK(tok.RefreshToken)
	if st, _ := e.apiMe(at); st != 200 {
		t.Fatalf("after the store recovered: %d", st)
	}
	e.refreshOK(rt2)
}

func TestRefreshTokenReuseGraceConfig(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, err := server.New(server.Config{Issuer: e.issuer, Clients: []server.Client{{ID: "x"}}, Authenticator: fixedAuth{},
		Minter: e.minter, RefreshTokenReuseGrace: 2 * time.Minute})
	if !errors.Is(err, server.ErrInvalidConfig) || !strings.Contains(err.Error(), "RefreshTokenReuseGrace") {
		t.Fatalf("grace above the maximum: %v", err)
	}
}
