// Package cobralogin gives CLIs built on github.com/spf13/cobra ready
// "login", "logout", "status" and "token" commands backed by clilogin, plus
// the persistent --server and --profile flags they share:
//
//	root := &cobra.Command{Use: "mytool"}
//	cmds := cobralogin.Add(root, cobralogin.Config{Login: clilogin.Config{Issuer: "https://api.example.com", ClientID: "mytool", AppName: "mytool"}})
//	os.Exit(cobralogin.Execute(root))
//
// The app's own commands get a ready client with cmds.Client(cmd).
package cobralogin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyloop/keyloop/clilogin"
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
func (c *Commands) ClientConfig() clilogin.Config {
	cfg := c.cfg.Login
	if v := firstNonEmpty(c.server, os.Getenv(c.cfg.ServerEnv)); v != "" {
		cfg.Issuer = strings.TrimRight(v, "/")
	}
	if v := firstNonEmpty(c.profile, os.Getenv(c.cfg.ProfileEnv)); v != "" {
		cfg.Profile = v
	}
	return cfg
}

// Client returns a client for the resolved configuration, for the app's own
// commands (for example one that calls the API with Client.HTTPClient).
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
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s: %v\n", c.app(), err)
				return
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s: could not refresh the token, using the current one until it expires: %v\n", c.app(), err)
		}
	}
	return c.cfg.NewClient(cfg)
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

// loginHint is the command a user runs to log in again.
func (c *Commands) loginHint() string {
	s := c.app() + " login"
	if p := c.ClientConfig().Profile; p != "" {
		s += " --profile " + p
	}
	return s
}

func (c *Commands) loginCommand() *cobra.Command {
	var noBrowser bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in through your browser",
		Long: "Opens your browser to sign in and stores the resulting token in your OS keychain.\n\n" +
			"Over SSH, in a container or without a display (detected automatically, or with --no-browser),\n" +
			"open the printed URL on any machine, sign in, and paste back the address of the page\n" +
			"the browser ends on (http://127.0.0.1:…/callback?…), even if that page fails to load.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := c.ClientConfig()
			cfg.Stdout = cmd.ErrOrStderr()
			cfg.NoBrowser = cfg.NoBrowser || noBrowser
			client, err := c.cfg.NewClient(cfg)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			s, err := client.Login(ctx)
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) && cmd.Context().Err() == nil {
					return fmt.Errorf("login timed out after %s: run `%s` again and finish signing in within --timeout (now %s); "+
						"if the browser runs on another machine (SSH, container), add --no-browser and paste the address the browser ends on",
						timeout, c.loginHint(), timeout)
				}
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "✓ Logged in to %s as %s\n", s.Issuer, account(s))
			if w := stored(s.Location); w != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "  Token stored %s\n", w)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "do not open a browser: open the printed URL on any machine, then paste the address it ends on")
	cmd.Flags().DurationVar(&timeout, "timeout", c.cfg.LoginTimeout, "how long to wait for the browser sign-in")
	return cmd
}

// stored says where a new login was kept, for login's last line.
func stored(l tokenstore.Location) string {
	switch l.Kind {
	case tokenstore.KindKeychain:
		return "in the OS keychain"
	case tokenstore.KindFile:
		return "in " + l.Path + " (a plain file: no OS keychain was available)"
	case "":
		return ""
	}
	if l.Path != "" {
		return fmt.Sprintf("in %s (%s)", l.Kind, l.Path)
	}
	return "in " + string(l.Kind)
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
				fmt.Fprintln(cmd.ErrOrStderr(), "Not logged in; nothing to do.")
				return nil
			case errors.Is(err, clilogin.ErrRevocationFailed):
				// The token is gone from this machine; only the server
				// could not be told. Logged out all the same.
				fmt.Fprintf(cmd.ErrOrStderr(), "✓ Logged out of %s on this machine\n", c.ClientConfig().Issuer)
				fmt.Fprintf(cmd.ErrOrStderr(), "! Could not revoke the token at the server (%v); it stays valid there until it expires\n", err)
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

func (c *Commands) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show who is signed in, until when, and where the token is kept",
		Args:  cobra.NoArgs,
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
				fmt.Fprintf(out, "%s\n  X Not logged in to %s\n  - Run `%s` to sign in.\n", hostOf(cfg.Issuer), cfg.Issuer, c.loginHint())
				return silent{err}
			case err != nil:
				fmt.Fprintf(out, "%s\n  X Cannot read the login for %s: %v\n", hostOf(cfg.Issuer), cfg.Issuer, err)
				return silent{err}
			}
			WriteStatus(out, s, cfg.Profile, time.Now(), c.loginHint())
			if s.Location.Kind == tokenstore.KindEnv && cfg.TokenEnv != "" {
				fmt.Fprintf(out, "  - The token comes from $%s; `%s login`, `%s logout` and the stored login are not used while it is set\n",
					cfg.TokenEnv, c.app(), c.app())
			}
			return nil
		},
	}
}

// silent marks an error whose message was already shown to the user.
type silent struct{ err error }

func (s silent) Error() string { return s.err.Error() }
func (s silent) Unwrap() error { return s.err }

// Execute runs root with a context that SIGINT and SIGTERM cancel, prints
// the error if any, and returns the process exit code: 0 on success, 130
// when interrupted, 1 otherwise.
func Execute(root *cobra.Command) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case err == nil:
		return 0
	case interrupted:
		fmt.Fprintln(root.ErrOrStderr(), "Interrupted.")
		return 130
	}
	var s silent
	if !errors.As(err, &s) {
		fmt.Fprintf(root.ErrOrStderr(), "%s: %v\n", root.Name(), err)
	}
	return 1
}
