package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyloop/keyloop/server"
	"golang.org/x/oauth2"
)

// faultyStore is a StateStore that stops answering on demand: once armed,
// the calls after the first `after` ones fail (without doing anything) as an
// unreachable store would.
type faultyStore struct {
	server.StateStore
	mu     sync.Mutex
	armed  bool
	after  int
	calls  int
	failed int
}

var errDown = fmt.Errorf("test store: connection refused: %w", server.ErrStateUnavailable)

// failFrom makes every call after the next n fail.
func (f *faultyStore) failFrom(n int) {
	f.mu.Lock()
	f.armed, f.after, f.calls, f.failed = true, n, 0, 0
	f.mu.Unlock()
}

// heal makes every call succeed again and reports how many failed.
func (f *faultyStore) heal() (failed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = false
	return f.failed
}

func (f *faultyStore) down() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.armed {
		return false
	}
	f.calls++
	if f.calls > f.after {
		f.failed++
		return true
	}
	return false
}

func (f *faultyStore) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if f.down() {
		return errDown
	}
	return f.StateStore.Put(ctx, key, value, ttl)
}

func (f *faultyStore) Get(ctx context.Context, key string) ([]byte, error) {
	if f.down() {
		return nil, errDown
	}
	return f.StateStore.Get(ctx, key)
}

func (f *faultyStore) Take(ctx context.Context, key string) ([]byte, error) {
	if f.down() {
		return nil, errDown
	}
	return f.StateStore.Take(ctx, key)
}

func (f *faultyStore) Delete(ctx context.Context, key string) error {
	if f.down() {
		return errDown
	}
	return f.StateStore.Delete(ctx, key)
}

func (f *faultyStore) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if f.down() {
		return false, errDown
	}
	return f.StateStore.CompareAndSwap(ctx, key, old, value, ttl)
}

func newFaultyEnv(t *testing.T) (*env, *faultyStore) {
	f := &faultyStore{}
	e := newEnv(t, envOpts{configure: func(c *server.Config) {
		f.StateStore = c.State
		c.State = f
	}})
	return e, f
}

// faultyBatchStore is a faultyStore that is also a server.StateBatchPutter
// (as boltstate is): a PutBatch is one call, failing as a whole.
type faultyBatchStore struct {
	*faultyStore
	mu      sync.Mutex
	batches [][]string // the keys of each PutBatch
}

func (f *faultyBatchStore) PutBatch(ctx context.Context, puts []server.StatePut) error {
	if f.down() {
		return errDown
	}
	var keys []string
	for _, p := range puts {
		if err := f.StateStore.Put(ctx, p.Key, p.Value, p.TTL); err != nil {
			return err
		}
		keys = append(keys, p.Key)
	}
	f.mu.Lock()
	f.batches = append(f.batches, keys)
	f.mu.Unlock()
	return nil
}

// faultyEnvs runs fn on a faultyStore, then on a faultyBatchStore.
func faultyEnvs(t *testing.T, fn func(t *testing.T, e *env, f *faultyStore)) {
	t.Run("Put", func(t *testing.T) {
		e, f := newFaultyEnv(t)
		fn(t, e, f)
	})
	t.Run("PutBatch", func(t *testing.T) {
		f := &faultyBatchStore{faultyStore: &faultyStore{}}
		e := newEnv(t, envOpts{configure: func(c *server.Config) {
			f.StateStore = c.State
			c.State = f
		}})
		fn(t, e, f.faultyStore)
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.batches) == 0 {
			t.Fatal("the handler never called PutBatch")
		}
		for _, keys := range f.batches {
			if len(keys) < 2 {
				t.Errorf("PutBatch of %d records %q; the handler should put single records with Put", len(keys), keys)
			}
		}
	})
}

// checkUnavailable fails unless a token or revocation endpoint answer is
// RFC 6749 temporarily_unavailable with HTTP 503 and Retry-After.
func checkUnavailable(t *testing.T, what string, status int, m map[string]any, h http.Header) {
	t.Helper()
	if status != http.StatusServiceUnavailable || m["error"] != "temporarily_unavailable" || h.Get("Retry-After") == "" {
		t.Fatalf("%s with the state store down: %d %v (Retry-After %q); want 503 temporarily_unavailable with Retry-After",
			what, status, m, h.Get("Retry-After"))
	}
}

// A code exchange whose state store fails at any step answers 503 and
// leaves the code redeemable exactly once when the store is back; an
// exchange that succeeded leaves nothing to redeem again.
func TestCodeExchangeWhenStateStoreFails(t *testing.T) {
	faultyEnvs(t, testCodeExchangeWhenStateStoreFails)
}

func testCodeExchangeWhenStateStoreFails(t *testing.T, e *env, f *faultyStore) {
	for n := 0; ; n++ {
		code, verifier, redirect := e.codeFlow("mytool")
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
			"redirect_uri": {redirect}, "client_id": {"mytool"}}
		f.failFrom(n)
		st, m, h := e.postForm(server.TokenPath, form)
		failed := f.heal()
		if failed == 0 {
			if st != 200 {
				t.Fatalf("exchange with a working store: %d %v", st, m)
			}
			if st, _, _ := e.postForm(server.TokenPath, form); st != 400 {
				t.Fatalf("a redeemed code was accepted again: %d", st)
			}
			return // every step has been made to fail once
		}
		checkUnavailable(t, fmt.Sprintf("exchange failing after %d store calls", n), st, m, h)
		st, m, _ = e.postForm(server.TokenPath, form)
		if st != 200 {
			t.Fatalf("after a failure at store call %d, the retried exchange got %d %v; want the code still redeemable", n+1, st, m)
		}
		if at, _ := m["access_token"].(string); at != "" {
			if st, _ := e.apiMe(at); st != 200 {
				t.Fatalf("the retried exchange's token is refused (%d)", st)
			}
		}
		if st, _, _ := e.postForm(server.TokenPath, form); st != 400 {
			t.Fatalf("after a failure at store call %d, the code was redeemed twice: %d", n+1, st)
		}
	}
}

// A refresh whose state store fails at any step answers 503 and leaves the
// presented refresh token usable exactly once when the store is back: not
// lost (which would later look like reuse and end the login), not doubled.
func TestRefreshWhenStateStoreFails(t *testing.T) {
	faultyEnvs(t, testRefreshWhenStateStoreFails)
}

func testRefreshWhenStateStoreFails(t *testing.T, e *env, f *faultyStore) {
	rt := e.login().RefreshToken
	for n := 0; ; n++ {
		f.failFrom(n)
		st, m, h := e.postForm(server.TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"mytool"}})
		failed := f.heal()
		if failed == 0 {
			if st != 200 {
				t.Fatalf("refresh with a working store: %d %v", st, m)
			}
			return
		}
		checkUnavailable(t, fmt.Sprintf("refresh failing after %d store calls", n), st, m, h)
		st, m = e.refresh(rt)
		next, _ := m["refresh_token"].(string)
		if st != 200 || next == "" {
			t.Fatalf("after a failure at store call %d, retrying the refresh got %d %v; want the token still usable", n+1, st, m)
		}
		at, _ := m["access_token"].(string)
		if st, _ := e.apiMe(at); st != 200 {
			t.Fatalf("after a failure at store call %d, the retried refresh's access token is refused (%d): the login was ended", n+1, st)
		}
		rt = next
	}
}

// The consent decision with the state store failing at any step shows a
// 503 page and leaves the login request answerable once the store is back.
func TestConsentWhenStateStoreFails(t *testing.T) {
	e, f := newFaultyEnv(t)
	cfg := e.oauthConfig("mytool")
	for n := 0; ; n++ {
		b := newBrowser(t)
		state := fmt.Sprint("state-", n)
		p := b.get(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		consent := b.submit(p, url.Values{"email": {"ada@example.com"}})
		f.failFrom(n)
		got := b.submit(consent, url.Values{"decision": {"authorize"}})
		failed := f.heal()
		if failed == 0 {
			if got.body != "callback received" || e.lastCallback().Get("state") != state {
				t.Fatalf("decision with a working store: %d %s", got.status, got.body)
			}
			return
		}
		if got.status != http.StatusServiceUnavailable || got.header.Get("Retry-After") == "" ||
			!strings.Contains(got.body, "cannot reach its storage") {
			t.Fatalf("decision failing after %d store calls: %d (Retry-After %q)\n%s", n, got.status, got.header.Get("Retry-After"), got.body)
		}
		if got := b.submit(consent, url.Values{"decision": {"authorize"}}); got.body != "callback received" || e.lastCallback().Get("state") != state {
			t.Fatalf("after a failure at store call %d, deciding again got %d\n%s", n+1, got.status, got.body)
		}
		if got := b.submit(consent, url.Values{"decision": {"authorize"}}); got.status != 400 {
			t.Fatalf("after a failure at store call %d, a second decision was accepted: %d", n+1, got.status)
		}
	}
}

// Every other step that needs the state store says so instead of
// pretending: the authorization request goes back to the CLI as
// temporarily_unavailable (RFC 6749 §4.1.2.1), the sign-in page is a 503
// page, and revocation answers 503 rather than "revoked".
func TestOtherStepsWhenStateStoreIsDown(t *testing.T) {
	e, f := newFaultyEnv(t)
	cfg := e.oauthConfig("mytool")
	authURL := cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))

	f.failFrom(0)
	resp, err := noRedirects().Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Query().Get("error") != "temporarily_unavailable" || loc.Query().Get("state") != "st" {
		t.Fatalf("authorize with the store down: %d → %s; want a redirect to the CLI with error=temporarily_unavailable", resp.StatusCode, loc)
	}
	f.heal()

	b := newBrowser(t)
	signin := b.get(authURL)
	f.failFrom(0)
	p := b.get(signin.url.String())
	if p.status != http.StatusServiceUnavailable || p.header.Get("Retry-After") == "" || !strings.Contains(p.body, "cannot reach its storage") {
		t.Fatalf("sign-in page with the store down: %d\n%s", p.status, p.body)
	}
	p = b.submit(signin, url.Values{"email": {"ada@example.com"}})
	if p.status != http.StatusServiceUnavailable {
		t.Fatalf("sign-in POST with the store down: %d\n%s", p.status, p.body)
	}
	f.heal()
	if p := b.submit(signin, url.Values{"email": {"ada@example.com"}}); !strings.Contains(p.body, ">Authorize</button>") {
		t.Fatalf("sign-in once the store is back: %d\n%s", p.status, p.body)
	}

	// Revoking a refresh token: a 503 revoked nothing (the token still
	// works); a 200 revoked the login, even if deleting the token failed.
	for n := 0; ; n++ {
		tok := e.login()
		f.failFrom(n)
		st, m, h := e.postForm(server.RevokePath, url.Values{"token": {tok.RefreshToken}, "client_id": {"mytool"}})
		failed := f.heal()
		if st == 200 {
			if rst, _ := e.refresh(tok.RefreshToken); rst != 400 {
				t.Fatalf("revoke failing after %d store calls answered 200, but the refresh token still works (%d)", n, rst)
			}
			if failed == 0 {
				break
			}
			continue
		}
		checkUnavailable(t, fmt.Sprintf("revoking a refresh token failing after %d store calls", n), st, m, h)
		if rst, _ := e.refresh(tok.RefreshToken); rst != 200 {
			t.Fatalf("revoke failing after %d store calls answered 503, but the login ended anyway (%d)", n, rst)
		}
	}

	tok := e.login()
	f.failFrom(0)
	st, m, h := e.postForm(server.RevokePath, url.Values{"token": {tok.AccessToken}})
	f.heal()
	checkUnavailable(t, "revoking an access token", st, m, h)
}

// cancelingStore is a StateStore without StateSwapPutter whose refresh
// rotation (the compare-and-swap of a refresh record) fails because the
// client went away: it cancels the request's context and answers with
// that error. It records the refresh records stored meanwhile.
type cancelingStore struct {
	server.StateStore
	mu     sync.Mutex
	cancel context.CancelFunc // set: the next rotation cancels
	puts   []string
}

func (s *cancelingStore) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	s.mu.Lock()
	if s.cancel != nil && strings.HasPrefix(key, "keyloop:rt:") {
		s.puts = append(s.puts, key)
	}
	s.mu.Unlock()
	return s.StateStore.Put(ctx, key, value, ttl)
}

func (s *cancelingStore) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil && strings.HasPrefix(key, "keyloop:rt:") {
		cancel()
		return false, fmt.Errorf("test store: %w (%w)", ctx.Err(), server.ErrStateUnavailable)
	}
	return s.StateStore.CompareAndSwap(ctx, key, old, value, ttl)
}

// A refresh whose rotation fails because the client disconnected deletes
// the successor it stored, which was never handed out, although the
// request's context is canceled by then.
func TestRefreshCanceledDropsUnusedSuccessor(t *testing.T) {
	s := &cancelingStore{}
	e := newEnv(t, envOpts{configure: func(c *server.Config) {
		s.StateStore = c.State
		c.State = s
	}})
	rt := e.login().RefreshToken
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.mu.Lock()
	s.cancel = cancel
	s.mu.Unlock()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"mytool"}}
	req := httptest.NewRequest(http.MethodPost, server.TokenPath, strings.NewReader(form.Encode())).WithContext(ctx)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code == http.StatusOK {
		t.Fatalf("the refresh succeeded although its rotation failed: %s", rec.Body)
	}
	s.mu.Lock()
	puts := s.puts
	s.mu.Unlock()
	if len(puts) == 0 {
		t.Fatal("no refresh record was stored before the rotation: the test no longer exercises the two-step path")
	}
	for _, k := range puts {
		if _, err := e.state.Get(context.Background(), k); !errors.Is(err, server.ErrStateNotFound) {
			t.Errorf("the unused successor's record %.20s… is still stored (Get: %v)", k, err)
		}
	}
}
