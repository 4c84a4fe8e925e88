package clilogin

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/browser"
	"golang.org/x/oauth2"

	"github.com/keyloop/keyloop/internal/confirm"
	"github.com/keyloop/keyloop/tokenstore"
)

// callbackPath is the path of the redirect URI on the loopback listener.
const callbackPath = "/callback"

// Login runs the browser flow and stores the verified token.
//
// It discovers the server's endpoints (see discovery below) and listens on
// the first usable address of Config.ListenAddrs, or as Config.RedirectURL
// says. Then it prints, to Config.Stdout and in this
// order: the authorization URL (always, even when a browser opens), either
// "Opening your browser…" or, in paste mode, how to finish on another
// machine, and, for a keyloop server, the confirmation code (its consent
// page shows the same code; other providers show none, so none is printed
// for them; see metadata.showsConfirmCode). It then opens the browser (unless in paste mode) and waits until one
// valid callback arrives or ctx ends, showing a spinner with the elapsed time
// when Stdout is a terminal (see Config.Terminal; plain lines otherwise).
//
// Requests with a wrong state, a foreign Host header, another path or method
// are answered with a 4xx and the login waits on. Once the outcome is known
// (code exchanged, token verified and stored), the callback request is
// redirected (303) to /done on the same listener, so the code leaves the
// address bar, and /done shows the success or failure page (Config.Pages).
// The listener stays up until that page is served (at most a few seconds),
// then shuts down; when ctx ends it shuts down at once.
//
// Paste mode is on when Config.NoBrowser is set, or automatically when
// neither Config.OpenBrowser nor $BROWSER is set and the session looks
// headless: SSH_CONNECTION or SSH_TTY is set, or (on Linux and the BSDs)
// neither DISPLAY nor WAYLAND_DISPLAY is. In paste mode no browser is opened;
// the user opens the URL on any machine, and, while the loopback listener
// keeps waiting, Login prompts "Paste the URL your browser ended on" and
// reads lines from Config.Stdin. The prompt is also offered when a browser
// is opened in a headless session ($BROWSER over SSH may open it on
// another machine, or fail quietly) and as soon as opening a browser fails.
// A paste is judged like a callback (state, RFC 9207 iss, error=) and
// accepted in every form a browser shows that carries this login's state:
// http://127.0.0.1:PORT/callback?code=…&state=…, the same with https or
// with host localhost or [::1], or the bare query (?code=…&state=…).
// Whichever of the paste and the loopback callback comes first wins and the
// other is ignored. A wrong or cut-off paste gets a message and another
// chance, up to 5; the last wrong paste ends the login with
// ErrStateMismatch (wrong or cut-off state) or ErrInvalidPaste (not a
// callback). Messages never repeat the pasted text. When Stdin ends, Login
// goes on waiting for the loopback callback.
//
// When a browser sends a TLS handshake to the plain-HTTP listener (it
// upgraded the loopback URL to https), Login says so in one line and
// suggests paste mode.
//
// Device flow (RFC 8628), with Config.Device, or automatically where a
// browser login cannot finish (see Config.Device for the rule): no listener
// and no browser. Login asks the server's device_authorization_endpoint for
// a code, prints the verification URL, the user code and, when the server
// gives one, the URL that carries the code, then polls the token endpoint
// every interval the server asked for (5 s more after each slow_down; longer,
// up to a minute, while the server does not answer) until the user approves
// or denies on another device, the code expires or ctx ends. The tokens are
// verified and stored exactly as after a browser sign-in. Its errors wrap
// ErrDeviceFlow, plus ErrAccessDenied on denial, ErrDeviceCodeExpired when
// the code expired, ErrDeviceUnsupported when DeviceAlways meets a server
// without the endpoint.
//
// Discovery: without Config.Endpoints, the metadata is fetched from the
// issuer's well-known URLs, RFC 8414's first, then OpenID Connect's: for
// https://host, /.well-known/oauth-authorization-server and
// /.well-known/openid-configuration; for an issuer with a path
// (https://host/realms/dev), RFC 8414's inserted form
// (https://host/.well-known/oauth-authorization-server/realms/dev), OpenID
// Connect's appended form (https://host/realms/dev/.well-known/openid-configuration),
// OpenID Connect's inserted form, and the appended RFC 8414 form. A URL
// that answers 4xx or a page that is not JSON is skipped; the first
// metadata found must name the configured issuer (see Config.Issuer).
//
// The code is exchanged with PKCE, and with the client's credentials when
// Config.ClientSecret is set. With "openid" in Config.Scopes, the
// authorization request carries a nonce and the answer must carry an ID
// token, verified as OpenID Connect Core §3.1.3.7 says: signed by a key of
// the issuer's jwks_uri (RS256, PS256, ES256, EdDSA and their larger
// variants), "iss" the issuer exactly, "aud" containing the client ID, "azp"
// (present when there are several audiences) the client ID, "exp" and
// "iat" valid within Config.Leeway, "nonce" the one sent, "at_hash" (when
// present) that of the access token. The session's Subject and Account come
// from it; when it names no account and the provider has a userinfo
// endpoint, from userinfo (for display; failures there are ignored). The
// access token is verified or not as Config.AccessTokenVerification says.
//
// A login that replaces a stored one (same profile, server and client)
// revokes the previous grant at the server once the new one is stored,
// best effort and within 5 seconds, and prints a line to Stdout when that
// failed.
//
// Errors: ErrAccessDenied when the user denied; *CallbackError for other
// error= callbacks; ErrIssuerMismatch for an RFC 9207 iss mix-up;
// ErrInvalidToken when a token fails verification (or the ID token is
// missing); ErrDiscovery when no metadata is found or it is unusable; ErrTokenFromEnv when Config.TokenEnv is set;
// ErrStateMismatch or ErrInvalidPaste after too many wrong pastes;
// *UnreachableError (ErrServerUnreachable) when an endpoint of the server
// did not answer, naming it and how long it was given, even when ctx's
// deadline ended the wait; ErrStorage when the login could not be stored;
// an error wrapping ctx.Err() when ctx ends while waiting for the user.
// Nothing is stored unless Login succeeds. Message turns any of them into a
// sentence for people.
func (c *Client) Login(ctx context.Context) (*Session, error) {
	if c.envToken() != "" {
		return nil, &userError{
			msg: fmt.Sprintf("clilogin: %s is set, so %s uses that token and keeps no login; unset %s to log in",
				c.cfg.TokenEnv, c.cfg.AppName, c.cfg.TokenEnv),
			user: fmt.Sprintf("%s is set, so %s uses that token and keeps no login. Unset %s to log in.",
				c.cfg.TokenEnv, c.cfg.AppName, c.cfg.TokenEnv),
			errs: []error{ErrTokenFromEnv},
		}
	}
	st, err := c.storeFor()
	if err != nil {
		return nil, err
	}
	md, err := c.discover(ctx)
	if err != nil {
		return nil, c.ctxErr(ctx, err)
	}
	if _, err := c.loginRecord(md); err != nil {
		return nil, err // the server lacks what the configuration needs
	}
	if device, err := c.wantsDevice(md); err != nil || device {
		if err != nil {
			return nil, err
		}
		return c.deviceLogin(ctx, st, md)
	}
	lns, redirectURI, err := c.listen(ctx)
	if err != nil {
		return nil, err
	}
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	state, err := randomState()
	if err != nil {
		closeAll()
		return nil, err
	}
	var nonce string
	if c.wantsIDToken(md) {
		if nonce, err = randomState(); err != nil {
			closeAll()
			return nil, err
		}
	}
	conf := c.oauth2Config(md, redirectURI)
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL(state, c.authOptions(verifier, nonce)...)

	ru, _ := url.Parse(redirectURI)
	fl := &flow{
		host: ru.Host, path: ru.EscapedPath(), state: state, issuer: md.Issuer,
		issRequired: md.AuthorizationResponseIssParameterSupported,
		callbacks:   make(chan *callback, 1), done: make(chan struct{}), served: make(chan struct{}),
		app: c.cfg.AppName, pages: c.cfg.Pages,
	}
	srv := &http.Server{
		Handler: fl, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:    log.New(io.Discard, "", 0),
		ConnContext: withConn, ConnState: fl.connState,
	}
	tlsSeen := &tlsNotice{ch: make(chan struct{})}
	for _, ln := range lns {
		go func() { _ = srv.Serve(&sniffListener{Listener: ln, seen: tlsSeen}) }()
	}
	scr := newScreen(c.out, animates(c.cfg.Terminal, c.out), c.now)
	viaLoopback := false // the browser was answered with a redirect to /done
	defer func() {
		scr.close()
		close(fl.done)
		if viaLoopback && ctx.Err() == nil {
			t := time.NewTimer(donePageWait)
			select {
			case <-fl.served:
				// The page is delivered and its connection closed; what
				// else is open (a browser's idle or speculative
				// connections) is not worth waiting for.
				t.Stop()
				_ = srv.Close()
				return
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			_ = srv.Close()
		}
	}()

	// Paste mode: no browser is opened (NoBrowser, or a headless session
	// with no opener configured). The paste prompt is offered in paste
	// mode, in a headless session even when a $BROWSER opens (it may run
	// on another machine, or fail quietly), and once opening a browser
	// failed.
	headless := autoHeadless()
	paste := c.cfg.NoBrowser || (c.cfg.OpenBrowser == nil && os.Getenv("BROWSER") == "" && headless)
	scr.printf("To sign in to %s, open this URL in a browser:\n\n    %s\n\n", c.cfg.AppName, authURL)
	var pasted <-chan string
	echoes := false
	const pastePrompt = "Paste the URL your browser ended on: "
	// pasteHow says where the browser goes after the sign-in and, when a
	// pasted address can be read, to copy it; with nothing to read it from,
	// only a browser on this machine can finish the login.
	pasteHow := func() string {
		if pasted != nil {
			return fmt.Sprintf("After you sign in, the browser goes to %s?…;\n"+
				"if that page does not load (the browser is on another machine), copy its full address.\n", redirectURI)
		}
		msg := fmt.Sprintf("After you sign in, the browser goes to %s?…, which only a browser on this machine can reach:\n"+
			"this terminal has no input to paste that address into", redirectURI)
		if md.DeviceAuthorizationEndpoint != "" {
			msg += fmt.Sprintf(". From another machine, run `%s --device` instead", c.loginCommand())
		}
		return msg + ".\n"
	}
	// anyMachine is where the URL may be opened.
	anyMachine := func() string {
		if pasted != nil {
			return "on any machine"
		}
		return "in a browser on this machine"
	}
	// startPaste starts reading pasted URLs; false when there is nothing
	// to read them from.
	startPaste := func() bool {
		var in io.Reader
		if in, echoes = c.pasteInput(); in != nil {
			pasted = readLines(in, fl.done)
		}
		return pasted != nil
	}
	switch {
	case paste:
		startPaste()
		scr.printf("Open it %s. %s", anyMachine(), pasteHow())
	case headless:
		startPaste()
		scr.printf("Opening your browser… If it opens on another machine or not at all, open the URL yourself. %s", pasteHow())
	default:
		scr.printf("Opening your browser…\n")
	}
	if md.showsConfirmCode() {
		scr.printf("Confirmation code: %s (the browser shows the same code; check that they match)\n", confirm.Code(state))
	}
	var opened chan error
	if !paste {
		opened = make(chan error, 1)
		go func() { opened <- c.openBrowser(ctx, authURL) }()
	}
	if pasted != nil {
		scr.prompt("\n" + pastePrompt)
	} else {
		scr.spin("Waiting for you to sign in in the browser…")
	}

	tries := 0
	tlsCh := tlsSeen.ch
	for {
		select {
		case err := <-opened:
			opened = nil
			if err == nil || ctx.Err() != nil {
				continue
			}
			if pasted != nil {
				scr.printf("Could not open a browser (%v); open the URL above on any machine.\n", err)
				scr.prompt(pastePrompt)
				continue
			}
			scr.close()
			canPaste := startPaste()
			scr.printf("Could not open a browser (%v). Open the URL above %s. %s", err, anyMachine(), pasteHow())
			if canPaste {
				scr.prompt("\n" + pastePrompt)
			} else {
				scr.spin("Waiting for you to sign in in the browser…")
			}
		case <-tlsCh:
			tlsCh = nil
			if pasted != nil {
				scr.printf("Your browser tried https://%s, but this login listens on plain http: paste the address your browser shows instead.\n", fl.host)
				scr.prompt(pastePrompt)
			} else {
				scr.printf("Your browser tried https://%s, but this login listens on plain http; run `%s --no-browser` and paste the address instead.\n",
					fl.host, c.loginCommand())
			}
		case <-ctx.Done():
			return nil, c.ctxErr(ctx, nil)
		case cb := <-fl.callbacks:
			scr.close()
			sess, err := c.finish(ctx, st, md, conf, verifier, nonce, cb)
			cb.reply <- result{sess: sess, err: err}
			viaLoopback = true
			if err != nil {
				return nil, c.ctxErr(ctx, err)
			}
			return sess, nil
		case line, ok := <-pasted:
			if !ok {
				pasted = nil
				scr.printf("\n")
				scr.spin("Waiting for you to sign in in the browser…")
				continue
			}
			if echoes {
				scr.answered()
			}
			if line == "" {
				scr.prompt(pastePrompt)
				continue
			}
			cb, prob := fl.judgePaste(line)
			if prob == nil && !fl.accepted.CompareAndSwap(false, true) {
				continue // the loopback callback came first; it is in fl.callbacks
			}
			if prob == nil {
				scr.close()
				sess, err := c.finish(ctx, st, md, conf, verifier, nonce, cb)
				switch {
				case err == nil:
					return sess, nil
				case ctx.Err() != nil || !pasteRetryable(err) || tries+1 >= maxPasteTries:
					return nil, c.ctxErr(ctx, err)
				}
				fl.accepted.Store(false)
				prob = &pasteProblem{err: err, msg: "The server did not accept the code in that URL; it may be cut off. Copy the whole address and paste it again."}
			}
			tries++
			if tries >= maxPasteTries {
				return nil, fmt.Errorf("%w: %s (after %d tries)", prob.err, strings.TrimSuffix(prob.msg, "."), tries)
			}
			scr.printf("%s (%s left).\n", strings.TrimSuffix(prob.msg, "."), plural(maxPasteTries-tries, "try", "tries"))
			scr.prompt(pastePrompt)
		}
	}
}

// donePageWait bounds how long Login keeps the listener up, after it
// redirected the browser to /done, for the browser to fetch that page.
const donePageWait = 3 * time.Second

// finish turns an accepted callback into a stored, verified login: it
// exchanges the code and hands the answer to completeLogin.
func (c *Client) finish(ctx context.Context, st tokenstore.Store, md *metadata, conf *oauth2.Config, verifier, nonce string, cb *callback) (*Session, error) {
	if cb.err != nil {
		return nil, cb.err
	}
	form := url.Values{
		"grant_type": {"authorization_code"}, "code": {cb.code}, "redirect_uri": {conf.RedirectURL},
		"code_verifier": {verifier},
	}
	tok, err := c.postToken(ctx, md.TokenEndpoint, form, c.authMethod(md))
	if err != nil {
		return nil, &userError{msg: "clilogin: exchange the authorization code: " + stripPrefixes(err.Error()),
			user: "The sign-in could not be completed. " + Message(err), errs: []error{err}}
	}
	return c.completeLogin(ctx, st, md, tok, nonce)
}

// completeLogin checks a token response from the token endpoint (see
// accept; nonce is the one the authorization request sent, "" when none
// was) and stores it as the login. A login it replaces (same profile,
// server and client) is revoked at the server afterwards, best effort and
// bounded like Logout's. When the login cannot be completed, the tokens of
// the response are revoked the same way.
func (c *Client) completeLogin(ctx context.Context, st tokenstore.Store, md *metadata, tok *tokenResponse, nonce string) (sess *Session, err error) {
	defer func() {
		if err != nil { // the server issued a grant the user does not get
			c.discard(ctx, md, tok)
		}
	}()
	rec, err := c.loginRecord(md)
	if err != nil {
		return nil, err
	}
	now := c.now()
	a := answer{accessToken: tok.AccessToken, idToken: tok.IDToken, received: now}
	if tok.ExpiresIn > 0 {
		a.expiry = now.Add(tok.ExpiresIn)
	}
	var cl *claims
	if c.wantsIDToken(md) && tok.IDToken == "" {
		err = fmt.Errorf("%w: the token endpoint %s sent no ID token although the \"openid\" scope was requested", ErrInvalidToken, md.TokenEndpoint)
	} else {
		cl, err = c.accept(ctx, rec, a, nonce)
	}
	if err != nil {
		return nil, &userError{msg: fmt.Sprintf("clilogin: verify the token from %s: %s", md.Issuer, stripPrefixes(err.Error())),
			user: fmt.Sprintf("The token from %s could not be verified, so nothing was stored. %s", md.Issuer, Message(err)), errs: []error{err}}
	}
	if cl.Account == "" && md.UserinfoEndpoint != "" {
		// For display only: who the login belongs to, when the tokens do
		// not say. The answer's "sub" must be the ID token's (OpenID
		// Connect Core §5.3.4).
		if ui, err := c.userinfo(ctx, md.UserinfoEndpoint, tok.AccessToken); err == nil && (cl.Subject == "" || ui.Subject == cl.Subject) {
			cl.Subject, cl.Account = ui.Subject, ui.account()
		}
	}
	rec.AccessToken, rec.RefreshToken, rec.IDToken = tokenstore.Secret(tok.AccessToken), tokenstore.Secret(tok.RefreshToken), tokenstore.Secret(cl.idToken)
	rec.TokenType, rec.Expiry, rec.IssuedAt = tok.TokenType, cl.Expiry, cl.IssuedAt
	rec.Subject, rec.Account = cl.Subject, cl.Account
	if rec.IssuedAt.IsZero() {
		rec.IssuedAt = now
	}
	unlock, err := c.lock(ctx, st)
	if err != nil {
		return nil, err
	}
	defer unlock()
	prev, _ := c.load(ctx, st) // the login this one replaces, if it can be read
	c.mu.Lock()
	c.unsaved = nil // a new login replaces whatever this Client could not save
	c.mu.Unlock()
	if err := c.save(ctx, st, rec); err != nil {
		return nil, err
	}
	c.setBackoff(time.Time{})
	if prev != nil && prev.Ended == nil && (prev.RefreshToken != "" || prev.AccessToken != "") &&
		prev.RefreshToken != rec.RefreshToken && prev.Issuer == rec.Issuer {
		if err := c.revoke(ctx, prev); err != nil && !errors.Is(err, ErrRevocationUnsupported) {
			fmt.Fprintf(c.out, "Could not revoke your previous login at the server: %s It stays valid there until it expires.\n", Message(err))
		}
	}
	return sessionOf(rec, c.locate(ctx, st)), nil
}

// ctxErr wraps ctx.Err() with what to do when ctx has ended; otherwise it
// returns err.
func (c *Client) ctxErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ErrServerUnreachable):
		return err // the server did not answer in time: say so, not "timed out waiting for you"
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("clilogin: timed out waiting for the sign-in; run `%s` again and finish signing in in the browser in time: %w",
			c.loginCommand(), ctx.Err())
	case ctx.Err() != nil:
		return fmt.Errorf("clilogin: login canceled: %w", ctx.Err())
	}
	return err
}

func (c *Client) oauth2Config(md *metadata, redirectURI string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: c.cfg.ClientID,
		Endpoint: oauth2.Endpoint{
			AuthURL: md.AuthorizationEndpoint, TokenURL: md.TokenEndpoint,
		},
		RedirectURL: redirectURI,
		Scopes:      c.scopes(md),
	}
}

// listen opens the callback listener(s) and returns them with the
// redirect URI: on the first usable address of ListenAddrs, or as
// Config.RedirectURL says (for localhost: 127.0.0.1, and [::1] on the same
// port when it is free, since a browser may resolve localhost to either).
func (c *Client) listen(ctx context.Context) ([]net.Listener, string, error) {
	var lc net.ListenConfig
	t := c.redirect
	if t.host == "" {
		var errs []error
		for _, a := range c.cfg.ListenAddrs {
			ln, err := lc.Listen(ctx, "tcp", a)
			if err == nil {
				return []net.Listener{ln}, "http://" + ln.Addr().String() + t.path, nil
			}
			errs = append(errs, err)
		}
		return nil, "", fmt.Errorf("clilogin: cannot listen for the browser's callback on %s; free a port or set other listen addresses: %w",
			strings.Join(c.cfg.ListenAddrs, ", "), errors.Join(errs...))
	}
	first := t.host
	if first == "localhost" {
		first = "127.0.0.1"
	}
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(strings.Trim(first, "[]"), t.port))
	if err != nil {
		return nil, "", fmt.Errorf("clilogin: cannot listen for the browser's callback on %s (RedirectURL %s); free the port or register another redirect URI: %w",
			net.JoinHostPort(strings.Trim(first, "[]"), t.port), c.cfg.RedirectURL, err)
	}
	lns := []net.Listener{ln}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if t.host == "localhost" {
		if ln6, err := lc.Listen(ctx, "tcp", net.JoinHostPort("::1", port)); err == nil {
			lns = append(lns, ln6)
		}
	}
	return lns, "http://" + net.JoinHostPort(strings.Trim(t.host, "[]"), port) + t.path, nil
}

// tlsNotice is closed once when a TLS handshake arrives at a callback
// listener.
type tlsNotice struct {
	ch   chan struct{}
	once sync.Once
}

// sniffListener notices a TLS handshake arriving at the plain-HTTP
// listener (a browser that upgraded the loopback URL to https) and closes
// seen.ch once, so Login can say so instead of waiting in silence.
type sniffListener struct {
	net.Listener
	seen *tlsNotice
}

func (l *sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, seen: l.seen}, nil
}

// sniffConn checks the first byte a client sends.
type sniffConn struct {
	net.Conn
	seen    *tlsNotice
	checked bool
}

// tlsHandshake is the first byte of a TLS record carrying a handshake.
const tlsHandshake = 0x16

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.checked && n > 0 {
		c.checked = true
		if p[0] == tlsHandshake {
			c.seen.once.Do(func() { close(c.seen.ch) })
			return 0, errors.New("clilogin: a TLS handshake on the plain-HTTP callback listener")
		}
	}
	return n, err
}

// randomState returns 256 random bits, base64url.
func randomState() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("clilogin: random state: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

var silenceBrowser sync.Once

// openBrowser opens u with Config.OpenBrowser, $BROWSER or the system opener.
func (c *Client) openBrowser(ctx context.Context, u string) error {
	if c.cfg.OpenBrowser != nil {
		return c.cfg.OpenBrowser(ctx, u)
	}
	if b := os.Getenv("BROWSER"); b != "" {
		return runBrowserEnv(b, u)
	}
	silenceBrowser.Do(func() { browser.Stdout, browser.Stderr = io.Discard, io.Discard })
	return browser.OpenURL(u)
}

// runBrowserEnv runs the $BROWSER convention: a ':'-separated list of
// commands, tried in order; "%s" in a command stands for the URL, else the
// URL is its last argument.
func runBrowserEnv(env, u string) error {
	var err error
	for _, entry := range strings.Split(env, ":") {
		f := strings.Fields(entry)
		if len(f) == 0 {
			continue
		}
		replaced := false
		for i := range f {
			if strings.Contains(f[i], "%s") {
				f[i], replaced = strings.ReplaceAll(f[i], "%s", u), true
			}
		}
		if !replaced {
			f = append(f, u)
		}
		cmd := exec.Command(f[0], f[1:]...)
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err = cmd.Run(); err == nil {
			return nil
		}
		err = fmt.Errorf("$BROWSER command %q: %w", f[0], err)
	}
	if err == nil {
		err = errors.New("$BROWSER names no command")
	}
	return err
}

// callback is one accepted callback, handed from the handler (or the paste
// reader) to Login.
type callback struct {
	code  string
	err   error       // the callback ends the login with this error
	reply chan result // Login's outcome, for the browser page
}

type result struct {
	sess *Session
	err  error
}

// donePath is where the browser is redirected after the callback, so the
// authorization code does not stay in its address bar.
const donePath = "/done"

// flow is the loopback handler of one login.
type flow struct {
	host        string // the only Host header accepted: the redirect URI's host:port
	path        string // the redirect URI's path
	state       string
	issuer      string
	issRequired bool
	app         string
	pages       *template.Template
	accepted    atomic.Bool
	callbacks   chan *callback
	done        chan struct{} // closed when Login returns

	mu         sync.Mutex
	res        *result       // the outcome shown at /done, once known
	doneConn   net.Conn      // the connection the outcome was shown on
	served     chan struct{} // closed when doneConn is closed: the page is fully sent
	servedOnce sync.Once
}

type connKey struct{}

// withConn keeps each request's connection in its context, for serveDone.
func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// connState closes served when the server has closed the connection the
// outcome page went out on (it answers Connection: close): the page has
// then been written in full, and the listener can go without waiting.
func (f *flow) connState(c net.Conn, s http.ConnState) {
	if s != http.StateClosed && s != http.StateHijacked {
		return
	}
	f.mu.Lock()
	done := f.doneConn != nil && f.doneConn == c
	f.mu.Unlock()
	if done {
		f.servedOnce.Do(func() { close(f.served) })
	}
}

// judge decides what a callback's query means: nil with a status and message
// for the browser when it must be refused and the login goes on, else the
// callback that ends the login.
func (f *flow) judge(q url.Values) (*callback, int, string) {
	states := q["state"]
	if len(states) != 1 || subtle.ConstantTimeCompare([]byte(states[0]), []byte(f.state)) != 1 {
		return nil, http.StatusBadRequest, "This sign-in response does not belong to the login waiting in your terminal."
	}
	cb := &callback{reply: make(chan result, 1)}
	iss := q.Get("iss")
	switch {
	case iss != "" && iss != f.issuer:
		cb.err = fmt.Errorf("%w: the callback came from issuer %q, not %q", ErrIssuerMismatch, sanitize(iss, 200), f.issuer)
		return cb, 0, ""
	case iss == "" && f.issRequired:
		cb.err = fmt.Errorf("%w: the server advertises RFC 9207 but the callback has no iss", ErrIssuerMismatch)
		return cb, 0, ""
	}
	if e := q.Get("error"); e != "" {
		code := sanitizeCode(e)
		if code == "access_denied" {
			cb.err = fmt.Errorf("%w: the sign-in was denied in the browser", ErrAccessDenied)
		} else {
			cb.err = &CallbackError{Code: code, Description: sanitize(q.Get("error_description"), 200)}
		}
		return cb, 0, ""
	}
	codes := q["code"]
	if len(codes) != 1 || codes[0] == "" {
		cb.err = &CallbackError{Code: "invalid_request", Description: "the callback has neither a code nor an error"}
		return cb, 0, ""
	}
	cb.code = codes[0]
	return cb, 0, ""
}

// failPage writes a failure page that is not a login's outcome.
func (f *flow) failPage(w http.ResponseWriter, status int, title, msg string) {
	writePage(w, f.pages, status, PageData{AppName: f.app, Title: title, Message: msg})
}

func (f *flow) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Host != f.host {
		f.failPage(w, http.StatusBadRequest, "Wrong address", "This request was not addressed to the login server of "+f.app+".")
		return
	}
	if r.URL.EscapedPath() != f.path && r.URL.Path != donePath {
		f.failPage(w, http.StatusNotFound, "Not found", "There is nothing here.")
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		f.failPage(w, http.StatusMethodNotAllowed, "Method not allowed", "Only GET is accepted here.")
		return
	}
	if r.URL.Path == donePath {
		f.serveDone(w, r)
		return
	}
	cb, status, msg := f.judge(r.URL.Query())
	if cb == nil {
		f.failPage(w, status, "Sign-in response refused", msg)
		return
	}
	if !f.accepted.CompareAndSwap(false, true) {
		f.failPage(w, http.StatusConflict, "Already done", "This login has already received its sign-in response. Check your terminal.")
		return
	}
	ended := func() {
		f.failPage(w, http.StatusGone, "Login no longer running", "The login in your terminal has ended. Run it again.")
	}
	select {
	case f.callbacks <- cb:
	case <-f.done:
		ended()
		return
	}
	var res result
	select {
	case res = <-cb.reply:
	case <-f.done:
		select {
		case res = <-cb.reply:
		default:
			ended()
			return
		}
	case <-r.Context().Done():
		return
	}
	f.mu.Lock()
	f.res = &res
	f.mu.Unlock()
	target := donePath
	if res.err != nil {
		target += "?error=" + url.QueryEscape(errorCode(res.err))
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// serveDone shows the login's outcome, once known, at the clean URL.
func (f *flow) serveDone(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	res := f.res
	if res != nil {
		f.doneConn, _ = r.Context().Value(connKey{}).(net.Conn)
	}
	f.mu.Unlock()
	if res == nil {
		f.failPage(w, http.StatusNotFound, "Not found", "There is nothing here yet; finish signing in first.")
		return
	}
	w.Header().Set("Connection", "close") // the listener shuts down next
	writeResult(w, f.pages, f.app, *res)
}

// errorCode names a failed login's cause for the /done URL and the page.
func errorCode(err error) string {
	var ce *CallbackError
	switch {
	case errors.Is(err, ErrAccessDenied):
		return "access_denied"
	case errors.As(err, &ce):
		return ce.Code
	case errors.Is(err, ErrIssuerMismatch):
		return "issuer_mismatch"
	case errors.Is(err, ErrInvalidToken):
		return "invalid_token"
	}
	return "login_failed"
}

// writeResult renders the outcome of a login for the browser.
func writeResult(w http.ResponseWriter, pages *template.Template, app string, res result) {
	if res.err == nil {
		who := res.sess.Account
		if who == "" {
			who = res.sess.Subject
		}
		writePage(w, pages, http.StatusOK, PageData{AppName: app, OK: true, Title: "Signed in to " + app, Account: who,
			Message: "You are signed in as " + who + "."})
		return
	}
	if errors.Is(res.err, ErrAccessDenied) {
		// A refusal the user chose is not a failure: a neutral page.
		writePage(w, pages, http.StatusBadRequest, PageData{AppName: app, Denied: true, Title: "Request denied",
			Message: "You denied the request, so " + app + " was not signed in. Nothing was stored.", ErrorCode: "access_denied"})
		return
	}
	msg := "The sign-in could not be completed; nothing was stored."
	code := errorCode(res.err)
	var ce *CallbackError
	switch {
	case errors.As(res.err, &ce):
		msg = "The server refused the sign-in (" + ce.Code + "). Nothing was stored."
	case errors.Is(res.err, ErrIssuerMismatch):
		msg = "The response came from an unexpected server; nothing was stored."
	}
	if code == "login_failed" || code == "invalid_token" || code == "issuer_mismatch" {
		code = ""
	}
	writePage(w, pages, http.StatusBadRequest, PageData{AppName: app, Title: "Sign-in failed", Message: msg, ErrorCode: code})
}
