package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clusterchat/internal/testenv"
)

// freePortPair returns a port p such that p and p+1 were free.
func freePortPair(t *testing.T) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		p, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		if err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no pair of free ports")
	return 0
}

// TestUpDown runs the whole up/status/down cycle with a stand-in chatserver
// on free ports: the real MariaDB, Redis and nginx are started, nginx
// proxies with the PROXY protocol to both nodes, and down leaves nothing.
func TestUpDown(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "chatserver")
	if out, err := exec.Command("go", "build", "-o", fake, "./testdata/fakechatserver").CombinedOutput(); err != nil {
		t.Fatalf("build fake chatserver: %v\n%s", err, out)
	}
	state := filepath.Join(dir, "state")
	nginxPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := freePortPair(t), freePortPair(t)
	args := []string{"--dir", state, "--chatserver", fake, "--nginx-port", fmt.Sprint(nginxPort), "--server-ports", fmt.Sprintf("%d,%d", s1, s2)}

	var out bytes.Buffer
	if err := run(append([]string{"up"}, args...), &out); err != nil {
		t.Fatalf("up: %v\n%s", err, out.String())
	}
	st, err := readState(state)
	if err != nil || st == nil {
		t.Fatalf("state: %v %v", st, err)
	}
	t.Cleanup(func() { // if the test fails half-way
		if live := alive(st); len(live) > 0 {
			_ = run(append([]string{"down"}, args...), &bytes.Buffer{})
		}
	})
	if !strings.Contains(out.String(), fmt.Sprintf("bin/chatclient --addr 127.0.0.1:%d", nginxPort)) {
		t.Errorf("up did not say how to connect:\n%s", out.String())
	}
	if len(st.Services) != 5 {
		t.Fatalf("services %+v", st.Services)
	}
	if err := run(append([]string{"up"}, args...), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second up: %v", err)
	}
	if err := run(append([]string{"status"}, args...), &bytes.Buffer{}); err != nil {
		t.Fatalf("status: %v", err)
	}

	// Failures by hand: kill or stop one service, status says so, start
	// brings it back with the same command line.
	for _, c := range []struct{ how, name string }{{"kill", "s1"}, {"stop", "redis"}, {"stop", "nginx"}, {"kill", "mariadb"}} {
		old := pidOf(t, state, c.name)
		if err := run(append([]string{c.how, c.name}, args...), &bytes.Buffer{}); err != nil {
			t.Fatalf("%s %s: %v", c.how, c.name, err)
		}
		if testenv.PidAlive(old, "") {
			t.Fatalf("%s %s: pid %d still alive", c.how, c.name, old)
		}
		if err := run(append([]string{"status"}, args...), &bytes.Buffer{}); err == nil {
			t.Fatalf("status after %s %s: no error", c.how, c.name)
		}
		if err := run(append([]string{"start", c.name}, args...), &bytes.Buffer{}); err != nil {
			t.Fatalf("start %s: %v", c.name, err)
		}
		if err := run(append([]string{"start", c.name}, args...), &bytes.Buffer{}); err == nil {
			t.Fatalf("second start %s: no error; log:\n%s", c.name, logOf(t, state, c.name))
		}
		if err := run(append([]string{"status"}, args...), &bytes.Buffer{}); err != nil {
			t.Fatalf("status after start %s: %v", c.name, err)
		}
	}
	if err := run(append([]string{"stop", "nosuch"}, args...), &bytes.Buffer{}); err == nil {
		t.Fatal("stop nosuch: no error")
	}
	if st, err = readState(state); err != nil {
		t.Fatal(err)
	}

	// least_conn over idle connections alternates: both nodes are reached,
	// each seeing the PROXY protocol header.
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", nginxPort), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			t.Fatalf("read via nginx: %v", err)
		}
		node, rest, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(rest, "PROXY TCP4 127.0.0.1 127.0.0.1 ") {
			t.Fatalf("backend saw %q, want a PROXY line", line)
		}
		seen[node] = true
	}
	if !seen["s1"] || !seen["s2"] {
		t.Errorf("nodes reached: %v, want s1 and s2", seen)
	}

	out.Reset()
	if err := run(append([]string{"down"}, args...), &out); err != nil {
		t.Fatalf("down: %v\n%s", err, out.String())
	}
	if live := alive(st); len(live) > 0 {
		t.Fatalf("still running after down: %v", live)
	}
	for _, p := range []int{nginxPort, s1, s1 + 1, s2, s2 + 1} {
		if ok, _ := testenv.TCPListening(p); ok {
			t.Errorf("port %d still listening after down", p)
		}
	}
	if err := run(append([]string{"down"}, args...), &out); err != nil {
		t.Fatalf("second down: %v", err)
	}
	if err := run(append([]string{"up"}, append(args, "--chatserver", "/nonexistent")...), &out); err == nil {
		t.Fatal("up with a missing chatserver binary succeeded")
	}
}

// pidOf returns the recorded pid of service name.
func pidOf(t *testing.T, dir, name string) int {
	t.Helper()
	st, err := readState(dir)
	if err != nil || st == nil {
		t.Fatalf("state: %v", err)
	}
	for _, s := range st.Services {
		if s.Name == name {
			return s.Pid
		}
	}
	t.Fatalf("no service %s", name)
	return 0
}

// logOf returns the log file of service name.
func logOf(t *testing.T, dir, name string) string {
	t.Helper()
	st, err := readState(dir)
	if err != nil || st == nil {
		t.Fatalf("state: %v", err)
	}
	for _, s := range st.Services {
		if s.Name == name {
			b, _ := os.ReadFile(s.Cmd.LogFile)
			return string(b)
		}
	}
	return ""
}
