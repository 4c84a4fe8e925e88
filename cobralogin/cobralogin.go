// Package cobralogin gives CLIs built on github.com/spf13/cobra ready
// "login", "logout", "status" and "token" commands backed by clilogin, plus
// the persistent --server and --profile flags they share:
//
//	root := &cobra.Command{Use: "mytool"}
//	cmds := cobralogin.Add(root, cobralogin.Config{Login: clilogin.Config{Issuer: "https://api.example.com", ClientID: "mytool", AppName: "mytool"}})
//	os.Exit(cobralogin.Execute(root))
//
// The app's own commands get a ready client with cmds.Client(cmd) and the
// URL of an API path on the selected server with cmds.ServerURL(path), both
// inside their RunE.
//
// # Exit codes
//
// Execute returns the process exit code, the same for every command:
//
//	0    success; for status: a usable login (a valid token, or one that
//	     will be refreshed on next use)
//	1    failure; for status: not logged in, or a new login is needed (the
//	     token expired and cannot be refreshed, the server ended the login,
//	     an expired token in the TokenEnv variable)
//	2    cannot tell: the token store failed (an OS keychain that cannot
//	     be reached, a file that cannot be read), so whether a login exists
//	     is unknown (clilogin.ErrStorage)
//	130  interrupted (Ctrl+C or SIGTERM)
//
// What a command prints on failure is clilogin.Message's sentence (what
// happened, where, the command to run), never an error chain.
package cobralogin

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyloop/keyloop/clilogin"
	"github.com/keyloop/keyloop/internal/shell"
	"github.com/keyloop/keyloop/tokenstore"
)

// Config configures the commands.
type Config struct {
	// Login is the base client configuration. Its Issuer is the default
	// server and its Profile the default profile; --server/--profile and the
	// environment variables below override them. AppName is required.
	Login clilogin.Config
	// ServerEnv names the environment variable that sets the server when
	// --server is not given. Empty means upper(AppName)+"_SERVER".
	ServerEnv string
	// ProfileEnv names the environment variable that sets the profile when
	// --profile is not given. Empty means upper(AppName)+"_PROFILE".
	ProfileEnv string
	// LoginTimeout is the default of login's --timeout flag. Zero means 5
	// minutes.
	LoginTimeout time.Duration
	// NewClient builds the client from the resolved configuration. Nil means
	// clilogin.New. Tests use it to inject stores and clocks.
	NewClient func(clilogin.Config) (*clilogin.Client, error)
}

// Commands holds the added commands and resolves the client they share.
type Commands struct {
	cfg     Config
	server  string
	profile string

	// Login, Logout, Status and Token are the added commands, for changing
	// their help text or hiding one.
	Login, Logout, Status, Token *cobra.Command
}

// Add adds the login, logout, status and token commands and the persistent
// --server and --profile flags to root, and returns them.
func Add(root *cobra.Command, cfg Config) *Commands {
	app := cfg.Login.AppName
	envPrefix := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(app))
	if cfg.ServerEnv == "" {
		cfg.ServerEnv = envPrefix + "_SERVER"
	}
	if cfg.ProfileEnv == "" {
		cfg.ProfileEnv = envPrefix + "_PROFILE"
	}
	if cfg.LoginTimeout == 0 {
		cfg.LoginTimeout = 5 * time.Minute
	}
	if cfg.NewClient == nil {
		cfg.NewClient = clilogin.New
	}
	c := &Commands{cfg: cfg}
	pf := root.PersistentFlags()
	pf.StringVar(&c.server, "server", "", fmt.Sprintf("server URL (env %s, default %s)", cfg.ServerEnv, orNone(cfg.Login.Issuer)))
	pf.StringVar(&c.profile, "profile", "", fmt.Sprintf("login profile, for several accounts side by side (env %s)", cfg.ProfileEnv))
	root.SilenceUsage = true
	root.SilenceErrors = true

	c.Login = c.loginCommand()
	c.Logout = c.logoutCommand()
	c.Status = c.statusCommand()
	c.Token = c.tokenCommand()
	root.AddCommand(c.Login, c.Logout, c.Status, c.Token)
	return c
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// ClientConfig returns the client configuration after flags and environment.
// Its LoginCommand, unless the base configuration sets one, is the login
// command with the --server and --profile the user gave (see LoginHint).
func (c *Commands) ClientConfig() clilogin.Config {
	cfg := c.cfg.Login
	if v := firstNonEmpty(c.server, os.Getenv(c.cfg.ServerEnv)); v != "" {
		cfg.Issuer = strings.TrimRight(v, "/")
	}
	if v := firstNonEmpty(c.profile, os.Getenv(c.cfg.ProfileEnv)); v != "" {
		cfg.Profile = v
	}
	if cfg.LoginCommand == "" {
		cfg.LoginCommand = c.LoginHint()
	}
	return cfg
}

// ServerURL returns path resolved against the selected server (--server,
// else the ServerEnv variable, else Config.Login.Issuer), so that the app's
// own commands send their API requests to the server whose token
// Client(cmd) holds. path is a path on the server with an optional query,
// such as "/api/me" or "/api/items?limit=10", resolved like a link on the
// server's URL. An absolute URL, or a path naming another host ("//…"), is
// an error. Call it inside a command's RunE: before the command runs, its
// flags are not parsed yet and the default server is returned.
func (c *Commands) ServerURL(path string) (string, error) {
	issuer := c.ClientConfig().Issuer
	base, err := url.Parse(issuer)
	if err != nil || base.Host == "" {
		return "", fmt.Errorf("the server URL %q is not an absolute URL", issuer)
	}
	ref, err := url.Parse(path)
	if err != nil || ref.IsAbs() || ref.Host != "" || strings.HasPrefix(path, "//") {
		return "", fmt.Errorf("%q is not a path on the server %s", path, issuer)
	}
	return base.ResolveReference(ref).String(), nil
}

// Client returns a client for the resolved configuration, for the app's own
// commands (for example one that calls the API with Client.HTTPClient at
// ServerURL). Call it inside a command's RunE, where --server and --profile
// are parsed. An error means the resolved configuration is unusable (such as
// a --server that is not an https URL); no request is made.
func (c *Commands) Client(cmd *cobra.Command) (*clilogin.Client, error) {
	cfg := c.ClientConfig()
	if cfg.Stdout == nil {
		cfg.Stdout = cmd.ErrOrStderr()
	}
	if cfg.OnRefreshError == nil {
		// The old token is still valid and is used; say so on stderr so a
		// script's stdout (the token) stays clean.
		cfg.OnRefreshError = func(err error) {
			if errors.Is(err, clilogin.ErrNotSaved) {
				// The message says the next run may need a new login.
				fmt.Fprintf(cmd.ErrOrStderr(), "Warning: %s\n", clilogin.Message(err))
				return
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Warning: could not refresh the token; using the current one until it expires. %s\n",
				clilogin.Message(err))
		}
	}
	return c.newClient(cfg)
}

// newClient is Config.NewClient with an error for people when the server
// the user chose (--server, or its environment variable) is not a usable
// URL: that is the user's input, not the app's configuration.
func (c *Commands) newClient(cfg clilogin.Config) (*clilogin.Client, error) {
	client, err := c.cfg.NewClient(cfg)
	if err == nil || !errors.Is(err, clilogin.ErrInvalidConfig) || cfg.Issuer == strings.TrimRight(c.cfg.Login.Issuer, "/") {
		return client, err
	}
	from := "--server"
	if c.server == "" {
		from = c.cfg.ServerEnv
	}
	raw := firstNonEmpty(c.server, os.Getenv(c.cfg.ServerEnv))
	why := clilogin.Message(err)
	if _, after, ok := strings.Cut(err.Error(), fmt.Sprintf("Issuer %q ", cfg.Issuer)); ok {
		why = "It " + after + "."
	} else if _, after, ok := strings.Cut(err.Error(), "Issuer "); ok {
		why = "It " + after + "."
	} else if _, cerr := c.cfg.NewClient(c.cfg.Login); cerr != nil {
		return nil, err // the app's own configuration is wrong too
	}
	return nil, message{err: err, text: fmt.Sprintf("The server %s (%s) cannot be used. %s", shell.Quote(raw), from, why)}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func (c *Commands) app() string { return c.cfg.Login.AppName }

// LoginHint is the command a user runs to log in again, carrying --server
// and --profile in the form the user gave them: as flags when given as
// flags ("mytool login --server http://127.0.0.1:9999"), as environment
// variables when they came from there ("MYTOOL_SERVER=… mytool login"), so
// following the hint signs in to the same server and profile.
func (c *Commands) LoginHint() string {
	var env []string
	cmd := c.app() + " login"
	for _, o := range []struct{ flag, val, env string }{
		{"server", c.server, c.cfg.ServerEnv}, {"profile", c.profile, c.cfg.ProfileEnv},
	} {
		switch v := os.Getenv(o.env); {
		case o.val != "":
			cmd += " --" + o.flag + " " + shell.Quote(o.val)
		case v != "":
			env = append(env, o.env+"="+shell.Quote(v))
		}
	}
	return strings.Join(append(env, cmd), " ")
}

// revocationCause says why a revocation failed: the unreachable endpoint
// or the server's answer.
func revocationCause(err error) string {
	var ue *clilogin.UnreachableError
	var se *clilogin.ServerError
	switch {
	case errors.As(err, &ue):
		return ue.UserMessage()
	case errors.As(err, &se):
		return se.UserMessage()
	}
	return ""
}

// message is an error whose text is already a sentence for people.
type message struct {
	text string
	err  error
}

func (m message) Error() string       { return m.text }
func (m message) UserMessage() string { return m.text }
func (m message) Unwrap() error       { return m.err }

func (c *Commands) loginCommand() *cobra.Command {
	var noBrowser, device bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in through your browser, or on another device with --device",
		Long: "Opens your browser to sign in and stores the resulting token in your OS keychain.\n\n" +
			"Over SSH, in a container or without a display (detected automatically, or with --no-browser),\n" +
			"open the printed URL on any machine, sign in, and paste back the address of the page\n" +
			"the browser ends on (http://127.0.0.1:…/callback?…), even if that page fails to load.\n\n" +
			"With --device, it prints a short URL and a code instead: open the URL on any device (a phone,\n" +
			"another computer), enter the code, sign in and approve; the login finishes here by itself.\n" +
			"This is used automatically when the server offers it, no browser can be opened here and\n" +
			"nothing can be pasted back (no terminal on stdin, or $CI is set).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := c.ClientConfig()
			cfg.Stdout = cmd.ErrOrStderr()
			if device && noBrowser {
				return message{err: errors.New("cobralogin: --device and --no-browser together"),
					text: "--device and --no-browser do not go together: --device signs in on another device with a code, " +
						"--no-browser pastes back the address a browser ends on. Choose one."}
			}
			cfg.NoBrowser = cfg.NoBrowser || noBrowser
			if device {
				cfg.Device = clilogin.DeviceAlways
			}
			client, err := c.newClient(cfg)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			s, err := client.Login(ctx)
			if err != nil {
				// Only the login's own deadline is a timeout waiting for
				// the user; a server that did not answer says so itself.
				if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil && cmd.Context().Err() == nil &&
					!errors.Is(err, clilogin.ErrServerUnreachable) {
					if errors.Is(err, clilogin.ErrDeviceFlow) {
						return message{err: err, text: fmt.Sprintf("No approval arrived within %s (--timeout). Run `%s --device` again "+
							"and approve the code on the other device in time.", timeout, c.LoginHint())}
					}
					return message{err: err, text: fmt.Sprintf("No sign-in arrived within %s (--timeout). Run `%s` again and finish signing in in time; "+
						"if the browser runs on another machine (SSH, container), add --no-browser and paste the address the browser ends on.",
						timeout, c.LoginHint())}
				}
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "✓ Logged in to %s as %s\n", s.Issuer, account(s))
			if w := stored(s.Location); w != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "  %s\n", w)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "do not open a browser: open the printed URL on any machine, then paste the address it ends on")
	cmd.Flags().BoolVar(&device, "device", false, "sign in on another device: print a URL and a code to enter there (RFC 8628 device flow)")
	cmd.Flags().DurationVar(&timeout, "timeout", c.cfg.LoginTimeout, "how long to wait for the sign-in")
	return cmd
}

// stored says where a new login was kept, for login's last line: one line,
// and the only warning about a plain file at login.
func stored(l tokenstore.Location) string {
	switch l.Kind {
	case tokenstore.KindKeychain:
		return "Token stored in the OS keychain."
	case tokenstore.KindFile:
		return "! " + fileLine(l)
	case "":
		return ""
	}
	if l.Path != "" {
		return fmt.Sprintf("Token stored in %s (%s).", l.Kind, l.Path)
	}
	return "Token stored in " + string(l.Kind) + "."
}

// fileLine is the one line that says a token is in a plain file, and why.
func fileLine(l tokenstore.Location) string {
	why := l.Why
	if why == "" {
		why = "no OS keychain was available"
	}
	return fmt.Sprintf("The token is stored in %s, a plain file (mode 0600), because %s.", l.Path, strings.TrimSuffix(why, "."))
}

func account(s *clilogin.Session) string {
	switch {
	case s.Account != "":
		return s.Account
	case s.Subject != "":
		return s.Subject
	}
	return "(unknown)"
}

func (c *Commands) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Sign out: revoke the token at the server and remove it from this machine",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := c.Client(cmd)
			if err != nil {
				return err
			}
			err = client.Logout(cmd.Context())
			switch {
			case errors.Is(err, clilogin.ErrNotLoggedIn):
				fmt.Fprintf(cmd.ErrOrStderr(), "Not logged in to %s; nothing to do.\n", c.ClientConfig().Issuer)
				return nil
			case errors.Is(err, clilogin.ErrStorage):
				return err // says what was removed and what may remain where; exit 2
			case errors.Is(err, clilogin.ErrRevocationUnsupported):
				// The provider offers no revocation (GitHub, Entra ID):
				// logged out here, and said so honestly.
				fmt.Fprintf(cmd.ErrOrStderr(), "✓ Logged out of %s on this machine\n", c.ClientConfig().Issuer)
				fmt.Fprintf(cmd.ErrOrStderr(), "! %s\n", strings.TrimPrefix(clilogin.Message(err), "Logged out on this machine. "))
				return nil
			case errors.Is(err, clilogin.ErrRevocationFailed):
				// The token is gone from this machine; only the server
				// could not be told. Logged out all the same.
				fmt.Fprintf(cmd.ErrOrStderr(), "✓ Logged out of %s on this machine\n", c.ClientConfig().Issuer)
				fmt.Fprintf(cmd.ErrOrStderr(), "! The server could not revoke the token; it stays valid there until it expires. %s\n", revocationCause(err))
				return nil
			case err != nil:
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "✓ Logged out of %s\n", c.ClientConfig().Issuer)
			return nil
		},
	}
}

func (c *Commands) tokenCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "token",
		Short: "Print a valid access token, refreshing it first when needed",
		Long:  "Prints a valid access token and nothing else, for scripts: curl -H \"Authorization: Bearer $(" + c.app() + " token)\" …",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := c.Client(cmd)
			if err != nil {
				return err
			}
			tok, err := client.Token(cmd.Context())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok.AccessToken)
			return err
		},
	}
}

// ErrNotLoggedIn is returned by the status command when there is no login,
// so Execute exits 1.
var ErrNotLoggedIn = clilogin.ErrNotLoggedIn

// ErrLoginNeeded is returned by the status command when a login is stored
// but cannot give a token without a new sign-in (expired and not
// refreshable, ended by the server, an expired TokenEnv token), so Execute
// exits 1.
var ErrLoginNeeded = errors.New("cobralogin: a new login is needed")

func (c *Commands) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show who is signed in, until when, and where the token is kept",
		Long: "Shows who is signed in, until when, and where the token is kept.\n\n" +
			"Exit status: 0 when a usable login is there (a valid token, or one refreshed on next use),\n" +
			"1 when not logged in or a new login is needed, 2 when the token store cannot be read.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := c.Client(cmd)
			if err != nil {
				return err
			}
			cfg := c.ClientConfig()
			s, err := client.Status(cmd.Context())
			out := cmd.OutOrStdout()
			switch {
			case errors.Is(err, clilogin.ErrNotLoggedIn):
				fmt.Fprintf(out, "%s\n  X Not logged in to %s\n  - Run `%s` to sign in.\n", hostOf(cfg.Issuer), cfg.Issuer, c.LoginHint())
				return silent{err}
			case errors.Is(err, clilogin.ErrStorage):
				fmt.Fprintf(out, "%s\n  ? %s\n", hostOf(cfg.Issuer), clilogin.Message(err))
				return silent{err}
			case err != nil:
				fmt.Fprintf(out, "%s\n  X Cannot read the login for %s: %s\n  - Run `%s` to sign in again.\n",
					hostOf(cfg.Issuer), cfg.Issuer, clilogin.Message(err), c.LoginHint())
				return silent{err}
			}
			now := time.Now()
			WriteStatus(out, s, cfg.Profile, now, c.LoginHint())
			if s.Location.Kind == tokenstore.KindEnv && cfg.TokenEnv != "" {
				fmt.Fprintf(out, "  - The token comes from $%s; `%s login`, `%s logout` and the stored login are not used while it is set\n",
					cfg.TokenEnv, c.app(), c.app())
			}
			if !s.Usable(now) {
				return silent{ErrLoginNeeded}
			}
			return nil
		},
	}
}

// silent marks an error whose message was already shown to the user.
type silent struct{ err error }

func (s silent) Error() string { return s.err.Error() }
func (s silent) Unwrap() error { return s.err }

// The exit codes Execute returns; see the package documentation.
const (
	ExitOK          = 0
	ExitFailure     = 1 // also: status found no usable login
	ExitUnknown     = 2 // the token store failed (clilogin.ErrStorage): the login state is unknown
	ExitInterrupted = 130
)

// Execute runs root with a context that SIGINT and SIGTERM cancel, prints
// the error if any as clilogin.Message's sentence, and returns the process
// exit code (see the package documentation): ExitOK on success,
// ExitInterrupted when interrupted, ExitUnknown when the error wraps
// clilogin.ErrStorage, ExitFailure otherwise. After the first SIGINT the
// command winds down (a token request in flight is finished and saved); a
// second one ends the process at once.
func Execute(root *cobra.Command) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl+C gets the default action: exit now
	}()
	err := root.ExecuteContext(ctx)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case err == nil:
		return ExitOK
	case interrupted:
		fmt.Fprintln(root.ErrOrStderr(), "Interrupted.")
		return ExitInterrupted
	}
	var s silent
	if !errors.As(err, &s) {
		fmt.Fprintln(root.ErrOrStderr(), clilogin.Message(err))
	}
	if errors.Is(err, clilogin.ErrStorage) {
		return ExitUnknown
	}
	return ExitFailure
}
