package doctest

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/scanner"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// snippet is one ```go block of README.md.
type snippet struct {
	Line    int    // line of the opening fence
	Section string // the nearest "## " heading above it
	Code    string
}

// readmeSnippets returns README.md's Go blocks.
func readmeSnippets(t *testing.T) []snippet {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []snippet
	var cur *snippet
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && strings.TrimSpace(line) == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.Code += line + "\n"
		case strings.TrimSpace(line) == "```go":
			cur = &snippet{Line: n, Section: section}
		case strings.HasPrefix(line, "## "):
			section = strings.TrimPrefix(line, "## ")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("README.md:%d: unterminated ```go block", cur.Line)
	}
	return out
}

// isFile reports whether a snippet is a whole Go file (it has a package
// clause) rather than a run of statements.
func (s snippet) isFile() bool {
	for _, line := range strings.Split(s.Code, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}
		return strings.HasPrefix(line, "package ")
	}
	return false
}

// fragmentImports are the packages a statement snippet may use without
// saying so, by the name it uses.
var fragmentImports = map[string]string{
	"clilogin": "github.com/keyloop/keyloop/clilogin", "cobralogin": "github.com/keyloop/keyloop/cobralogin",
	"tokenstore": "github.com/keyloop/keyloop/tokenstore", "server": "github.com/keyloop/keyloop/server",
	"clerk": "github.com/keyloop/keyloop/server/clerk", "cobra": "github.com/spf13/cobra",
	"redisstate": "github.com/keyloop/keyloop/server/redisstate", "boltstate": "github.com/keyloop/keyloop/server/boltstate",
	"context": "context", "errors": "errors", "fmt": "fmt", "http": "net/http", "json": "encoding/json",
	"log": "log", "os": "os", "slog": "log/slog", "time": "time", "url": "net/url",
}

// fragmentVars are the names a statement snippet may use without declaring
// them, as its surrounding code would have them, with the packages their
// declarations need; a snippet gets those whose names it mentions.
var fragmentVars = []struct{ name, decl, pkg string }{
	{"ctx", "ctx = context.Background()", "context"},
	{"mux", "mux = http.NewServeMux()", "http"},
	{"api", "api http.Handler", "http"},
	{"root", "root = &cobra.Command{}", "cobra"},
	{"issuer", `issuer = "https://auth.example.com"`, ""},
	{"config", "config server.Config", "server"},
	{"authn", "authn server.Authenticator", "server"},
	{"minter", "minter server.Minter", "server"},
}

// fragmentFile wraps a run of statements in a function of a file with the
// imports it uses: statements that declare a variable and never use it,
// call what does not exist or ignore a returned error's type do not
// compile. A fragment with a return statement is the body of a function
// returning error.
func fragmentFile(code string) string {
	used := map[string]bool{}
	idents := map[string]bool{}
	// A package is used where its name is followed by a dot, outside
	// comments and strings.
	var sc scanner.Scanner
	fset := token.NewFileSet()
	sc.Init(fset.AddFile("", -1, len(code)), []byte(code), nil, 0)
	prev := ""
	for {
		_, tok, lit := sc.Scan()
		if tok == token.EOF {
			break
		}
		if tok == token.PERIOD && fragmentImports[prev] != "" {
			used[prev] = true
		}
		prev = ""
		if tok == token.IDENT {
			prev = lit
			idents[lit] = true
		}
	}
	var vars strings.Builder
	for _, v := range fragmentVars {
		if idents[v.name] {
			fmt.Fprintf(&vars, "var %s\n", v.decl)
			if v.pkg != "" {
				used[v.pkg] = true
			}
		}
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("package snippet\n\nimport (\n")
	for _, n := range names {
		fmt.Fprintf(&b, "\t%q\n", fragmentImports[n])
	}
	b.WriteString(")\n\n" + vars.String() + "\n")
	if regexp.MustCompile(`(?m)^\s*return\b`).MatchString(code) {
		b.WriteString("func _() error {\n" + code)
		if !regexp.MustCompile(`(?m)^return\b.*\n*$`).MatchString(code) {
			b.WriteString("return nil\n")
		}
		b.WriteString("}\n")
	} else {
		b.WriteString("func _() {\n" + code + "}\n")
	}
	return b.String()
}

// tempModule makes a module outside the repository that requires keyloop
// from this checkout, as a newcomer's module would; goLine is its go line.
func tempModule(t *testing.T, goLine string) string {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mod := "module example.com/newcomer\n\ngo " + goLine + "\n\nrequire github.com/keyloop/keyloop v0.0.0\n\nreplace github.com/keyloop/keyloop => " + root + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// goCmd runs the go command in dir, for the temporary module: requirements
// it lacks are added (as `go get` would), no workspace applies.
func goCmd(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestReadmeSnippetsCompile: every ```go block of README.md compiles as
// written — whole files as they are, statement runs in a function with the
// imports they use — and passes go vet, in a module outside the repository.
func TestReadmeSnippetsCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every README snippet")
	}
	snippets := readmeSnippets(t)
	if len(snippets) < 4 {
		t.Fatalf("README.md has %d Go blocks; the quick starts are missing", len(snippets))
	}
	dir := tempModule(t, "1.26.0")
	where := map[string]snippet{}
	for _, s := range snippets {
		pkg := fmt.Sprintf("readme_line_%d", s.Line)
		src := s.Code
		if !s.isFile() {
			src = fragmentFile(s.Code)
		}
		if err := os.MkdirAll(filepath.Join(dir, pkg), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, pkg, "snippet.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		where[pkg] = s
		if s.isFile() {
			// A whole file is also gofmt'ed as shown.
			if formatted, err := format.Source([]byte(s.Code)); err == nil && !bytes.Equal(formatted, []byte(s.Code)) {
				t.Errorf("README.md:%d (%s): the file is not gofmt'ed", s.Line, s.Section)
			}
		}
	}
	out, err := goCmd(t, dir, "vet", "./...")
	if err == nil {
		return
	}
	// Point each message at the README line it comes from.
	msgRE := regexp.MustCompile(`(readme_line_\d+)/snippet\.go:(\d+)`)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if m := msgRE.FindStringSubmatch(line); m != nil {
			s := where[m[1]]
			kind := "file"
			if !s.isFile() {
				kind = "statements (wrapped in a function; see fragmentFile)"
			}
			t.Errorf("README.md block at line %d (%s, %s): %s", s.Line, s.Section, kind, line)
		} else if line != "" {
			t.Error(line)
		}
	}
	if !t.Failed() {
		t.Fatalf("go vet: %v\n%s", err, out)
	}
}

// TestFragmentsFailWhenBroken: the wrapper does not hide the mistakes the
// README once had (a variable declared and not used; a dropped error).
func TestFragmentsFailWhenBroken(t *testing.T) {
	if testing.Short() {
		t.Skip("builds code")
	}
	dir := tempModule(t, "1.26.0")
	for i, code := range []string{
		"root := &cobra.Command{Use: \"mytool\"}\ncmds := cobralogin.Add(root, cobralogin.Config{})\nos.Exit(cobralogin.Execute(root))\n",
		"client, err := clilogin.New(clilogin.Config{})\nsession, err := client.Login(ctx)\n",
	} {
		pkg := filepath.Join(dir, fmt.Sprint("broken", i))
		os.MkdirAll(pkg, 0o755)
		os.WriteFile(filepath.Join(pkg, "snippet.go"), []byte(fragmentFile(code)), 0o644)
		out, err := goCmd(t, dir, "build", "./"+filepath.Base(pkg))
		if err == nil || !strings.Contains(out, "declared and not used") {
			t.Errorf("broken snippet %d compiled (%v):\n%s\n%s", i, err, code, out)
		}
	}
}

// TestReadmeAuthenticatorIsTheExample: the Authenticator the README shows is
// the one server's ExampleAuthenticator runs, declaration for declaration.
func TestReadmeAuthenticatorIsTheExample(t *testing.T) {
	fset := token.NewFileSet()
	ex, err := parser.ParseFile(fset, filepath.Join(repoRoot, "server", "example_authenticator_test.go"), nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var readme *ast.File
	var readmeSrc []byte
	for _, s := range readmeSnippets(t) {
		if s.Section == "Using your app's own sign-in" && s.isFile() {
			readmeSrc = []byte(s.Code)
			if readme, err = parser.ParseFile(fset, "README.md", readmeSrc, parser.ParseComments); err != nil {
				t.Fatal(err)
			}
		}
	}
	if readme == nil {
		t.Fatal(`README.md has no Go file under "Using your app's own sign-in"`)
	}
	exSrc, err := os.ReadFile(filepath.Join(repoRoot, "server", "example_authenticator_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	decls := func(f *ast.File, src []byte) map[string]string {
		m := map[string]string{}
		for _, d := range f.Decls {
			var name string
			var doc *ast.CommentGroup
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil {
					continue
				}
				name, doc = "method "+d.Name.Name, d.Doc
			case *ast.GenDecl:
				if d.Tok != token.TYPE {
					continue
				}
				name, doc = "type "+d.Specs[0].(*ast.TypeSpec).Name.Name, d.Doc
			default:
				continue
			}
			start := d.Pos()
			if doc != nil {
				start = doc.Pos()
			}
			m[name] = string(src[fset.Position(start).Offset:fset.Position(d.End()).Offset])
		}
		return m
	}
	want, got := decls(ex, exSrc), decls(readme, readmeSrc)
	if len(want) == 0 {
		t.Fatal("the example declares nothing")
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("README's %s differs from server/example_authenticator_test.go:\nREADME:\n%s\nexample:\n%s", name, got[name], w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("README declares %s, which the example lacks", name)
		}
	}
}
