// Command valuesdoc generates the chart's values reference (docs/values.md) from the `# --`
// comments in charts/sharewarden/values.yaml, and with -check fails when the reference is stale
// or a value is undocumented.
//
// The format it reads: a `# --` line (continued by further `#` lines) documents the key right
// below it. A mapping whose own keys are documented is a section: its rows are its keys'. Keys
// of a documented value (e.g. requests under resources) are part of that value's default; they
// must then all be undocumented, so that a new key never slips in without its comment.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
)

type entry struct {
	path    string
	doc     string
	def     string
	section bool
}

type line struct {
	indent int
	key    string
	value  string // inline value after "key:"
	doc    []string
	isDoc  bool // doc came from a "# --" block
	raw    string
	n      int
}

var keyRE = regexp.MustCompile(`^( *)([A-Za-z0-9_.-]+):(?: (.*))?$`)

func main() {
	values := flag.String("values", "charts/sharewarden/values.yaml", "values.yaml to read")
	out := flag.String("out", "docs/values.md", "reference to write")
	check := flag.Bool("check", false, "do not write: fail if -out is not what would be written")
	flag.Parse()
	src, err := os.ReadFile(*values)
	if err != nil {
		fail(err)
	}
	doc, err := generate(src)
	if err != nil {
		fail(fmt.Errorf("%s: %w", *values, err))
	}
	if *check {
		have, err := os.ReadFile(*out)
		if err != nil || !bytes.Equal(have, doc) {
			fail(fmt.Errorf("%s is stale: run hack/values-doc.sh and commit it", *out))
		}
		fmt.Printf("valuesdoc: %s is up to date\n", *out)
		return
	}
	if err := os.WriteFile(*out, doc, 0o644); err != nil {
		fail(err)
	}
	fmt.Printf("valuesdoc: wrote %s\n", *out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "valuesdoc:", err)
	os.Exit(1)
}

// parse reads the key lines with the comment block right above each.
func parse(src []byte) ([]line, error) {
	var out []line
	var pending []string
	pendingDoc := false
	for i, l := range strings.Split(string(src), "\n") {
		t := strings.TrimSpace(l)
		switch {
		case t == "":
			pending, pendingDoc = nil, false
		case strings.HasPrefix(t, "# --"):
			pending, pendingDoc = []string{strings.TrimSpace(strings.TrimPrefix(t, "# --"))}, true
		case strings.HasPrefix(t, "#"):
			if pendingDoc {
				pending = append(pending, strings.TrimSpace(strings.TrimPrefix(t, "#")))
			}
		case strings.HasPrefix(t, "- "):
			// a list item: part of its key's value
		default:
			m := keyRE.FindStringSubmatch(l)
			if m == nil {
				return nil, fmt.Errorf("line %d: cannot read %q", i+1, l)
			}
			out = append(out, line{indent: len(m[1]), key: m[2], value: m[3], doc: pending, isDoc: pendingDoc, raw: l, n: i + 1})
			pending, pendingDoc = nil, false
		}
	}
	return out, nil
}

func generate(src []byte) ([]byte, error) {
	lines, err := parse(src)
	if err != nil {
		return nil, err
	}
	srcLines := strings.Split(string(src), "\n")
	var entries []entry
	var errs []error
	var walk func(from, to int, prefix string)
	// walk handles the keys in lines[from:to] at the indentation of lines[from].
	walk = func(from, to int, prefix string) {
		if from >= to {
			return
		}
		indent := lines[from].indent
		var siblings []int
		for i := from; i < to; i++ {
			if lines[i].indent == indent {
				siblings = append(siblings, i)
			}
		}
		for si, i := range siblings {
			end := to
			if si+1 < len(siblings) {
				end = siblings[si+1]
			}
			l := lines[i]
			path := prefix + l.key
			hasChildren := end > i+1
			childrenDocumented := hasChildren && anyDoc(lines[i+1:end], lines[i+1].indent)
			switch {
			case childrenDocumented:
				if l.isDoc {
					entries = append(entries, entry{path: path, doc: strings.Join(l.doc, " "), section: true})
				}
				walk(i+1, end, path+".")
			case l.isDoc:
				if hasChildren && anyDocDeep(lines[i+1:end]) {
					errs = append(errs, fmt.Errorf("line %d: %s mixes documented and undocumented keys", l.n, path))
				}
				entries = append(entries, entry{path: path, doc: strings.Join(l.doc, " "), def: defaultOf(l, srcLines, lines, end)})
			default:
				errs = append(errs, fmt.Errorf("line %d: %s has no `# --` comment", l.n, path))
			}
		}
	}
	walk(0, len(lines), "")
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var b bytes.Buffer
	b.WriteString("<!-- Generated from charts/sharewarden/values.yaml by hack/values-doc.sh; do not edit. -->\n")
	b.WriteString("# ShareWarden chart values\n\n")
	b.WriteString("Every value of `charts/sharewarden`, its default and what it does. `values.schema.json` rejects\n")
	b.WriteString("unknown keys and wrong types; see [chart.md](chart.md) for installing and operating the chart.\n\n")
	b.WriteString("| Key | Default | Description |\n|-----|---------|-------------|\n")
	for _, e := range entries {
		def := e.def
		if e.section {
			def = "—"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", e.path, def, escape(e.doc))
	}
	return b.Bytes(), nil
}

func anyDoc(ls []line, indent int) bool {
	for _, l := range ls {
		if l.indent == indent && l.isDoc {
			return true
		}
	}
	return false
}

func anyDocDeep(ls []line) bool {
	for _, l := range ls {
		if l.isDoc {
			return true
		}
	}
	return false
}

// defaultOf renders a value's default: the inline value, or the block below the key as
// compact YAML lines.
func defaultOf(l line, src []string, lines []line, end int) string {
	if l.value != "" {
		return "`" + escape(l.value) + "`"
	}
	// The block runs from the key's line to the next key at its indentation or less.
	last := len(src)
	for _, nl := range lines {
		if nl.n > l.n && nl.indent <= l.indent {
			last = nl.n - 1
			break
		}
	}
	var parts []string
	for _, s := range src[l.n:last] {
		t := strings.TrimSpace(s)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		parts = append(parts, t)
	}
	_ = end
	return "`" + escape(strings.Join(parts, " ")) + "`"
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
