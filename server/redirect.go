package server

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// maxRedirectURILen bounds redirect_uri.
const maxRedirectURILen = 1024

// errRedirectURI is wrapped by validateRedirectURI; its text is safe to show.
var errRedirectURI = errors.New("server: invalid redirect_uri")

// loopbackHosts are the only hosts a redirect URI may name (RFC 8252 §7.3),
// compared byte for byte: no case folding, no trailing dots, no numeric
// variants.
var loopbackHosts = map[string]bool{"127.0.0.1": true, "[::1]": true, "localhost": true}

// validateRedirectURI checks a native-app loopback redirect URI and returns
// it parsed. Rules: scheme "http" in lower case; host exactly 127.0.0.1,
// [::1] or localhost; an optional decimal port 1–65535 without leading
// zeros; no userinfo, no fragment, no percent-encoding, no backslashes,
// spaces or control characters anywhere; path and query from a conservative
// character set. allowedHosts, when non-empty, narrows the hosts further.
func validateRedirectURI(raw string, allowedHosts []string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: missing", errRedirectURI)
	}
	if len(raw) > maxRedirectURILen {
		return nil, fmt.Errorf("%w: longer than %d bytes", errRedirectURI, maxRedirectURILen)
	}
	const prefix = "http://"
	if !strings.HasPrefix(raw, prefix) {
		return nil, fmt.Errorf("%w: scheme must be http", errRedirectURI)
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !uriChar(c) {
			return nil, fmt.Errorf("%w: character %q not allowed", errRedirectURI, c)
		}
	}
	rest := raw[len(prefix):]
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority := rest[:end]
	if strings.Contains(authority, "@") {
		return nil, fmt.Errorf("%w: userinfo not allowed", errRedirectURI)
	}
	host, port := authority, ""
	if strings.HasPrefix(authority, "[") {
		i := strings.Index(authority, "]")
		if i < 0 {
			return nil, fmt.Errorf("%w: bad host", errRedirectURI)
		}
		host, port = authority[:i+1], authority[i+1:]
	} else if i := strings.IndexByte(authority, ':'); i >= 0 {
		host, port = authority[:i], authority[i:]
	}
	if !loopbackHosts[host] {
		return nil, fmt.Errorf("%w: host must be 127.0.0.1, [::1] or localhost", errRedirectURI)
	}
	if len(allowedHosts) > 0 {
		ok := false
		for _, h := range allowedHosts {
			ok = ok || h == host
		}
		if !ok {
			return nil, fmt.Errorf("%w: host not allowed for this client", errRedirectURI)
		}
	}
	if port != "" {
		p := port[1:]
		if port[0] != ':' || p == "" || len(p) > 5 || p[0] == '0' {
			return nil, fmt.Errorf("%w: bad port", errRedirectURI)
		}
		n := 0
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return nil, fmt.Errorf("%w: bad port", errRedirectURI)
			}
			n = n*10 + int(p[i]-'0')
		}
		if n > 65535 {
			return nil, fmt.Errorf("%w: bad port", errRedirectURI)
		}
	}
	pathQuery := rest[end:]
	if strings.Count(pathQuery, "?") > 1 || strings.Contains(pathQuery, "//") ||
		strings.Contains(pathQuery, "/./") || strings.Contains(pathQuery, "/../") ||
		strings.HasSuffix(pathQuery, "/.") || strings.HasSuffix(pathQuery, "/..") {
		return nil, fmt.Errorf("%w: bad path", errRedirectURI)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Opaque != "" || u.User != nil || u.Host != authority ||
		u.Fragment != "" || u.RawFragment != "" {
		return nil, fmt.Errorf("%w: does not parse as a plain URL", errRedirectURI)
	}
	return u, nil
}

// uriChar reports whether c may appear in a redirect URI: RFC 3986
// unreserved and sub-delims plus ":/?@[]", and nothing else (no "%", "#",
// "\\", spaces or controls).
func uriChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:/?@[]", c) >= 0
}
