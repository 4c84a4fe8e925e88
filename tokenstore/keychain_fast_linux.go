package tokenstore

import (
	"strings"

	dbus "github.com/godbus/dbus/v5"
	ss "github.com/zalando/go-keyring/secret_service"
)

// Secret Service names (freedesktop.org Secret Service API 0.2).
const (
	secretsName     = "org.freedesktop.secrets"
	secretsPath     = dbus.ObjectPath("/org/freedesktop/secrets")
	secretsService  = "org.freedesktop.Secret.Service"
	secretsItem     = "org.freedesktop.Secret.Item"
	secretsSession  = "org.freedesktop.Secret.Session"
	loginItemPrefix = "/org/freedesktop/secrets/collection/login/"
)

// fastGet reads the secret go-keyring's Get(service, user) returns, in two
// round trips to the Secret Service instead of six: SearchItems and
// OpenSession sent together, then GetSecret (the session's Close is sent
// without waiting for its answer). It only answers for an unlocked item of
// the "login" collection, the one go-keyring stores in and reads from;
// anything else (no such item, a locked one, a keyring without a "login"
// collection, any error) is ok false, and the caller asks go-keyring,
// which unlocks, prompts and reports errors as it always does.
func fastGet(service, user string) (secret string, ok bool) {
	conn, err := dbus.SessionBus()
	if err != nil {
		return "", false
	}
	svc := conn.Object(secretsName, secretsPath)
	search := svc.Go(secretsService+".SearchItems", 0, nil, map[string]string{"username": user, "service": service})
	open := svc.Go(secretsService+".OpenSession", 0, nil, "plain", dbus.MakeVariant(""))
	var unlocked, locked []dbus.ObjectPath
	searchErr := (<-search.Done).Store(&unlocked, &locked)
	var output dbus.Variant
	var session dbus.ObjectPath
	if err := (<-open.Done).Store(&output, &session); err != nil {
		return "", false
	}
	defer conn.Object(secretsName, session).Go(secretsSession+".Close", dbus.FlagNoReplyExpected, nil)
	if searchErr != nil {
		return "", false
	}
	var item dbus.ObjectPath
	for _, p := range locked {
		if strings.HasPrefix(string(p), loginItemPrefix) {
			return "", false // go-keyring unlocks it (or says why it cannot)
		}
	}
	for _, p := range unlocked {
		if strings.HasPrefix(string(p), loginItemPrefix) {
			item = p
			break
		}
	}
	if item == "" {
		return "", false
	}
	var s ss.Secret
	if err := conn.Object(secretsName, item).Call(secretsItem+".GetSecret", 0, session).Store(&s); err != nil {
		return "", false
	}
	return string(s.Value), true
}
