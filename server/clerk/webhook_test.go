package clerk_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/keyloop/keyloop/server/clerk"
	"github.com/keyloop/keyloop/server/clerk/clerktest"
)

type recordingRevoker struct {
	mu       sync.Mutex
	calls    []string
	failNext error
}

func (r *recordingRevoker) record(call string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.failNext; err != nil {
		r.failNext = nil
		return err
	}
	r.calls = append(r.calls, call)
	return nil
}

func (r *recordingRevoker) RevokeSubject(_ context.Context, sub string) error {
	return r.record("subject " + sub)
}

func (r *recordingRevoker) RevokeIdentitySession(_ context.Context, sid string) error {
	return r.record("session " + sid)
}

func (r *recordingRevoker) Calls() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.calls, ", ")
}

func webhookServer(t *testing.T, e *env) (*httptest.Server, *recordingRevoker) {
	t.Helper()
	rev := &recordingRevoker{}
	h, err := e.p.WebhookHandler(rev)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, rev
}

func TestWebhookEvents(t *testing.T) {
	e := newEnv(t, nil)
	srv, rev := webhookServer(t, e)
	ctx := context.Background()
	send := func(typ string, data any) int {
		t.Helper()
		code, err := e.fake.SendWebhook(ctx, srv.URL, typ, data)
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	if code := send("user.deleted", map[string]any{"id": e.user.ID, "object": "user", "deleted": true}); code != 200 {
		t.Fatalf("user.deleted: status %d", code)
	}
	for _, typ := range []string{"session.ended", "session.revoked", "session.removed"} {
		if code := send(typ, e.fake.SessionData(e.sess.ID)); code != 200 {
			t.Fatalf("%s: status %d", typ, code)
		}
	}
	// An ordinary user.updated is ignored; Clerk sends bans and locks as
	// user.updated with "banned" or "locked" set (there is no user.banned
	// or user.locked event), and those revoke.
	if code := send("user.updated", e.fake.UserData(e.user.ID)); code != 200 {
		t.Fatalf("user.updated: status %d", code)
	}
	s := "session " + e.sess.ID
	if got, want := rev.Calls(), "subject "+e.user.ID+", "+s+", "+s+", "+s; got != want {
		t.Errorf("revocations = %q, want %q", got, want)
	}
	banned := e.fake.CreateUser("banned@example.com")
	locked := e.fake.CreateUser("locked@example.com")
	if err := e.fake.BanUser(banned.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.fake.LockUser(locked.ID); err != nil {
		t.Fatal(err)
	}
	for _, u := range []clerktest.User{banned, locked} {
		if code := send("user.updated", e.fake.UserData(u.ID)); code != 200 {
			t.Fatalf("user.updated: status %d", code)
		}
	}
	if got, want := rev.Calls(), "subject "+e.user.ID+", "+s+", "+s+", "+s+", subject "+banned.ID+", subject "+locked.ID; got != want {
		t.Errorf("revocations = %q, want %q", got, want)
	}
	if code := send("user.updated", map[string]any{"object": "user", "banned": true}); code != 400 {
		t.Errorf("user.updated banned without id: status %d, want 400", code)
	}
	if code := send("user.deleted", map[string]any{"object": "user"}); code != 400 {
		t.Errorf("user.deleted without id: status %d, want 400", code)
	}
}

func TestWebhookRefusals(t *testing.T) {
	e := newEnv(t, nil)
	srv, rev := webhookServer(t, e)
	body := clerktest.WebhookEvent("user.deleted", map[string]any{"id": e.user.ID})
	post := func(h http.Header, b []byte) int { t.Helper(); return postWebhook(t, srv.URL, h, b) }
	now := e.clock.Now()
	otherSecret, err := svix.NewWebhook("whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ=")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		h    http.Header
		b    []byte
		want int
	}{
		{"tampered body", e.fake.SignWebhook("msg_1", now, body), bytes.Replace(body, []byte(e.user.ID), []byte("user_other"), 1), 400},
		{"signature of another id", func() http.Header {
			h := e.fake.SignWebhook("msg_2", now, body)
			h.Set("svix-id", "msg_3")
			return h
		}(), body, 400},
		{"signed with another endpoint's secret", func() http.Header {
			h := e.fake.SignWebhook("msg_9", now, body)
			sig, _ := otherSecret.Sign("msg_9", now, body)
			h.Set("svix-signature", sig)
			return h
		}(), body, 400},
		{"no signature", func() http.Header {
			h := e.fake.SignWebhook("msg_4", now, body)
			h.Del("svix-signature")
			return h
		}(), body, 400},
		{"stale timestamp", e.fake.SignWebhook("msg_5", now.Add(-clerk.WebhookTolerance-time.Second), body), body, 400},
		{"future timestamp", e.fake.SignWebhook("msg_6", now.Add(clerk.WebhookTolerance+time.Second), body), body, 400},
		{"too large", e.fake.SignWebhook("msg_7", now, body), bytes.Repeat([]byte(" "), clerk.MaxWebhookBody+1), 413},
	} {
		if got := post(tc.h, tc.b); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	if calls := rev.Calls(); calls != "" {
		t.Errorf("refused deliveries revoked: %s", calls)
	}
	// Within the tolerance, slightly old and slightly new timestamps pass.
	if got := post(e.fake.SignWebhook("msg_8", now.Add(-clerk.WebhookTolerance+time.Second), body), body); got != 200 {
		t.Errorf("timestamp inside the tolerance: status %d", got)
	}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d", resp.StatusCode)
	}
}

func TestWebhookErrors(t *testing.T) {
	e := newEnv(t, nil)
	rev := &recordingRevoker{}
	h, err := e.p.WebhookHandler(rev)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	body := clerktest.WebhookEvent("session.ended", map[string]any{"id": e.sess.ID})
	now := e.clock.Now()
	if _, err := h.Handle(ctx, e.fake.SignWebhook("m1", now.Add(-time.Hour), body), body); !errors.Is(err, clerk.ErrWebhookTimestamp) {
		t.Errorf("stale: %v", err)
	}
	if _, err := h.Handle(ctx, e.fake.SignWebhook("m1", now, body), append(body, ' ')); !errors.Is(err, clerk.ErrWebhookSignature) {
		t.Errorf("bad signature: %v", err)
	}
	if typ, err := h.Handle(ctx, e.fake.SignWebhook("m1", now, body), body); err != nil || typ != "session.ended" {
		t.Fatalf("good delivery: %q, %v", typ, err)
	}
	// The same delivery again is a replay: refused, not handled again.
	if _, err := h.Handle(ctx, e.fake.SignWebhook("m1", now, body), body); !errors.Is(err, clerk.ErrWebhookReplay) {
		t.Errorf("replay: %v", err)
	}
	if got := rev.Calls(); got != "session "+e.sess.ID {
		t.Errorf("calls = %q", got)
	}
}

// A delivery whose revocation failed answers 500, and Svix's retry (same
// svix-id, new timestamp and signature) is handled, not taken for a replay.
func TestWebhookRetryAfterFailure(t *testing.T) {
	e := newEnv(t, nil)
	srv, rev := webhookServer(t, e)
	rev.failNext = errors.New("state store down")
	body := clerktest.WebhookEvent("user.deleted", map[string]any{"id": e.user.ID})
	post := func(h http.Header) int { t.Helper(); return postWebhook(t, srv.URL, h, body) }
	if got := post(e.fake.SignWebhook("msg_r", e.clock.Now(), body)); got != 500 {
		t.Fatalf("failing revoker: status %d, want 500", got)
	}
	e.clock.Advance(30 * time.Second)
	if got := post(e.fake.SignWebhook("msg_r", e.clock.Now(), body)); got != 200 {
		t.Fatalf("retry: status %d, want 200", got)
	}
	if got := post(e.fake.SignWebhook("msg_r", e.clock.Now(), body)); got != 200 {
		t.Fatalf("replay of the retry: status %d, want 200", got)
	}
	if got := rev.Calls(); got != "subject "+e.user.ID {
		t.Errorf("calls = %q, want one revocation", got)
	}
}

func TestMemoryReplayGuard(t *testing.T) {
	clock := newClock()
	g := clerk.NewMemoryReplayGuard(clock.Now)
	ctx := context.Background()
	until := clock.Now().Add(clerk.WebhookTolerance)
	if first, _ := g.Claim(ctx, "a", until); !first {
		t.Fatal("first claim refused")
	}
	if first, _ := g.Claim(ctx, "a", until); first {
		t.Fatal("second claim accepted")
	}
	clock.Advance(clerk.WebhookTolerance)
	if first, _ := g.Claim(ctx, "a", clock.Now().Add(time.Minute)); !first {
		t.Fatal("claim after expiry refused")
	}
	_ = g.Release(ctx, "a")
	if first, _ := g.Claim(ctx, "a", clock.Now().Add(time.Minute)); !first {
		t.Fatal("claim after release refused")
	}
}

// postWebhook POSTs body with the headers h to url and returns the status.
func postWebhook(t *testing.T, url string, h http.Header, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
