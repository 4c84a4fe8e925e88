package server_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyloop/keyloop/server"
)

func TestMemoryStateStore(t *testing.T) {
	ctx := context.Background()
	s := server.NewMemoryStateStore()
	if _, err := s.Get(ctx, "k"); !errors.Is(err, server.ErrStateNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	v := []byte("v1")
	s.Put(ctx, "k", v, time.Minute)
	v[0] = 'X' // the store keeps its own copy
	if b, err := s.Get(ctx, "k"); err != nil || string(b) != "v1" {
		t.Fatalf("Get %q %v", b, err)
	}
	if b, err := s.Take(ctx, "k"); err != nil || string(b) != "v1" {
		t.Fatalf("Take %q %v", b, err)
	}
	if _, err := s.Take(ctx, "k"); !errors.Is(err, server.ErrStateNotFound) {
		t.Fatalf("second Take: %v", err)
	}
	s.Put(ctx, "gone", []byte("x"), 0)
	if _, err := s.Get(ctx, "gone"); !errors.Is(err, server.ErrStateNotFound) {
		t.Fatalf("ttl 0: %v", err)
	}
	s.Put(ctx, "d", []byte("x"), time.Minute)
	s.Delete(ctx, "d")
	if s.Len() != 0 {
		t.Fatalf("Len %d", s.Len())
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Put(cctx, "k", nil, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Put: %v", err)
	}
}

func TestMemoryStateStoreTakeIsExclusive(t *testing.T) {
	ctx := context.Background()
	s := server.NewMemoryStateStore()
	for round := 0; round < 50; round++ {
		s.Put(ctx, "code", []byte("x"), time.Minute)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if _, err := s.Take(ctx, "code"); err == nil {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("round %d: %d winners", round, wins.Load())
		}
	}
}
