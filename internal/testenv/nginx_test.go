package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// lineEcho is a test backend: it writes back every line it reads.
func lineEcho(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l
}

// dialLines connects to addr, sends "hello\n" and returns the first want
// lines that come back, and the client's local port.
func dialLines(t *testing.T, addr string, want int) ([]string, int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	var lines []string
	for len(lines) < want {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read after %q: %v", lines, err)
		}
		lines = append(lines, strings.TrimRight(line, "\r\n"))
	}
	return lines, c.LocalAddr().(*net.TCPAddr).Port
}

func TestNginxProxies(t *testing.T) {
	backend := lineEcho(t)
	n := NginxForTest(t, NginxConfig{Upstreams: []string{backend.Addr().String()}})
	lines, _ := dialLines(t, n.Addr(), 1)
	if lines[0] != "hello" {
		t.Fatalf("got %q, want hello", lines)
	}
}

func TestNginxProxyProtocol(t *testing.T) {
	backend := lineEcho(t)
	n := NginxForTest(t, NginxConfig{Upstreams: []string{backend.Addr().String()}, ProxyProtocol: true})
	lines, port := dialLines(t, n.Addr(), 2)
	want := fmt.Sprintf("PROXY TCP4 127.0.0.1 127.0.0.1 %d %d", port, n.Port)
	if lines[0] != want || lines[1] != "hello" {
		t.Fatalf("got %q, want [%q hello]", lines, want)
	}
	pid := n.Pid()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, "nginx")
	if n.Pid() != 0 {
		t.Fatalf("Pid after Stop = %d", n.Pid())
	}
}

func TestNginxMasterWorkersStop(t *testing.T) {
	backend := lineEcho(t)
	n, err := StartNginx(testCtx(t, time.Minute), t.TempDir(), NginxConfig{
		Upstreams:         []string{backend.Addr().String(), "127.0.0.1:1"},
		Workers:           2,
		WorkerConnections: 1024,
		MaxFails:          1,
		FailTimeout:       30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Stop() })
	// Port 1 refuses: nginx must go on to the live backend every time.
	for i := 0; i < 4; i++ {
		if lines, _ := dialLines(t, n.Addr(), 1); lines[0] != "hello" {
			t.Fatalf("connection %d: got %q", i, lines)
		}
	}
	var pids []int
	err = poll(testCtx(t, 10*time.Second), func(context.Context) error {
		pids = n.Pids()
		if len(pids) != 3 {
			return fmt.Errorf("pids %v, want master and 2 workers", pids)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		waitGone(t, pid, "nginx")
	}
	if ok, _ := TCPListening(n.Port); ok {
		t.Fatalf("port %d still listening after Stop", n.Port)
	}
}

func TestRenderNginxConfig(t *testing.T) {
	path, err := FindTemplate()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := RenderNginxConfig(tmpl, NginxConfig{
		Listen:        8000,
		Upstreams:     []string{"127.0.0.1:6000", "127.0.0.1:6002"},
		ProxyProtocol: true,
	}, "/usr/lib/nginx/modules/ngx_stream_module.so")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"load_module /usr/lib/nginx/modules/ngx_stream_module.so;",
		"server 127.0.0.1:6000 max_fails=2 fail_timeout=5s;",
		"server 127.0.0.1:6002 max_fails=2 fail_timeout=5s;",
		"listen 127.0.0.1:8000 reuseport backlog=8192;",
		"proxy_protocol on;",
		"proxy_timeout 10m;",
		"proxy_connect_timeout 1s;",
		"worker_connections 19000;",
		"least_conn;",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rendered config lacks %q:\n%s", want, out)
		}
	}
	out, err = RenderNginxConfig(tmpl, NginxConfig{
		Listen:       9000,
		Upstreams:    []string{"127.0.0.1:7000"},
		ProxyTimeout: 2 * time.Second,
		FailTimeout:  1500 * time.Millisecond,
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"server 127.0.0.1:7000 max_fails=2 fail_timeout=2s;", "proxy_protocol off;", "proxy_timeout 2000ms;", "listen 127.0.0.1:9000 "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rendered config lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "load_module") || strings.Contains(string(out), "6002") {
		t.Errorf("rendered config kept template values:\n%s", out)
	}
	for name, cfg := range map[string]NginxConfig{
		"no upstreams": {Listen: 1},
		"bad upstream": {Listen: 1, Upstreams: []string{"x; }"}},
		"bad port":     {Listen: 70000, Upstreams: []string{"127.0.0.1:1"}},
	} {
		if _, err := RenderNginxConfig(tmpl, cfg, ""); err == nil {
			t.Errorf("%s: no error", name)
		}
	}

}

// TestTemplateUsableAsIs checks that nginx/nginx.conf, unrendered, is a valid
// configuration (nginx -t) for the standard cluster.
func TestTemplateUsableAsIs(t *testing.T) {
	path, err := FindTemplate()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := lookBinary("nginx", "/usr/sbin/nginx")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, err := exec.Command(bin, "-t", "-p", dir+"/", "-e", "error.log", "-c", path).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t %s: %v\n%s", path, err, out)
	}
	if !strings.Contains(string(out), "test is successful") {
		t.Fatalf("nginx -t: %s", out)
	}
}
