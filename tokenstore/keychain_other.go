//go:build !linux

package tokenstore

import "runtime"

// dbusReason is for Linux's Secret Service only.
func dbusReason(error) string { return "" }

// dbusVanished is for Linux's Secret Service only.
func dbusVanished(error) bool { return false }

// dbusAbsent is for Linux's Secret Service only.
func dbusAbsent(error) bool { return false }

// fastGet is for Linux's Secret Service only: go-keyring reads.
func fastGet(string, string) (string, bool) { return "", false }

// sessionBus is for Linux's Secret Service only.
func sessionBus() error { return nil }

// keychainWhere names the keychain for people.
func keychainWhere() string {
	switch runtime.GOOS {
	case "darwin":
		return "the macOS Keychain"
	case "windows":
		return "the Windows Credential Manager"
	}
	return "the Secret Service"
}
