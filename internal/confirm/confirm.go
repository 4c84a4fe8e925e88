// Package confirm derives the short confirmation code that a CLI prints in
// the terminal and the backend shows on its consent page, so the user can
// see that the page in the browser belongs to the login they started.
//
// The code is derived from the OAuth "state" parameter, which both sides
// see; it is a visual check, not a secret.
package confirm

import (
	"crypto/sha256"
	"encoding/base32"
)

// alphabet avoids look-alike characters (0/O, 1/I/L).
var enc = base32.NewEncoding("ABCDEFGHJKLMNPQRSTUVWXYZ23456789").WithPadding(base32.NoPadding)

// Code returns the confirmation code for state, in the form "ABCD-EFGH".
// It returns "" for an empty state.
func Code(state string) string {
	if state == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("keyloop-confirm:" + state))
	s := enc.EncodeToString(sum[:5]) // 40 bits → 8 characters
	return s[:4] + "-" + s[4:8]
}
