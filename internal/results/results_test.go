package results

import (
	"strings"
	"testing"
)

func TestBenchTable(t *testing.T) {
	out := `goos: linux
BenchmarkTokenRead-2        	    5000	    710000 ns/op	      1408 reads/s
BenchmarkForcedRefresh-2    	      30	 100000000 ns/op	        95.5 answer-ms/op
PASS
`
	got, err := BenchTable(strings.NewReader(out), map[string]string{"BenchmarkTokenRead": "reads"})
	if err != nil {
		t.Fatal(err)
	}
	want := "| benchmark | ns/op | reads/s | answer-ms/op | what it measures |\n" +
		"|---|---:|---:|---:|---|\n" +
		"| `BenchmarkTokenRead` | 710000 | 1408 | – | reads |\n" +
		"| `BenchmarkForcedRefresh` | 100000000 | – | 95.5 |  |\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := BenchTable(strings.NewReader("FAIL\n"), nil); err == nil {
		t.Error("no results must be an error, not an empty table")
	}
}

func TestHeaderNamesTheMachine(t *testing.T) {
	m := ThisMachine()
	if m.Cores < 1 || m.Commit == "" {
		t.Fatalf("machine %+v", m)
	}
	h := m.Header("Benchmarks", "make bench")
	for _, want := range []string{"make bench", m.Commit, "cores", "memory"} {
		if !strings.Contains(h, want) {
			t.Errorf("header %q lacks %q", h, want)
		}
	}
}
