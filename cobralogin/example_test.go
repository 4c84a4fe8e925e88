package cobralogin_test

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keyloop/keyloop/clilogin"
	"github.com/keyloop/keyloop/cobralogin"
)

// A cobra CLI gets login, logout, status and token, and the --server and
// --profile flags, from one call. In main, run it with
// os.Exit(cobralogin.Execute(root)).
func ExampleAdd() {
	root := &cobra.Command{Use: "mytool"}
	cobralogin.Add(root, cobralogin.Config{Login: clilogin.Config{
		Issuer: "https://api.example.com", ClientID: "mytool", AppName: "mytool", TokenEnv: "MYTOOL_TOKEN",
	}})
	for _, c := range root.Commands() {
		fmt.Printf("%-7s %s\n", c.Name(), c.Short)
	}
	// Output:
	// login   Sign in through your browser, or on another device with --device
	// logout  Sign out: revoke the token at the server and remove it from this machine
	// status  Show who is signed in, until when, and where the token is kept
	// token   Print a valid access token, refreshing it first when needed
}

// The command messages tell the user to run keeps the server and profile
// they chose, in the form they chose it.
func ExampleCommands_LoginHint() {
	root := &cobra.Command{Use: "mytool"}
	cmds := cobralogin.Add(root, cobralogin.Config{Login: clilogin.Config{
		Issuer: "https://api.example.com", ClientID: "mytool", AppName: "mytool",
	}})
	_ = root.ParseFlags([]string{"--server", "https://staging.example.com", "--profile", "work"})
	fmt.Println(cmds.LoginHint())
	// Output:
	// mytool login --server https://staging.example.com --profile work
}

// An app's own command calls its API on the server the user selected:
// Client and ServerURL inside RunE, where --server is parsed, so the token
// and the request go to the same server.
func ExampleCommands_ServerURL() {
	root := &cobra.Command{Use: "mytool"}
	cmds := cobralogin.Add(root, cobralogin.Config{Login: clilogin.Config{
		Issuer: "https://api.example.com", ClientID: "mytool", AppName: "mytool",
	}})
	root.AddCommand(&cobra.Command{
		Use: "whoami",
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := cmds.Client(cmd)
			if err != nil {
				return err // a --server that is no usable URL
			}
			url, err := cmds.ServerURL("/api/me")
			if err != nil {
				return err
			}
			_ = client // client.HTTPClient(cmd.Context()).Get(url) sends the request with the token
			fmt.Println(url)
			return nil
		},
	})
	for _, args := range [][]string{{"whoami"}, {"--server", "http://127.0.0.1:8787", "whoami"}, {"--server", "http://auth.example.com", "whoami"}} {
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			fmt.Println("refused:", errors.Is(err, clilogin.ErrInvalidConfig))
		}
	}
	// Output:
	// https://api.example.com/api/me
	// http://127.0.0.1:8787/api/me
	// refused: true
}
