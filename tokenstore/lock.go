package tokenstore

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/gofrs/flock"
)

// lockPoll is how often a waiting Lock retries the lock file.
const lockPoll = 10 * time.Millisecond

// dirLocker is a Locker across processes: it holds an exclusive flock(2)
// (LockFileEx on Windows) on <dir>/<file name of key>.lock, after an
// in-process lock on the same key so goroutines of one process also exclude
// each other on every OS. Lock files are created 0600 and never removed:
// removing a lock file while another process waits on it would let two
// processes hold "the" lock at once.
type dirLocker struct {
	dir   string
	local *Memory      // only its in-process Locker is used
	ready func() error // creates dir, or checks it is fit for lock files
}

// lockPath returns the lock file's path for key.
func (l *dirLocker) lockPath(key string) string {
	return filepath.Join(l.dir, fileName(key)+".lock")
}

// Lock implements Locker.
func (l *dirLocker) Lock(ctx context.Context, key string) (func(), error) {
	unlockLocal, err := l.local.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	if err := l.ready(); err != nil {
		unlockLocal()
		return nil, fmt.Errorf("tokenstore: lock %q: %w", key, err)
	}
	fl := flock.New(l.lockPath(key), flock.SetPermissions(0o600))
	ok, err := fl.TryLockContext(ctx, lockPoll)
	if err != nil || !ok {
		unlockLocal()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("tokenstore: lock %q: %w", key, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = fl.Unlock() // closes the file; the kernel drops the lock with it
			unlockLocal()
		})
	}, nil
}
