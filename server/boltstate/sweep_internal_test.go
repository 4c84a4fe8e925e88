package boltstate

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// stored counts the records and index entries in the file, expired or not.
func stored(t *testing.T, s *Store) (records, index int) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		records = tx.Bucket(bucketEntries).Stats().KeyN
		index = tx.Bucket(bucketExpiry).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return records, index
}

func TestBackgroundSweepDeletesExpiredEntries(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	s, err := Open(Config{Path: filepath.Join(t.TempDir(), "state.db"), Now: clock, SweepInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for i := range 50 {
		if err := s.Put(ctx, fmt.Sprintf("short%d", i), []byte("x"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// Replaced entries leave no stale index entry behind.
	for i := range 10 {
		if err := s.Put(ctx, fmt.Sprintf("short%d", i), []byte("y"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, "long", []byte("x"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if r, x := stored(t, s); r != 51 || x != 51 {
		t.Fatalf("stored %d records, %d index entries; want 51 and 51", r, x)
	}
	now.Add(int64(2 * time.Minute))
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, x := stored(t, s)
		if r == 1 && x == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s the background sweep left %d records, %d index entries; want 1 and 1", r, x)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v, err := s.Get(ctx, "long"); err != nil || string(v) != "x" {
		t.Fatalf("the sweep removed a live entry: %q, %v", v, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.sweepX:
	default:
		t.Fatal("Close returned with the sweeper still running")
	}
}

// TestSweepVisitsOnlyExpiredEntries: the sweep walks the expiry index and
// stops at the first live entry, whatever the number of live entries.
func TestSweepVisitsOnlyExpiredEntries(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	s, err := Open(Config{Path: filepath.Join(t.TempDir(), "state.db"), SweepInterval: -1,
		Now: func() time.Time { return time.Unix(0, now.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	live := make([]Entry, 5000)
	for i := range live {
		live[i] = Entry{Key: fmt.Sprintf("live%d", i), Value: []byte("x"), Expires: s.now().Add(time.Hour)}
	}
	if err := s.Import(ctx, live); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := s.Put(ctx, fmt.Sprintf("dead%d", i), []byte("x"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	now.Add(int64(2 * time.Minute))
	n, err := s.Sweep(ctx)
	if err != nil || n != 10 {
		t.Fatalf("Sweep = %d, %v; want 10", n, err)
	}
	if v := s.sweepVisited.Load(); v != 11 {
		t.Fatalf("the sweep visited %d index entries; want 11 (10 expired, then the first live one)", v)
	}
}
