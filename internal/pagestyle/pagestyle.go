// Package pagestyle is the one visual language of every page a person sees
// during a login: the backend's sign-in, consent and error pages (server)
// and the CLI's loopback pages (clilogin). Both render their pages with CSS,
// so the two halves look like one product: a centred card, the app's name
// above the heading, light and dark color schemes, no external assets.
package pagestyle

// CSS is the style sheet of every page, for an inline <style> element with
// the response's CSP nonce. It reads the accent color from the custom
// property --accent (buttons, focus rings), which a page may set after it:
// ":root{--accent:#2457d6}".
//
// Markup it styles: <main class="ok|fail|neutral"> as the card (the class
// colors the heading and puts a ✓, ✕ or – badge before it, so the h1's text
// stays the plain heading), .brand for the app's name, h1, p, .hint
// (muted), .error (a message in the failure color), .code (the
// confirmation code), label and input, .actions holding button or a.button
// elements, each .primary or .secondary.
const CSS = `:root{color-scheme:light dark;--bg:#f6f8fa;--card:#fff;--fg:#1f2328;--muted:#59636e;--border:#d1d9e0;--field:#fff;--ok:#1a7f37;--fail:#cf222e;--accent:#2457d6;--on-accent:#fff}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--card:#151b23;--fg:#f0f6fc;--muted:#9198a1;--border:#3d444d;--field:#0d1117;--ok:#3fb950;--fail:#ff7b72}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;padding:1.5rem;background:var(--bg);color:var(--fg);font:1rem/1.55 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{background:var(--card);border:1px solid var(--border);border-radius:12px;padding:2rem 2.25rem;max-width:34rem;width:100%}
.brand{margin:0 0 1.25rem;color:var(--muted);font-size:.875rem;font-weight:600;letter-spacing:.02em}
h1{margin:0 0 .75rem;font-size:1.5rem;line-height:1.25;display:flex;gap:.6rem;align-items:center}
.ok h1::before,.fail h1::before,.neutral h1::before{flex:none;display:inline-flex;width:2rem;height:2rem;border-radius:50%;align-items:center;justify-content:center;color:#fff;font-size:1.1rem}
.ok h1::before{content:"✓"/"";background:var(--ok)}.fail h1::before{content:"✕"/"";background:var(--fail)}.neutral h1::before{content:"–"/"";background:var(--muted)}
.ok h1{color:var(--ok)}.fail h1{color:var(--fail)}
p{margin:0 0 .75rem}
.hint{color:var(--muted);font-size:.9rem}
.error{color:var(--fail)}
code,.code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
code{font-size:.9em}
.code{font-size:1.6rem;letter-spacing:.15em;text-align:center;padding:.6rem;border:1px dashed var(--border);border-radius:8px;margin:1rem 0}
form{margin:0}
label{display:block;margin:.75rem 0 .35rem;font-weight:600;font-size:.9rem}
input{font:inherit;width:100%;padding:.55rem .7rem;border:1px solid var(--border);border-radius:8px;background:var(--field);color:var(--fg)}
input:focus-visible,button:focus-visible,a.button:focus-visible{outline:2px solid var(--accent);outline-offset:2px}
.actions{display:flex;flex-wrap:wrap;gap:.75rem;margin:1.5rem 0 .75rem}
button,a.button{font:inherit;font-weight:600;padding:.55rem 1.2rem;border-radius:8px;border:1px solid var(--accent);cursor:pointer;text-decoration:none;display:inline-block}
.primary{background:var(--accent);color:var(--on-accent)}
.secondary{background:transparent;color:var(--fg);border-color:var(--border)}
`
