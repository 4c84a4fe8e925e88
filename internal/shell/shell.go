// Package shell quotes words for a POSIX shell, for the commands that
// messages tell the user to run (clilogin's login hint, cobralogin's).
package shell

import "strings"

// Quote returns s as one POSIX shell word: s itself when it holds only
// letters, digits and -_./:@%+=, (and is not empty), else s in single
// quotes with each ' written as '\”.
func Quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@%+=,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
