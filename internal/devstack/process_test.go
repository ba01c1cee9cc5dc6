package devstack

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A child that dies because a port was taken after it was picked is
// ErrPortTaken (callers with throwaway ports retry on it); any other death
// is not.
func TestStartupErrorNamesATakenPort(t *testing.T) {
	for _, tc := range []struct {
		name, says string
		taken      bool
	}{
		{"bind race", `{"level":"FATAL","message":"listen tcp 127.0.0.1:34949: bind: address already in use"}`, true},
		{"other failure", "FATAL: database files are incompatible with server", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
				t.Fatal(err)
			}
			s := &Stack{dir: dir, died: make(chan error, 1)}
			p, err := s.spawn(spawnSpec{name: "child", path: "/bin/sh", args: []string{"-c", "echo '" + tc.says + "'; exit 1"}})
			if err != nil {
				t.Fatal(err)
			}
			err = p.waitReady(context.Background(), 10*time.Second, func(context.Context) error { return errors.New("not yet") })
			if err == nil {
				t.Fatal("waitReady succeeded for a child that died")
			}
			if got := errors.Is(err, ErrPortTaken); got != tc.taken {
				t.Fatalf("errors.Is(ErrPortTaken) = %v, want %v: %v", got, tc.taken, err)
			}
		})
	}
}
