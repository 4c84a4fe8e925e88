package cobralogin

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyloop/keyloop/clilogin"
	"github.com/keyloop/keyloop/tokenstore"
)

func TestHuman(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{42 * time.Second, "42 seconds"},
		{time.Second, "1 second"},
		{5 * time.Minute, "5 minutes"},
		{time.Hour, "1 hour"},
		{2*time.Hour + 3*time.Minute, "2 hours 3 minutes"},
		{7 * 24 * time.Hour, "7 days"},
		{6*24*time.Hour + 23*time.Hour + 59*time.Minute, "6 days 23 hours"},
		{-90 * time.Second, "1 minute"},
	} {
		if got := Human(tc.d); got != tc.want {
			t.Errorf("Human(%v) = %q; want %q", tc.d, got, tc.want)
		}
	}
}

func TestWriteStatus(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	s := &clilogin.Session{Subject: "user_1", Account: "ada@example.com", Issuer: "http://127.0.0.1:8787",
		Expiry: now.Add(49 * time.Hour), Location: tokenstore.Location{Kind: tokenstore.KindFile, Path: "/home/ada/.config/mytool/x.json"}}
	var b bytes.Buffer
	WriteStatus(&b, s, "work", now, "mytool login --profile work")
	out := b.String()
	for _, want := range []string{"127.0.0.1:8787\n", "Logged in to http://127.0.0.1:8787 account ada@example.com (file: /home/ada/.config/mytool/x.json)",
		"Profile: work", "expires in 2 days 1 hour", "plain file"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}

	s.Expiry, s.CanRefresh, s.Location = now.Add(-time.Hour), false, tokenstore.Location{Kind: tokenstore.KindKeychain}
	b.Reset()
	WriteStatus(&b, s, "", now, "mytool login")
	if out := b.String(); !strings.Contains(out, "expired 1 hour ago: run `mytool login`") || strings.Contains(out, "Profile") {
		t.Errorf("expired status:\n%s", out)
	}
}

func TestFlagsAndEnvOverrideTheDefaults(t *testing.T) {
	root := &cobra.Command{Use: "mytool"}
	cmds := Add(root, Config{Login: clilogin.Config{Issuer: "http://default", ClientID: "mytool", AppName: "my-tool"}})
	if got := cmds.ClientConfig(); got.Issuer != "http://default" || got.Profile != "" {
		t.Fatalf("defaults: issuer %q profile %q", got.Issuer, got.Profile)
	}
	t.Setenv("MY_TOOL_SERVER", "http://from-env/")
	t.Setenv("MY_TOOL_PROFILE", "env-profile")
	if got := cmds.ClientConfig(); got.Issuer != "http://from-env" || got.Profile != "env-profile" {
		t.Fatalf("env: issuer %q profile %q", got.Issuer, got.Profile)
	}
	if err := root.PersistentFlags().Parse([]string{"--server", "http://from-flag", "--profile", "flag-profile"}); err != nil {
		t.Fatal(err)
	}
	if got := cmds.ClientConfig(); got.Issuer != "http://from-flag" || got.Profile != "flag-profile" {
		t.Fatalf("flags: issuer %q profile %q", got.Issuer, got.Profile)
	}
	for _, name := range []string{"login", "logout", "status", "token"} {
		if c, _, err := root.Find([]string{name}); err != nil || c.Name() != name {
			t.Errorf("command %q not added", name)
		}
	}
}

func TestExecuteExitCodes(t *testing.T) {
	var errOut bytes.Buffer
	root := &cobra.Command{Use: "x", SilenceErrors: true, SilenceUsage: true, RunE: func(*cobra.Command, []string) error { return errors.New("boom") }}
	root.SetErr(&errOut)
	root.SetArgs(nil)
	if code := Execute(root); code != 1 || !strings.Contains(errOut.String(), "x: boom") {
		t.Errorf("Execute = %d, stderr %q; want 1 and the error", code, errOut.String())
	}
	root.RunE = func(*cobra.Command, []string) error { return silent{errors.New("shown")} }
	errOut.Reset()
	if code := Execute(root); code != 1 || errOut.Len() != 0 {
		t.Errorf("Execute = %d, stderr %q; want 1 and nothing printed twice", code, errOut.String())
	}
	root.RunE = func(*cobra.Command, []string) error { return nil }
	if code := Execute(root); code != 0 {
		t.Errorf("Execute = %d; want 0", code)
	}
}
