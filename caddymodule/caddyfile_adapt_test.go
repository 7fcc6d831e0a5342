package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var update = flag.Bool("update", false, "rewrite the JSON half of each testdata/caddyfile_adapt/*.caddyfiletest with what its Caddyfile adapts to now")

const (
	adaptDir       = "testdata/caddyfile_adapt"
	adaptSeparator = "----------"
	// exampleGolden holds Caddyfile.example itself, so that the example
	// cannot change without its JSON being looked at.
	exampleGolden = "caddyfile_example.caddyfiletest"
	exampleFile   = "../Caddyfile.example"
)

// TestCaddyfileAdaptToJSON runs the golden files in testdata/caddyfile_adapt,
// as Caddy's caddytest/integration does its own: each file is a Caddyfile,
// a line of ten dashes, and either the JSON it adapts to (indented with
// tabs) or, for a Caddyfile that must be refused, a part of the error.
// Adapting must give no warning. See testdata/caddyfile_adapt/README.md.
func TestCaddyfileAdaptToJSON(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(adaptDir, "*.caddyfiletest"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files in %s: %v", adaptDir, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { checkAdapt(t, file) })
	}
}

func checkAdapt(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	input, expected, ok := strings.Cut(string(data), "\n"+adaptSeparator+"\n")
	if !ok {
		t.Fatalf("%s has no line %q between the Caddyfile and what it adapts to", file, adaptSeparator)
	}
	caddyfile := strings.TrimSpace(input) + "\n"
	expected = strings.TrimSpace(expected)

	if filepath.Base(file) == exampleGolden {
		example, err := os.ReadFile(exampleFile)
		if err != nil {
			t.Fatal(err)
		}
		if string(example) != caddyfile {
			if !*update {
				t.Fatalf("%s no longer holds %s as it is; run go test ./caddymodule -run TestCaddyfileAdaptToJSON -update and review the diff", file, exampleFile)
			}
			caddyfile = string(example)
		}
	}

	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{})
	if expected != "" && !strings.HasPrefix(expected, "{") {
		// A Caddyfile that must be refused.
		if err == nil {
			t.Fatalf("adapting succeeded; want an error containing %q", expected)
		}
		if !strings.Contains(err.Error(), expected) {
			t.Fatalf("adapting failed with\n%v\nwant an error containing\n%s", err, expected)
		}
		return
	}
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("warning at line %d (%s): %s", w.Line, w.Directive, w.Message)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, cfg, "", "\t"); err != nil {
		t.Fatal(err)
	}
	got := pretty.String()
	if got == expected {
		return
	}
	if *update {
		if err := os.WriteFile(file, []byte(caddyfile+adaptSeparator+"\n"+got+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("updated %s", file)
		return
	}
	t.Errorf("the Caddyfile adapts to other JSON than %s holds (- held, + now; -update rewrites it):\n%s",
		file, lineDiff(strings.Split(expected, "\n"), strings.Split(got, "\n")))
}

// lineDiff shows the lines that differ between a and b, with two lines of
// context, from their longest common subsequence.
func lineDiff(a, b []string) string {
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte
		text string
	}
	var lines []line
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			lines = append(lines, line{' ', a[i]})
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			lines = append(lines, line{'-', a[i]})
			i++
		default:
			lines = append(lines, line{'+', b[j]})
			j++
		}
	}
	var out strings.Builder
	for k, l := range lines {
		near := false
		for d := max(0, k-2); d <= min(len(lines)-1, k+2); d++ {
			near = near || lines[d].op != ' '
		}
		if near {
			fmt.Fprintf(&out, "%c %s\n", l.op, l.text)
		}
	}
	return out.String()
}
