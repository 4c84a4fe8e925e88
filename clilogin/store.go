package clilogin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/keyloop/keyloop/tokenstore"
)

// openDefaultStore opens tokenstore's default store for an app.
func openDefaultStore(app string) (tokenstore.Store, error) {
	st, err := tokenstore.Open(tokenstore.Options{App: app})
	if err != nil {
		return nil, &userError{msg: "clilogin: open the token store: " + err.Error(),
			user: "Cannot open the token store: " + sentence(stripPrefixes(err.Error())), errs: []error{ErrStorage, err}}
	}
	return st, nil
}

// storeFor returns the configured store, opening the default one on first use.
func (c *Client) storeFor() (tokenstore.Store, error) {
	c.storeOnce.Do(func() {
		if c.cfg.Store != nil {
			c.store = c.cfg.Store
			return
		}
		c.store, c.storeErr = openDefaultStore(c.cfg.AppName)
	})
	return c.store, c.storeErr
}

// lock takes the store's cross-process lock on the login's key when the store
// has one; the returned func releases it. A lock the store cannot take (its
// directory cannot be created) is an error wrapping ErrStorage; one given up
// because ctx ended wraps ctx.Err().
func (c *Client) lock(ctx context.Context, st tokenstore.Store) (func(), error) {
	l, ok := st.(tokenstore.Locker)
	if !ok {
		return func() {}, nil
	}
	unlock, err := l.Lock(ctx, c.key)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("clilogin: lock the stored login: %w", err)
		}
		return nil, c.storageErr("lock", err)
	}
	return unlock, nil
}

// load reads the stored record: ErrNotLoggedIn when there is none, an
// error wrapping tokenstore.ErrCorrupt when it cannot be decoded, and one
// wrapping ErrStorage when the store failed. A record this Client could not
// save after the server rotated its refresh token is returned instead of
// the stored one.
func (c *Client) load(ctx context.Context, st tokenstore.Store) (*tokenstore.Record, error) {
	c.mu.Lock()
	unsaved := c.unsaved
	c.mu.Unlock()
	if unsaved != nil {
		return unsaved, nil
	}
	b, err := st.Load(ctx, c.key)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return nil, ErrNotLoggedIn
	}
	if err != nil {
		return nil, c.storageErr("read", err)
	}
	rec, err := tokenstore.UnmarshalRecord(b)
	if err != nil {
		return nil, fmt.Errorf("clilogin: read the stored login: %w", err)
	}
	return rec, nil
}

// storageErr wraps a store failure (op is "read", "store", "lock" or "delete") in
// ErrStorage, with a sentence that names the store and does not call it
// "not logged in".
func (c *Client) storageErr(op string, err error) error {
	var what string
	switch op {
	case "read":
		what = "Cannot tell whether you are logged in: "
	case "store":
		what = "Cannot store the login: "
	case "lock":
		what = "Cannot lock the stored login (the lock keeps processes from refreshing it at once): "
	default:
		what = "Cannot remove the stored login: "
	}
	user := what + describeStoreErr(err)
	var ke *tokenstore.KeychainError
	if errors.As(err, &ke) && !ke.Absent {
		user += " Start or unlock it, then try again."
	}
	return &userError{
		msg:  fmt.Sprintf("clilogin: %s the login: %v", op, stripPrefixes(err.Error())),
		user: user,
		errs: []error{ErrStorage, err},
	}
}

// describeStoreErr says what went wrong with the store, for people: a
// clause that ends with a full stop and starts in lower case, to follow
// "…: " or "…, but ".
func describeStoreErr(err error) string {
	var ke *tokenstore.KeychainError
	if errors.As(err, &ke) {
		if ke.Absent {
			return "no OS keychain is available (" + ke.Reason + ")."
		}
		return ke.Where + " is unreachable (" + ke.Reason + ")."
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		// Name the directory, not the file: file names hold internal keys.
		dir := pe.Path
		if pe.Op != "mkdir" {
			dir = filepath.Dir(pe.Path)
		}
		return fmt.Sprintf("the token directory %s cannot be used (%s: %v).", dir, pe.Op, pe.Err)
	}
	s := sentence(stripPrefixes(err.Error()))
	return strings.ToLower(s[:1]) + s[1:]
}

// save writes rec and caches it; on success it forgets any record that
// could not be saved before.
func (c *Client) save(ctx context.Context, st tokenstore.Store, rec *tokenstore.Record) error {
	b, err := tokenstore.MarshalRecord(rec)
	if err != nil {
		return fmt.Errorf("clilogin: encode the login: %w", err)
	}
	if err := st.Save(ctx, c.key, b); err != nil {
		return c.storageErr("store", err)
	}
	c.mu.Lock()
	c.cached, c.unsaved = rec, nil
	c.mu.Unlock()
	return nil
}

// keepUnsaved remembers rec, which the store refused, as this Client's
// login: it holds a refresh token the server has rotated to, and the
// stored one is spent.
func (c *Client) keepUnsaved(rec *tokenstore.Record) {
	c.mu.Lock()
	c.cached, c.unsaved = rec, rec
	c.mu.Unlock()
}

func (c *Client) setCached(rec *tokenstore.Record) {
	c.mu.Lock()
	c.cached = rec
	c.mu.Unlock()
}

func (c *Client) getCached() *tokenstore.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cached
}

// locate reports where the login is kept, when the store can say.
func (c *Client) locate(ctx context.Context, st tokenstore.Store) tokenstore.Location {
	if l, ok := st.(tokenstore.Locator); ok {
		if loc, err := l.Locate(ctx, c.key); err == nil {
			return loc
		}
	}
	return tokenstore.Location{}
}

func sessionOf(rec *tokenstore.Record, loc tokenstore.Location) *Session {
	s := &Session{
		Subject: rec.Subject, Account: rec.Account, Issuer: rec.Issuer, Expiry: rec.Expiry,
		Location: loc, CanRefresh: canRefresh(rec),
	}
	if e := rec.Ended; e != nil {
		s.Ended = &LoginEnd{At: e.At, Reason: EndReason(e.Reason), Description: e.Description}
	}
	return s
}
