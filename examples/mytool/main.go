// Command mytool is an example CLI that signs its user in with keyloop:
//
//	mytool login      # opens the browser, stores a verified token in the keychain
//	mytool login --no-browser  # over SSH: open the URL anywhere, paste back where the browser ended
//	mytool login --device      # no browser here: enter a short code on any other device
//	mytool status     # who is signed in, until when, where the token is kept
//	mytool token      # prints a valid access token (refreshed when needed)
//	mytool api /api/me
//	mytool logout
//
// The server is --server, $MYTOOL_SERVER or http://127.0.0.1:8787 (make demo).
// $MYTOOL_TOKEN, when set, is the token: storage is neither read nor written.
package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyloop/keyloop/clilogin"
	"github.com/keyloop/keyloop/cobralogin"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(cobralogin.Execute(newRoot()))
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:     "mytool",
		Short:   "An example CLI that signs in with keyloop",
		Version: version,
	}
	cmds := cobralogin.Add(root, cobralogin.Config{Login: clilogin.Config{
		Issuer:   "http://127.0.0.1:8787",
		ClientID: "mytool",
		AppName:  "mytool",
		TokenEnv: "MYTOOL_TOKEN",
	}})
	root.AddCommand(apiCommand(cmds))
	return root
}

// apiCommand does a GET on the server with the bearer token, refreshing it
// when needed, and prints the response body.
func apiCommand(cmds *cobralogin.Commands) *cobra.Command {
	return &cobra.Command{
		Use:   "api PATH",
		Short: "GET a path of the server's API with your token (e.g. mytool api /api/me)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := cmds.Client(cmd)
			if err != nil {
				return err
			}
			path := args[0]
			if !strings.HasPrefix(path, "/") {
				return fmt.Errorf("PATH must start with /, got %q", path)
			}
			u, err := cmds.ServerURL(path)
			if err != nil {
				return err
			}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, u, nil)
			if err != nil {
				return err
			}
			resp, err := client.HTTPClient(cmd.Context()).Do(req)
			if err != nil {
				var ue *url.Error // net/http's "Get URL: …" wrapper: keep what clilogin said
				if errors.As(err, &ue) {
					err = ue.Err
				}
				return err
			}
			defer resp.Body.Close()
			if _, err := io.Copy(cmd.OutOrStdout(), resp.Body); err != nil {
				return fmt.Errorf("reading the answer to GET %s: %w", u, err)
			}
			if resp.StatusCode >= 300 {
				return fmt.Errorf("GET %s answered %s", u, resp.Status)
			}
			return nil
		},
	}
}
