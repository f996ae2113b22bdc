package depcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// module is the module path; the rules name packages relative to it.
const module = "github.com/pkgcdn/pkgcdn"

// pkg is one package as `go list -json` reports it.
type pkg struct {
	ImportPath string
	Imports    []string // direct imports of the non-test files
	Deps       []string // all transitive dependencies of the non-test files
}

// rule forbids, for every package it applies to, some imports: direct
// imports only, or transitive dependencies too. Packages that do not exist
// (yet) are simply not checked. Test files are not checked: a test may
// legitimately put an edge in front of an origin.
type rule struct {
	name       string
	applies    func(p string) bool // p relative to module ("internal/edge")
	transitive bool
	forbidden  func(p, imp string) bool // imp is the full import path
}

// rel returns p relative to the module, or p unchanged if outside it.
func rel(p string) string {
	if p == module {
		return "."
	}
	if r, ok := strings.CutPrefix(p, module+"/"); ok {
		return r
	}
	return p
}

func inModule(p string) bool { return p == module || strings.HasPrefix(p, module+"/") }

// under reports whether p is dir or below it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

func is(names ...string) func(string) bool {
	return func(p string) bool { return slices.Contains(names, p) }
}

// std reports whether a full import path is in the standard library (its
// first element has no dot).
func std(p string) bool {
	first, _, _ := strings.Cut(p, "/")
	return !strings.Contains(first, ".")
}

// own reports whether a full import path is the module's package dir or
// below it (dir relative to the module).
func own(imp, dir string) bool { return inModule(imp) && under(rel(imp), dir) }

// ioOnly is the rule for packages that must touch only io.Reader/io.Writer:
// no file system, network or process access of their own.
func ioOnly(p, imp string) bool {
	return imp == "os" || under(imp, "os") || imp == "net" || under(imp, "net") ||
		imp == "syscall" || under(imp, "golang.org/x/sys") || imp == "io/ioutil" || imp == "plugin"
}

var rules = []rule{
	{
		name:      "manifest and internal/setid touch only io (no os, net, syscall)",
		applies:   is("manifest", "internal/setid"),
		forbidden: func(p, imp string) bool { return std(imp) && ioOnly(p, imp) },
	},
	{
		name:    "manifest imports only internal/{sign,digest,setid,relpath} and klauspost/compress outside std",
		applies: is("manifest"),
		forbidden: func(p, imp string) bool {
			return !std(imp) && !(inModule(imp) && is("internal/sign", "internal/digest", "internal/setid", "internal/relpath")(rel(imp))) &&
				!under(imp, "github.com/klauspost/compress")
		},
	},
	{
		name:      "internal/setid imports only internal/digest outside std",
		applies:   is("internal/setid"),
		forbidden: func(p, imp string) bool { return !std(imp) && imp != module+"/internal/digest" },
	},
	{
		name:       "internal/origin and internal/edge never import each other",
		applies:    func(p string) bool { return under(p, "internal/origin") || under(p, "internal/edge") },
		transitive: true,
		forbidden: func(p, imp string) bool {
			return under(p, "internal/origin") && own(imp, "internal/edge") ||
				under(p, "internal/edge") && own(imp, "internal/origin")
		},
	},
	{
		name:       "internal/*, manifest and layout never import cmd/...",
		applies:    func(p string) bool { return under(p, "internal") || under(p, "manifest") || under(p, "layout") },
		transitive: true,
		forbidden:  func(p, imp string) bool { return own(imp, "cmd") },
	},
	{
		name:      "only internal/sign imports aead.dev/minisign",
		applies:   func(p string) bool { return p != "internal/sign" },
		forbidden: func(p, imp string) bool { return under(imp, "aead.dev/minisign") },
	},
	{
		name:      "only cmd/... imports cheggaaa/pb",
		applies:   func(p string) bool { return !under(p, "cmd") },
		forbidden: func(p, imp string) bool { return under(imp, "github.com/cheggaaa/pb") },
	},
	{
		name:       "setid, sign, digest, atomicfile, route, relpath depend on no higher layer",
		applies:    is("internal/setid", "internal/sign", "internal/digest", "internal/atomicfile", "internal/route", "internal/relpath"),
		transitive: true,
		forbidden: func(p, imp string) bool {
			return slices.ContainsFunc([]string{"manifest", "layout", "internal/cache", "internal/origin", "internal/edge", "internal/publish"},
				func(d string) bool { return own(imp, d) })
		},
	},
	{
		name:       "manifest, layout, cache depend on no origin, edge or publish",
		applies:    is("manifest", "layout", "internal/cache"),
		transitive: true,
		forbidden: func(p, imp string) bool {
			return own(imp, "internal/origin") || own(imp, "internal/edge") || own(imp, "internal/publish")
		},
	},
}

// check returns one line per forbidden import of pkgs under rules, and the
// number of packages each rule applied to.
func check(pkgs []pkg, rules []rule) (violations []string, applied map[string]int) {
	applied = make(map[string]int)
	for _, p := range pkgs {
		if !inModule(p.ImportPath) {
			continue
		}
		name := rel(p.ImportPath)
		for _, r := range rules {
			if !r.applies(name) {
				continue
			}
			applied[r.name]++
			imps := p.Imports
			if r.transitive {
				imps = p.Deps
			}
			for _, imp := range imps {
				if r.forbidden(name, imp) {
					violations = append(violations, name+" imports "+imp+": "+r.name)
				}
			}
		}
	}
	return violations, applied
}

// goList lists every package of the module with `go list -e -json`; -e
// keeps a half-written package of another helper from failing the check.
func goList(t *testing.T) []pkg {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	modFile, err := exec.CommandContext(t.Context(), goBin, "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(modFile)))
	cmd := exec.CommandContext(t.Context(), goBin, "list", "-e", "-json=ImportPath,Imports,Deps", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportDirection(t *testing.T) {
	pkgs := goList(t)
	if len(pkgs) == 0 {
		t.Fatal("go list ./... found no packages")
	}
	var names []string
	for _, p := range pkgs {
		names = append(names, rel(p.ImportPath))
	}
	t.Logf("checked %d packages: %s", len(pkgs), strings.Join(names, " "))
	violations, applied := check(pkgs, rules)
	for _, v := range violations {
		t.Error(v)
	}
	for _, r := range rules {
		if applied[r.name] == 0 {
			t.Logf("rule %q: no such package yet, skipped", r.name)
		}
	}
	// The packages the rules exist for are there: an empty list would
	// make every rule pass vacuously.
	for _, must := range []string{"manifest", "internal/setid", "internal/sign"} {
		if !slices.Contains(names, must) {
			t.Errorf("go list ./... did not list %s", must)
		}
	}
}

// TestRulesCatchViolations feeds check a made-up import graph that breaks
// every rule once, and a clean one: each rule must fire exactly where it
// should.
func TestRulesCatchViolations(t *testing.T) {
	m := func(p string) string { return module + "/" + p }
	bad := []pkg{
		{ImportPath: m("manifest"), Imports: []string{"os", m("internal/atomicfile")}},
		{ImportPath: m("internal/setid"), Imports: []string{"net/http", m("internal/sign")}},
		{ImportPath: m("internal/origin"), Deps: []string{m("internal/edge")}},
		{ImportPath: m("internal/edge/sub"), Deps: []string{m("internal/origin")}},
		{ImportPath: m("layout"), Deps: []string{m("cmd/pkgserve"), m("internal/origin")}},
		{ImportPath: m("internal/publish"), Imports: []string{"aead.dev/minisign", "github.com/cheggaaa/pb/v3"}},
		{ImportPath: m("internal/digest"), Deps: []string{m("manifest")}},
	}
	violations, _ := check(bad, rules)
	got := strings.Join(violations, "\n")
	for _, want := range []string{
		"manifest imports os",
		"manifest imports " + m("internal/atomicfile"),
		"internal/setid imports net/http",
		"internal/setid imports " + m("internal/sign"),
		"internal/origin imports " + m("internal/edge"),
		"internal/edge/sub imports " + m("internal/origin"),
		"layout imports " + m("cmd/pkgserve"),
		"layout imports " + m("internal/origin"),
		"internal/publish imports aead.dev/minisign",
		"internal/publish imports github.com/cheggaaa/pb/v3",
		"internal/digest imports " + m("manifest"),
	} {
		if !strings.Contains(got, want+":") {
			t.Errorf("check(bad graph) missed %q; got:\n%s", want, got)
		}
	}
	for _, r := range rules {
		if !strings.Contains(got, r.name) {
			t.Errorf("rule %q never fired on the bad graph", r.name)
		}
	}

	good := []pkg{
		{ImportPath: m("manifest"), Imports: []string{"io", "bytes", m("internal/sign"), "github.com/klauspost/compress/zstd"}, Deps: []string{"os", "aead.dev/minisign"}},
		{ImportPath: m("internal/setid"), Imports: []string{"io", m("internal/digest")}},
		{ImportPath: m("internal/sign"), Imports: []string{"os", "aead.dev/minisign"}},
		{ImportPath: m("internal/edge"), Deps: []string{m("manifest"), m("internal/cache")}},
		{ImportPath: m("cmd/pkgpublish"), Imports: []string{"github.com/cheggaaa/pb/v3", m("internal/origin")}},
		{ImportPath: "example.com/other", Imports: []string{"aead.dev/minisign"}},
	}
	if violations, _ := check(good, rules); len(violations) > 0 {
		t.Errorf("check(good graph) = %q, want none", violations)
	}
}
