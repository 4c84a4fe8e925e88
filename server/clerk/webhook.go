package clerk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// WebhookTolerance is how far a webhook's svix-timestamp may be from now,
// Svix's own tolerance.
const WebhookTolerance = 5 * time.Minute

// MaxWebhookBody bounds the size of a webhook request body.
const MaxWebhookBody = 1 << 20

// Revoker ends keyloop login sessions; *server.Handler implements it.
type Revoker interface {
	// RevokeSubject revokes every login session of the user ("sub").
	RevokeSubject(ctx context.Context, subject string) error
	// RevokeIdentitySession revokes the login sessions that came from the
	// Clerk session.
	RevokeIdentitySession(ctx context.Context, clerkSessionID string) error
}

// ReplayGuard remembers webhook message IDs (svix-id) so a captured
// delivery cannot be replayed within the timestamp tolerance. Several
// instances behind one endpoint need one shared ReplayGuard.
// Implementations must be safe for concurrent use.
type ReplayGuard interface {
	// Claim records id until the time until and reports whether this call
	// was the first to claim it (an unexpired earlier claim means false).
	Claim(ctx context.Context, id string, until time.Time) (first bool, err error)
	// Release forgets id, so a redelivery of a message whose handling
	// failed is accepted.
	Release(ctx context.Context, id string) error
}

// NewMemoryReplayGuard returns a ReplayGuard kept in this process's memory.
// now is its clock; nil means time.Now.
func NewMemoryReplayGuard(now func() time.Time) ReplayGuard {
	if now == nil {
		now = time.Now
	}
	return &memoryReplayGuard{now: now, seen: map[string]time.Time{}}
}

type memoryReplayGuard struct {
	now   func() time.Time
	mu    sync.Mutex
	seen  map[string]time.Time
	swept time.Time
}

func (g *memoryReplayGuard) Claim(_ context.Context, id string, until time.Time) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if now.Sub(g.swept) > time.Minute {
		for k, t := range g.seen {
			if !now.Before(t) {
				delete(g.seen, k)
			}
		}
		g.swept = now
	}
	if t, ok := g.seen[id]; ok && now.Before(t) {
		return false, nil
	}
	g.seen[id] = until
	return true, nil
}

func (g *memoryReplayGuard) Release(_ context.Context, id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.seen, id)
	return nil
}

// WebhookHandler receives Clerk's webhooks (delivered by Svix). It answers:
// 200 for handled and ignored events and for replays of a delivered
// message (which are not handled again); 400 for a bad or missing
// signature, a timestamp outside WebhookTolerance, or a malformed event;
// 405 for other methods; 413 for bodies over MaxWebhookBody; and 500 when
// the Revoker fails (Svix then retries).
//
// Events (Clerk's webhook event catalogue; clerk/javascript
// packages/backend/src/api/resources/Webhooks.ts):
//
//   - "user.deleted" revokes the user's login sessions and access tokens
//     (Revoker.RevokeSubject with data.id);
//   - "user.updated" with data.banned or data.locked true does the same.
//     Clerk has no separate ban or lock event: banning (which also revokes
//     the user's Clerk sessions) and locking (after too many failed sign-in
//     attempts, or by an administrator) arrive as user.updated. An attacker
//     who locks an account by guessing passwords thereby also ends that
//     user's CLI logins; the user signs in again once unlocked;
//   - "session.ended", "session.revoked" and "session.removed" revoke the
//     login sessions of that Clerk session (Revoker.RevokeIdentitySession
//     with data.id), so their refresh tokens stop working.
//
// Others are ignored.
type WebhookHandler struct {
	wh      *svix.Webhook
	rev     Revoker
	replays ReplayGuard
	now     func() time.Time
}

// WebhookHandler returns the webhook endpoint, verifying deliveries with
// Config.WebhookSecret and revoking through rev.
func (p *Provider) WebhookHandler(rev Revoker) (*WebhookHandler, error) {
	if p.cfg.WebhookSecret == "" {
		return nil, fmt.Errorf("%w: WebhookSecret is empty", ErrConfig)
	}
	if rev == nil {
		return nil, fmt.Errorf("%w: the webhook handler needs a Revoker", ErrConfig)
	}
	wh, err := svix.NewWebhook(p.cfg.WebhookSecret)
	if err != nil {
		return nil, fmt.Errorf("%w: WebhookSecret is not a Svix signing secret", ErrConfig)
	}
	return &WebhookHandler{wh: wh, rev: rev, replays: p.cfg.WebhookReplays, now: p.cfg.Now}, nil
}

// ServeHTTP implements http.Handler.
func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "clerk: webhook body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "clerk: reading the webhook body failed", http.StatusBadRequest)
		return
	}
	_, err = h.Handle(r.Context(), r.Header, body)
	switch {
	case err == nil, errors.Is(err, ErrWebhookReplay):
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"received":true}`)
	case errors.Is(err, errRevoke):
		http.Error(w, "clerk: handling the event failed", http.StatusInternalServerError)
	default:
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
}

var (
	errRevoke       = errors.New("clerk: revoking failed")
	errWebhookEvent = errors.New("clerk: malformed webhook event")
)

// Handle verifies one delivery (its Svix headers and raw body) and acts on
// the event; it returns the event type. Errors wrap ErrWebhookSignature,
// ErrWebhookTimestamp, ErrWebhookReplay, or the Revoker's error.
func (h *WebhookHandler) Handle(ctx context.Context, header http.Header, body []byte) (string, error) {
	id, ts, sig := header.Get("svix-id"), header.Get("svix-timestamp"), header.Get("svix-signature")
	if id == "" && ts == "" && sig == "" {
		id, ts, sig = header.Get("webhook-id"), header.Get("webhook-timestamp"), header.Get("webhook-signature")
	}
	if id == "" || ts == "" || sig == "" {
		return "", fmt.Errorf("%w: svix-id, svix-timestamp or svix-signature header missing", ErrWebhookSignature)
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: svix-timestamp is not a number", ErrWebhookTimestamp)
	}
	sent, now := time.Unix(secs, 0), h.now()
	if now.Sub(sent) > WebhookTolerance || sent.Sub(now) > WebhookTolerance {
		return "", ErrWebhookTimestamp
	}
	// The timestamp was checked above against the injected clock.
	if err := h.wh.VerifyIgnoringTimestamp(body, header); err != nil {
		return "", ErrWebhookSignature
	}
	var ev struct {
		Type string `json:"type"`
		Data struct {
			ID     string `json:"id"`
			Banned bool   `json:"banned"`
			Locked bool   `json:"locked"`
		} `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&ev); err != nil || ev.Type == "" {
		return "", fmt.Errorf("%w: no event type", errWebhookEvent)
	}
	first, err := h.replays.Claim(ctx, id, sent.Add(WebhookTolerance))
	if err != nil {
		return ev.Type, fmt.Errorf("%w: replay guard: %w", errRevoke, err)
	}
	if !first {
		return ev.Type, ErrWebhookReplay
	}
	var revokeErr error
	switch ev.Type {
	case "user.deleted":
		if ev.Data.ID == "" {
			revokeErr = fmt.Errorf("%w: %s without data.id", errWebhookEvent, ev.Type)
			break
		}
		revokeErr = h.rev.RevokeSubject(ctx, ev.Data.ID)
	case "user.updated":
		if !ev.Data.Banned && !ev.Data.Locked {
			break
		}
		if ev.Data.ID == "" {
			revokeErr = fmt.Errorf("%w: %s without data.id", errWebhookEvent, ev.Type)
			break
		}
		revokeErr = h.rev.RevokeSubject(ctx, ev.Data.ID)
	case "session.ended", "session.revoked", "session.removed":
		if ev.Data.ID == "" {
			revokeErr = fmt.Errorf("%w: %s without data.id", errWebhookEvent, ev.Type)
			break
		}
		revokeErr = h.rev.RevokeIdentitySession(ctx, ev.Data.ID)
	}
	if revokeErr != nil {
		_ = h.replays.Release(context.WithoutCancel(ctx), id)
		if errors.Is(revokeErr, errWebhookEvent) {
			return ev.Type, revokeErr
		}
		return ev.Type, fmt.Errorf("%w: %s: %w", errRevoke, ev.Type, revokeErr)
	}
	return ev.Type, nil
}
