// Package doctest holds the tests that keep keyloop's documentation true:
// the README's Go snippets compile (and the two quick starts log in against
// each other in a browser), go doc has no gaps in exported names, and doc
// comments say things, not where they came from.
package doctest
