package server

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMemoryStateStoreExpiry(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewMemoryStateStore()
	s.now = func() time.Time { return now }
	s.Put(ctx, "a", []byte("x"), time.Minute)
	s.Put(ctx, "b", []byte("x"), time.Hour)
	now = now.Add(time.Minute - time.Nanosecond)
	if _, err := s.Get(ctx, "a"); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	now = now.Add(time.Nanosecond)
	if _, err := s.Take(ctx, "a"); !errors.Is(err, ErrStateNotFound) {
		t.Fatalf("at expiry: %v", err)
	}
	// The sweep on Put drops expired entries that are never read again.
	s.Put(ctx, "c", []byte("x"), time.Second)
	now = now.Add(2 * sweepEvery)
	s.Put(ctx, "d", []byte("x"), 2*sweepEvery)
	s.mu.Lock()
	n := len(s.m)
	s.mu.Unlock()
	if n != 2 { // "b" (1h) and "d"
		t.Fatalf("%d entries after sweep, want 2", n)
	}
}
