package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// NginxConfig selects what StartNginx renders from the template in
// nginx/nginx.conf. Zero fields keep the template's value.
type NginxConfig struct {
	// Listen is the port on 127.0.0.1 (0: a free port).
	Listen int
	// Upstreams are the backend addresses ("127.0.0.1:6000"); at least one
	// is required.
	Upstreams []string
	// ProxyProtocol sends a PROXY protocol v1 header to the backends.
	ProxyProtocol bool
	// MaxFails and FailTimeout set passive health on every upstream server
	// (template: 2 and 5s).
	MaxFails    int
	FailTimeout time.Duration
	// ConnectTimeout is proxy_connect_timeout (template: 1s).
	ConnectTimeout time.Duration
	// ProxyTimeout is proxy_timeout (template: 10m).
	ProxyTimeout time.Duration
	// Workers is worker_processes (template: 4).
	Workers int
	// WorkerConnections is worker_connections (template: 19000).
	WorkerConnections int
	// SingleProcess runs nginx with master_process off: one pid, no
	// workers that could outlive it. NginxForTest sets it.
	SingleProcess bool
	// Template is the path of the template (default: nginx/nginx.conf at the
	// root of the clusterchat module, found from the working directory or
	// from this source file).
	Template string
	// Detach keeps nginx running after this program exits.
	Detach bool
}

// Nginx is a private nginx (stream module) listening on 127.0.0.1:Port, with
// its prefix, rendered config, pid file and logs in Dir.
type Nginx struct {
	// Port is the listening port on 127.0.0.1.
	Port int
	// Dir is the nginx prefix directory (nginx.conf, error.log, access.log,
	// nginx.pid).
	Dir string
	// ConfigFile is the rendered configuration.
	ConfigFile string
	// Workers is the number of worker processes (0 with SingleProcess);
	// StartNginx returns once all of them run.
	Workers int

	mu   sync.Mutex
	proc *Process
}

// StartNginx renders the stream configuration for cfg into dir/nginx.conf,
// starts `nginx -p dir -c dir/nginx.conf -g 'daemon off;'` and waits until
// the listening socket exists (accepting; no probe connection is made, so
// the backends see only real clients).
func StartNginx(ctx context.Context, dir string, cfg NginxConfig) (*Nginx, error) {
	bin, err := lookBinary("nginx", "/usr/sbin/nginx")
	if err != nil {
		return nil, err
	}
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("testenv: start nginx: NginxConfig.Upstreams is empty")
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("testenv: nginx dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testenv: nginx dir: %w", err)
	}
	tmplPath := cfg.Template
	if tmplPath == "" {
		if tmplPath, err = FindTemplate(); err != nil {
			return nil, err
		}
	}
	tmpl, err := os.ReadFile(tmplPath)
	if err != nil {
		return nil, fmt.Errorf("testenv: read nginx template: %w", err)
	}
	module, err := findStreamModule(bin)
	if err != nil {
		return nil, err
	}
	n := &Nginx{Dir: dir, ConfigFile: filepath.Join(dir, "nginx.conf"), Workers: workerCount(tmpl, cfg)}
	for attempt := 0; ; attempt++ {
		c := cfg
		if c.Listen == 0 {
			if c.Listen, err = FreePort(); err != nil {
				return nil, err
			}
		}
		conf, err := RenderNginxConfig(tmpl, c, module)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(n.ConfigFile, conf, 0o644); err != nil {
			return nil, fmt.Errorf("testenv: write nginx config: %w", err)
		}
		n.Port = c.Listen
		err = n.start(ctx, bin, cfg.Detach)
		if err == nil {
			return n, nil
		}
		if cfg.Listen != 0 || attempt == 2 || !errors.Is(err, ErrExited) {
			return nil, err
		}
	}
}

func (n *Nginx) start(ctx context.Context, bin string, detach bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	pidFile := filepath.Join(n.Dir, "nginx.pid")
	_ = os.Remove(pidFile)
	p, err := StartProcess(ProcessSpec{
		Name:        "nginx",
		Path:        bin,
		Args:        []string{"-p", n.Dir + "/", "-e", "error.log", "-c", n.ConfigFile, "-g", "daemon off;"},
		Dir:         n.Dir,
		LogFile:     filepath.Join(n.Dir, "nginx.log"),
		Detach:      detach,
		StopTimeout: 20 * time.Second,
	})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = p.WaitReady(rctx, func(context.Context) error {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(b)) != strconv.Itoa(p.Pid()) {
			return fmt.Errorf("pid file holds %q, want %d", bytes.TrimSpace(b), p.Pid())
		}
		ok, err := TCPListening(n.Port)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("nothing listens on 127.0.0.1:%d yet", n.Port)
		}
		if k := len(ChildPids(p.Pid())); k < n.Workers {
			return fmt.Errorf("%d of %d workers running", k, n.Workers)
		}
		return nil
	})
	if err != nil {
		_ = p.Stop()
		if errors.Is(err, ErrExited) {
			err = fmt.Errorf("%w; error.log ends:\n%s", err, tailFile(filepath.Join(n.Dir, "error.log"), 2048))
		}
		return err
	}
	n.proc = p
	return nil
}

// workerCount returns how many workers the rendered config will run.
func workerCount(tmpl []byte, cfg NginxConfig) int {
	switch {
	case cfg.SingleProcess:
		return 0
	case cfg.Workers > 0:
		return cfg.Workers
	}
	m := regexp.MustCompile(`(?m)^\s*worker_processes\s+(\w+)\s*;`).FindSubmatch(tmpl)
	if m == nil {
		return 1 // nginx's default
	}
	if k, err := strconv.Atoi(string(m[1])); err == nil {
		return k
	}
	return runtime.NumCPU() // auto
}

// Addr returns "127.0.0.1:PORT".
func (n *Nginx) Addr() string { return portAddr(n.Port) }

// Pid returns the master's pid, or 0 when stopped.
func (n *Nginx) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || !n.proc.Running() {
		return 0
	}
	return n.proc.Pid()
}

// Process returns the nginx master process, or nil before it was started.
func (n *Nginx) Process() *Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// Pids returns the master's pid followed by its workers' pids (none when
// stopped).
func (n *Nginx) Pids() []int {
	pid := n.Pid()
	if pid == 0 {
		return nil
	}
	return append([]int{pid}, ChildPids(pid)...)
}

// Stop sends SIGTERM (fast shutdown) to the nginx master, its own pid, and
// waits until it has exited; the master stops its workers first. Stop on a
// stopped nginx is a no-op.
func (n *Nginx) Stop() error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.Stop(); err != nil {
		return fmt.Errorf("testenv: stop nginx on port %d: %w", n.Port, err)
	}
	return nil
}

// ChildPids returns the pids whose parent is pid (from /proc).
func ChildPids(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range entries {
		cpid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:])) // state, ppid, ...
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, cpid)
		}
	}
	return kids
}

// TCPListening reports whether some socket listens on 127.0.0.1:port or
// 0.0.0.0:port (from /proc/net/tcp), without connecting to it.
func TCPListening(port int) (bool, error) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return false, fmt.Errorf("read /proc/net/tcp: %w", err)
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" { // 0A = LISTEN
			continue
		}
		local := fields[1]
		if strings.HasSuffix(local, want) && (strings.HasPrefix(local, "0100007F:") || strings.HasPrefix(local, "00000000:")) {
			return true, nil
		}
	}
	return false, sc.Err()
}

// FindTemplate returns the path of nginx/nginx.conf in the clusterchat
// module (see ModuleRoot).
func FindTemplate() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("testenv: nginx template: %w (or set NginxConfig.Template)", err)
	}
	p := filepath.Join(root, "nginx", "nginx.conf")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("testenv: nginx template: %w", err)
	}
	return p, nil
}

// ModuleRoot returns the root directory of the clusterchat module: searched
// upwards from the working directory, then from this source file.
func ModuleRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, d := range starts {
		for {
			if isModuleRoot(d) {
				return d, nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", errors.New("testenv: the clusterchat module root (go.mod) was not found above the working directory")
}

// findStreamModule returns the path of ngx_stream_module.so, or "" when the
// stream module is compiled into bin.
func findStreamModule(bin string) (string, error) {
	candidates := []string{
		"/usr/lib/nginx/modules/ngx_stream_module.so",
		"/usr/share/nginx/modules/ngx_stream_module.so",
		"/usr/lib64/nginx/modules/ngx_stream_module.so",
		"/etc/nginx/modules/ngx_stream_module.so",
	}
	out, _ := exec.Command(bin, "-V").CombinedOutput()
	if m := regexp.MustCompile(`--modules-path=(\S+)`).FindSubmatch(out); m != nil {
		candidates = append([]string{filepath.Join(string(m[1]), "ngx_stream_module.so")}, candidates...)
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	if regexp.MustCompile(`--with-stream(\s|$)`).Match(out) {
		return "", nil // static
	}
	return "", fmt.Errorf("%w: the nginx stream module (ngx_stream_module.so, package libnginx-mod-stream) not found in %v", ErrMissingBinary, candidates)
}

// markerRE matches a template line "<indent><directive...>; # @name".
var markerRE = regexp.MustCompile(`^(\s*)(.*?)\s*#\s*@([a-z_]+)\s*$`)

// RenderNginxConfig renders the template for cfg. module is the stream
// module's path ("" when it is built in: the load_module line is dropped).
// Lines marked "# @NAME" are replaced; all other lines are kept verbatim.
func RenderNginxConfig(tmpl []byte, cfg NginxConfig, module string) ([]byte, error) {
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("testenv: render nginx config: no upstreams")
	}
	for _, u := range cfg.Upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil || strings.ContainsAny(u, " ;{}#\n") {
			return nil, fmt.Errorf("testenv: render nginx config: bad upstream %q", u)
		}
	}
	if cfg.Listen <= 0 || cfg.Listen > 65535 {
		return nil, fmt.Errorf("testenv: render nginx config: bad listen port %d", cfg.Listen)
	}
	seen := map[string]bool{}
	var out bytes.Buffer
	out.WriteString("# Rendered by internal/testenv from the ClusterChat template; do not edit.\n")
	sc := bufio.NewScanner(bytes.NewReader(tmpl))
	for sc.Scan() {
		line := sc.Text()
		m := markerRE.FindStringSubmatch(line)
		if m == nil {
			out.WriteString(line + "\n")
			continue
		}
		indent, directive, name := m[1], strings.TrimSuffix(m[2], ";"), m[3]
		first := !seen[name]
		seen[name] = true
		emit := func(d string) { fmt.Fprintf(&out, "%s%s; # @%s\n", indent, d, name) }
		fields := strings.Fields(directive)
		switch name {
		case "load_module":
			if module != "" {
				emit("load_module " + module)
			}
		case "worker_processes":
			if cfg.SingleProcess {
				emit("master_process off")
			} else if cfg.Workers > 0 {
				emit("worker_processes " + strconv.Itoa(cfg.Workers))
			} else {
				emit(directive)
			}
		case "worker_connections":
			if cfg.WorkerConnections > 0 {
				emit("worker_connections " + strconv.Itoa(cfg.WorkerConnections))
			} else {
				emit(directive)
			}
		case "upstream":
			if !first {
				continue
			}
			params := map[string]string{}
			var order []string
			for _, f := range fields[min(2, len(fields)):] {
				k, v, _ := strings.Cut(f, "=")
				params[k] = v
				order = append(order, k)
			}
			set := func(k, v string) {
				if _, ok := params[k]; !ok {
					order = append(order, k)
				}
				params[k] = v
			}
			if cfg.MaxFails > 0 {
				set("max_fails", strconv.Itoa(cfg.MaxFails))
			}
			if cfg.FailTimeout > 0 {
				set("fail_timeout", nginxSeconds(cfg.FailTimeout))
			}
			for _, u := range cfg.Upstreams {
				d := "server " + u
				for _, k := range order {
					d += " " + k
					if params[k] != "" {
						d += "=" + params[k]
					}
				}
				emit(d)
			}
		case "listen":
			rest := ""
			if len(fields) > 2 {
				rest = " " + strings.Join(fields[2:], " ")
			}
			emit("listen " + portAddr(cfg.Listen) + rest)
		case "proxy_protocol":
			if cfg.ProxyProtocol {
				emit("proxy_protocol on")
			} else {
				emit("proxy_protocol off")
			}
		case "proxy_connect_timeout":
			if cfg.ConnectTimeout > 0 {
				emit("proxy_connect_timeout " + nginxDuration(cfg.ConnectTimeout))
			} else {
				emit(directive)
			}
		case "proxy_timeout":
			if cfg.ProxyTimeout > 0 {
				emit("proxy_timeout " + nginxDuration(cfg.ProxyTimeout))
			} else {
				emit(directive)
			}
		default:
			emit(directive)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("testenv: render nginx config: %w", err)
	}
	for _, need := range []string{"upstream", "listen", "proxy_protocol"} {
		if !seen[need] {
			return nil, fmt.Errorf("testenv: render nginx config: template has no line marked # @%s", need)
		}
	}
	return out.Bytes(), nil
}

// nginxDuration formats d in milliseconds ("1500ms"), which nginx accepts
// everywhere a time is expected.
func nginxDuration(d time.Duration) string {
	ms := d.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	return strconv.FormatInt(ms, 10) + "ms"
}

// nginxSeconds formats d in whole seconds, rounded up ("2s"), for the
// directives that do not accept milliseconds (upstream fail_timeout).
func nginxSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10) + "s"
}

// isModuleRoot reports whether dir holds the go.mod of module clusterchat.
func isModuleRoot(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return strings.TrimSpace(string(line)) == "module clusterchat"
}
