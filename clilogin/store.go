package clilogin

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyloop/keyloop/tokenstore"
)

// openDefaultStore opens tokenstore's default store for an app.
func openDefaultStore(app string) (tokenstore.Store, error) {
	st, err := tokenstore.Open(tokenstore.Options{App: app})
	if err != nil {
		return nil, fmt.Errorf("clilogin: open the token store: %w", err)
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
// has one; the returned func releases it.
func (c *Client) lock(ctx context.Context, st tokenstore.Store) (func(), error) {
	l, ok := st.(tokenstore.Locker)
	if !ok {
		return func() {}, nil
	}
	unlock, err := l.Lock(ctx, c.key)
	if err != nil {
		return nil, fmt.Errorf("clilogin: lock the stored login: %w", err)
	}
	return unlock, nil
}

// load reads the stored record; an error wrapping ErrNotLoggedIn when there
// is none.
func (c *Client) load(ctx context.Context, st tokenstore.Store) (*tokenstore.Record, error) {
	b, err := st.Load(ctx, c.key)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return nil, ErrNotLoggedIn
	}
	if err != nil {
		return nil, fmt.Errorf("clilogin: read the stored login: %w", err)
	}
	rec, err := tokenstore.UnmarshalRecord(b)
	if err != nil {
		return nil, fmt.Errorf("clilogin: read the stored login: %w", err)
	}
	return rec, nil
}

// save writes rec and caches it.
func (c *Client) save(ctx context.Context, st tokenstore.Store, rec *tokenstore.Record) error {
	b, err := tokenstore.MarshalRecord(rec)
	if err != nil {
		return fmt.Errorf("clilogin: encode the login: %w", err)
	}
	if err := st.Save(ctx, c.key, b); err != nil {
		return fmt.Errorf("clilogin: store the login: %w", err)
	}
	c.setCached(rec)
	return nil
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
	return &Session{
		Subject: rec.Subject, Account: rec.Account, Issuer: rec.Issuer, Expiry: rec.Expiry,
		Location: loc, CanRefresh: canRefresh(rec),
	}
}
