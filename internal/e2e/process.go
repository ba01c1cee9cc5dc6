package e2e

import (
	"io"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Process is a `tokenwarden` process a test runs apart from itself (a
// worker or gateway, to stop or measure on its own).
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// StartProcess starts bin with args and env, its output to out. The caller
// stops it (Stop), typically in a cleanup.
func StartProcess(t testing.TB, bin string, env []string, out io.Writer, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start tokenwarden %v: %v", args, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p
}

// Stop sends SIGTERM (a worker lets its running activities finish) and
// waits, SIGKILLing after within.
func (p *Process) Stop(within time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(within):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Pid is the process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }
