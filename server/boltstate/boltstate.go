// Package boltstate is a server.StateStore for a single-instance backend
// that keeps its logins across restarts: one bbolt file (go.etcd.io/bbolt,
// the embedded B+tree database etcd uses), written 0600.
//
// Every change is one bbolt transaction that is on disk (fdatasync) before
// the call returns, so a crash at any point leaves the file as it was after
// the last call that returned. Changes that arrive together share one commit
// (group commit), so throughput grows with concurrency instead of being
// bound by the disk's sync latency. The cost of a change is a B+tree update,
// O(log n) in the number of stored entries; nothing rewrites the whole
// state. Expired entries are never returned; a background goroutine deletes
// them, walking an expiry index so that it only visits entries that have
// expired.
//
// One process at a time: Open takes an exclusive lock on the file. Several
// instances of a handler need a shared store (server/redisstate).
package boltstate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/keyloop/keyloop/server"
)

// Config configures a Store.
type Config struct {
	// Path is the database file. Its directory is created 0700 when
	// missing; the file is created 0600. An existing file that others may
	// read or write is refused. Required.
	Path string
	// Now is the clock for expiry. Nil means time.Now.
	Now func() time.Time
	// SweepInterval is how often the background sweep deletes expired
	// entries. Zero means one minute; negative turns the background sweep
	// off (expired entries are still never returned; Sweep deletes them).
	SweepInterval time.Duration
	// LockTimeout is how long Open waits for another process that holds
	// the file. Zero means one second.
	LockTimeout time.Duration
	// CallTimeout bounds how long a change waits for its turn to be
	// written when the caller's context has no earlier deadline. Zero
	// means ten seconds.
	CallTimeout time.Duration
	// Logger receives errors of the background sweep. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Store is a server.StateStore in one bbolt file. It is safe for concurrent
// use. Close it to stop the background sweep and release the file.
type Store struct {
	db          *bolt.DB
	path        string
	now         func() time.Time
	log         *slog.Logger
	callTimeout time.Duration

	ops     chan *op
	mu      sync.RWMutex // held for reading while sending to ops; Close takes it to close ops
	closed  bool
	writerX chan struct{} // closed when the writer goroutine has ended
	stop    chan struct{} // closed by Close: the sweeper ends
	sweepX  chan struct{} // closed when the sweeper has ended

	sweepVisited atomic.Int64 // index entries the sweeps visited (tests)
}

// ErrClosed is wrapped by the methods of a Store that was closed. It wraps
// server.ErrStateUnavailable.
var ErrClosed = fmt.Errorf("boltstate: store closed: %w", server.ErrStateUnavailable)

// ErrConflict is returned by MigrateFileState when the Store already holds
// entries that did not come from the file being migrated.
var ErrConflict = errors.New("boltstate: two state files hold logins")

// Buckets and meta keys.
var (
	bucketEntries = []byte("entries") // key → 8-byte expiry (Unix ns, big-endian) ‖ value
	bucketExpiry  = []byte("expiry")  // 8-byte expiry ‖ key → empty
	bucketMeta    = []byte("meta")    // format version, migration marker
	metaVersion   = []byte("version")
	metaMigrated  = []byte("migrated-from")
)

// formatVersion is the layout of the buckets above.
const formatVersion = "1"

// maxKeyLen keeps expiry index keys within bbolt's key limit.
const maxKeyLen = bolt.MaxKeySize - 8

// maxBatch bounds the changes committed in one transaction.
const maxBatch = 512

// sweepChunk bounds the expired entries one sweep transaction deletes, so a
// sweep never holds the writer for long.
const sweepChunk = 1000

// Open opens or creates the store at cfg.Path and starts its background
// sweep. A file it cannot use (damaged, from a newer version, readable by
// others, locked by another process past LockTimeout) is an error, never an
// empty state.
func Open(cfg Config) (*Store, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("%w: boltstate.Config.Path is required", server.ErrInvalidConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = time.Minute
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = time.Second
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("boltstate: %w", err)
	}
	if st, err := os.Stat(cfg.Path); err == nil && runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("boltstate: state file %s has mode %v; others may read it (run chmod 600 %s)", cfg.Path, st.Mode().Perm(), cfg.Path)
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{
		Timeout: cfg.LockTimeout,
		// The freelist is rebuilt at Open instead of written at every
		// commit, and kept in a hash map: commits stay small as the file
		// grows (etcd's settings).
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("boltstate: state file %s is in use by another process (one backend per state file)", cfg.Path)
	case err != nil:
		return nil, fmt.Errorf("boltstate: state file %s cannot be opened (%w); move it away to start afresh", cfg.Path, err)
	}
	var versionErr error
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(metaVersion); {
		case v == nil:
			if err := meta.Put(metaVersion, []byte(formatVersion)); err != nil {
				return err
			}
		case string(v) != formatVersion:
			versionErr = fmt.Errorf("boltstate: state file %s has format version %q; this program reads version %s", cfg.Path, v, formatVersion)
			return versionErr
		}
		for _, b := range [][]byte{bucketEntries, bucketExpiry} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		if versionErr != nil {
			return nil, versionErr
		}
		return nil, fmt.Errorf("boltstate: state file %s: %w", cfg.Path, err)
	}
	s := &Store{
		db: db, path: cfg.Path, now: cfg.Now, log: cfg.Logger, callTimeout: cfg.CallTimeout,
		ops: make(chan *op, maxBatch), writerX: make(chan struct{}), stop: make(chan struct{}), sweepX: make(chan struct{}),
	}
	go s.writer()
	if cfg.SweepInterval > 0 {
		go s.sweeper(cfg.SweepInterval)
	} else {
		close(s.sweepX)
	}
	return s, nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Close stops the background sweep, waits for changes in flight, and closes
// the file. Calls after Close fail with ErrClosed. Close is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	close(s.ops)
	s.mu.Unlock()
	<-s.sweepX
	<-s.writerX
	return s.db.Close()
}

// op kinds.
const (
	opPut = iota
	opTake
	opDelete
	opCAS
	opSweep
	opBatch
)

// op states: a queued op is claimed by the writer or canceled by its caller,
// whichever comes first; a canceled op changes nothing.
const (
	opQueued int32 = iota
	opClaimed
	opCanceled
)

// op is one change waiting for the writer.
type op struct {
	kind  int
	key   []byte
	rec   []byte // expiry ‖ value for Put and CAS; nil: remove
	old   []byte // CAS: expected value; nil: absent
	batch []*op  // opBatch: the puts, applied in order; opCAS: applied if it swapped
	state atomic.Int32
	done  chan struct{}

	// results, set by the writer before done is closed
	value []byte
	found bool
	n     int
	err   error
}

// Put implements server.StateStore. A ttl ≤ 0 removes key.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	o, err := s.newOp(ctx, opPut, key, value, ttl)
	if err != nil {
		return fmt.Errorf("boltstate: put: %w", err)
	}
	if err := s.do(ctx, o); err != nil {
		return fmt.Errorf("boltstate: put: %w", err)
	}
	return nil
}

// PutBatch implements server.StateBatchPutter: the records are stored, as
// Put stores them, in one transaction (one commit for all), or on error
// none of them.
func (s *Store) PutBatch(ctx context.Context, puts []server.StatePut) error {
	if err := ctx.Err(); err != nil || len(puts) == 0 {
		if err != nil {
			return fmt.Errorf("boltstate: put batch: %w", err)
		}
		return nil
	}
	o := &op{kind: opBatch, done: make(chan struct{}), batch: make([]*op, len(puts))}
	for i, p := range puts {
		po, err := s.newOp(ctx, opPut, p.Key, p.Value, p.TTL)
		if err != nil {
			return fmt.Errorf("boltstate: put batch: %w", err)
		}
		o.batch[i] = po
	}
	if err := s.do(ctx, o); err != nil {
		return fmt.Errorf("boltstate: put batch: %w", err)
	}
	return nil
}

// Get implements server.StateStore.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("boltstate: get: %w", err)
	}
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("boltstate: get: %w", err)
	}
	now := s.now().UnixNano()
	var v []byte
	err := s.view(func(tx *bolt.Tx) error {
		rec := tx.Bucket(bucketEntries).Get([]byte(key))
		if len(rec) < 8 || expiryOf(rec) <= now {
			return nil
		}
		v = append([]byte{}, rec[8:]...)
		return nil
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("boltstate: get: %w", err)
	case v == nil:
		return nil, server.ErrStateNotFound
	}
	return v, nil
}

// Take implements server.StateStore: the entry is deleted on disk before
// Take returns it, so a restart cannot hand it out again.
func (s *Store) Take(ctx context.Context, key string) ([]byte, error) {
	o, err := s.newOp(ctx, opTake, key, nil, 0)
	if err == nil {
		err = s.do(ctx, o)
	}
	switch {
	case err != nil:
		return nil, fmt.Errorf("boltstate: take: %w", err)
	case !o.found:
		return nil, server.ErrStateNotFound
	}
	return o.value, nil
}

// Delete implements server.StateStore.
func (s *Store) Delete(ctx context.Context, key string) error {
	o, err := s.newOp(ctx, opDelete, key, nil, 0)
	if err == nil {
		err = s.do(ctx, o)
	}
	if err != nil {
		return fmt.Errorf("boltstate: delete: %w", err)
	}
	return nil
}

// CompareAndSwap stores value under key for ttl (a ttl ≤ 0 removes key) if
// and only if key holds exactly old (old == nil: key is absent or expired),
// and reports whether it did, in one atomic step.
func (s *Store) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	o, err := s.newOp(ctx, opCAS, key, value, ttl)
	if err == nil {
		o.old = old
		err = s.do(ctx, o)
	}
	if err != nil {
		return false, fmt.Errorf("boltstate: compare-and-swap: %w", err)
	}
	return o.found, nil
}

// SwapAndPut implements server.StateSwapPutter: CompareAndSwap and, if it
// swapped, the puts, in one transaction (one commit for all).
func (s *Store) SwapAndPut(ctx context.Context, key string, old, value []byte, ttl time.Duration, puts []server.StatePut) (bool, error) {
	o, err := s.newOp(ctx, opCAS, key, value, ttl)
	if err != nil {
		return false, fmt.Errorf("boltstate: swap and put: %w", err)
	}
	o.old = old
	o.batch = make([]*op, len(puts))
	for i, p := range puts {
		if o.batch[i], err = s.newOp(ctx, opPut, p.Key, p.Value, p.TTL); err != nil {
			return false, fmt.Errorf("boltstate: swap and put: %w", err)
		}
	}
	if err := s.do(ctx, o); err != nil {
		return false, fmt.Errorf("boltstate: swap and put: %w", err)
	}
	return o.found, nil
}

// Len returns the number of unexpired entries. It reads every entry; it is
// meant for tests and metrics.
func (s *Store) Len(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("boltstate: len: %w", err)
	}
	now := s.now().UnixNano()
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEntries).ForEach(func(_, rec []byte) error {
			if len(rec) >= 8 && expiryOf(rec) > now {
				n++
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("boltstate: len: %w", err)
	}
	return n, nil
}

// Sweep deletes every expired entry now and returns how many it deleted.
// The background sweep calls it every Config.SweepInterval.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		o := &op{kind: opSweep, done: make(chan struct{})}
		if err := s.do(ctx, o); err != nil {
			return total, fmt.Errorf("boltstate: sweep: %w", err)
		}
		total += o.n
		if o.n < sweepChunk {
			return total, nil
		}
	}
}

// Entry is one entry with its absolute expiry, for Import.
type Entry struct {
	// Key is the entry's key, as given to Put.
	Key string
	// Value is stored as is.
	Value []byte
	// Expires is when the entry stops existing; an entry whose Expires has
	// passed is skipped.
	Expires time.Time
}

// Import stores entries (replacing entries with the same keys) in one
// transaction: all of them or, on error, none. Entries already expired are
// skipped. It is meant for moving state from another store and for loading
// test data; the handler's changes go through Put.
func (s *Store) Import(ctx context.Context, entries []Entry) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("boltstate: import: %w", err)
	}
	if err := s.update(func(tx *bolt.Tx) error { return s.importTx(tx, entries) }); err != nil {
		return fmt.Errorf("boltstate: import: %w", err)
	}
	return nil
}

func (s *Store) importTx(tx *bolt.Tx, entries []Entry) error {
	now := s.now().UnixNano()
	eb, xb := tx.Bucket(bucketEntries), tx.Bucket(bucketExpiry)
	// In key order, B+tree inserts touch each page once.
	sorted := slices.SortedFunc(slices.Values(entries), func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
	for _, e := range sorted {
		if err := checkKey(e.Key); err != nil {
			return err
		}
		exp := e.Expires.UnixNano()
		if exp <= now {
			continue
		}
		if err := put(eb, xb, []byte(e.Key), record(exp, e.Value)); err != nil {
			return err
		}
	}
	return nil
}

// view runs fn in a read transaction unless the store is closed.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.db.View(fn)
}

// update runs fn in its own write transaction unless the store is closed.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.db.Update(fn)
}

func checkKey(key string) error {
	switch {
	case key == "":
		return errors.New("empty key")
	case len(key) > maxKeyLen:
		return fmt.Errorf("key of %d bytes; the limit is %d", len(key), maxKeyLen)
	}
	return nil
}

// newOp validates a change and prepares its record.
func (s *Store) newOp(ctx context.Context, kind int, key string, value []byte, ttl time.Duration) (*op, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	o := &op{kind: kind, key: []byte(key), done: make(chan struct{})}
	if (kind == opPut || kind == opCAS) && ttl > 0 {
		o.rec = record(s.now().Add(ttl).UnixNano(), value)
	}
	return o, nil
}

// record returns expiry ‖ value.
func record(exp int64, value []byte) []byte {
	rec := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(rec, uint64(exp))
	copy(rec[8:], value)
	return rec
}

func expiryOf(rec []byte) int64 { return int64(binary.BigEndian.Uint64(rec)) }

// indexKey is the expiry index key of key expiring at exp.
func indexKey(exp []byte, key []byte) []byte {
	ik := make([]byte, 0, 8+len(key))
	return append(append(ik, exp[:8]...), key...)
}

// do hands o to the writer and waits for its result. While o is queued,
// the end of ctx (or CallTimeout) cancels it, and it changes nothing; once
// the writer has claimed it, do waits for the commit.
func (s *Store) do(ctx context.Context, o *op) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.ops <- o:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	t := time.NewTimer(s.callTimeout)
	defer t.Stop()
	select {
	case <-o.done:
		return o.err
	case <-ctx.Done():
		if o.state.CompareAndSwap(opQueued, opCanceled) {
			return ctx.Err()
		}
	case <-t.C:
		if o.state.CompareAndSwap(opQueued, opCanceled) {
			return fmt.Errorf("%w: the state file %s did not accept the change within %v", server.ErrStateUnavailable, s.path, s.callTimeout)
		}
	}
	<-o.done
	return o.err
}

// writer commits queued changes, as many as are waiting in one transaction
// (group commit), until ops is closed.
func (s *Store) writer() {
	defer close(s.writerX)
	batch := make([]*op, 0, maxBatch)
	for o := range s.ops {
		batch = append(batch[:0], o)
	more:
		for len(batch) < maxBatch {
			select {
			case o, ok := <-s.ops:
				if !ok {
					break more
				}
				batch = append(batch, o)
			default:
				break more
			}
		}
		s.commit(batch)
	}
}

// commit applies batch in one transaction and reports to each op.
func (s *Store) commit(batch []*op) {
	live := batch[:0:0]
	for _, o := range batch {
		if o.state.CompareAndSwap(opQueued, opClaimed) {
			live = append(live, o)
		} else {
			close(o.done)
		}
	}
	if len(live) == 0 {
		return
	}
	now := s.now().UnixNano()
	err := s.db.Update(func(tx *bolt.Tx) error {
		eb, xb := tx.Bucket(bucketEntries), tx.Bucket(bucketExpiry)
		for _, o := range live {
			if err := s.apply(eb, xb, o, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("%w: writing %s: %w", server.ErrStateUnavailable, s.path, err)
	}
	for _, o := range live {
		if err != nil {
			o.err, o.value, o.found, o.n = err, nil, false, 0
		}
		close(o.done)
	}
}

// apply performs o in a write transaction.
func (s *Store) apply(eb, xb *bolt.Bucket, o *op, now int64) error {
	switch o.kind {
	case opSweep:
		n, err := s.sweepTx(eb, xb, now)
		o.n = n
		return err
	case opBatch:
		for _, p := range o.batch {
			if err := s.apply(eb, xb, p, now); err != nil {
				return err
			}
		}
		return nil
	}
	cur := eb.Get(o.key)
	live := len(cur) >= 8 && expiryOf(cur) > now
	switch o.kind {
	case opTake:
		if live {
			o.value, o.found = append([]byte{}, cur[8:]...), true
		}
		if cur != nil {
			return remove(eb, xb, o.key, cur)
		}
		return nil
	case opDelete:
		if cur != nil {
			return remove(eb, xb, o.key, cur)
		}
		return nil
	case opCAS:
		if o.old == nil && live || o.old != nil && (!live || !bytes.Equal(cur[8:], o.old)) {
			return nil
		}
		o.found = true
		if len(o.batch) > 0 {
			if err := replace(eb, xb, o.key, o.rec, cur); err != nil {
				return err
			}
			for _, p := range o.batch {
				if err := s.apply(eb, xb, p, now); err != nil {
					return err
				}
			}
			return nil
		}
	}
	// opPut, or a CAS that matched.
	return replace(eb, xb, o.key, o.rec, cur)
}

// replace stores rec under key, whose stored record is cur (nil: none), or
// removes key when rec is nil.
func replace(eb, xb *bolt.Bucket, key, rec, cur []byte) error {
	if rec == nil {
		if cur != nil {
			return remove(eb, xb, key, cur)
		}
		return nil
	}
	return put(eb, xb, key, rec)
}

// put stores rec under key with its index entry, replacing any previous
// record of key.
func put(eb, xb *bolt.Bucket, key, rec []byte) error {
	if old := eb.Get(key); old != nil {
		if err := remove(eb, xb, key, old); err != nil {
			return err
		}
	}
	if err := eb.Put(key, rec); err != nil {
		return err
	}
	return xb.Put(indexKey(rec, key), nil)
}

// remove deletes key, whose stored record is cur, with its index entry.
func remove(eb, xb *bolt.Bucket, key, cur []byte) error {
	if len(cur) >= 8 {
		if err := xb.Delete(indexKey(cur, key)); err != nil {
			return err
		}
	}
	return eb.Delete(key)
}

// sweepTx deletes up to sweepChunk expired entries, visiting the expiry
// index in order, and stops at the first unexpired one.
func (s *Store) sweepTx(eb, xb *bolt.Bucket, now int64) (int, error) {
	var expired [][]byte
	c := xb.Cursor()
	for k, _ := c.First(); k != nil && len(expired) < sweepChunk; k, _ = c.Next() {
		s.sweepVisited.Add(1)
		if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) > now {
			break
		}
		expired = append(expired, append([]byte{}, k...))
	}
	for _, ik := range expired {
		if err := xb.Delete(ik); err != nil {
			return 0, err
		}
		key := ik[8:]
		// The entry may have been replaced since; only delete the record
		// this index entry stands for.
		if rec := eb.Get(key); len(rec) >= 8 && bytes.Equal(rec[:8], ik[:8]) {
			if err := eb.Delete(key); err != nil {
				return 0, err
			}
		}
	}
	return len(expired), nil
}

// sweeper runs Sweep every interval until Close.
func (s *Store) sweeper(interval time.Duration) {
	defer close(s.sweepX)
	t := time.NewTicker(interval)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if n, err := s.Sweep(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, ErrClosed) {
			s.log.Error("boltstate: sweeping expired entries", "path", s.path, "err", err)
		} else if n > 0 {
			s.log.Debug("boltstate: swept expired entries", "path", s.path, "n", n)
		}
	}
}
