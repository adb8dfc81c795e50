// Package redistest starts real redis-server processes for tests: a
// standalone server and a Redis Cluster of several masters, each on a free
// loopback port, in a temporary directory, stopped when the test ends.
package redistest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// startWait is how long a server may take to answer PING (loaded machine).
const startWait = 30 * time.Second

// Binaries returns the paths of redis-server and redis-cli, or fails the
// test with what to install.
func Binaries(t testing.TB) (server, cli string) {
	t.Helper()
	server, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed (not in PATH): these tests run a real Redis; install it (Debian: apt-get install redis-server)")
	}
	cli, err = exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli is not installed (not in PATH): install it with redis-server (Debian: apt-get install redis-server)")
	}
	return server, cli
}

// Server is one redis-server process.
type Server struct {
	Addr string
	Port int
	Dir  string
	args []string
	bin  string
	t    testing.TB
	opt  Options

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

// Options for a server.
type Options struct {
	// AppendOnly turns on the append-only file with fsync on every write
	// (what the no-loss-on-restart guarantee needs).
	AppendOnly bool
	// Cluster starts the server cluster-enabled.
	Cluster bool
	// Args are more redis-server arguments.
	Args []string
	// Port is the port to listen on; 0 picks a free one.
	Port int
	// Password sets requirepass (the readiness check uses it too).
	Password string
	// TLS serves TLS only, on the port, with these PEM files; ClientTLS is
	// what the readiness check dials with.
	TLSCert, TLSKey, TLSCA string
	ClientTLS              *tls.Config
	// Sentinel runs the server as a Sentinel watching this master, with
	// SentinelQuorum (default 1) and SentinelDownAfter (default 5 s).
	Sentinel          *Server
	SentinelName      string
	SentinelQuorum    int
	SentinelDownAfter time.Duration
	// ReplicaOf starts the server as a replica of this one.
	ReplicaOf *Server
}

// Start starts a standalone server (or a cluster-enabled one) on a free
// loopback port; it is killed when the test ends.
func Start(t testing.TB, opt Options) *Server {
	t.Helper()
	bin, _ := Binaries(t)
	dir := t.TempDir()
	var lastErr error
	for try := 0; try < 5; try++ {
		port := opt.Port
		if port == 0 {
			var err error
			if port, err = freePort(opt.Cluster); err != nil {
				t.Fatalf("redistest: free port: %v", err)
			}
		}
		s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Port: port, Dir: dir, bin: bin, t: t, opt: opt}
		if opt.Sentinel != nil {
			conf := filepath.Join(dir, "sentinel.conf")
			quorum, downAfter := max(opt.SentinelQuorum, 1), opt.SentinelDownAfter
			if downAfter <= 0 {
				downAfter = 5 * time.Second
			}
			text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d %d\n"+
				"sentinel down-after-milliseconds %s %d\nsentinel failover-timeout %s %d\n",
				port, dir, opt.SentinelName, opt.Sentinel.Port, quorum, opt.SentinelName, downAfter.Milliseconds(),
				opt.SentinelName, max(3*downAfter.Milliseconds(), 3000))
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				t.Fatalf("redistest: sentinel config: %v", err)
			}
			s.args = []string{conf, "--sentinel"}
			if lastErr = s.start(); lastErr == nil {
				t.Cleanup(s.Kill)
				return s
			}
			continue
		}
		s.args = []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning"}
		if opt.TLSCert != "" {
			s.args = append(s.args, "--port", "0", "--tls-port", strconv.Itoa(port), "--tls-cert-file", opt.TLSCert,
				"--tls-key-file", opt.TLSKey, "--tls-ca-cert-file", opt.TLSCA, "--tls-auth-clients", "no")
		}
		if opt.Password != "" {
			s.args = append(s.args, "--requirepass", opt.Password)
		}
		if opt.AppendOnly {
			s.args = append(s.args, "--appendonly", "yes", "--appendfsync", "always")
		} else {
			s.args = append(s.args, "--appendonly", "no")
		}
		if opt.Cluster {
			s.args = append(s.args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes-"+strconv.Itoa(port)+".conf",
				"--cluster-node-timeout", "5000")
		}
		if opt.ReplicaOf != nil {
			s.args = append(s.args, "--replicaof", "127.0.0.1", strconv.Itoa(opt.ReplicaOf.Port))
		}
		s.args = append(s.args, opt.Args...)
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatalf("redistest: redis-server did not start: %v", lastErr)
	return nil
}

func freePort(cluster bool) (int, error) {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !cluster {
			return port, nil
		}
		// The cluster bus listens on port+10000.
		if port+10000 > 65535 {
			continue
		}
		if bl, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000)); err == nil {
			_ = bl.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port pair")
}

func (s *Server) start() error {
	cmd := exec.Command(s.bin, s.args...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done, s.log = cmd, done, &log
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), startWait)
	defer cancel()
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second,
		Password: s.opt.Password, TLSConfig: s.opt.ClientTLS})
	defer c.Close()
	for {
		err := c.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server on %s exited: %s", s.Addr, strings.TrimSpace(log.String()))
		case <-ctx.Done():
			s.Kill()
			return fmt.Errorf("redis-server on %s does not answer: %v", s.Addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Pause stops the process (SIGSTOP) without ending it: a replica paused
// misses the writes its master takes meanwhile.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused process (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(sig)
	}
}

// Restart starts the server again on the same port and directory (its
// append-only file, if any, brings the data back).
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	var err error
	for try := 0; try < 50; try++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger a moment
	}
	s.t.Fatalf("redistest: restart %s: %v", s.Addr, err)
}

// Client returns a client to the server, closed with the test.
func (s *Server) Client() *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr, Password: s.opt.Password, TLSConfig: s.opt.ClientTLS})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Cluster is a Redis Cluster of masters without replicas.
type Cluster struct {
	Servers []*Server
}

// Addrs are the masters' addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		out[i] = s.Addr
	}
	return out
}

// StartCluster starts masters cluster-enabled servers and joins them: with
// redis-cli --cluster create from three masters on (what it accepts), by
// assigning the slots and meeting the nodes for one or two. It returns once
// every node says cluster_state:ok.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	_, cli := Binaries(t)
	c := &Cluster{}
	for i := 0; i < masters; i++ {
		c.Servers = append(c.Servers, Start(t, Options{Cluster: true}))
	}
	if masters >= 3 {
		args := append([]string{"--cluster", "create"}, c.Addrs()...)
		args = append(args, "--cluster-replicas", "0", "--cluster-yes")
		out, err := exec.Command(cli, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
		}
	} else {
		c.assignSlots(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startWait)
	defer cancel()
	for _, s := range c.Servers {
		cl := goredis.NewClient(&goredis.Options{Addr: s.Addr})
		for {
			info, err := cl.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				_ = cl.Close()
				t.Fatalf("redistest: cluster node %s not ok: %v %s", s.Addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = cl.Close()
	}
	return c
}

// assignSlots splits the slots evenly over the masters and introduces them
// to each other.
func (c *Cluster) assignSlots(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startWait)
	defer cancel()
	const slots = 16384
	per := slots / len(c.Servers)
	for i, s := range c.Servers {
		cl := goredis.NewClient(&goredis.Options{Addr: s.Addr})
		first, last := i*per, (i+1)*per-1
		if i == len(c.Servers)-1 {
			last = slots - 1
		}
		err := cl.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", first, last).Err()
		if err == nil && i > 0 {
			err = cl.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(c.Servers[0].Port)).Err()
		}
		_ = cl.Close()
		if err != nil {
			t.Fatalf("redistest: cluster slots on %s: %v", s.Addr, err)
		}
	}
}
