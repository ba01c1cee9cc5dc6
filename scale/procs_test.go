package scale

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/e2e"
)

// workerProc is one `tokenwarden worker` process. The workers run apart
// from the test process (gateway and callers) so that each one's CPU and
// memory can be measured, and so that 1 and 2 workers compare fairly.
type workerProc struct {
	*e2e.Process
	log string
}

// startWorkers starts n worker processes for the stack, logging to files
// in dir.
func startWorkers(t *testing.T, s *e2e.Stack, bin, dir string, n int) []*workerProc {
	t.Helper()
	var ws []*workerProc
	for i := 0; i < n; i++ {
		w := &workerProc{log: filepath.Join(dir, fmt.Sprintf("scale-worker-%d.log", i+1))}
		f, err := os.Create(w.log)
		if err != nil {
			t.Fatal(err)
		}
		// No ops port: two workers on one machine would contend for it.
		env := append(s.Env(), "TOKENWARDEN_WORKER_OPS_LISTEN=", "TOKENWARDEN_LOG_FORMAT=json")
		w.Process = e2e.StartProcess(t, bin, env, f, "worker")
		t.Cleanup(func() {
			w.Stop(30 * time.Second)
			f.Close()
			if t.Failed() {
				t.Logf("last lines of %s:\n%s", w.log, tail(w.log, 20))
			}
		})
		ws = append(ws, w)
	}
	for _, w := range ws {
		w.waitStarted(t)
	}
	return ws
}

// waitStarted polls the worker's log until it says it started polling
// (its base memory is measured after that).
func (w *workerProc) waitStarted(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if b, err := os.ReadFile(w.log); err == nil && strings.Contains(string(b), "worker started") {
			return
		}
	}
	t.Fatalf("worker did not start within a minute:\n%s", tail(w.log, 20))
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// part is a group of processes whose CPU time is reported together.
type part struct {
	name string
	pids func() []int
}

// parts are the processes of a scale run: the worker processes, the
// Temporal server, PostgreSQL (the postmaster and its backends, serving
// Temporal's databases and Tokenwarden's alike), Vault, and this process
// (the gateway and the simulated callers).
func parts(ws []*workerProc, stackDir string) []part {
	pidFile := func(name string) []int {
		b, err := os.ReadFile(filepath.Join(stackDir, "run", name+".pid"))
		if err != nil {
			return nil
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return nil
		}
		return []int{pid}
	}
	return []part{
		{"workers", func() []int {
			var pids []int
			for _, w := range ws {
				pids = append(pids, w.Pid())
			}
			return pids
		}},
		{"Temporal", func() []int { return pidFile("temporal") }},
		{"PostgreSQL", func() []int {
			root := pidFile("postgres")
			if len(root) == 0 {
				return nil
			}
			return append(root, children(root[0])...)
		}},
		{"Vault", func() []int { return pidFile("vault") }},
		{"gateway and callers", func() []int { return []int{os.Getpid()} }},
	}
}

// cpuSnapshot is each part's CPU seconds so far.
func cpuSnapshot(ps []part) map[string]float64 {
	m := map[string]float64{}
	for _, p := range ps {
		for _, pid := range p.pids() {
			m[p.name] += cpuSeconds(pid)
		}
	}
	return m
}

// procStat returns the fields of /proc/<pid>/stat after the command name.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 > len(b) {
		return nil
	}
	return strings.Fields(string(b[i+2:]))
}

// cpuSeconds is a process's user+system CPU time, its exited children's
// included (PostgreSQL's backends come and go).
func cpuSeconds(pid int) float64 {
	f := procStat(pid)
	if len(f) < 15 {
		return 0
	}
	var ticks float64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseFloat(f[i], 64)
		ticks += v
	}
	return ticks / 100 // USER_HZ
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := procStat(c); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}

// memoryKiB reads a VmRSS or VmHWM line of /proc/<pid>/status.
func memoryKiB(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	return scanKiB(f, field)
}

func scanKiB(r io.Reader, field string) int64 {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var kb int64
		if _, err := fmt.Sscanf(sc.Text(), field+": %d kB", &kb); err == nil {
			return kb
		}
	}
	return 0
}

// workersKiB sums a memory field over the worker processes.
func workersKiB(ws []*workerProc, field string) int64 {
	var sum int64
	for _, w := range ws {
		sum += memoryKiB(w.Pid(), field)
	}
	return sum
}
