package server

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
)

//go:embed templates/*.html
var builtinTemplates embed.FS

// pageNames are the page templates; each is parsed with layout.html.
var pageNames = []string{"consent.html", "error.html", "signin.html", "device.html", "device-done.html"}

// pages renders the handler's HTML pages.
type pages struct {
	brand Brand
	t     map[string]*template.Template
}

func loadPages(brand Brand, override fs.FS) (*pages, error) {
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
	p := &pages{brand: brand, t: map[string]*template.Template{}}
	for _, name := range pageNames {
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

type pageData struct {
	Brand Brand
	Nonce string
	Data  any
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

func (p *pages) render(w http.ResponseWriter, status int, name string, data any) {
	nonce := setPageHeaders(w)
	var buf bytes.Buffer
	if err := p.t[name].ExecuteTemplate(&buf, "layout", pageData{Brand: p.brand, Nonce: nonce, Data: data}); err != nil {
		http.Error(w, "server: page rendering failed", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

type errorPage struct{ Title, Message string }

func (p *pages) error(w http.ResponseWriter, status int, title, msg string) {
	p.render(w, status, "error.html", errorPage{Title: title, Message: msg})
}

var defaultPages = func() *pages {
	p, err := loadPages(Brand{Name: "keyloop", AccentColor: "#2457d6"}, nil)
	if err != nil {
		panic(err)
	}
	return p
}()
