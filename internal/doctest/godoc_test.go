package doctest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is the module root, relative to this package's directory.
const repoRoot = "../.."

// libraryFiles parses every non-test Go file of the library's packages (not
// examples, which are commands) with comments.
func libraryFiles(t *testing.T) (*token.FileSet, []*ast.File) {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != repoRoot && (strings.HasPrefix(name, ".") || name == "testdata" || name == "examples" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fset, files
}

// TestExportedNamesHaveDocs: go doc shows a sentence for every exported
// type, function, method, and every exported field of an exported struct
// (Session's fields once had none).
func TestExportedNamesHaveDocs(t *testing.T) {
	fset, files := libraryFiles(t)
	missing := func(pos token.Pos, what string) {
		t.Errorf("%s: %s has no doc comment", fset.Position(pos), what)
	}
	for _, f := range files {
		if f.Name.Name == "main" {
			continue
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() || (d.Recv != nil && (!exportedRecv(d.Recv) || wellKnownMethods[d.Name.Name])) {
					continue
				}
				if d.Doc == nil {
					missing(d.Pos(), "func "+d.Name.Name)
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					ts, ok := spec.(*ast.TypeSpec)
					if !ok || !ts.Name.IsExported() {
						continue
					}
					if ts.Doc == nil && d.Doc == nil {
						missing(ts.Pos(), "type "+ts.Name.Name)
					}
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						continue
					}
					lastDoc := "" // the nearest field doc above: "Email and Name are …" covers Name
					for _, field := range st.Fields.List {
						if field.Doc != nil {
							lastDoc = field.Doc.Text()
						}
						for _, name := range field.Names {
							if !name.IsExported() || field.Doc != nil || field.Comment != nil {
								continue
							}
							if !regexp.MustCompile(`\b` + name.Name + `\b`).MatchString(lastDoc) {
								missing(name.Pos(), "field "+ts.Name.Name+"."+name.Name)
							}
						}
					}
				}
			}
		}
	}
}

// wellKnownMethods implement standard interfaces whose contract is their doc.
var wellKnownMethods = map[string]bool{"Error": true, "Unwrap": true, "String": true, "ServeHTTP": true}

func exportedRecv(recv *ast.FieldList) bool {
	typ := recv.List[0].Type
	if s, ok := typ.(*ast.StarExpr); ok {
		typ = s.X
	}
	if ix, ok := typ.(*ast.IndexExpr); ok {
		typ = ix.X
	}
	id, ok := typ.(*ast.Ident)
	return ok && id.IsExported()
}

// issueRef finds comments that cite the project's issue tracker (the
// word issue or bug followed by a number): a reader of go doc has no tracker to look in, so a comment
// says the fact itself.
var issueRef = regexp.MustCompile(`(?i)\b(issues?|bugs?)\s*#?\d+`)

// TestCommentsCiteNoIssues covers every Go file, tests included.
func TestCommentsCiteNoIssues(t *testing.T) {
	fset := token.NewFileSet()
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != repoRoot && (strings.HasPrefix(name, ".") || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		for _, cg := range f.Comments {
			for _, c := range cg.List {
				if m := issueRef.FindString(c.Text); m != "" {
					t.Errorf("%s: comment cites %q; say the fact instead", fset.Position(c.Pos()), strings.TrimSpace(m))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
