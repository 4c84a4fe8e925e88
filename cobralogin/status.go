package cobralogin

import (
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/keyloop/keyloop/clilogin"
	"github.com/keyloop/keyloop/tokenstore"
)

// WriteStatus writes s in the style of `gh auth status`: the server, the
// account, the expiry in human terms, where the token is kept, and a hint
// when something needs doing (expired, ended by the server, kept in a plain
// file, taken from the environment). A line starts with "✓" for a usable
// login, "X" for one that needs a new sign-in, "!" for a warning and "-"
// for a fact. now is the current time; loginCmd is the command that logs in
// again.
func WriteStatus(w io.Writer, s *clilogin.Session, profile string, now time.Time, loginCmd string) {
	fmt.Fprintf(w, "%s\n", hostOf(s.Issuer))
	if e := s.Ended; e != nil {
		fmt.Fprintf(w, "  X The login of %s to %s has ended: %s\n", account(s), s.Issuer, e.Explain())
		if profile != "" {
			fmt.Fprintf(w, "  - Profile: %s\n", profile)
		}
		fmt.Fprintf(w, "  - Run `%s` to sign in again.\n", loginCmd)
		return
	}
	mark := "✓"
	if !s.Usable(now) {
		mark = "X"
	}
	fmt.Fprintf(w, "  %s Logged in to %s account %s (%s)\n", mark, s.Issuer, account(s), where(s.Location))
	if profile != "" {
		fmt.Fprintf(w, "  - Profile: %s\n", profile)
	}
	left := s.Expiry.Sub(now)
	switch {
	case s.Expiry.IsZero():
		fmt.Fprintf(w, "  - Token expiry: unknown\n")
	case left <= 0 && s.Location.Kind == tokenstore.KindEnv:
		fmt.Fprintf(w, "  X Token expired %s ago: set a fresh token in the environment variable, or unset it and run `%s`\n", Human(-left), loginCmd)
	case left <= 0 && s.CanRefresh:
		fmt.Fprintf(w, "  - Token expired %s ago; it will be refreshed on next use\n", Human(-left))
	case left <= 0:
		fmt.Fprintf(w, "  X Token expired %s ago and cannot be refreshed: run `%s`\n", Human(-left), loginCmd)
	default:
		fmt.Fprintf(w, "  - Token expires in %s (%s)\n", Human(left), s.Expiry.UTC().Format("2006-01-02 15:04 MST"))
	}
	switch s.Location.Kind {
	case tokenstore.KindFile:
		fmt.Fprintf(w, "  ! %s\n", fileLine(s.Location))
	case tokenstore.KindEnv:
		if s.Subject == "" {
			fmt.Fprintf(w, "  ! The token from the environment is not a JWT this CLI can read; it is used as is\n")
		}
	}
}

func where(l tokenstore.Location) string {
	if l.Path != "" {
		return fmt.Sprintf("%s: %s", l.Kind, l.Path)
	}
	if l.Kind == "" {
		return "unknown storage"
	}
	return string(l.Kind)
}

func hostOf(issuer string) string {
	if u, err := url.Parse(issuer); err == nil && u.Host != "" {
		return u.Host
	}
	return issuer
}

// Human renders d coarsely for people: "6 days 23 hours", "5 minutes",
// "42 seconds".
func Human(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	unit := func(n int64, name string) string {
		if n == 1 {
			return fmt.Sprintf("1 %s", name)
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	switch {
	case d < time.Minute:
		return unit(int64(d/time.Second), "second")
	case d < time.Hour:
		return unit(int64(d/time.Minute), "minute")
	case d < 24*time.Hour:
		h, m := int64(d/time.Hour), int64(d%time.Hour/time.Minute)
		if m == 0 {
			return unit(h, "hour")
		}
		return unit(h, "hour") + " " + unit(m, "minute")
	default:
		days, h := int64(d/(24*time.Hour)), int64(d%(24*time.Hour)/time.Hour)
		if h == 0 {
			return unit(days, "day")
		}
		return unit(days, "day") + " " + unit(h, "hour")
	}
}
