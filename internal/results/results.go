// Package results writes the measured tables under docs/results: each
// starts with where and when it was measured (date, commit, cores,
// memory), so that a figure in the README can always be traced to the
// run that produced it. `make bench`, `make faults` (and later `make
// scale`) write through it; the README includes the files verbatim, and a
// test checks that it does.
package results

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine describes where a table was measured.
type Machine struct {
	Date   time.Time
	Commit string
	Cores  int
	Memory string
}

// ThisMachine describes the machine and checkout the process runs in.
func ThisMachine() Machine {
	m := Machine{Date: time.Now().UTC(), Commit: "unknown", Cores: runtime.NumCPU(), Memory: "unknown"}
	if out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			m.Commit += " (with uncommitted changes)"
		}
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var kb int64
			if _, err := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); err == nil {
				m.Memory = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
				break
			}
		}
	}
	return m
}

// Header is the first lines of a results file.
func (m Machine) Header(title, command string) string {
	return fmt.Sprintf("### %s\n\nMeasured by `%s` on %s, commit %s, %d cores, %s of memory.\n\n",
		title, command, m.Date.Format("2006-01-02 15:04 UTC"), m.Commit, m.Cores, m.Memory)
}

// benchLine is one line of `go test -bench` output: name, iterations,
// then value-unit pairs.
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// BenchTable turns `go test -bench` output into a markdown table: one row
// per benchmark, one column per unit that any benchmark reported.
// Descriptions, keyed by benchmark name, say what a benchmark measures.
func BenchTable(r io.Reader, descriptions map[string]string) (string, error) {
	type result struct {
		name   string
		values map[string]string
	}
	var rows []result
	var units []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		res := result{name: m[1], values: map[string]string{}}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			if _, err := strconv.ParseFloat(f[i], 64); err != nil {
				continue
			}
			res.values[f[i+1]] = f[i]
			if !seen[f[i+1]] {
				seen[f[i+1]] = true
				units = append(units, f[i+1])
			}
		}
		rows = append(rows, res)
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if len(rows) == 0 {
		return "", fmt.Errorf("no benchmark results in the input")
	}
	var b strings.Builder
	b.WriteString("| benchmark | " + strings.Join(units, " | ") + " | what it measures |\n")
	b.WriteString("|---|" + strings.Repeat("---:|", len(units)) + "---|\n")
	for _, r := range rows {
		b.WriteString("| `" + r.name + "` |")
		for _, u := range units {
			v := r.values[u]
			if v == "" {
				v = "–"
			}
			b.WriteString(" " + v + " |")
		}
		b.WriteString(" " + descriptions[r.name] + " |\n")
	}
	return b.String(), nil
}
