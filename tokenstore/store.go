// Package tokenstore keeps CLI login tokens at rest: in the OS keychain, in a
// file under the user's config directory when no keychain is available, or in
// memory for tests.
//
// A Store holds opaque byte values under string keys. What a login stores is a
// Record, encoded with MarshalRecord and read back with UnmarshalRecord; the
// encoding is versioned so a newer library reads what an older one wrote.
//
// A CLI calls Open once with its name: the store it returns keeps values in
// the OS keychain (Keychain), falls back to files under the user's config
// directory (File) when no keychain is available (Locate says where and
// why, for the CLI to show), and can be forced to either with Options.Mode.
// A keychain that exists but cannot be reached is never read as "nothing
// stored": such errors wrap ErrKeychainUnavailable and not ErrNotFound. Key names the entry of one login
// (profile, issuer, client), and the Locker that Open's and File's stores
// implement serializes read-modify-write sequences such as a token refresh
// across processes.
//
// tokenstore knows nothing of OAuth flows or of the packages that use it.
package tokenstore

import (
	"context"
	"errors"
)

// Store keeps byte values under string keys.
//
// Implementations must be safe for concurrent use by multiple goroutines.
// Every method honours ctx: a call that cannot finish before ctx ends returns
// an error wrapping ctx.Err(). A Save either stores the whole value or leaves
// the previous value readable; a reader never sees a partial value.
// Errors never contain the stored value.
type Store interface {
	// Load returns the value stored under key, or an error wrapping
	// ErrNotFound when there is none.
	Load(ctx context.Context, key string) ([]byte, error)
	// Save stores value under key, replacing any previous value atomically.
	Save(ctx context.Context, key string, value []byte) error
	// Delete removes the value under key. Deleting a missing key is not an
	// error.
	Delete(ctx context.Context, key string) error
}

// Kind names where a value is kept, as reported to users by a CLI's status
// command.
type Kind string

// The kinds of storage.
const (
	KindKeychain Kind = "keychain"
	KindFile     Kind = "file"
	KindEnv      Kind = "env"
	KindMemory   Kind = "memory"
)

// Location says where the value under a key is kept.
type Location struct {
	// Kind is the kind of storage: KindKeychain, KindFile, KindEnv, ….
	Kind Kind
	// Path is the file's path when Kind is KindFile, else empty.
	Path string
	// Why says, for people, why a value is kept in a file rather than the
	// OS keychain ("no OS keychain is available: no D-Bus session bus
	// (…)"); empty when Kind is not KindFile or the store cannot say.
	Why string
}

// Locator is implemented by stores that can say where a key's value is kept.
type Locator interface {
	// Locate reports where the value under key is kept, or would be kept by
	// the next Save when there is none yet.
	Locate(ctx context.Context, key string) (Location, error)
}

// Sentinel errors, usable with errors.Is.
var (
	// ErrNotFound means no value is stored under the key.
	ErrNotFound = errors.New("tokenstore: not found")
	// ErrCorrupt means a stored value exists but cannot be read back
	// (a damaged file, a half-written set of chunks, an unknown format).
	ErrCorrupt = errors.New("tokenstore: stored value is corrupt")
)
