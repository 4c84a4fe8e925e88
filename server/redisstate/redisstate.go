// Package redisstate is a server.StateStore on Redis (github.com/redis/go-redis/v9),
// for running several instances of a keyloop server.Handler behind a load
// balancer: pending authorizations, codes, refresh tokens and revocation
// markers live in one Redis that every instance shares.
//
// Each record is one Redis string with its own TTL (SET … PX), so Redis
// expires them itself; Take is GETDEL and CompareAndSwap a short Lua script,
// both atomic on the Redis server whatever the number of instances. Keys are
// the handler's keys behind a configurable prefix, so one Redis can serve
// several applications. It needs Redis 6.2 or later (GETDEL), or a
// compatible server (Valkey, KeyDB, most hosted offerings).
//
// Every call is bounded (Options.Timeout). Failures to reach Redis, or
// answers that do not come in time, wrap server.ErrStateUnavailable; the
// handler then answers temporarily_unavailable (HTTP 503 with Retry-After)
// and accepts nothing it has not recorded.
//
// Durability is Redis's: with persistence off, a Redis restart ends every
// login (users sign in again) and forgets revocations; configure AOF or RDB
// persistence where that matters.
package redisstate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/keyloop/keyloop/server"
	"github.com/redis/go-redis/v9"
)

// DefaultTimeout bounds each Store call when Options.Timeout is zero.
const DefaultTimeout = time.Second

// Options configures a Store.
type Options struct {
	// Prefix is put before every key, e.g. "myapp:" to keep several
	// applications apart in one Redis database. Empty means no prefix: the
	// handler's keys already begin with "keyloop:".
	Prefix string
	// Timeout bounds each call (one Redis round trip), on top of the
	// caller's context. Zero means DefaultTimeout (1 s). A call that runs
	// out of time returns an error wrapping server.ErrStateUnavailable.
	Timeout time.Duration
	// TLSConfig is used for rediss:// URLs in Open. Nil means the system's
	// root CAs, TLS 1.2 or later, and the URL's host as the server name.
	// Ignored by New and for other schemes.
	TLSConfig *tls.Config
}

// Store is a server.StateStore on Redis. It is safe for concurrent use.
type Store struct {
	c       *redis.Client
	owned   bool // Close closes c
	prefix  string
	timeout time.Duration
	where   string // for messages: the Redis address, never credentials
}

var _ server.StateStore = (*Store)(nil)

// Open connects to the Redis at rawURL, one of
//
//	redis://[[user]:password@]host[:port][/db]
//	rediss://[[user]:password@]host[:port][/db]   (TLS)
//	unix://[[user]:password@]/path/to/redis.sock[?db=N]
//
// plus go-redis's query parameters (see redis.ParseURL), such as
// ?dial_timeout=2s. Open does not contact Redis (see Ping). The client it
// makes honours context deadlines, dials once per call, and never retries
// a command (max_retries is overridden): a retried Take whose first reply was lost would report a
// live code as used. Errors never contain the password. Close the Store
// when done.
func Open(rawURL string, opts Options) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: redisstate: the Redis URL is malformed; want redis://host:port, rediss://host:port or unix:///path/to/redis.sock", server.ErrInvalidConfig)
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
	default:
		return nil, fmt.Errorf("%w: redisstate: the Redis URL scheme %q is not redis, rediss or unix", server.ErrInvalidConfig, u.Scheme)
	}
	ro, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: redisstate: Redis URL %s: %w", server.ErrInvalidConfig, u.Redacted(), err)
	}
	if u.Scheme == "rediss" && opts.TLSConfig != nil {
		tc := opts.TLSConfig.Clone()
		if tc.ServerName == "" {
			tc.ServerName = ro.TLSConfig.ServerName
		}
		ro.TLSConfig = tc
	}
	ro.ContextTimeoutEnabled = true
	ro.MaxRetries = -1
	ro.DialerRetries = 1 // a Redis that refuses connections fails the call at once
	s := New(redis.NewClient(ro), opts)
	s.owned = true
	return s, nil
}

// New returns a Store on an existing client, which the caller keeps
// owning (Close does not close it). For Options.Timeout to bound waits on
// the socket, the client needs ContextTimeoutEnabled; and as go-redis
// retries a command whose reply was lost, give it MaxRetries: -1 so that a
// Take is never sent twice (Open does both).
func New(c *redis.Client, opts Options) *Store {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	o := c.Options()
	where := o.Addr
	if o.Network == "unix" {
		where = "unix:" + o.Addr
	}
	return &Store{c: c, prefix: opts.Prefix, timeout: opts.Timeout, where: where}
}

// Addr is the Redis address the Store talks to (host:port, or unix:/path),
// for logs; it never contains credentials.
func (s *Store) Addr() string { return s.where }

// Client returns the underlying client.
func (s *Store) Client() *redis.Client { return s.c }

// Close closes the client if Open made it.
func (s *Store) Close() error {
	if s.owned {
		return s.c.Close()
	}
	return nil
}

// Ping checks that Redis answers, within the Store's timeout.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel, err := s.bound(ctx, "ping")
	if err != nil {
		return err
	}
	defer cancel()
	return s.fail(ctx, "ping", s.c.Ping(ctx).Err())
}

// Put implements server.StateStore.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	ctx, cancel, err := s.bound(ctx, "put")
	if err != nil {
		return err
	}
	defer cancel()
	if ttl <= 0 {
		return s.fail(ctx, "put", s.c.Del(ctx, s.prefix+key).Err())
	}
	return s.fail(ctx, "put", s.c.Set(ctx, s.prefix+key, value, roundTTL(ttl)).Err())
}

// Get implements server.StateStore.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel, err := s.bound(ctx, "get")
	if err != nil {
		return nil, err
	}
	defer cancel()
	v, err := s.c.Get(ctx, s.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, server.ErrStateNotFound
	}
	if err != nil {
		return nil, s.fail(ctx, "get", err)
	}
	return v, nil
}

// Take implements server.StateStore with GETDEL.
func (s *Store) Take(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel, err := s.bound(ctx, "take")
	if err != nil {
		return nil, err
	}
	defer cancel()
	v, err := s.c.GetDel(ctx, s.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, server.ErrStateNotFound
	}
	if err != nil {
		return nil, s.fail(ctx, "take", err)
	}
	return v, nil
}

// Delete implements server.StateStore.
func (s *Store) Delete(ctx context.Context, key string) error {
	ctx, cancel, err := s.bound(ctx, "delete")
	if err != nil {
		return err
	}
	defer cancel()
	return s.fail(ctx, "delete", s.c.Del(ctx, s.prefix+key).Err())
}

// casScript compares KEYS[1] with ARGV[2] (ARGV[1] == "1": must be absent
// instead) and, on a match, sets it to ARGV[3] for ARGV[4] milliseconds,
// or deletes it when ARGV[4] is "0". Lua strings are binary-safe.
var casScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur then return 0 end
elseif cur ~= ARGV[2] then
  return 0
end
if ARGV[4] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
`)

// CompareAndSwap implements server.StateStore with a Lua script, atomic on
// the Redis server.
func (s *Store) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	ctx, cancel, err := s.bound(ctx, "compare-and-swap")
	if err != nil {
		return false, err
	}
	defer cancel()
	absent, ms := "0", "0"
	if old == nil {
		absent = "1"
	}
	if ttl > 0 {
		ms = strconv.FormatInt(roundTTL(ttl).Milliseconds(), 10)
	}
	if value == nil {
		value = []byte{}
	}
	if old == nil {
		old = []byte{}
	}
	n, err := casScript.Run(ctx, s.c, []string{s.prefix + key}, absent, old, value, ms).Int()
	if err != nil {
		return false, s.fail(ctx, "compare-and-swap", err)
	}
	return n == 1, nil
}

// roundTTL rounds ttl up to Redis's resolution, a millisecond.
func roundTTL(ttl time.Duration) time.Duration {
	return (ttl + time.Millisecond - 1).Truncate(time.Millisecond)
}

// bound returns ctx limited to the Store's timeout, or the caller's error
// when ctx is already done (nothing is sent then).
func (s *Store) bound(ctx context.Context, op string) (context.Context, context.CancelFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("redisstate: %s: %w", op, err)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, s.timeout, errTimeout)
	return ctx, cancel, nil
}

var errTimeout = errors.New("no answer in time")

// fail turns a client error into the Store's error: the caller's own
// cancellation stays what it is; anything else (refused connections,
// timeouts, Redis errors) wraps server.ErrStateUnavailable.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		// The socket deadline (taken from ctx) can fire a moment before
		// ctx's own timer: let it, so the cause below is known.
		<-ctx.Done()
	}
	if context.Cause(ctx) == errTimeout {
		return &Error{Op: op, Where: s.where, Err: fmt.Errorf("no answer within %v", s.timeout)}
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("redisstate: %s: %w", op, cerr) // the caller gave up
	}
	return &Error{Op: op, Where: s.where, Err: err}
}

// Error is a failure to get an answer from Redis. It wraps
// server.ErrStateUnavailable and the client's error.
type Error struct {
	// Op is what was asked: "get", "put", "take", "delete",
	// "compare-and-swap", "ping", "webhook claim" or "webhook release".
	Op string
	// Where is the Redis address: host:port, or unix:/path.
	Where string
	// Err is the client's error, or a timeout.
	Err error
}

func (e *Error) Error() string {
	return fmt.Sprintf("redisstate: %s at Redis %s: %v", e.Op, e.Where, e.Err)
}

// Unwrap returns server.ErrStateUnavailable and the client's error.
func (e *Error) Unwrap() []error { return []error{server.ErrStateUnavailable, e.Err} }

// ReplayGuard remembers delivered webhook message IDs in Redis, for every
// instance behind one webhook endpoint. It has the method set of
// clerk.ReplayGuard (clerk.Config.WebhookReplays) without this package
// importing server/clerk; it is safe for concurrent use.
type ReplayGuard struct {
	s   *Store
	key string
}

// ReplayGuard returns a guard whose IDs live under the Store's prefix plus
// "keyloop:webhook:" and namespace (e.g. "clerk:").
func (s *Store) ReplayGuard(namespace string) *ReplayGuard {
	return &ReplayGuard{s: s, key: "keyloop:webhook:" + namespace}
}

// Claim records id until the time until (SET NX with that expiry) and
// reports whether this call was the first to claim it. An until in the
// past claims for a millisecond.
func (g *ReplayGuard) Claim(ctx context.Context, id string, until time.Time) (first bool, err error) {
	ctx, cancel, err := g.s.bound(ctx, "webhook claim")
	if err != nil {
		return false, err
	}
	defer cancel()
	ttl := max(time.Until(until), time.Millisecond)
	first, err = g.s.c.SetNX(ctx, g.s.prefix+g.key+id, 1, roundTTL(ttl)).Result()
	if err != nil {
		return false, g.s.fail(ctx, "webhook claim", err)
	}
	return first, nil
}

// Release forgets id, so a redelivery is accepted.
func (g *ReplayGuard) Release(ctx context.Context, id string) error {
	ctx, cancel, err := g.s.bound(ctx, "webhook release")
	if err != nil {
		return err
	}
	defer cancel()
	return g.s.fail(ctx, "webhook release", g.s.c.Del(ctx, g.s.prefix+g.key+id).Err())
}
