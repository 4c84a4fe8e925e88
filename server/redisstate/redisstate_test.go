package redisstate_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/redisstate"
	"github.com/keyloop/keyloop/server/statetest"
	"github.com/redis/go-redis/v9"
)

func open(t *testing.T, url string, opts redisstate.Options) *redisstate.Store {
	t.Helper()
	s, err := redisstate.Open(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	r := testenv.Redis(t)
	var n atomic.Int32
	statetest.Run(t, func(t *testing.T) server.StateStore {
		// One Redis, a prefix per subtest: the stores must not see each
		// other's keys.
		return open(t, r.URL, redisstate.Options{Prefix: "conformance" + strconv.Itoa(int(n.Add(1))) + ":"})
	})
}

func TestConformanceOnClient(t *testing.T) {
	r := testenv.Redis(t)
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: r.Socket, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	var n atomic.Int32
	statetest.Run(t, func(t *testing.T) server.StateStore {
		return redisstate.New(c, redisstate.Options{Prefix: "client" + strconv.Itoa(int(n.Add(1))) + ":"})
	})
}

func TestPrefixKeepsAppsApart(t *testing.T) {
	r := testenv.Redis(t)
	ctx := t.Context()
	a := open(t, r.URL, redisstate.Options{Prefix: "app-a:"})
	b := open(t, r.URL, redisstate.Options{Prefix: "app-b:"})
	if err := a.Put(ctx, "keyloop:code:x", []byte("a's"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Take(ctx, "keyloop:code:x"); !errors.Is(err, server.ErrStateNotFound) {
		t.Fatalf("app b took app a's code: %v", err)
	}
	if v, err := a.Get(ctx, "keyloop:code:x"); err != nil || string(v) != "a's" {
		t.Fatalf("app a's code: %q, %v", v, err)
	}
	// The key in Redis is the prefix and the handler's key, with the TTL.
	raw := a.Client()
	if ttl := raw.PTTL(ctx, "app-a:keyloop:code:x").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("PTTL of app-a:keyloop:code:x = %v; want (0, 1m]", ttl)
	}
}

func TestOpenURLs(t *testing.T) {
	r := testenv.Redis(t)
	ctx := t.Context()
	s := open(t, r.URL+"?db=3", redisstate.Options{})
	if err := s.Put(ctx, "k", []byte("in db 3"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := s.Client().Options().DB; n != 3 {
		t.Fatalf("db = %d; want 3", n)
	}
	for _, tc := range []struct{ url, want string }{
		{"http://localhost:6379", `scheme "http" is not redis, rediss or unix`},
		{"localhost:6379", "is not redis, rediss or unix"},
		{"redis://:hunter2@localhost:6379/notanumber", "invalid database number"},
		{"unix://:hunter2@", "empty unix socket path"},
		{"redis://:hunter2@local host", "malformed"},
		{"redis://u:hunter2@localhost:6379?unknown_option=1", "unknown_option"},
	} {
		_, err := redisstate.Open(tc.url, redisstate.Options{})
		if !errors.Is(err, server.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%s): %v; want ErrInvalidConfig mentioning %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%s): the error shows the password: %v", tc.url, err)
		}
	}
}

// A Redis that is down or frozen makes every call fail within the Store's
// timeout with an error wrapping ErrStateUnavailable that names the Redis;
// never ErrStateNotFound (which the handler would read as "already used").
func TestUnavailable(t *testing.T) {
	r := testenv.Redis(t)
	ctx := t.Context()
	const timeout = 200 * time.Millisecond
	s := open(t, r.URL, redisstate.Options{Timeout: timeout})
	if err := s.Put(ctx, "code", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	// A frozen Redis still runs, once thawed, the commands it was sent
	// meanwhile (only their replies are lost); the frozen
	// round leaves "code" alone so that the thaw can be checked.
	reads := map[string]func() error{
		"Get":    func() error { _, err := s.Get(ctx, "code"); return err },
		"Take":   func() error { _, err := s.Take(ctx, "other"); return err },
		"Put":    func() error { return s.Put(ctx, "other", []byte("w"), time.Hour) },
		"Delete": func() error { return s.Delete(ctx, "other") },
		"CompareAndSwap": func() error {
			_, err := s.CompareAndSwap(ctx, "code", []byte("no match"), []byte("w"), time.Hour)
			return err
		},
		"Ping": func() error { return s.Ping(ctx) },
	}
	writes := map[string]func() error{
		"Take":           func() error { _, err := s.Take(ctx, "code"); return err },
		"Put":            func() error { return s.Put(ctx, "code", []byte("w"), time.Hour) },
		"Delete":         func() error { return s.Delete(ctx, "code") },
		"CompareAndSwap": func() error { _, err := s.CompareAndSwap(ctx, "code", []byte("v"), []byte("w"), time.Hour); return err },
	}
	check := func(state string, calls map[string]func() error) {
		t.Helper()
		for name, call := range calls {
			err := call()
			var re *redisstate.Error
			if !errors.Is(err, server.ErrStateUnavailable) || errors.Is(err, server.ErrStateNotFound) || !errors.As(err, &re) {
				t.Errorf("%s with Redis %s: %v; want *redisstate.Error wrapping ErrStateUnavailable", name, state, err)
				continue
			}
			if !strings.Contains(err.Error(), r.Socket) {
				t.Errorf("%s with Redis %s: %q does not say which Redis", name, state, err)
			}
			if state == "frozen" && !strings.Contains(err.Error(), "no answer within 200ms") {
				t.Errorf("%s with Redis %s: %q does not say it timed out", name, state, err)
			}
		}
	}

	r.Pause()
	check("frozen", reads)
	r.Resume()
	if v, err := s.Get(ctx, "code"); err != nil || string(v) != "v" {
		t.Fatalf("after Redis thawed: Get = %q, %v; want the value stored before", v, err)
	}

	r.Stop()
	check("stopped", reads)
	check("stopped", writes)
	r.Start()
	if err := s.Put(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatalf("Put after Redis came back: %v", err)
	}
}

// A caller that gave up gets its own context error, not "unavailable".
func TestCallerCancellation(t *testing.T) {
	r := testenv.Redis(t)
	s := open(t, r.URL, redisstate.Options{Timeout: time.Minute})
	r.Pause()
	defer r.Resume()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := s.Get(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, server.ErrStateUnavailable) {
		t.Fatalf("Get past the caller's deadline: %v; want context.DeadlineExceeded", err)
	}
}
