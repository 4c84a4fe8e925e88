// Command backend is keyloop's example backend: an authorization server for
// CLI browser logins plus one protected API route, GET /api/me. It is an
// OpenID Provider too: any OpenID Connect client (kubelogin, oauth2c,
// go-oidc) logs in with nothing but its URL and the client ID "mytool"
// (discovery at /.well-known/openid-configuration, ID tokens signed RS256
// with a key kept under -data, userinfo at /oauth/userinfo).
//
// Dev mode signs users in with any e-mail address and signs access tokens
// ("aud": -audience, default the issuer URL) with an Ed25519 key it creates
// and keeps under -data, or with the shared key set
// in -keys DIR (one PEM or JWK file per key, named after its key ID, and a
// file "active" naming the key that signs; see server.LoadKeyDir), which
// several replicas read alike and which is re-read every -keys-reload and
// on SIGHUP, so keys rotate without a restart. Clerk mode, on when
// CLERK_SECRET_KEY is set, signs users in with Clerk and mints tokens from a
// Clerk JWT template:
//
//	CLERK_SECRET_KEY          Backend API secret key (server-side only)
//	CLERK_PUBLISHABLE_KEY     publishable key for the sign-in page
//	CLERK_JWT_TEMPLATE        JWT template name (default "cli")
//	CLERK_AUDIENCE            the template's "aud", required at /api/me when set
//	CLERK_API_URL             Backend API URL for the SDK (default Clerk's)
//	CLERK_FRONTEND_API_URL    Frontend API URL, the tokens' iss (default: the proxy, or the publishable key's)
//	CLERK_PROXY_URL           your proxy of the Frontend API (production instances)
//	CLERK_IS_SATELLITE        "true" when this backend is on a satellite domain
//	CLERK_DOMAIN              the satellite domain
//	CLERK_SIGN_IN_URL         sign-in page (a satellite's primary sign-in)
//	CLERK_SIGN_UP_URL         sign-up page
//	CLERK_ALLOW_IMPERSONATION "true" lets impersonated Clerk sessions log in
//	CLERK_WEBHOOK_SECRET      Svix signing secret; enables POST /webhooks/clerk
//
// At start-up in Clerk mode it checks the JWT template through the Backend
// API (clerk.Provider.CheckSetup) and refuses to start when it is not set up
// as the README says.
//
//	backend [-addr HOST:PORT] [-data DIR] [-clients ID,…] [-keys DIR] [-keys-reload DURATION] [-token-ttl DURATION] [-issuer URL] [-audience URI] [-redis URL]
//
// -clients lists the client IDs of the CLIs it serves (default mytool); a
// CLI with another ID sees "Unknown application" in the browser, and the
// backend logs the -clients value that would serve it.
//
// With -redis, the login state (and the Clerk webhook replay guard) lives
// in that Redis, so several backends sharing it, one -issuer and one key set
// (-keys) can run behind a load balancer; without it, the state is kept
// under -data for this one process.
//
// Without -redis, the login state (pending sign-ins, codes, refresh tokens,
// revocations) is kept in DIR/state.db, a bbolt file (server/boltstate), so
// logins survive a restart; one backend process per -data directory. A state.json left there
// by earlier versions is moved into state.db at start and deleted; when both
// hold logins the backend refuses to start and says which to move away.
//
// The first line on stdout is "keyloop backend listening on http://HOST:PORT";
// that URL is the issuer CLIs are configured with.
package main

import (
	"cmp"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/boltstate"
	"github.com/keyloop/keyloop/server/clerk"
	"github.com/keyloop/keyloop/server/redisstate"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}

// stderr receives the usage text and the log; tests replace it.
var stderr io.Writer = os.Stderr

// run serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8787", "listen address `HOST:PORT`; an empty HOST means 127.0.0.1, and port 0 (as in 127.0.0.1:0 or :0) picks a free port")
	data := fs.String("data", defaultDataDir(), "directory for the dev keys and the login state (pending sign-ins, refresh tokens, revocations)")
	ttl := fs.Duration("token-ttl", 168*time.Hour, "lifetime of minted access tokens")
	issuer := fs.String("issuer", "", "issuer URL to publish (default: http:// plus the listen address)")
	keysDir := fs.String("keys", "", "`DIR` of signing keys shared by replicas: one PEM or JWK file per key (file name = key ID) and a file \"active\" naming the key that signs (default: a key generated once under -data)")
	keysReload := fs.Duration("keys-reload", server.DefaultKeyReloadInterval, "how often to re-read -keys (0: only on SIGHUP)")
	audience := fs.String("audience", "", "dev mode: the \"aud\" of access tokens, the API they are for (default: the issuer URL); in Clerk mode the JWT template sets it (CLERK_AUDIENCE)")
	redisURL := fs.String("redis", "", "keep the login state in the Redis at `URL` (redis://, rediss:// or unix://), shared by every replica; default: a file under -data, for one process")
	clientList := fs.String("clients", "mytool", "comma-separated `IDs` of the CLIs this backend serves: each CLI's ClientID (clilogin.Config.ClientID)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // -h: the usage was printed
		}
		return err
	}
	if *ttl <= 0 {
		return errors.New("-token-ttl must be positive")
	}
	if *keysReload < 0 {
		return errors.New("-keys-reload must not be negative")
	}
	if *keysDir != "" && os.Getenv("CLERK_SECRET_KEY") != "" {
		return errors.New("-keys is for self-signed tokens; in Clerk mode (CLERK_SECRET_KEY set) Clerk signs them")
	}
	clientIDs, clients, err := parseClients(*clientList)
	if err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	if host == "" {
		host = "127.0.0.1" // a dev backend stays on loopback unless told otherwise
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("-addr %s: the address is already in use (another backend, or a `make demo`, may be running there): "+
			"stop it, or choose another port with -addr %s (port 0 picks a free one)", *addr, net.JoinHostPort(host, "PORT"))
	}
	if err != nil {
		return fmt.Errorf("-addr %s: %w", *addr, err)
	}
	defer ln.Close()
	if *issuer == "" {
		a := ln.Addr().(*net.TCPAddr)
		ip := a.IP
		if ip.IsUnspecified() {
			if ip.To4() != nil {
				ip = net.IPv4(127, 0, 0, 1)
			} else {
				ip = net.IPv6loopback
			}
		}
		*issuer = "http://" + net.JoinHostPort(ip.String(), fmt.Sprint(a.Port))
	}

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	// Logins survive a restart: the handler's state is kept under -data,
	// or in Redis for several replicas.
	var state server.StateStore
	var replays clerk.ReplayGuard
	if *redisURL != "" {
		rs, err := redisstate.Open(*redisURL, redisstate.Options{})
		if err != nil {
			return fmt.Errorf("-redis: %w", err)
		}
		defer rs.Close()
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = rs.Ping(pctx)
		cancel()
		if err != nil {
			return fmt.Errorf("-redis: %w", err)
		}
		state, replays = rs, rs.ReplayGuard("clerk:")
		logger.Info("backend: login state in Redis", "redis", rs.Addr())
	} else {
		// One process: a bbolt file under -data; the state.json of earlier
		// versions is moved into it.
		bstate, err := openState(ctx, *data, logger)
		if err != nil {
			return err
		}
		defer bstate.Close()
		state = bstate
	}

	var (
		authn  server.Authenticator
		minter server.Minter
	)
	var clerkProvider *clerk.Provider
	if os.Getenv("CLERK_SECRET_KEY") != "" {
		if *audience != "" {
			return errors.New("-audience is for dev mode: in Clerk mode the JWT template sets \"aud\"; set CLERK_AUDIENCE to the same value")
		}
		// Clerk mode: Clerk signs the browser user in and mints the access
		// tokens from a JWT template.
		cfg := clerk.Config{
			SecretKey:      os.Getenv("CLERK_SECRET_KEY"),
			PublishableKey: os.Getenv("CLERK_PUBLISHABLE_KEY"),
			FrontendAPIURL: os.Getenv("CLERK_FRONTEND_API_URL"),
			ProxyURL:       os.Getenv("CLERK_PROXY_URL"),
			Domain:         os.Getenv("CLERK_DOMAIN"),
			SignInURL:      os.Getenv("CLERK_SIGN_IN_URL"),
			SignUpURL:      os.Getenv("CLERK_SIGN_UP_URL"),
			JWTTemplate:    os.Getenv("CLERK_JWT_TEMPLATE"),
			Audience:       os.Getenv("CLERK_AUDIENCE"),
			APIURL:         os.Getenv("CLERK_API_URL"),
			WebhookSecret:  os.Getenv("CLERK_WEBHOOK_SECRET"),
			TokenLifetime:  *ttl,
			Issuer:         *issuer,
			WebhookReplays: replays, // nil: in memory, for one process
		}
		if cfg.IsSatellite, err = envBool("CLERK_IS_SATELLITE"); err != nil {
			return err
		}
		if cfg.AllowImpersonation, err = envBool("CLERK_ALLOW_IMPERSONATION"); err != nil {
			return err
		}
		if clerkProvider, err = clerk.New(cfg); err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err = clerkProvider.CheckSetup(sctx)
		cancel()
		switch {
		case errors.Is(err, clerk.ErrSetup):
			return err
		case err != nil:
			logger.Warn("backend: could not check the Clerk JWT template; continuing", "err", err)
		}
		authn, minter = clerkProvider, clerkProvider
		logger.Info("backend: Clerk mode", "template", cmp.Or(os.Getenv("CLERK_JWT_TEMPLATE"), clerk.DefaultJWTTemplate))
	} else {
		// Dev mode: any e-mail signs in; tokens are signed with the key set
		// in -keys, or a key kept under -data.
		var keys *server.KeySet
		if authn, minter, keys, err = devMode(*data, *keysDir, *issuer, *audience, *ttl); err != nil {
			return err
		}
		logger.Info("backend: dev mode", "data", *data, "signing_keys", keys.String())
		if *keysDir != "" {
			go reloadKeys(ctx, keys, *keysReload, logger)
		}
	}

	// ID tokens are signed RS256 (what every OpenID client accepts): with
	// the -keys set's active RS256 key when it has one (shared and rotated
	// like the access-token keys), else with an RSA key kept under -data,
	// so they verify across restarts.
	var idKey crypto.Signer
	if ss, ok := minter.(*server.SelfSigned); !ok || !slices.Contains(ss.KeySet().Algorithms(), "RS256") {
		if idKey, err = server.LoadOrCreateRSAKeyFile(filepath.Join(*data, "id-token-key.pem")); err != nil {
			return err
		}
	}
	h, err := server.New(server.Config{
		State:         state,
		IDTokenKey:    idKey,
		Issuer:        *issuer,
		Clients:       clients,
		Authenticator: authn,
		Minter:        minter,
		Logger:        logger,
	})
	if err != nil {
		return err
	}
	defer h.Close()

	mux := http.NewServeMux()
	mux.Handle(server.MetadataPath, h)
	mux.Handle(server.OpenIDConfigurationPath, h)
	mux.Handle("/oauth/", h)
	mux.Handle(server.AuthorizePath, unknownClientHint(h, clientIDs, logger))
	mux.Handle("GET /api/me", h.RequireToken(http.HandlerFunc(me)))
	if clerkProvider != nil && os.Getenv("CLERK_WEBHOOK_SECRET") != "" {
		wh, err := clerkProvider.WebhookHandler(h)
		if err != nil {
			return err
		}
		mux.Handle("POST /webhooks/clerk", wh)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}

	fmt.Fprintf(stdout, "keyloop backend listening on %s\n", *issuer)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("backend: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// A connection still busy (or a browser's preconnect not yet 5 s
		// old, which Shutdown does not count as idle) is cut: the process
		// is stopping either way, and that is not a failure to report.
		logger.Warn("backend: connections still open after 5s; closing them", "err", err)
		return srv.Close()
	}
	return nil
}

// openState opens the login state under dataDir (state.db) and moves into
// it the logins of a state.json that an earlier version kept there (a
// server.FileStateStore file, then deleted). When both files hold logins it
// refuses to start and says which file to move away.
func openState(ctx context.Context, dataDir string, logger *slog.Logger) (*boltstate.Store, error) {
	state, err := boltstate.Open(boltstate.Config{Path: filepath.Join(dataDir, "state.db"), Logger: logger})
	if err != nil {
		return nil, err
	}
	n, err := boltstate.MigrateFileState(ctx, state, filepath.Join(dataDir, "state.json"))
	if err != nil {
		state.Close()
		return nil, err
	}
	if n > 0 {
		logger.Info("backend: moved the logins of state.json into state.db", "entries", n, "data", dataDir)
	}
	return state, nil
}

// devMode builds the dev authenticator and the self-signed minter. The
// minter signs with the key set in keysDir, or, when keysDir is empty, with a
// key created once and kept under dataDir, beside the dev cookie key.
func devMode(dataDir, keysDir, issuer, audience string, ttl time.Duration) (server.Authenticator, server.Minter, *server.KeySet, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, nil, nil, err
	}
	var keys *server.KeySet
	if keysDir != "" {
		var err error
		if keys, err = server.LoadKeyDir(keysDir); err != nil {
			return nil, nil, nil, fmt.Errorf("-keys: %w", err)
		}
	} else {
		key, err := server.LoadOrCreateKeyFile(filepath.Join(dataDir, "signing-key.pem"))
		if err != nil {
			return nil, nil, nil, err
		}
		if keys, err = server.NewKeySet([]server.SigningKey{{Key: key}}); err != nil {
			return nil, nil, nil, err
		}
	}
	cookieKey, err := server.LoadOrCreateSecretFile(filepath.Join(dataDir, "dev-cookie.key"))
	if err != nil {
		return nil, nil, nil, err
	}
	authn, err := server.NewDevAuthenticator(server.DevConfig{Key: cookieKey})
	if err != nil {
		return nil, nil, nil, err
	}
	minter, err := server.NewSelfSigned(server.SelfSignedConfig{Issuer: issuer, Keys: keys, Lifetime: ttl, Audience: audience})
	if err != nil {
		return nil, nil, nil, err
	}
	return authn, minter, keys, nil
}

// reloadKeys re-reads the key set every interval (never when interval is 0)
// and on SIGHUP until ctx ends. A directory that does not load leaves the
// previous keys in use and is logged each time.
func reloadKeys(ctx context.Context, keys *server.KeySet, interval time.Duration, logger *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-hup:
		}
		before := keys.String()
		if err := keys.Reload(ctx); err != nil {
			if ctx.Err() == nil {
				logger.Error("backend: signing keys not reloaded; the previous keys stay in use", "err", err)
			}
			continue
		}
		if after := keys.String(); after != before {
			logger.Info("backend: signing keys reloaded", "signing_keys", after)
		}
	}
}

// me answers the caller's identity.
func me(w http.ResponseWriter, r *http.Request) {
	c, _ := server.ClaimsFromContext(r.Context())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{
		"sub":       c.Subject,
		"email":     c.Email,
		"name":      c.Name,
		"client_id": c.ClientID,
		"expiry":    c.Expiry.UTC().Format(time.RFC3339),
	})
}

func defaultDataDir() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "keyloop-backend")
}

// envBool reads a boolean environment variable; unset or empty is false.
func envBool(name string) (bool, error) {
	v := os.Getenv(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q is not true or false", name, v)
	}
	return b, nil
}

// parseClients reads -clients: registered clients for each ID, with the
// device flow on (mytool login --device).
func parseClients(list string) ([]string, []server.Client, error) {
	var ids []string
	var clients []server.Client
	for _, id := range strings.Split(list, ",") {
		if id = strings.TrimSpace(id); id == "" {
			continue
		}
		if slices.Contains(ids, id) {
			return nil, nil, fmt.Errorf("-clients: %q is listed twice", id)
		}
		ids = append(ids, id)
		clients = append(clients, server.Client{ID: id, Name: id, DeviceFlow: true})
	}
	if len(ids) == 0 {
		return nil, nil, errors.New("-clients: give at least one client ID, e.g. -clients mytool")
	}
	return ids, clients, nil
}

// unknownClientHint serves the authorization endpoint with h, and first
// logs how to serve a CLI whose client ID is not registered: the browser
// shows "Unknown application", and whoever runs this backend needs the flag.
func unknownClientHint(h http.Handler, ids []string, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("client_id")
		if id != "" && !slices.Contains(ids, id) && len(id) <= 64 {
			logger.Warn(fmt.Sprintf("backend: a CLI asked to log in with client ID %q, which this backend does not serve; to serve it, restart with -clients %s",
				id, strings.Join(append(slices.Clone(ids), id), ",")), "client_id", id)
		}
		h.ServeHTTP(w, r)
	})
}
