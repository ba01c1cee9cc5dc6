package devstack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// process is one running child: a service binary in its own process group,
// with its output appended to <Dir>/logs/<name>.log.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the child has been reaped
	err     error         // exit status, valid after done
	// stopping is set before a deliberate stop so that the exit is not
	// reported as a crash through Stack.Wait.
	stopping atomic.Bool
}

// spawnSpec describes how to run one child.
type spawnSpec struct {
	name string
	path string
	args []string
	env  []string
	cred *syscall.Credential // nil: run as ourselves
}

func (s *Stack) spawn(spec spawnSpec) (*process, error) {
	logPath := filepath.Join(s.dir, "logs", spec.name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", spec.name, err)
	}
	fmt.Fprintf(logFile, "\n==== devstack: starting %s at %s\n", spec.name, time.Now().Format(time.RFC3339))

	cmd := exec.Command(spec.path, spec.args...)
	cmd.Dir = s.dir
	cmd.Env = spec.env
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr(spec.cred)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: start %s: %w", spec.name, spec.path, err)
	}
	p := &process{name: spec.name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	s.writePID(spec.name, cmd.Process.Pid)
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
		if !p.stopping.Load() {
			select {
			case s.died <- fmt.Errorf("devstack: %s exited unexpectedly (%v); see %s", p.name, p.err, p.logPath):
			default:
			}
		}
	}()
	return p, nil
}

// exited reports whether the child is gone, and its exit error if so.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		if p.err == nil {
			return true, errors.New("exited with status 0")
		}
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends sig (to the whole process group when group is set), waits up
// to grace for the child to exit, and then kills the group.
func (p *process) stop(sig syscall.Signal, group bool, grace time.Duration) error {
	p.stopping.Store(true)
	pid := p.cmd.Process.Pid
	target := pid
	if group {
		target = -pid
	}
	_ = syscall.Kill(target, sig)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return fmt.Errorf("%s did not stop within %s and was killed", p.name, grace)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.name, pid)
	}
}

// waitReady polls check until it succeeds, the child dies, or timeout.
func (p *process) waitReady(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if gone, err := p.exited(); gone {
			return p.startupError(err)
		}
		attempt, cancelAttempt := context.WithTimeout(ctx, 3*time.Second)
		last = check(attempt)
		cancelAttempt()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if gone, err := p.exited(); gone {
				return p.startupError(err)
			}
			return fmt.Errorf("%s not ready after %s (last error: %v); see %s%s", p.name, timeout, last, p.logPath, logTail(p.logPath, 15))
		case <-p.done:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startupError explains a child that died while starting. A port taken
// between the caller picking it and the child binding it (or one the child
// picked for itself: the Temporal dev server chooses its internal ports)
// is ErrPortTaken, so that a caller with throwaway ports can pick others.
func (p *process) startupError(exit error) error {
	tail := logTail(p.logPath, 15)
	err := fmt.Errorf("%s exited during startup (%v); see %s%s", p.name, exit, p.logPath, tail)
	if strings.Contains(tail, "address already in use") {
		return fmt.Errorf("%w: %w", ErrPortTaken, err)
	}
	return err
}

// logTail returns the last n lines of a log, indented, for error messages:
// a CI log then shows why a service failed without a second step.
func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 64<<10 {
		_, _ = f.Seek(-64<<10, io.SeekEnd)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	if len(lines) == 0 {
		return ""
	}
	return "\n  | " + strings.Join(lines, "\n  | ")
}

// writePID records a child's pid under <Dir>/run so that `make stop` (see
// StopDir) can end a stack whose owner was lost.
func (s *Stack) writePID(name string, pid int) {
	_ = os.WriteFile(filepath.Join(s.dir, "run", name+".pid"), []byte(strconv.Itoa(pid)+"\n"), 0o644)
}

// StopDir ends the processes of a stack recorded under dir by another
// process: the owner (which then stops its children gracefully) and, after
// a grace period, any child still alive. A pid is only signalled while its
// command line still names the expected program, so a stale file cannot hit
// an unrelated process that reused the pid.
func StopDir(dir string, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	// The owner first: it stops its children gracefully and in order.
	if pid, ok := recordedPID(dir, "owner"); ok {
		fmt.Fprintf(log, "stop: owner (pid %d)\n", pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		waitGone(pid, 45*time.Second)
	}
	var errs []error
	for _, name := range []string{"temporal", "vault", "postgres"} {
		pid, ok := recordedPID(dir, name)
		if !ok {
			continue
		}
		fmt.Fprintf(log, "stop: %s (pid %d), left behind by its owner\n", name, pid)
		sig := syscall.SIGTERM
		if name == "postgres" {
			sig = syscall.SIGINT // fast shutdown
		}
		_ = syscall.Kill(pid, sig)
		if !waitGone(pid, 30*time.Second) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			if !waitGone(pid, 10*time.Second) {
				errs = append(errs, fmt.Errorf("devstack: %s (pid %d) survived SIGKILL", name, pid))
			}
		}
	}
	return errors.Join(errs...)
}

// recordedPID reads <dir>/run/<name>.pid and reports the pid if that
// process is still the one recorded.
func recordedPID(dir, name string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "run", name+".pid"))
	if err != nil {
		return 0, false
	}
	first, rest, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 1 || !pidMatches(pid, name, strings.TrimSpace(rest)) {
		return 0, false
	}
	return pid, true
}

// waitGone polls until pid has exited (or is a zombie awaiting its
// parent), reporting whether it did within d.
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if _, alive := procCmdline(pid); !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pidMatches checks a recorded pid against its program: a child's command
// line must name the service, the owner's must equal the one recorded.
func pidMatches(pid int, name, recorded string) bool {
	cmdline, ok := procCmdline(pid)
	if !ok {
		return false
	}
	if name == "owner" {
		return recorded != "" && cmdline == recorded
	}
	return strings.Contains(cmdline, name)
}

func procCmdline(pid int) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return "", false
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")), true
}

// writeOwnerPID records this process as the stack's owner, with its command
// line so StopDir can tell it from a later process with the same pid.
func (s *Stack) writeOwnerPID() {
	pid := os.Getpid()
	cmdline, _ := procCmdline(pid)
	_ = os.WriteFile(filepath.Join(s.dir, "run", "owner.pid"), []byte(fmt.Sprintf("%d\n%s\n", pid, cmdline)), 0o644)
}
