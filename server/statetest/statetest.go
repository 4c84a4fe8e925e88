// Package statetest is the conformance suite for server.StateStore
// implementations: run it from a test of every store, so the handler can
// rely on the contract documented on server.StateStore (atomic Take and
// CompareAndSwap across goroutines, TTLs, opaque values, ErrStateNotFound
// only for absent keys, done contexts refused).
//
//	func TestConformance(t *testing.T) {
//		statetest.Run(t, func(t *testing.T) server.StateStore {
//			return mystore.New(…) // empty, closed in t.Cleanup
//		})
//	}
//
// The suite uses the real clock: TTL subtests wait for records with a short
// TTL (ShortTTL) to expire, polling with a generous deadline rather than
// assuming how long a step takes.
package statetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyloop/keyloop/server"
)

// ShortTTL is the TTL of records the suite waits to see expire.
const ShortTTL = 300 * time.Millisecond

// longTTL outlives any run of the suite.
const longTTL = time.Hour

// expiryDeadline bounds the wait for a record with ShortTTL to disappear;
// it only guards against hangs.
const expiryDeadline = 30 * time.Second

// Run runs the conformance suite as subtests of t. newStore is called once
// per subtest and must return a store that holds no keys; it registers its
// own clean-up with t.Cleanup. Stores from different calls may share one
// backend as long as they do not see each other's keys (a key prefix per
// call, for instance).
func Run(t *testing.T, newStore func(t *testing.T) server.StateStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s server.StateStore)
	}{
		{"Missing", testMissing},
		{"PutGet", testPutGet},
		{"OpaqueValues", testOpaqueValues},
		{"Take", testTake},
		{"Delete", testDelete},
		{"CompareAndSwap", testCompareAndSwap},
		{"TTL", testTTL},
		{"ZeroTTLRemoves", testZeroTTL},
		{"DoneContext", testDoneContext},
		{"ConcurrentTake", testConcurrentTake},
		{"ConcurrentCompareAndSwap", testConcurrentCAS},
		{"ConcurrentPutIfAbsent", testConcurrentPutIfAbsent},
		{"ConcurrentCounter", testConcurrentCounter},
		{"TakeRacesCompareAndSwap", testTakeRacesCAS},
		{"PutBatch", testPutBatch},
		{"SwapAndPut", testSwapAndPut},
		{"ConcurrentSwapAndPut", testConcurrentSwapAndPut},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			if s == nil {
				t.Fatal("newStore returned nil")
			}
			tc.fn(t, s)
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// mustGet fails unless key holds want.
func mustGet(t *testing.T, s server.StateStore, key string, want []byte) {
	t.Helper()
	got, err := s.Get(ctxFor(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v; want %s", key, err, show(want))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %s; want %s", key, show(got), show(want))
	}
}

// mustBeAbsent fails unless Get reports ErrStateNotFound for key.
func mustBeAbsent(t *testing.T, s server.StateStore, key string) {
	t.Helper()
	got, err := s.Get(ctxFor(t), key)
	if !errors.Is(err, server.ErrStateNotFound) {
		t.Fatalf("Get(%q) = %s, %v; want an error wrapping server.ErrStateNotFound", key, show(got), err)
	}
}

func mustPut(t *testing.T, s server.StateStore, key string, v []byte, ttl time.Duration) {
	t.Helper()
	if err := s.Put(ctxFor(t), key, v, ttl); err != nil {
		t.Fatalf("Put(%q, ttl %v): %v", key, ttl, err)
	}
}

func mustCAS(t *testing.T, s server.StateStore, key string, old, v []byte, ttl time.Duration, want bool) {
	t.Helper()
	got, err := s.CompareAndSwap(ctxFor(t), key, old, v, ttl)
	if err != nil {
		t.Fatalf("CompareAndSwap(%q, old %s, new %s): %v", key, show(old), show(v), err)
	}
	if got != want {
		t.Fatalf("CompareAndSwap(%q, old %s, new %s) = %v; want %v", key, show(old), show(v), got, want)
	}
}

// show describes a value for failure messages (values in this suite are
// test data, not secrets).
func show(b []byte) string {
	switch {
	case b == nil:
		return "nil"
	case len(b) > 40:
		return fmt.Sprintf("%d bytes %q…", len(b), b[:40])
	}
	return strconv.Quote(string(b))
}

func testMissing(t *testing.T, s server.StateStore) {
	ctx := ctxFor(t)
	mustBeAbsent(t, s, "never-stored")
	if v, err := s.Take(ctx, "never-stored"); !errors.Is(err, server.ErrStateNotFound) {
		t.Fatalf("Take of a missing key = %s, %v; want ErrStateNotFound", show(v), err)
	}
	if err := s.Delete(ctx, "never-stored"); err != nil {
		t.Fatalf("Delete of a missing key: %v; want nil", err)
	}
}

func testPutGet(t *testing.T, s server.StateStore) {
	ctx := ctxFor(t)
	v := []byte("first")
	mustPut(t, s, "k", v, longTTL)
	v[0] = 'X' // the store must have kept its own copy
	mustGet(t, s, "k", []byte("first"))
	got, _ := s.Get(ctx, "k")
	if len(got) > 0 {
		got[0] = 'Y' // nor hand out its own
	}
	mustGet(t, s, "k", []byte("first"))
	mustPut(t, s, "k", []byte("second"), longTTL)
	mustGet(t, s, "k", []byte("second"))
	mustPut(t, s, "other", []byte("o"), longTTL)
	mustGet(t, s, "k", []byte("second"))
	mustGet(t, s, "other", []byte("o"))
}

func testOpaqueValues(t *testing.T, s server.StateStore) {
	ctx := ctxFor(t)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := make([]byte, 1<<20)
	rand.Read(big)
	values := map[string][]byte{
		"empty":        {},
		"all bytes":    all,
		"invalid utf8": {0xff, 0xfe, 0x00, 0xc3},
		"nul":          {0},
		"json":         []byte(`{"a":"b\"c","n":null}`),
		"lua-ish":      []byte("return redis.call('FLUSHALL') -- %s %d \r\n"),
		"1 MiB":        big,
	}
	keys := []string{
		"plain",
		"keyloop:rt:abc-DEF_012",
		"with space/and:colons",
		"unicode-é-日本",
		"*?[glob]",
		strings.Repeat("k", 400),
	}
	roundTrip := func(name, key string, v []byte) {
		t.Helper()
		mustPut(t, s, key, v, longTTL)
		mustGet(t, s, key, v)
		got, err := s.Take(ctx, key)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("%s value under %q: Take = %s, %v", name, key, show(got), err)
		}
		mustCAS(t, s, key, nil, v, longTTL, true)
		mustCAS(t, s, key, v, append(append([]byte{}, v...), '!'), longTTL, true)
		mustGet(t, s, key, append(append([]byte{}, v...), '!'))
		if err := s.Delete(ctx, key); err != nil {
			t.Fatalf("Delete(%q): %v", key, err)
		}
	}
	for name, v := range values {
		roundTrip(name, "value-"+name, v)
	}
	for _, k := range keys {
		roundTrip("short", k, []byte("v"))
	}
	// Keys differing only in case or a trailing byte are distinct.
	mustPut(t, s, "Case", []byte("upper"), longTTL)
	mustPut(t, s, "case", []byte("lower"), longTTL)
	mustPut(t, s, "case\x00", []byte("nul"), longTTL)
	mustGet(t, s, "Case", []byte("upper"))
	mustGet(t, s, "case", []byte("lower"))
	mustGet(t, s, "case\x00", []byte("nul"))
}

func testTake(t *testing.T, s server.StateStore) {
	ctx := ctxFor(t)
	mustPut(t, s, "code", []byte("record"), longTTL)
	got, err := s.Take(ctx, "code")
	if err != nil || string(got) != "record" {
		t.Fatalf("Take = %s, %v; want \"record\"", show(got), err)
	}
	if got, err := s.Take(ctx, "code"); !errors.Is(err, server.ErrStateNotFound) {
		t.Fatalf("second Take = %s, %v; want ErrStateNotFound", show(got), err)
	}
	mustBeAbsent(t, s, "code")
	mustCAS(t, s, "code", nil, []byte("again"), longTTL, true) // the key is free again
}

func testDelete(t *testing.T, s server.StateStore) {
	ctx := ctxFor(t)
	mustPut(t, s, "a", []byte("1"), longTTL)
	mustPut(t, s, "b", []byte("2"), longTTL)
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	mustBeAbsent(t, s, "a")
	if _, err := s.Take(ctx, "a"); !errors.Is(err, server.ErrStateNotFound) {
		t.Fatalf("Take after Delete: %v; want ErrStateNotFound", err)
	}
	mustGet(t, s, "b", []byte("2"))
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatalf("second Delete: %v; want nil", err)
	}
}

func testCompareAndSwap(t *testing.T, s server.StateStore) {
	ctx := ctxFor(t)
	// old == nil: put-if-absent.
	mustCAS(t, s, "k", nil, []byte("v1"), longTTL, true)
	mustGet(t, s, "k", []byte("v1"))
	mustCAS(t, s, "k", nil, []byte("other"), longTTL, false)
	mustGet(t, s, "k", []byte("v1"))
	// Matching and mismatching old values.
	mustCAS(t, s, "k", []byte("v0"), []byte("other"), longTTL, false)
	mustCAS(t, s, "k", []byte("v1x"), []byte("other"), longTTL, false)
	mustCAS(t, s, "k", []byte("v"), []byte("other"), longTTL, false)
	mustCAS(t, s, "k", []byte{}, []byte("other"), longTTL, false)
	mustGet(t, s, "k", []byte("v1"))
	mustCAS(t, s, "k", []byte("v1"), []byte("v2"), longTTL, true)
	mustGet(t, s, "k", []byte("v2"))
	mustCAS(t, s, "k", []byte("v1"), []byte("v3"), longTTL, false) // the old value is gone
	mustGet(t, s, "k", []byte("v2"))
	// A non-nil old never matches an absent key.
	mustCAS(t, s, "absent", []byte("v"), []byte("x"), longTTL, false)
	mustCAS(t, s, "absent", []byte{}, []byte("x"), longTTL, false)
	mustBeAbsent(t, s, "absent")
	// An empty old matches a stored empty value.
	mustPut(t, s, "empty", []byte{}, longTTL)
	mustCAS(t, s, "empty", nil, []byte("x"), longTTL, false)
	mustCAS(t, s, "empty", []byte{}, []byte("x"), longTTL, true)
	mustGet(t, s, "empty", []byte("x"))
	// The store copies the new value.
	v := []byte("mine")
	mustCAS(t, s, "copy", nil, v, longTTL, true)
	v[0] = 'X'
	mustGet(t, s, "copy", []byte("mine"))
	// A matching swap with ttl ≤ 0 removes the key (compare-and-delete).
	mustCAS(t, s, "k", []byte("v2"), []byte("ignored"), 0, true)
	mustBeAbsent(t, s, "k")
	mustPut(t, s, "k", []byte("v"), longTTL)
	mustCAS(t, s, "k", []byte("not v"), nil, -time.Second, false)
	mustGet(t, s, "k", []byte("v"))
	mustCAS(t, s, "k", []byte("v"), nil, -time.Second, true)
	mustBeAbsent(t, s, "k")
	// A taken key is absent for CompareAndSwap too.
	mustPut(t, s, "t", []byte("v"), longTTL)
	if _, err := s.Take(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	mustCAS(t, s, "t", []byte("v"), []byte("w"), longTTL, false)
	mustBeAbsent(t, s, "t")
}

// waitExpired polls until key is gone (Get reports ErrStateNotFound).
func waitExpired(t *testing.T, s server.StateStore, key string) {
	t.Helper()
	deadline := time.Now().Add(expiryDeadline)
	for {
		_, err := s.Get(ctxFor(t), key)
		if errors.Is(err, server.ErrStateNotFound) {
			return
		}
		if err != nil {
			t.Fatalf("Get(%q) while waiting for expiry: %v", key, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q (TTL %v) still present after %v", key, ShortTTL, expiryDeadline)
		}
		time.Sleep(ShortTTL / 4)
	}
}

func testTTL(t *testing.T, s server.StateStore) {
	ctx := ctxFor(t)
	mustPut(t, s, "long", []byte("l"), longTTL)
	mustPut(t, s, "put", []byte("p"), ShortTTL)
	mustCAS(t, s, "cas", nil, []byte("c"), ShortTTL, true)
	mustPut(t, s, "take", []byte("t"), ShortTTL)
	mustPut(t, s, "swap", []byte("s"), ShortTTL)
	// Put replaces the TTL as well as the value: "extended" would expire
	// with the others if it kept its first TTL.
	mustPut(t, s, "extended", []byte("e1"), ShortTTL)
	mustPut(t, s, "extended", []byte("e2"), longTTL)
	mustCAS(t, s, "cas-extended", nil, []byte("c1"), ShortTTL, true)
	mustCAS(t, s, "cas-extended", []byte("c1"), []byte("c2"), longTTL, true)
	// The sentinel is written last, so when it is gone the others' TTLs
	// have passed too.
	mustPut(t, s, "sentinel", []byte("x"), ShortTTL)
	waitExpired(t, s, "sentinel")

	mustBeAbsent(t, s, "put")
	mustBeAbsent(t, s, "cas")
	if v, err := s.Take(ctx, "take"); !errors.Is(err, server.ErrStateNotFound) {
		t.Fatalf("Take of an expired key = %s, %v; want ErrStateNotFound", show(v), err)
	}
	mustCAS(t, s, "swap", []byte("s"), []byte("s2"), longTTL, false) // expired: no match
	mustCAS(t, s, "swap", nil, []byte("s3"), longTTL, true)          // expired: absent
	mustGet(t, s, "swap", []byte("s3"))
	mustGet(t, s, "long", []byte("l"))
	mustGet(t, s, "extended", []byte("e2"))
	mustGet(t, s, "cas-extended", []byte("c2"))
}

func testZeroTTL(t *testing.T, s server.StateStore) {
	for _, ttl := range []time.Duration{0, -time.Nanosecond, -time.Hour} {
		mustPut(t, s, "k", []byte("v"), longTTL)
		mustPut(t, s, "k", []byte("replaced"), ttl)
		mustBeAbsent(t, s, "k")
		mustPut(t, s, "never", []byte("v"), ttl)
		mustBeAbsent(t, s, "never")
	}
}

func testDoneContext(t *testing.T, s server.StateStore) {
	mustPut(t, s, "k", []byte("v"), longTTL)
	for _, done := range []struct {
		name string
		ctx  func() context.Context
	}{
		{"cancelled", func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}},
		{"past deadline", func() context.Context {
			ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			t.Cleanup(cancel)
			return ctx
		}},
	} {
		ctx := done.ctx()
		check := func(op string, err error) {
			t.Helper()
			if err == nil || !errors.Is(err, ctx.Err()) || errors.Is(err, server.ErrStateNotFound) {
				t.Errorf("%s with a %s context: %v; want an error wrapping %v (and not ErrStateNotFound)", op, done.name, err, ctx.Err())
			}
		}
		_, err := s.Get(ctx, "k")
		check("Get", err)
		_, err = s.Take(ctx, "k")
		check("Take", err)
		check("Put", s.Put(ctx, "k", []byte("changed"), longTTL))
		check("Delete", s.Delete(ctx, "k"))
		swapped, err := s.CompareAndSwap(ctx, "k", []byte("v"), []byte("changed"), longTTL)
		check("CompareAndSwap", err)
		if swapped {
			t.Errorf("CompareAndSwap with a %s context reported a swap", done.name)
		}
		_, err = s.Get(ctx, "missing")
		check("Get of a missing key", err)
		mustGet(t, s, "k", []byte("v")) // nothing changed
	}
}

// testPutBatch checks server.StateBatchPutter where the store has it:
// every record stored as Put stores it (a ttl ≤ 0 removes; the last of
// one key counts), and a done context changes nothing.
func testPutBatch(t *testing.T, s server.StateStore) {
	bp, ok := s.(server.StateBatchPutter)
	if !ok {
		t.Skipf("%T is not a server.StateBatchPutter", s)
	}
	ctx := ctxFor(t)
	mustPut(t, s, "gone", []byte("v"), longTTL)
	mustPut(t, s, "kept", []byte("v"), longTTL)
	err := bp.PutBatch(ctx, []server.StatePut{
		{Key: "a", Value: []byte("1"), TTL: longTTL},
		{Key: "b", Value: []byte{}, TTL: longTTL},
		{Key: "gone", Value: []byte("x"), TTL: 0},
		{Key: "c", Value: []byte("first"), TTL: longTTL},
		{Key: "c", Value: []byte("last"), TTL: longTTL},
		{Key: "short", Value: []byte("s"), TTL: ShortTTL},
	})
	if err != nil {
		t.Fatalf("PutBatch: %v", err)
	}
	mustGet(t, s, "a", []byte("1"))
	mustGet(t, s, "b", []byte{})
	mustGet(t, s, "c", []byte("last"))
	mustGet(t, s, "kept", []byte("v"))
	mustBeAbsent(t, s, "gone")
	waitExpired(t, s, "short")
	if err := bp.PutBatch(ctx, nil); err != nil {
		t.Errorf("PutBatch of nothing: %v", err)
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	err = bp.PutBatch(done, []server.StatePut{{Key: "a", Value: []byte("changed"), TTL: longTTL}, {Key: "new", Value: []byte("n"), TTL: longTTL}})
	if err == nil || !errors.Is(err, context.Canceled) || errors.Is(err, server.ErrStateNotFound) {
		t.Errorf("PutBatch with a cancelled context: %v; want an error wrapping context.Canceled", err)
	}
	mustGet(t, s, "a", []byte("1"))
	mustBeAbsent(t, s, "new")
}

// testSwapAndPut checks server.StateSwapPutter where the store has it: the
// puts are stored if and only if the swap happened, and a done context
// changes nothing.
func testSwapAndPut(t *testing.T, s server.StateStore) {
	sp, ok := s.(server.StateSwapPutter)
	if !ok {
		t.Skipf("%T is not a server.StateSwapPutter", s)
	}
	ctx := ctxFor(t)
	swapPut := func(key string, old, v []byte, ttl time.Duration, want bool, puts ...server.StatePut) {
		t.Helper()
		swapped, err := sp.SwapAndPut(ctx, key, old, v, ttl, puts)
		if err != nil || swapped != want {
			t.Fatalf("SwapAndPut(%q, %s → %s) = %v, %v; want %v, nil", key, show(old), show(v), swapped, err, want)
		}
	}
	mustPut(t, s, "k", []byte("v"), longTTL)
	mustPut(t, s, "gone", []byte("g"), longTTL)
	swapPut("k", []byte("v"), []byte("w"), longTTL, true,
		server.StatePut{Key: "a", Value: []byte("1"), TTL: longTTL},
		server.StatePut{Key: "gone", TTL: 0},
		server.StatePut{Key: "c", Value: []byte("first"), TTL: longTTL},
		server.StatePut{Key: "c", Value: []byte("last"), TTL: longTTL})
	mustGet(t, s, "k", []byte("w"))
	mustGet(t, s, "a", []byte("1"))
	mustGet(t, s, "c", []byte("last"))
	mustBeAbsent(t, s, "gone")

	// No swap, no puts.
	swapPut("k", []byte("v"), []byte("x"), longTTL, false, server.StatePut{Key: "b", Value: []byte("2"), TTL: longTTL})
	swapPut("k", nil, []byte("x"), longTTL, false, server.StatePut{Key: "b", Value: []byte("2"), TTL: longTTL})
	mustGet(t, s, "k", []byte("w"))
	mustBeAbsent(t, s, "b")

	// Compare-and-delete (a code exchange), put-if-absent, no puts at all.
	swapPut("k", []byte("w"), nil, 0, true, server.StatePut{Key: "b", Value: []byte{}, TTL: longTTL})
	mustBeAbsent(t, s, "k")
	mustGet(t, s, "b", []byte{})
	swapPut("new", nil, []byte("n"), longTTL, true, server.StatePut{Key: "short", Value: []byte("s"), TTL: ShortTTL})
	mustGet(t, s, "new", []byte("n"))
	swapPut("new", []byte("n"), []byte("m"), longTTL, true)
	mustGet(t, s, "new", []byte("m"))
	waitExpired(t, s, "short")

	done, cancel := context.WithCancel(context.Background())
	cancel()
	swapped, err := sp.SwapAndPut(done, "new", []byte("m"), nil, 0, []server.StatePut{{Key: "a", Value: []byte("changed"), TTL: longTTL}})
	if swapped || !errors.Is(err, context.Canceled) || errors.Is(err, server.ErrStateNotFound) {
		t.Errorf("SwapAndPut with a cancelled context: %v, %v; want false and an error wrapping context.Canceled", swapped, err)
	}
	mustGet(t, s, "new", []byte("m"))
	mustGet(t, s, "a", []byte("1"))
}

// testConcurrentSwapAndPut races SwapAndPuts that delete one key, each
// with a put of its own: exactly one swaps, and only its put is stored.
func testConcurrentSwapAndPut(t *testing.T, s server.StateStore) {
	sp, ok := s.(server.StateSwapPutter)
	if !ok {
		t.Skipf("%T is not a server.StateSwapPutter", s)
	}
	ctx := ctxFor(t)
	mustPut(t, s, "code", []byte("c"), longTTL)
	var wg sync.WaitGroup
	var wins atomic.Int32
	errs := make(chan error, contenders)
	for i := range contenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			swapped, err := sp.SwapAndPut(ctx, "code", []byte("c"), nil, 0,
				[]server.StatePut{{Key: fmt.Sprintf("won-%d", i), Value: []byte("w"), TTL: longTTL}})
			if err != nil {
				errs <- err
			}
			if swapped {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("SwapAndPut: %v", err)
	}
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d of %d concurrent SwapAndPuts swapped; want exactly 1", n, contenders)
	}
	stored := 0
	for i := range contenders {
		_, err := s.Get(ctx, fmt.Sprintf("won-%d", i))
		switch {
		case err == nil:
			stored++
		case !errors.Is(err, server.ErrStateNotFound):
			t.Fatalf("Get: %v", err)
		}
	}
	if stored != 1 {
		t.Fatalf("%d SwapAndPuts stored their records; want only the one that swapped", stored)
	}
	mustBeAbsent(t, s, "code")
}

// contenders is how many goroutines race in each concurrency test.
const contenders = 16

func testConcurrentTake(t *testing.T, s server.StateStore) {
	ctx := ctxFor(t)
	for round := range 30 {
		key := "code-" + strconv.Itoa(round)
		mustPut(t, s, key, []byte("x"), longTTL)
		var mu sync.Mutex
		wins := 0
		var wg sync.WaitGroup
		for range contenders {
			wg.Go(func() {
				v, err := s.Take(ctx, key)
				switch {
				case err == nil && string(v) == "x":
					mu.Lock()
					wins++
					mu.Unlock()
				case errors.Is(err, server.ErrStateNotFound):
				default:
					t.Errorf("concurrent Take = %s, %v", show(v), err)
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("round %d: %d of %d concurrent Takes got the value; want exactly 1", round, wins, contenders)
		}
		mustBeAbsent(t, s, key)
	}
}

func testConcurrentCAS(t *testing.T, s server.StateStore) {
	ctx := ctxFor(t)
	for round := range 30 {
		key := "pending-" + strconv.Itoa(round)
		mustPut(t, s, key, []byte("v0"), longTTL)
		winners := make(chan int, contenders)
		var wg sync.WaitGroup
		for i := range contenders {
			wg.Go(func() {
				ok, err := s.CompareAndSwap(ctx, key, []byte("v0"), []byte("by "+strconv.Itoa(i)), longTTL)
				if err != nil {
					t.Errorf("concurrent CompareAndSwap: %v", err)
				}
				if ok {
					winners <- i
				}
			})
		}
		wg.Wait()
		close(winners)
		var won []int
		for i := range winners {
			won = append(won, i)
		}
		if len(won) != 1 {
			t.Fatalf("round %d: %d of %d concurrent CompareAndSwaps from one old value swapped; want exactly 1", round, len(won), contenders)
		}
		mustGet(t, s, key, []byte("by "+strconv.Itoa(won[0])))
	}
}

func testConcurrentPutIfAbsent(t *testing.T, s server.StateStore) {
	ctx := ctxFor(t)
	for round := range 30 {
		key := "claim-" + strconv.Itoa(round)
		winners := make(chan int, contenders)
		var wg sync.WaitGroup
		for i := range contenders {
			wg.Go(func() {
				ok, err := s.CompareAndSwap(ctx, key, nil, []byte("by "+strconv.Itoa(i)), longTTL)
				if err != nil {
					t.Errorf("concurrent put-if-absent: %v", err)
				}
				if ok {
					winners <- i
				}
			})
		}
		wg.Wait()
		close(winners)
		var won []int
		for i := range winners {
			won = append(won, i)
		}
		if len(won) != 1 {
			t.Fatalf("round %d: %d of %d concurrent put-if-absent calls stored; want exactly 1", round, len(won), contenders)
		}
		mustGet(t, s, key, []byte("by "+strconv.Itoa(won[0])))
	}
}

// testConcurrentCounter increments a counter with Get + CompareAndSwap
// retry loops: any lost update shows as a short count.
func testConcurrentCounter(t *testing.T, s server.StateStore) {
	ctx := ctxFor(t)
	const workers, each = 8, 20
	mustPut(t, s, "counter", []byte("0"), longTTL)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				for {
					old, err := s.Get(ctx, "counter")
					if err != nil {
						t.Errorf("Get: %v", err)
						return
					}
					n, _ := strconv.Atoi(string(old))
					ok, err := s.CompareAndSwap(ctx, "counter", old, []byte(strconv.Itoa(n+1)), longTTL)
					if err != nil {
						t.Errorf("CompareAndSwap: %v", err)
						return
					}
					if ok {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	mustGet(t, s, "counter", []byte(strconv.Itoa(workers*each)))
}

// testTakeRacesCAS races one Take against one CompareAndSwap of the same
// key: the Take must return the value the swap left if the swap went first,
// and the swap must fail if the Take went first.
func testTakeRacesCAS(t *testing.T, s server.StateStore) {
	ctx := ctxFor(t)
	for round := range 50 {
		key := "race-" + strconv.Itoa(round)
		mustPut(t, s, key, []byte("v0"), longTTL)
		var (
			taken   []byte
			takeErr error
			swapped bool
			swapErr error
			wg      sync.WaitGroup
		)
		wg.Go(func() { taken, takeErr = s.Take(ctx, key) })
		wg.Go(func() { swapped, swapErr = s.CompareAndSwap(ctx, key, []byte("v0"), []byte("v1"), longTTL) })
		wg.Wait()
		if takeErr != nil || swapErr != nil {
			t.Fatalf("round %d: Take: %v, CompareAndSwap: %v", round, takeErr, swapErr)
		}
		want := "v0"
		if swapped {
			want = "v1"
		}
		if string(taken) != want {
			t.Fatalf("round %d: swapped=%v but Take returned %s; want %q", round, swapped, show(taken), want)
		}
		mustBeAbsent(t, s, key)
	}
}
