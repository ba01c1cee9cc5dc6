package tokenwarden

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// measuredSections are the README sections whose figures must come from
// a command that measured them (docs/results, written by make bench,
// make faults, make scale).
var measuredSections = []string{"Performance", "Reliability"}

var (
	resultsBlock = regexp.MustCompile(`(?s)<!-- results: (\S+) -->\n(.*?)<!-- /results -->`)
	codeFence    = regexp.MustCompile("(?s)```.*?```")
	codeSpan     = regexp.MustCompile("`[^`\n]*`")
	digit        = regexp.MustCompile(`[0-9]`)
)

// section returns the body of the "## name" section of a markdown text.
func section(doc, name string) (string, bool) {
	start := strings.Index(doc, "\n## "+name+"\n")
	if start < 0 {
		return "", false
	}
	body := doc[start+len(name)+5:]
	if end := strings.Index(body, "\n## "); end >= 0 {
		body = body[:end]
	}
	return body, true
}

// unmeasuredFigures checks one section: every results block must be the
// named file verbatim, and outside them (and outside code, which names
// commands and settings) no digit may appear: a hand-typed figure.
func unmeasuredFigures(body string, read func(path string) (string, error)) []string {
	var problems []string
	for _, m := range resultsBlock.FindAllStringSubmatch(body, -1) {
		want, err := read(m[1])
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", m[1], err))
			continue
		}
		if strings.TrimSpace(m[2]) != strings.TrimSpace(want) {
			problems = append(problems, m[1]+": the README's copy differs from the file (copy the file in again)")
		}
	}
	rest := resultsBlock.ReplaceAllString(body, "")
	rest = codeSpan.ReplaceAllString(codeFence.ReplaceAllString(rest, ""), "")
	for _, line := range strings.Split(rest, "\n") {
		if digit.MatchString(line) {
			problems = append(problems, "hand-typed figure: "+strings.TrimSpace(line))
		}
	}
	return problems
}

// TestREADMEFiguresAreMeasured: every number in README's Performance and
// Reliability sections is a generated results file, copied verbatim.
func TestREADMEFiguresAreMeasured(t *testing.T) {
	doc, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	read := func(path string) (string, error) {
		b, err := os.ReadFile(path)
		return string(b), err
	}
	for _, name := range measuredSections {
		body, ok := section(string(doc), name)
		if !ok {
			t.Errorf("README has no section %q", name)
			continue
		}
		for _, p := range unmeasuredFigures(body, read) {
			t.Errorf("README %s: %s", name, p)
		}
	}
}

// TestUnmeasuredFiguresFindsPlantedOnes plants what the check looks for.
func TestUnmeasuredFiguresFindsPlantedOnes(t *testing.T) {
	files := map[string]string{"docs/results/x.md": "| a | 1 |\n"}
	read := func(p string) (string, error) {
		if v, ok := files[p]; ok {
			return v, nil
		}
		return "", os.ErrNotExist
	}
	for _, c := range []struct {
		body string
		want int
	}{
		{"Reads take `make bench`.\n<!-- results: docs/results/x.md -->\n| a | 1 |\n<!-- /results -->\n", 0},
		{"Reads take 0.7 ms.\n", 1},
		{"<!-- results: docs/results/x.md -->\n| a | 2 |\n<!-- /results -->\n", 1},
		{"<!-- results: docs/results/missing.md -->\n<!-- /results -->\n", 1},
	} {
		if got := unmeasuredFigures(c.body, read); len(got) != c.want {
			t.Errorf("%q: %d problems %q, want %d", c.body, len(got), got, c.want)
		}
	}
}
