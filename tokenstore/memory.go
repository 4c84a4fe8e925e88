package tokenstore

import (
	"context"
	"fmt"
	"sync"
)

// Locker is implemented by stores that can hold an exclusive lock on a key,
// across processes where the store is shared across processes. Callers hold
// it around read-modify-write sequences such as a token refresh.
type Locker interface {
	// Lock blocks until the lock on key is held or ctx ends (then it
	// returns an error wrapping ctx.Err()). The returned func releases it.
	Lock(ctx context.Context, key string) (unlock func(), err error)
}

// Memory is a Store that keeps values in memory, for tests. Its zero value is
// not usable; call NewMemory. Its Locker works within the process only.
type Memory struct {
	mu     sync.Mutex
	values map[string][]byte
	locks  map[string]chan struct{}
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{values: map[string][]byte{}, locks: map[string]chan struct{}{}}
}

// Load implements Store.
func (m *Memory) Load(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tokenstore: load: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.values[key]
	if !ok {
		return nil, fmt.Errorf("tokenstore: load %q: %w", key, ErrNotFound)
	}
	return append([]byte(nil), v...), nil
}

// Save implements Store.
func (m *Memory) Save(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tokenstore: save: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.values[key] = append([]byte(nil), value...)
	return nil
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tokenstore: delete: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.values, key)
	return nil
}

// Locate implements Locator.
func (m *Memory) Locate(context.Context, string) (Location, error) {
	return Location{Kind: KindMemory}, nil
}

// Lock implements Locker within one process.
func (m *Memory) Lock(ctx context.Context, key string) (func(), error) {
	for {
		m.mu.Lock()
		held, busy := m.locks[key]
		if !busy {
			ch := make(chan struct{})
			m.locks[key] = ch
			m.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					m.mu.Lock()
					delete(m.locks, key)
					m.mu.Unlock()
					close(ch)
				})
			}, nil
		}
		m.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return nil, fmt.Errorf("tokenstore: lock %q: %w", key, ctx.Err())
		}
	}
}
