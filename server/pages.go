package server

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"

	"github.com/keyloop/keyloop/internal/pagestyle"
)

//go:embed templates/*.html
var builtinTemplates embed.FS

// builtinPages are the built-in page templates; each is parsed with
// layout.html.
var builtinPages = []string{"consent.html", "error.html", "signin.html", "device.html", "device-done.html"}

// ErrUnknownPage is wrapped by SignInPrompt.Render when asked for a page that
// is neither built in ("consent.html", "error.html", "signin.html",
// "device.html", "device-done.html") nor a file of Config.Templates.
var ErrUnknownPage = errors.New("server: unknown page")

// Page is the value every page template is executed with: the layout
// ("layout.html", which defines "layout") and the page, which defines
// "title" and "content" (and may define "tone", the card's class: "fail" on
// error pages).
type Page struct {
	// Brand is Config.Brand with Name filled in (see Brand.Name).
	Brand Brand
	// Nonce is the response's Content-Security-Policy nonce: only <style>
	// elements with nonce="{{.Nonce}}" apply.
	Nonce string
	// Style is the built-in style sheet, the one the CLI's loopback pages
	// use too: <style nonce="{{.Nonce}}">{{.Style}}</style>.
	Style template.CSS
	// Data is the page's own data: ConsentPage, ErrorPage or SignInPage
	// for those built-in pages (the device flow's pages have their own);
	// for a page of the Authenticator's own, what
	// it passed to SignInPrompt.Render.
	Data any
}

// ConsentPage is the data of "consent.html". Its form POSTs decision=authorize
// or decision=deny to Action, with CSRFField=CSRFToken.
type ConsentPage struct {
	ClientName string // the CLI asking (Client.Name)
	Account    string // the signed-in user: Identity.Email, else Name, else Subject
	Code       string // the confirmation code the terminal shows, "ABCD-EFGH"
	Action     string // the sign-in step's URL (path and query)
	CSRFField  string // the form field name of the CSRF token (CSRFField)
	CSRFToken  string // the CSRF token
	// Device is true for a device authorization (RFC 8628): the CLI runs on
	// another device, and Code is the user code that device shows.
	Device bool
}

// ErrorPage is the data of "error.html".
type ErrorPage struct {
	// Title is the heading: "Sign-in failed", "Login request expired", ….
	Title string
	// Message says what happened, in one or two sentences.
	Message string
	// Hint says what to do next.
	Hint string
	// Retry, when set, is the sign-in step of a login request that is still
	// valid: the page links to it ("Try again").
	Retry string
	// Return, when set, is the CLI's loopback redirect URI with an RFC 6749
	// error response: the page offers a button to it, so the terminal stops
	// waiting and shows the error (the handler never redirects there by
	// itself for an unknown client, RFC 6749 §4.1.2.1).
	Return string
}

// SignInPage is the data of "signin.html", the built-in sign-in form: a
// heading, an optional notice and error, the Fields, and one button. The
// form POSTs to Action with CSRFField=CSRFToken; SignInPrompt.SignInPage
// fills those four from the prompt.
type SignInPage struct {
	ClientName string // the CLI the user signs in for
	Action     string // where the form POSTs: SignInPrompt.Action
	CSRFField  string // SignInPrompt.CSRFField
	CSRFToken  string // SignInPrompt.CSRFToken
	// Title is the heading. Empty means "Sign in to continue to
	// <ClientName>".
	Title string
	// Notice is a muted line under the heading; empty shows none.
	// DevAuthenticator uses it to say that any address is accepted.
	Notice string
	// Error is a message above the form, such as "Wrong e-mail or
	// password."; empty shows none.
	Error string
	// Fields are the form's inputs, in order; the first has the focus. Nil
	// means one e-mail field named "email" holding Email.
	Fields []SignInField
	// Email is the value of the default e-mail field (when Fields is nil).
	Email string
	// Submit is the button's label. Empty means "Sign in".
	Submit string
}

// SignInField is one input of a SignInPage. Every field is required.
type SignInField struct {
	Name         string // the form field name; required
	Label        string // the label; empty means Name
	Type         string // the input type: "email", "password", "text", …; empty means "text"
	Value        string // the prefilled value; leave it empty for passwords
	Autocomplete string // the autocomplete token ("username", "current-password", …); empty sets none
}

// SignInPage returns a SignInPage for the prompt: ClientName, Action and the
// CSRF field filled in, everything else at its default.
func (p SignInPrompt) SignInPage() SignInPage {
	return SignInPage{ClientName: p.ClientName, Action: p.Action, CSRFField: p.CSRFField, CSRFToken: p.CSRFToken}
}

// pages renders the handler's HTML pages.
type pages struct {
	brand    Brand  // Name empty: the client's name, else fallback
	fallback string // the only client's name, else the issuer's host
	t        map[string]*template.Template
	log      *slog.Logger
}

// renderError is a page that could not be rendered: a bug or a bad template,
// never the user's doing.
type renderError struct{ err error }

func (e *renderError) Error() string { return e.err.Error() }
func (e *renderError) Unwrap() error { return e.err }

func loadPages(brand Brand, fallback string, override fs.FS, log *slog.Logger) (*pages, error) {
	read := func(name string) ([]byte, error) {
		if override != nil {
			b, err := fs.ReadFile(override, name)
			if err == nil {
				return b, nil
			}
		}
		return builtinTemplates.ReadFile("templates/" + name)
	}
	layout, err := read("layout.html")
	if err != nil {
		return nil, fmt.Errorf("server: templates: %w", err)
	}
	names := slices.Clone(builtinPages)
	if override != nil {
		own, err := fs.Glob(override, "*.html")
		if err != nil {
			return nil, fmt.Errorf("%w: Templates: %w", ErrInvalidConfig, err)
		}
		for _, name := range own {
			if name != "layout.html" && !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	p := &pages{brand: brand, fallback: fallback, t: map[string]*template.Template{}, log: log}
	for _, name := range names {
		body, err := read(name)
		if err != nil {
			return nil, fmt.Errorf("server: templates: %w", err)
		}
		t, err := template.New("layout.html").Parse(string(layout))
		if err == nil {
			_, err = t.New(name).Parse(string(body))
		}
		if err != nil {
			return nil, fmt.Errorf("%w: template %s: %w", ErrInvalidConfig, name, err)
		}
		p.t[name] = t
	}
	return p, nil
}

// setPageHeaders sets the headers every HTML page carries and returns the
// CSP nonce for its inline style.
func setPageHeaders(w http.ResponseWriter) string {
	nonce := randomID()
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+nonce+"'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	return nonce
}

// execute renders page name, or returns a *renderError and writes nothing.
func (p *pages) execute(w http.ResponseWriter, status int, clientName, nonce, name string, data any) error {
	t := p.t[name]
	if t == nil {
		known := make([]string, 0, len(p.t))
		for n := range p.t {
			known = append(known, n)
		}
		slices.Sort(known)
		return &renderError{fmt.Errorf("%w %q (the pages are %v)", ErrUnknownPage, name, known)}
	}
	brand := p.brand
	if brand.Name == "" {
		brand.Name = clientName
	}
	if brand.Name == "" {
		brand.Name = p.fallback
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", Page{Brand: brand, Nonce: nonce, Style: template.CSS(pagestyle.CSS), Data: data}); err != nil {
		return &renderError{fmt.Errorf("server: page %s: %w", name, err)}
	}
	w.WriteHeader(status)
	w.Write(buf.Bytes())
	return nil
}

// render writes one of the handler's own pages with fresh page headers.
func (p *pages) render(w http.ResponseWriter, status int, clientName, name string, data any) {
	nonce := setPageHeaders(w)
	if err := p.execute(w, status, clientName, nonce, name, data); err != nil {
		p.log.Error("server: page rendering failed", "err", err)
		http.Error(w, "server: page rendering failed", http.StatusInternalServerError)
	}
}

const startAgain = "You can close this window and start the login again from your terminal."

// error writes the error page; an empty e.Hint says to start again.
func (p *pages) error(w http.ResponseWriter, status int, clientName string, e ErrorPage) {
	if e.Hint == "" {
		e.Hint = startAgain
	}
	p.render(w, status, clientName, "error.html", e)
}

// issuerHost is the fallback brand name of a handler with several clients:
// the issuer's host.
func issuerHost(issuer string) string {
	if u, err := url.Parse(issuer); err == nil && u.Host != "" {
		return u.Host
	}
	return issuer
}

var defaultPages = func() *pages {
	p, err := loadPages(Brand{AccentColor: defaultAccent}, "", nil, slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}
	return p
}()
