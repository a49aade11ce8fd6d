// Package testredis starts throwaway redis-server processes for tests.
package testredis

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Binary is the redis-server executable tests start; REDIS_SERVER overrides it.
var Binary = "redis-server"

// Server is one running redis-server on a loopback port.
type Server struct {
	// Addr is the server's host:port.
	Addr string
	// Port is the server's TCP port.
	Port int

	cmd  *exec.Cmd
	dir  string
	once sync.Once
	done chan struct{}
	log  *syncWriter
}

// Option adds command-line arguments to the redis-server started by Start.
type Option func(args []string) []string

// WithPassword starts the server with requirepass set to pw.
func WithPassword(pw string) Option {
	return func(args []string) []string { return append(args, "--requirepass", pw) }
}

// WithReplicaOf starts the server as a replica of master (host:port), with masterauth pw when
// pw is not empty.
func WithReplicaOf(master, pw string) Option {
	return func(args []string) []string {
		host, port, _ := net.SplitHostPort(master)
		args = append(args, "--replicaof", host, port)
		if pw != "" {
			args = append(args, "--masterauth", pw)
		}
		return args
	}
}

// WithArgs passes raw redis-server arguments, such as "--databases", "32".
func WithArgs(a ...string) Option {
	return func(args []string) []string { return append(args, a...) }
}

// Start starts redis-server on a free loopback port, waits until it answers PING, and stops it
// in t.Cleanup. It fails the test if redis-server is missing or does not come up.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s, err := Launch(t.TempDir(), opts...)
		if err == nil {
			t.Cleanup(s.Stop)
			return s
		}
		lastErr = err
	}
	t.Fatalf("testredis: %v", lastErr)
	return nil
}

// Launch starts redis-server in dir without a testing.T (for harnesses and benchmarks); the
// caller must call Stop.
func Launch(dir string, opts ...Option) (*Server, error) {
	bin := Binary
	if v := os.Getenv("REDIS_SERVER"); v != "" {
		bin = v
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%s not found in PATH (install redis-server 7.0): %w", bin, err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--loglevel", "warning"}
	for _, o := range opts {
		args = o(args)
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, dir: dir,
		done: make(chan struct{}), log: &syncWriter{b: &bytes.Buffer{}}}
	s.cmd = exec.Command(path, args...)
	DieWithParent(s.cmd)
	s.cmd.Dir = dir
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.cmd.Stdout
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	if err := s.waitReady(10 * time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Restart starts a stopped server again on the same port and directory, with the same
// arguments, and waits until it answers.
func (s *Server) Restart() error {
	s.Stop()
	cmd := exec.Command(s.cmd.Path, s.cmd.Args[1:]...)
	DieWithParent(cmd)
	cmd.Dir, cmd.Stdout, cmd.Stderr = s.cmd.Dir, s.cmd.Stdout, s.cmd.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.once, s.done = cmd, sync.Once{}, make(chan struct{})
	done := s.done
	go func() { _ = cmd.Wait(); close(done) }()
	return s.waitReady(10 * time.Second)
}

// PID returns the redis-server process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop kills the server and waits for it to exit; it is safe to call more than once.
func (s *Server) Stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
}

// waitReady polls PING until the server answers +PONG or the deadline passes.
func (s *Server) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	backoff := time.Millisecond
	for {
		select {
		case <-s.done:
			return fmt.Errorf("redis-server on %s exited: %s", s.Addr, s.log.String())
		default:
		}
		if err := ping(s.Addr); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s not ready after %v: %v", s.Addr, d, err)
		}
		// Wait for the process to exit or the next poll, whichever comes first.
		select {
		case <-s.done:
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 50*time.Millisecond)
	}
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" && line[0] != '-' {
		return fmt.Errorf("unexpected PING reply %q", line)
	}
	return nil
}

// Dir returns the server's working directory.
func (s *Server) Dir() string { return filepath.Clean(s.dir) }

type syncWriter struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

// Write appends p under the lock.
func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// String returns what was written so far.
func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
