package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// ErrKeysUnavailable is wrapped by Verifier.Verify when the verification keys
// could not be fetched from VerifierConfig.JWKSURL (the JWKS endpoint is down,
// slow or answers garbage). The token may well be valid: RequireToken answers
// 503 with Retry-After, not 401, so a client does not throw its login away.
var ErrKeysUnavailable = errors.New("server: verification keys unavailable")

// keysUnavailableError wraps ErrKeysUnavailable and the fetch error.
type keysUnavailableError struct{ err error }

func (e *keysUnavailableError) Error() string {
	return ErrKeysUnavailable.Error() + ": " + e.err.Error()
}
func (e *keysUnavailableError) Unwrap() []error { return []error{ErrKeysUnavailable, e.err} }

// Defaults of the remote JWKS fetch policy (VerifierConfig).
const (
	// DefaultJWKSFetchTimeout bounds one fetch of a remote JWKS, and so the
	// longest a Verify waits for keys.
	DefaultJWKSFetchTimeout = 5 * time.Second
	// DefaultJWKSRefreshInterval is how old a fetched JWKS may grow before
	// the next Verify refreshes it in the background. It matches the
	// Handler's JWKS Cache-Control max-age: a key published that long
	// before it signs is known to every verifier when its first token
	// arrives (see KeySet).
	DefaultJWKSRefreshInterval = 5 * time.Minute
	// DefaultJWKSUnknownKIDInterval is the least time between two fetches
	// caused by tokens with a key ID the fetched JWKS does not hold.
	DefaultJWKSUnknownKIDInterval = 10 * time.Second
	// DefaultJWKSRetryMax caps the backoff between fetches after failures
	// (1 s, 2 s, 4 s, … up to this): a recovered JWKS endpoint is seen
	// within this time.
	DefaultJWKSRetryMax = 10 * time.Second
)

// maxJWKSBytes bounds a fetched JWKS document.
const maxJWKSBytes = 1 << 20

// keySource finds the verification key of a token.
type keySource interface {
	keyfunc(ctx context.Context) jwt.Keyfunc
}

// staticKeys is a JWKS document parsed once.
type staticKeys struct{ kf keyfunc.Keyfunc }

func (s staticKeys) keyfunc(ctx context.Context) jwt.Keyfunc { return s.kf.KeyfuncCtx(ctx) }

// liveKeys reads a KeySet on every token.
type liveKeys struct{ ks *KeySet }

func (l liveKeys) keyfunc(context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		pub, alg, ok := l.ks.PublicKey(kid)
		if !ok {
			return nil, errUnknownKID
		}
		if t.Method.Alg() != alg {
			return nil, fmt.Errorf("token algorithm %s does not match its key's (%s)", t.Method.Alg(), alg)
		}
		return pub, nil
	}
}

var errUnknownKID = errors.New("unknown key ID")

// remoteKeys is a remote JWKS with a fetch policy that survives outages:
//
//   - one fetch at a time, shared by every waiting Verify; it runs on its
//     own context bounded by fetchTimeout, so a caller that gives up does
//     not cancel it for the others;
//   - a Verify waits for keys at most fetchTimeout (and its own ctx);
//   - after a failed fetch, the next one is allowed after a backoff that
//     doubles from 1 s up to retryMax; Verify calls in between fail at once
//     with ErrKeysUnavailable instead of queueing;
//   - a token whose kid is not in a good JWKS triggers a refetch at most
//     every unknownKIDInterval;
//   - a JWKS older than refreshInterval is refreshed in the background
//     while the old keys keep verifying; a failed refresh keeps them.
type remoteKeys struct {
	url                string
	client             *http.Client
	fetchTimeout       time.Duration
	refreshInterval    time.Duration
	unknownKIDInterval time.Duration
	retryMax           time.Duration
	now                func() time.Time // real time: fetch scheduling is about the network, not token clocks

	mu       sync.Mutex
	kf       keyfunc.Keyfunc // nil until a fetch succeeded
	fetched  time.Time       // when kf was fetched
	lastErr  error           // error of the latest fetch, nil after a success
	failures int             // consecutive failed fetches
	nextTry  time.Time       // no fetch before this (backoff or unknown-kid limit)
	inflight chan struct{}   // closed when the running fetch ends; nil when none runs
}

func newRemoteKeys(cfg VerifierConfig) *remoteKeys {
	client := cfg.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	r := &remoteKeys{url: cfg.JWKSURL, client: client, fetchTimeout: cfg.JWKSFetchTimeout,
		refreshInterval: cfg.JWKSRefreshInterval, unknownKIDInterval: cfg.JWKSUnknownKIDInterval,
		retryMax: cfg.JWKSRetryMax, now: time.Now}
	if r.fetchTimeout <= 0 {
		r.fetchTimeout = DefaultJWKSFetchTimeout
	}
	if r.refreshInterval <= 0 {
		r.refreshInterval = DefaultJWKSRefreshInterval
	}
	if r.unknownKIDInterval <= 0 {
		r.unknownKIDInterval = DefaultJWKSUnknownKIDInterval
	}
	if r.retryMax <= 0 {
		r.retryMax = DefaultJWKSRetryMax
	}
	return r
}

func (r *remoteKeys) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		kf, err := r.keysFor(ctx, kid)
		if err != nil {
			return nil, err
		}
		return kf.KeyfuncCtx(ctx)(t)
	}
}

// keysFor returns a key set holding kid, fetching (or waiting for a fetch)
// when the cached set lacks it and the fetch policy allows.
func (r *remoteKeys) keysFor(ctx context.Context, kid string) (keyfunc.Keyfunc, error) {
	waited := false
	for {
		r.mu.Lock()
		now := r.now()
		if r.kf != nil && hasKID(ctx, r.kf, kid) {
			kf := r.kf
			if now.Sub(r.fetched) >= r.refreshInterval && r.inflight == nil && !now.Before(r.nextTry) {
				r.startFetchLocked()
			}
			r.mu.Unlock()
			return kf, nil
		}
		ch := r.inflight
		if ch == nil && (waited || now.Before(r.nextTry)) {
			err := r.missLocked(kid)
			r.mu.Unlock()
			return nil, err
		}
		if ch == nil {
			ch = r.startFetchLocked()
		}
		r.mu.Unlock()
		select {
		case <-ch:
			waited = true
		case <-ctx.Done():
			return nil, &keysUnavailableError{fmt.Errorf("waiting for JWKS %s: %w", r.url, ctx.Err())}
		}
	}
}

// missLocked is the error for a kid that is not available now.
func (r *remoteKeys) missLocked(kid string) error {
	if r.lastErr != nil {
		return &keysUnavailableError{r.lastErr}
	}
	return errUnknownKID
}

// startFetchLocked starts a fetch in the background; r.mu must be held.
func (r *remoteKeys) startFetchLocked() chan struct{} {
	ch := make(chan struct{})
	r.inflight = ch
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), r.fetchTimeout)
		kf, err := r.fetch(ctx)
		cancel()
		r.mu.Lock()
		now := r.now()
		if err != nil {
			r.lastErr = err
			r.failures++
			backoff := r.retryMax
			if r.failures < 8 {
				backoff = min(time.Second<<(r.failures-1), r.retryMax)
			}
			r.nextTry = now.Add(backoff)
		} else {
			r.kf, r.fetched, r.lastErr, r.failures = kf, now, nil, 0
			r.nextTry = now.Add(r.unknownKIDInterval)
		}
		r.inflight = nil
		r.mu.Unlock()
		close(ch)
	}()
	return ch
}

// fetch GETs and parses the JWKS. Its errors name the URL and never quote
// the response body.
func (r *remoteKeys) fetch(ctx context.Context) (keyfunc.Keyfunc, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", r.url, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", r.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxJWKSBytes))
		return nil, fmt.Errorf("JWKS %s answered %s", r.url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: reading: %w", r.url, err)
	}
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("JWKS %s is larger than %d bytes", r.url, maxJWKSBytes)
	}
	var probe struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &probe); err != nil || len(probe.Keys) == 0 {
		return nil, fmt.Errorf("JWKS %s is not a JSON Web Key Set with keys", r.url)
	}
	kf, err := keyfunc.NewJWKSetJSON(b)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", r.url, err)
	}
	return kf, nil
}

func hasKID(ctx context.Context, kf keyfunc.Keyfunc, kid string) bool {
	_, err := kf.Storage().KeyRead(ctx, kid)
	return err == nil || !errors.Is(err, jwkset.ErrKeyNotFound)
}
