package clilogin

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/keyloop/keyloop/internal/testenv"
)

// requestLog records every URL a Chromium tab requests.
type requestLog struct {
	mu   sync.Mutex
	urls []string
}

func (l *requestLog) add(u string) {
	l.mu.Lock()
	l.urls = append(l.urls, u)
	l.mu.Unlock()
}

func (l *requestLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.urls...)
}

// watchRequests records the tab's network requests from now on.
func watchRequests(t *testing.T, bctx context.Context) *requestLog {
	t.Helper()
	l := &requestLog{}
	if _, err := chromedp.Call(bctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	err := chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			l.add(e.Request.URL)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// checkLocal fails when a request went anywhere but the test's own servers.
func checkLocal(t *testing.T, l *requestLog, hosts ...string) {
	t.Helper()
	urls := l.all()
	if len(urls) == 0 {
		t.Error("no request recorded")
	}
	for _, raw := range urls {
		u, err := url.Parse(raw)
		ok := err == nil && u.Scheme == "http"
		if ok {
			ok = false
			for _, h := range hosts {
				ok = ok || u.Host == h
			}
		}
		if !ok {
			t.Errorf("the browser requested %s, outside the test's servers %v", raw, hosts)
		}
	}
}

// pageFacts are what a test checks on the page the browser ended on.
type pageFacts struct {
	Location, Text, Lang, H1, Radius, Background, DarkBackground string
	External                                                     []string
}

func readPage(t *testing.T, ctx context.Context) pageFacts {
	t.Helper()
	var f pageFacts
	var err error
	get := func(dst *string, js string) {
		if err == nil {
			*dst, err = chromedp.Run(ctx, chromedp.Evaluate[string](js))
		}
	}
	get(&f.Location, `document.location.href`)
	get(&f.Text, `document.body.innerText`)
	get(&f.Lang, `document.documentElement.lang`)
	get(&f.H1, `(document.querySelector('h1')||{}).textContent||''`)
	get(&f.Radius, `getComputedStyle(document.querySelector('main')).borderTopLeftRadius`) // the nonce'd style applied
	get(&f.Background, `getComputedStyle(document.body).backgroundColor`)
	if err == nil {
		// Any attribute that names another origin or a protocol-relative URL.
		f.External, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](
			`[...document.querySelectorAll('*')].flatMap(e => [...e.attributes]).map(a => a.value).filter(v => /(^|\s)(https?:)?\/\//i.test(v) || /url\(/i.test(v))`))
	}
	if err == nil {
		_, err = chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
	}
	get(&f.DarkBackground, `getComputedStyle(document.body).backgroundColor`)
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	return f
}

// TestBrowserPages drives headless Chromium through the whole flow: the
// browser ends on /done (no code in the address bar) showing an accessible,
// self-contained success or failure page, and requests nothing outside the
// authorization server and the loopback listener.
func TestBrowserPages(t *testing.T) {
	bctx := testenv.Browser(t)
	for _, tc := range []struct {
		name, mode string
		wantPath   string
		wantText   []string
		wantErr    error
	}{
		{"success", "approve", "/done", []string{"Signed in to mytool", "user-1@example.com", "close this tab"}, nil},
		{"denied", "deny", "/done?error=access_denied", []string{"Request denied", "You denied the request", "close this tab"}, ErrAccessDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab, closeTab := chromedp.NewContext(bctx)
			defer closeTab()
			h := newHarness(t)
			h.as.Mode = tc.mode
			reqs := watchRequests(t, tab)
			var facts pageFacts
			r := h.runLogin(t.Context(), func(_ context.Context, r *loginResult) {
				step, cancel := context.WithTimeout(tab, 20*time.Second)
				defer cancel()
				if err := chromedp.Do(step, chromedp.Navigate(r.authURL), chromedp.WaitVisible(chromedp.CSS("h1"))); err != nil {
					t.Errorf("navigate: %v", err)
					return
				}
				facts = readPage(t, step)
			})
			if !errors.Is(r.err, tc.wantErr) {
				t.Fatalf("Login: %v, want %v", r.err, tc.wantErr)
			}
			cb, _ := url.Parse(r.redirectURI)
			if want := "http://" + cb.Host + tc.wantPath; facts.Location != want {
				t.Errorf("address bar %q, want %q", facts.Location, want)
			}
			if strings.Contains(facts.Location, "code=") || strings.Contains(facts.Location, "state=") {
				t.Errorf("the address bar still holds the code or state: %s", facts.Location)
			}
			for _, w := range tc.wantText {
				if !strings.Contains(facts.Text, w) {
					t.Errorf("page lacks %q:\n%s", w, facts.Text)
				}
			}
			if facts.Lang != "en" || facts.H1 == "" || !strings.Contains(facts.Text, "mytool") {
				t.Errorf("lang %q, h1 %q, text %q", facts.Lang, facts.H1, facts.Text)
			}
			if facts.Radius != "12px" {
				t.Errorf("the page's own style did not apply under its CSP (border radius %q)", facts.Radius)
			}
			if facts.Background == facts.DarkBackground {
				t.Errorf("the page ignores prefers-color-scheme: dark (background %s in both)", facts.Background)
			}
			if len(facts.External) > 0 {
				t.Errorf("the page references other origins: %q", facts.External)
			}
			checkLocal(t, reqs, mustHost(t, h.as.Issuer), cb.Host)
			h.checkNoSecrets("page", facts.Text)
			checkClosed(t, r.redirectURI)
		})
	}
}

// TestBrowserPasteMode is paste mode end to end with a real browser that
// cannot reach the CLI: Chromium (its requests to the loopback listener fail
// as on another machine) signs in and ends on a failed page; its address is
// read from the browser's navigation history, like a user copying it from
// the address bar, and written to the CLI's stdin after a wrong and a cut-off
// paste. The login completes.
func TestBrowserPasteMode(t *testing.T) {
	bctx := testenv.Browser(t)
	tab, closeTab := chromedp.NewContext(bctx)
	defer closeTab()
	h := newHarness(t)
	p := h.startPaste(t.Context())
	cb, _ := url.Parse(p.redirectURI)

	// Every request to the loopback listener fails with "connection refused".
	blocked := make(chan string, 4)
	if err := chromedp.Listen(tab, func(ev any) {
		if e, ok := ev.(*fetch.EventRequestPaused); ok {
			select {
			case blocked <- e.Request.URL:
			default:
			}
			go func() {
				_, _ = chromedp.Call(tab, fetch.FailRequest, fetch.FailRequestParams{RequestID: e.RequestID, ErrorReason: network.ErrorReasonConnectionRefused})
			}()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(tab, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "http://" + cb.Host + "/*"}}}); err != nil {
		t.Fatal(err)
	}
	step, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	err := chromedp.Do(step, chromedp.Navigate(p.authURL))
	var le *chromedp.LoadError
	if err != nil && !errors.As(err, &le) {
		t.Fatalf("navigate: %v", err)
	}
	select {
	case u := <-blocked:
		if !strings.HasPrefix(u, p.redirectURI+"?") {
			t.Fatalf("blocked %s", u)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the browser never tried to reach the loopback listener")
	}
	var final string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		// document.location is chrome-error://chromewebdata/ on an error
		// page; the address bar shows the history entry's URL.
		hist, err := chromedp.Run(step, chromedp.NavigationEntries())
		if err != nil { // "Not attached to an active page" while the error page commits
			continue
		}
		if e := hist.Entries[hist.CurrentIndex]; strings.HasPrefix(e.URL, p.redirectURI+"?") {
			final = e.URL
			break
		}
	}
	if final == "" {
		t.Fatal("the browser did not end on the callback URL")
	}
	select {
	case <-p.done:
		t.Fatalf("the login ended before the paste: %v", p.err)
	default:
	}

	p.paste(t, "https://example.com/not-it")
	p.paste(t, final[:len(final)-12]) // cut off while copying
	p.paste(t, final)
	sess, err := p.wait(t)
	out := h.out.String()
	if err != nil || sess.Subject != "user-1" {
		t.Fatalf("Login = %+v, %v\n%s", sess, err, out)
	}
	for _, want := range []string{"That URL has no sign-in response in it", "looks cut off", "(3 tries left)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !h.hasLogin() {
		t.Error("nothing stored")
	}
	h.checkNoSecrets("output", out)
	checkClosed(t, p.redirectURI)
}
