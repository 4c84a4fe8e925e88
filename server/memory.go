package server

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"
)

// MemoryStateStore is a StateStore that keeps everything in the memory of one
// process. It is safe for concurrent use. Entries expire after their TTL;
// expired entries are never returned and are swept out as the store is used.
//
// Use it for development and single-instance deployments; several instances
// of a Handler need a shared StateStore instead.
type MemoryStateStore struct {
	now func() time.Time

	mu        sync.Mutex
	m         map[string]memEntry
	lastSweep time.Time
}

type memEntry struct {
	value   []byte
	expires time.Time
}

// sweepEvery bounds how often Put scans the whole map for expired entries.
const sweepEvery = time.Minute

// NewMemoryStateStore returns an empty in-memory StateStore using the system
// clock for expiry.
func NewMemoryStateStore() *MemoryStateStore {
	return &MemoryStateStore{now: time.Now, m: make(map[string]memEntry)}
}

// Put implements StateStore. A ttl ≤ 0 stores nothing and removes key.
func (s *MemoryStateStore) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("server: state put: %w", err)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.store(now, key, value, ttl)
	return nil
}

// store puts or (ttl ≤ 0) removes key, sweeping expired entries at most
// every sweepEvery. s.mu must be held.
func (s *MemoryStateStore) store(now time.Time, key string, value []byte, ttl time.Duration) {
	if ttl <= 0 {
		delete(s.m, key)
		return
	}
	if now.Sub(s.lastSweep) >= sweepEvery {
		for k, e := range s.m {
			if !now.Before(e.expires) {
				delete(s.m, k)
			}
		}
		s.lastSweep = now
	}
	s.m[key] = memEntry{value: append([]byte{}, value...), expires: now.Add(ttl)}
}

// CompareAndSwap implements StateStore.
func (s *MemoryStateStore) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("server: state compare-and-swap: %w", err)
	}
	return s.swapAndPut(key, old, value, ttl, nil), nil
}

// SwapAndPut implements StateSwapPutter: CompareAndSwap and, if it
// swapped, the puts, under one lock.
func (s *MemoryStateStore) SwapAndPut(ctx context.Context, key string, old, value []byte, ttl time.Duration, puts []StatePut) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("server: state swap and put: %w", err)
	}
	return s.swapAndPut(key, old, value, ttl, puts), nil
}

// swapAndPut stores value under key when key holds old (nil: nothing live)
// and then puts, under one lock; false when key held something else.
func (s *MemoryStateStore) swapAndPut(key string, old, value []byte, ttl time.Duration, puts []StatePut) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if ok && !now.Before(e.expires) {
		ok = false
	}
	if old == nil && ok || old != nil && (!ok || !bytes.Equal(old, e.value)) {
		return false
	}
	s.store(now, key, value, ttl)
	for _, p := range puts {
		s.store(now, p.Key, p.Value, p.TTL)
	}
	return true
}

// Get implements StateStore.
func (s *MemoryStateStore) Get(ctx context.Context, key string) ([]byte, error) {
	return s.get(ctx, key, false)
}

// Take implements StateStore.
func (s *MemoryStateStore) Take(ctx context.Context, key string) ([]byte, error) {
	return s.get(ctx, key, true)
}

func (s *MemoryStateStore) get(ctx context.Context, key string, del bool) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("server: state get: %w", err)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if ok && !now.Before(e.expires) {
		delete(s.m, key)
		ok = false
	}
	if !ok {
		return nil, ErrStateNotFound
	}
	if del {
		delete(s.m, key)
	}
	return append([]byte(nil), e.value...), nil
}

// Delete implements StateStore.
func (s *MemoryStateStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("server: state delete: %w", err)
	}
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
	return nil
}

// Len returns the number of unexpired entries; it is meant for tests and
// metrics.
func (s *MemoryStateStore) Len() int {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.m {
		if now.Before(e.expires) {
			n++
		}
	}
	return n
}
