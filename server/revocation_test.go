package server_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyloop/keyloop/server"
)

// countingStore counts Gets of revocation markers, and those whose context
// gives the store at most 100 ms (probes).
type countingStore struct {
	server.StateStore
	gets, probes atomic.Int32
}

func (c *countingStore) Get(ctx context.Context, key string) ([]byte, error) {
	if strings.HasPrefix(key, "keyloop:revoked") {
		c.gets.Add(1)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= 100*time.Millisecond {
			c.probes.Add(1)
		}
	}
	return c.StateStore.Get(ctx, key)
}

// The bearer middleware does not read the state store on every request:
// each login session and subject is looked up at most once per
// RevocationCacheTTL.
func TestRequireTokenCachesRevocationLookups(t *testing.T) {
	for _, tc := range []struct {
		ttl      time.Duration
		max, min int32
	}{
		{time.Hour, 2, 1},    // "sid" and "sub", once
		{-1, 2 * 50, 2 * 50}, // no cache: two Gets per request
	} {
		cs := &countingStore{}
		e := newEnv(t, envOpts{configure: func(c *server.Config) {
			cs.StateStore = c.State
			c.State = cs
			c.RevocationCacheTTL = tc.ttl
		}})
		tok := e.login()
		cs.gets.Store(0)
		for range 50 {
			if st, _ := e.apiMe(tok.AccessToken); st != 200 {
				t.Fatalf("RevocationCacheTTL %v: %d", tc.ttl, st)
			}
		}
		if n := cs.gets.Load(); n > tc.max || n < tc.min {
			t.Errorf("RevocationCacheTTL %v: 50 requests read %d revocation markers; want %d to %d", tc.ttl, n, tc.min, tc.max)
		}
	}
}

// A revocation recorded by one instance is honoured by another instance's
// verifier (sharing the state store) within its RevocationCacheTTL, and by
// the recording instance at once.
func TestRevocationSeenByOtherInstance(t *testing.T) {
	const bound = 200 * time.Millisecond
	e := newEnv(t, envOpts{configure: func(c *server.Config) { c.RevocationCacheTTL = time.Hour }})
	jwks, _ := e.minter.JWKS()
	other, err := server.NewVerifier(server.VerifierConfig{Issuer: e.issuer, JWKS: jwks, Now: e.clock.Now,
		State: e.state, RevocationCacheTTL: bound})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, revoke := range []struct {
		name string
		do   func(tok string) error
	}{
		{"logout", func(tok string) error {
			if st, _, _ := e.postForm(server.RevokePath, map[string][]string{"token": {tok}}); st != 200 {
				t.Fatalf("revoke: %d", st)
			}
			return nil
		}},
		{"RevokeSubject", func(string) error {
			e.clock.Advance(time.Second)
			return e.h.RevokeSubject(ctx, server.DevSubject("ada@example.com"))
		}},
	} {
		e.clock.Advance(time.Second)
		tok := e.login()
		// Both instances have looked the token up: "not revoked" is cached.
		if st, _ := e.apiMe(tok.AccessToken); st != 200 {
			t.Fatalf("%s: %d", revoke.name, st)
		}
		if _, err := other.Verify(ctx, tok.AccessToken); err != nil {
			t.Fatalf("%s: %v", revoke.name, err)
		}
		start := time.Now()
		if err := revoke.do(tok.AccessToken); err != nil {
			t.Fatal(err)
		}
		if st, _ := e.apiMe(tok.AccessToken); st != 401 {
			t.Fatalf("%s: the instance that revoked still accepts the token (%d) despite its 1h cache", revoke.name, st)
		}
		for {
			_, err := other.Verify(ctx, tok.AccessToken)
			if err != nil {
				if !errors.Is(err, server.ErrTokenRevoked) {
					t.Fatalf("%s: %v; want ErrTokenRevoked", revoke.name, err)
				}
				break
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("%s: the other instance still accepts the token after 30s (bound %v)", revoke.name, bound)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%s: the other instance refused the token after %v (bound %v)", revoke.name, time.Since(start).Round(time.Millisecond), bound)
	}
}

// While the state store cannot answer, the middleware keeps verifying
// signatures; what it does about revocation is the application's choice:
// fail closed (503 with Retry-After once its cached answer is stale) or
// fail open (accept verified tokens). A revocation it already knows is
// honoured either way, and an outage does not cost every request a store
// timeout.
func TestRequireTokenWhenStateStoreIsDown(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		f := &faultyStore{}
		cs := &countingStore{StateStore: f}
		e := newEnv(t, envOpts{configure: func(c *server.Config) {
			f.StateStore = c.State
			c.State = cs
			c.RevocationCacheTTL = 50 * time.Millisecond
			c.RevocationFailOpen = failOpen
		}})
		live, revoked := e.login(), e.login()
		if st, _, _ := e.postForm(server.RevokePath, map[string][]string{"token": {revoked.RefreshToken}}); st != 200 {
			t.Fatal(st)
		}
		if st, _ := e.apiMe(revoked.AccessToken); st != 401 {
			t.Fatalf("revoked token: %d", st)
		}
		if st, _ := e.apiMe(live.AccessToken); st != 200 {
			t.Fatal(st)
		}
		f.failFrom(0)
		time.Sleep(60 * time.Millisecond) // let the cached answers go stale
		cs.gets.Store(0)
		cs.probes.Store(0)
		start := time.Now()
		want := http.StatusServiceUnavailable
		if failOpen {
			want = http.StatusOK
		}
		for range 20 {
			st, h := e.apiMe(live.AccessToken)
			if st != want || (st == 503 && h.Get("Retry-After") == "") {
				t.Fatalf("RevocationFailOpen=%v, store down: live token got %d (Retry-After %q); want %d", failOpen, st, h.Get("Retry-After"), want)
			}
			if st, _ := e.apiMe(revoked.AccessToken); st != 401 {
				t.Fatalf("RevocationFailOpen=%v, store down: a token known to be revoked got %d; want 401", failOpen, st)
			}
			if st, _ := e.apiMe("not.a.token"); st != 401 {
				t.Fatalf("RevocationFailOpen=%v, store down: a forged token got %d; want 401", failOpen, st)
			}
		}
		// After the first failure, lookups give the store a short deadline
		// (a full timeout at most once a second), so an outage does not
		// cost every request a store timeout.
		full := cs.gets.Load() - cs.probes.Load()
		if limit := 1 + int32(time.Since(start)/time.Second); cs.probes.Load() == 0 || full > limit {
			t.Errorf("RevocationFailOpen=%v: during the outage %d lookups had the full store timeout and %d a short probe deadline; want at most %d full",
				failOpen, full, cs.probes.Load(), limit)
		}
		f.heal()
		if st, _ := e.apiMe(live.AccessToken); st != 200 {
			t.Fatalf("RevocationFailOpen=%v: the store is back but the live token got %d", failOpen, st)
		}
	}
}

// slowRevocationStore answers the first Get of a session's revocation
// marker as it stood when read, but only once the test lets it return.
type slowRevocationStore struct {
	server.StateStore
	armed      atomic.Bool
	read, done chan struct{}
}

func (s *slowRevocationStore) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := s.StateStore.Get(ctx, key)
	if strings.HasPrefix(key, "keyloop:revoked") && s.armed.CompareAndSwap(true, false) {
		close(s.read)
		<-s.done
	}
	return v, err
}

// The revocation bound counts from when the state store was read, not from
// when its slow answer arrived: a logout made while the lookup was on its
// way is honoured once RevocationCacheTTL has passed since the read.
func TestRevocationBoundCountsFromTheRead(t *testing.T) {
	const bound = 100 * time.Millisecond
	e := newEnv(t, envOpts{})
	slow := &slowRevocationStore{StateStore: e.state, read: make(chan struct{}), done: make(chan struct{})}
	jwks, _ := e.minter.JWKS()
	other, err := server.NewVerifier(server.VerifierConfig{Issuer: e.issuer, JWKS: jwks, Now: e.clock.Now,
		State: slow, RevocationCacheTTL: bound})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok := e.login()
	slow.armed.Store(true)
	first := make(chan error, 1)
	go func() { _, err := other.Verify(ctx, tok.AccessToken); first <- err }()
	<-slow.read // "not revoked" was read ...
	if st, _, _ := e.postForm(server.RevokePath, map[string][]string{"token": {tok.AccessToken}}); st != 200 {
		t.Fatalf("revoke: %d", st)
	}
	time.Sleep(2 * bound) // ... longer ago than the bound when it arrives
	close(slow.done)
	if err := <-first; err != nil {
		t.Fatalf("the verification that read before the logout: %v", err)
	}
	if _, err := other.Verify(ctx, tok.AccessToken); !errors.Is(err, server.ErrTokenRevoked) {
		t.Fatalf("verification after the bound since the read: %v; want ErrTokenRevoked", err)
	}
}
