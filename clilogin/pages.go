package clilogin

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"html/template"
	"net/http"
)

// PageData is what the browser pages served by the loopback listener are
// rendered from (see Config.Pages).
type PageData struct {
	// AppName is Config.AppName, for branding.
	AppName string
	// OK is true on the success page only.
	OK bool
	// Title is a short heading: "Signed in to mytool", "Sign-in failed", …
	Title string
	// Message is one or two sentences saying what happened and what to do.
	Message string
	// Account is the signed-in account (e-mail, else subject) on success;
	// empty otherwise.
	Account string
	// ErrorCode is the RFC 6749 error code of a failed sign-in
	// ("access_denied", …) when there is one; empty otherwise.
	ErrorCode string
	// Nonce is the Content-Security-Policy nonce of this response: only
	// <style> and <script> elements with nonce="{{.Nonce}}" run.
	Nonce string
}

// DefaultPages returns a new copy of the templates used when Config.Pages is
// nil: "success" and "failure", both rendered by one self-contained,
// accessible page named "page" (light and dark color schemes, inline CSS, no
// external assets). A CLI can Parse its own definition of either template
// into the copy and keep the other.
func DefaultPages() *template.Template {
	return template.Must(template.New("page").Parse(defaultPagesText))
}

var defaultPages = DefaultPages()

const defaultPagesText = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><meta name="robots" content="noindex">
<title>{{.Title}}</title>
<style nonce="{{.Nonce}}">
:root{--bg:#f6f8fa;--card:#fff;--fg:#1f2328;--muted:#59636e;--ok:#1a7f37;--fail:#cf222e;--border:#d1d9e0}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--card:#151b23;--fg:#f0f6fc;--muted:#9198a1;--ok:#3fb950;--fail:#ff7b72;--border:#3d444d}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;padding:1.5rem;
background:var(--bg);color:var(--fg);font:1rem/1.55 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{background:var(--card);border:1px solid var(--border);border-radius:12px;padding:2rem 2.25rem;max-width:34rem;width:100%}
.brand{margin:0 0 1.25rem;color:var(--muted);font-size:.875rem;font-weight:600;letter-spacing:.02em}
h1{margin:0 0 .75rem;font-size:1.5rem;line-height:1.25;display:flex;gap:.6rem;align-items:center}
.icon{flex:none;display:inline-flex;width:2rem;height:2rem;border-radius:50%;align-items:center;justify-content:center;color:#fff;font-size:1.1rem}
.ok .icon{background:var(--ok)}.fail .icon{background:var(--fail)}
.ok h1{color:var(--ok)}.fail h1{color:var(--fail)}
p{margin:0 0 .75rem}.hint{color:var(--muted);font-size:.9rem;margin:0}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em}
</style></head>
<body><main class="{{if .OK}}ok{{else}}fail{{end}}" aria-labelledby="title">
<p class="brand">{{.AppName}}</p>
<h1 id="title"><span class="icon" aria-hidden="true">{{if .OK}}✓{{else}}✕{{end}}</span>{{.Title}}</h1>
<p role="status">{{.Message}}</p>
{{if .OK}}<p class="hint">You can close this tab and return to your terminal.</p>{{else}}<p class="hint">Return to your terminal for details{{if .ErrorCode}} (error <code>{{.ErrorCode}}</code>){{end}}.</p>{{end}}
</main></body></html>
{{define "success"}}{{template "page" .}}{{end}}{{define "failure"}}{{template "page" .}}{{end}}`

// writePage renders the "success" (p.OK) or "failure" template of pages,
// falling back to the default pages when the custom one fails, with a strict
// Content-Security-Policy: no external assets, inline styles and scripts only
// with the response's nonce.
func writePage(w http.ResponseWriter, pages *template.Template, status int, p PageData) {
	nb := make([]byte, 16)
	_, _ = rand.Read(nb)
	p.Nonce = base64.RawURLEncoding.EncodeToString(nb) // no "+" or "/", which html/template would escape
	name := "failure"
	if p.OK {
		name = "success"
	}
	var buf bytes.Buffer
	if pages == nil || pages.ExecuteTemplate(&buf, name, p) != nil {
		buf.Reset()
		_ = defaultPages.ExecuteTemplate(&buf, name, p)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+p.Nonce+"'; script-src 'nonce-"+p.Nonce+
		"'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
