//go:build !linux

package tokenstore

// dbusReason is for Linux's Secret Service only.
func dbusReason(error) string { return "" }

// dbusVanished is for Linux's Secret Service only.
func dbusVanished(error) bool { return false }
