package clilogin

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"html/template"
	"net/http"
	"sync"

	"github.com/keyloop/keyloop/internal/pagestyle"
)

// PageData is what the browser pages served by the loopback listener are
// rendered from (see Config.Pages).
type PageData struct {
	// AppName is Config.AppName, for branding.
	AppName string
	// OK is true on the success page only.
	OK bool
	// Denied is true when the user (or the server) denied the request
	// (access_denied): a refusal the user chose, not a failure. The default
	// page shows it in neutral colors.
	Denied bool
	// Title is a short heading: "Signed in to mytool", "Request denied",
	// "Sign-in failed", …
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
// accessible page named "page" in the same visual language as the server
// package's pages (a centred card with the app's name, light and dark color
// schemes, inline CSS, no external assets). A CLI can Parse its own
// definition of either template into the copy and keep the other.
func DefaultPages() *template.Template {
	return template.Must(template.New("page").Parse(defaultPagesText))
}

// defaultPages is parsed at first use, not at program start: a CLI run
// that serves no page (most of them: `mytool token`) never pays for it.
var defaultPages = sync.OnceValue(DefaultPages)

const defaultPagesText = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><meta name="robots" content="noindex"><meta name="referrer" content="no-referrer">
<title>{{.Title}} · {{.AppName}}</title>
<style nonce="{{.Nonce}}">` + pagestyle.CSS + `</style></head>
<body><main class="{{if .OK}}ok{{else if .Denied}}neutral{{else}}fail{{end}}" aria-labelledby="title">
<p class="brand">{{.AppName}}</p>
<h1 id="title">{{.Title}}</h1>
<p role="status">{{.Message}}</p>
{{if .OK}}<p class="hint">You can close this tab and return to your terminal.</p>{{else if .Denied}}<p class="hint">You can close this tab.</p>{{else}}<p class="hint">Return to your terminal for details{{if .ErrorCode}} (error <code>{{.ErrorCode}}</code>){{end}}.</p>{{end}}
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
		_ = defaultPages().ExecuteTemplate(&buf, name, p)
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
