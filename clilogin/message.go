package clilogin

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// userError is an error with two faces: Error() is the developer's chain
// ("clilogin: …"), UserMessage() the sentence a person reads.
type userError struct {
	msg  string  // for developers, with the package prefix once
	user string  // for people: what happened, where, what to run
	errs []error // what it wraps, for errors.Is and errors.As
}

func (e *userError) Error() string       { return e.msg }
func (e *userError) UserMessage() string { return e.user }
func (e *userError) Unwrap() []error     { return e.errs }

// Message returns what a CLI should print for err: one or two sentences
// saying what happened, where (which server, endpoint or store) and the
// command to run, without the package prefixes of the error chain
// ("clilogin: refresh failed: clilogin: …"). Errors from this package carry
// their sentence; for others, the first one in err's chain that has a
// UserMessage() string method is used, else err's text with the "clilogin:"
// and "tokenstore:" prefixes removed and a capital letter and a full stop
// added. It never adds anything secret: errors here never contain tokens.
func Message(err error) string {
	if err == nil {
		return ""
	}
	var um interface{ UserMessage() string }
	if errors.As(err, &um) {
		return um.UserMessage()
	}
	return sentence(stripPrefixes(err.Error()))
}

// stripPrefixes removes this module's package prefixes from an error text.
func stripPrefixes(s string) string {
	for _, p := range []string{"clilogin: ", "tokenstore: ", "cobralogin: "} {
		s = strings.ReplaceAll(s, p, "")
	}
	return s
}

// sentence makes s start with a capital letter and end with a full stop
// (or another closing punctuation mark).
func sentence(s string) string {
	s = strings.TrimSpace(upperFirst(s))
	if s == "" {
		return s
	}
	switch s[len(s)-1] {
	case '.', '!', '?', '`':
		return s
	}
	return s + "."
}

func upperFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}
