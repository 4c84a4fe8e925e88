package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// DefaultRevocationCacheTTL is how stale a verifier's view of revocations
// may be when VerifierConfig.RevocationCacheTTL (or Config's) is zero.
const DefaultRevocationCacheTTL = 5 * time.Second

// ErrRevocationUnavailable is wrapped by Verifier.Verify when a token passed
// every check but its revocation status could not be read from the
// StateStore and the verifier fails closed (the default). It does not wrap
// ErrInvalidToken: the token may be fine. RequireToken answers HTTP 503
// with Retry-After for it.
var ErrRevocationUnavailable = errors.New("server: revocation status unavailable")

// After a failed lookup, for revocationRetry, lookups give the StateStore
// at most revocationProbe to answer, so that an outage does not cost every
// API request a full store timeout, and recovery is seen at once.
const (
	revocationRetry = time.Second
	revocationProbe = 100 * time.Millisecond
)

// maxRevocationEntries bounds the cache (about 100 bytes an entry); past
// it, expired entries are dropped, and if that is not enough, all of them.
const maxRevocationEntries = 1 << 16

// revocations answers "was this login session or subject revoked?" for a
// Verifier, from a local cache of StateStore lookups. A lookup's answer,
// revoked or not, is trusted for ttl of the system clock (not the
// verifier's Now, which tests freeze), counted from when the store was
// read; concurrent misses of one key share one lookup. Revocations the local Handler records are learnt at once.
type revocations struct {
	st       StateStore
	ttl      time.Duration // ≤ 0: no cache
	failOpen bool
	log      *slog.Logger

	mu        sync.Mutex
	m         map[string]revEntry
	inflight  map[string]*revLookup
	downUntil time.Time // the store failed: skip it until then
}

type revEntry struct {
	value   []byte // the marker; nil when absent
	fetched time.Time
}

type revLookup struct {
	done  chan struct{}
	value []byte
	err   error
}

func newRevocations(st StateStore, ttl time.Duration, failOpen bool, log *slog.Logger) *revocations {
	if ttl == 0 {
		ttl = DefaultRevocationCacheTTL
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &revocations{st: st, ttl: ttl, failOpen: failOpen, log: log,
		m: map[string]revEntry{}, inflight: map[string]*revLookup{}}
}

// revoked reports whether the login session sid (when not empty) carries a
// revocation marker, or sub was revoked at or after iat, as isRevoked does,
// from the cache when it is fresh.
func (r *revocations) revoked(ctx context.Context, sid, sub string, iat time.Time) (bool, error) {
	if sid != "" {
		v, err := r.lookup(ctx, keyRevokedSession+sid)
		if err != nil {
			return false, err
		}
		if v != nil {
			return true, nil
		}
	}
	if sub == "" {
		return false, nil
	}
	v, err := r.lookup(ctx, keyRevokedSubject+sub)
	if err != nil || v == nil {
		return false, err
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return true, nil // an unreadable marker revokes
	}
	return !iat.After(time.Unix(0, n)), nil
}

// lookup returns the marker under key (nil when there is none).
func (r *revocations) lookup(ctx context.Context, key string) ([]byte, error) {
	if r.ttl < 0 {
		v, err := r.st.Get(ctx, key)
		if errors.Is(err, ErrStateNotFound) {
			return nil, nil
		}
		if err != nil {
			return r.unavailable(nil, false, err)
		}
		return v, nil
	}
	now := time.Now()
	r.mu.Lock()
	e, cached := r.m[key]
	if cached && now.Sub(e.fetched) < r.ttl {
		r.mu.Unlock()
		return e.value, nil
	}
	probing := now.Before(r.downUntil)
	l, joined := r.inflight[key]
	if !joined {
		l = &revLookup{done: make(chan struct{})}
		r.inflight[key] = l
	}
	r.mu.Unlock()

	if !joined {
		// The lookup is shared: it must not fail because the request that
		// started it went away.
		gctx := context.WithoutCancel(ctx)
		if probing {
			var cancel context.CancelFunc
			gctx, cancel = context.WithTimeout(gctx, revocationProbe)
			defer cancel()
		}
		// The answer is as old as the read's start: a revocation written
		// while a slow answer was on its way must still be seen within
		// the bound.
		readAt := time.Now()
		l.value, l.err = r.st.Get(gctx, key)
		if errors.Is(l.err, ErrStateNotFound) {
			l.value, l.err = nil, nil
		}
		r.mu.Lock()
		delete(r.inflight, key)
		if l.err == nil {
			r.store(key, revEntry{value: l.value, fetched: readAt})
			r.downUntil = time.Time{}
		} else if !time.Now().Before(r.downUntil) {
			r.downUntil = time.Now().Add(revocationRetry)
			r.log.ErrorContext(ctx, "server: revocation lookups failing; "+r.policy(), "err", l.err)
		}
		r.mu.Unlock()
		close(l.done)
	} else {
		select {
		case <-l.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("server: revocation lookup: %w", ctx.Err())
		}
	}
	if l.err != nil {
		return r.unavailable(e.value, cached, l.err)
	}
	return l.value, nil
}

// unavailable applies the outage policy to a lookup the store could not
// answer: a marker already seen still revokes; otherwise fail open (not
// revoked) or fail closed (err).
func (r *revocations) unavailable(last []byte, known bool, err error) ([]byte, error) {
	switch {
	case known && last != nil:
		return last, nil // a marker seen stays true: it only ever revokes
	case r.failOpen:
		return last, nil
	}
	return nil, err
}

func (r *revocations) policy() string {
	if r.failOpen {
		return "accepting verified tokens on their last known revocation status (RevocationFailOpen)"
	}
	return "refusing tokens with 503 until the state store answers"
}

// learn records a marker this process has just written, so its own
// revocations take effect at once.
func (r *revocations) learn(key string, value []byte) {
	if r.ttl < 0 {
		return
	}
	r.mu.Lock()
	r.store(key, revEntry{value: append([]byte(nil), value...), fetched: time.Now()})
	r.mu.Unlock()
}

// store caches e under key within the size bound. r.mu must be held.
func (r *revocations) store(key string, e revEntry) {
	if len(r.m) >= maxRevocationEntries {
		now := time.Now()
		for k, old := range r.m {
			if now.Sub(old.fetched) >= r.ttl {
				delete(r.m, k)
			}
		}
		if len(r.m) >= maxRevocationEntries {
			clear(r.m)
		}
	}
	r.m[key] = e
}

// learnRevocation tells v's cache about a marker its Handler just wrote.
func (v *Verifier) learnRevocation(key string, value []byte) {
	if v.revocations != nil {
		v.revocations.learn(key, value)
	}
}

// writeRevocationUnavailable is RequireToken's answer to a token whose
// revocation status cannot be read: 503, temporarily_unavailable.
func writeRevocationUnavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", retryAfter)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprint(w, `{"error":"temporarily_unavailable","error_description":"the server cannot check whether this token was revoked; try again in a few seconds"}`+"\n")
}
