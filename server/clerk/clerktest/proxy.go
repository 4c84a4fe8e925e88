package clerktest

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
)

// ProxyHandler returns a proxy of the fake's Frontend API configured the way
// Clerk's guide "Proxying the Clerk Frontend API" requires, for mounting at
// the path of proxyURL on the application's own server (e.g.
// mux.Handle("/__clerk/", fake.ProxyHandler("https://app.example/__clerk"))):
// it strips the path, forwards body and headers, and sets Clerk-Proxy-Url
// (the full proxy URL), Clerk-Secret-Key and X-Forwarded-For (the client's
// address). Configure the instance with SetProxyURL(proxyURL) too.
func (f *Fake) ProxyHandler(proxyURL string) http.Handler {
	target, _ := url.Parse(f.FrontendAPIURL)
	pu, _ := url.Parse(proxyURL)
	prefix := strings.TrimSuffix(pu.Path, "/")
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.URL.Path = strings.TrimPrefix(r.In.URL.Path, prefix)
			if r.Out.URL.Path == "" {
				r.Out.URL.Path = "/"
			}
			r.Out.URL.RawPath = ""
			r.Out.Host = target.Host
			r.Out.Header.Set("Clerk-Proxy-Url", strings.TrimSuffix(proxyURL, "/"))
			r.Out.Header.Set("Clerk-Secret-Key", f.SecretKey)
			if host, _, err := net.SplitHostPort(r.In.RemoteAddr); err == nil {
				r.Out.Header.Set("X-Forwarded-For", host)
			}
		},
	}
	return rp
}
