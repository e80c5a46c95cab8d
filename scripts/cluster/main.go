// Command cluster starts and stops the local two-server ClusterChat cluster
// (`make cluster`, `make cluster-down`):
//
//	cluster up     [--dir .cluster] [--server-arg ARG]... [--nginx-port 8000] [--server-ports 6000,6002]
//	cluster down   [--dir .cluster]
//	cluster status [--dir .cluster]
//	cluster stop|kill|start NAME [--dir .cluster]   (NAME: mariadb, redis, s1, s2, nginx)
//
// up starts, through internal/testenv, a private MariaDB (database chat) and
// Redis on free loopback ports, bin/chatserver s1 on 127.0.0.1:6000 (admin
// :6001) and s2 on 127.0.0.1:6002 (admin :6003), and nginx on 127.0.0.1:8000
// in front of them with the PROXY protocol; waits until each answers; records
// every pid in the state directory; and returns, leaving them running. down
// stops each recorded pid (only if it still runs the program recorded) and
// checks that nothing is left. stop (SIGTERM), kill (SIGKILL) and start act
// on one service, for trying failures by hand; start runs the recorded
// command line again and waits until its port listens.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql" // pingMySQL

	"clusterchat/internal/testenv"
)

// database is the MariaDB database the servers share.
const database = "chat"

// node is one chatserver of the cluster.
type node struct {
	name        string
	port, admin int
}

// config is what up starts. The defaults are the standard cluster of
// PROTOCOL.md §7: nginx on 8000, s1 on 6000 (admin 6001), s2 on 6002
// (admin 6003).
type config struct {
	dir        string
	bin        string
	nginxPort  int
	nodes      []node
	serverArgs []string
}

// service is one started process, as recorded in state.json.
type service struct {
	Name string `json:"name"`
	Pid  int    `json:"pid"`
	// Exe is the program name PidAlive checks before a signal is sent.
	Exe  string `json:"exe"`
	Addr string `json:"addr"`
	Log  string `json:"log"`
	// Children are worker pids (nginx), checked by down.
	Children []int `json:"children,omitempty"`
	// Cmd is the command line, for start.
	Cmd command `json:"cmd"`
}

// command is how a service was started.
type command struct {
	Path    string   `json:"path"`
	Args    []string `json:"args"`
	Dir     string   `json:"dir"`
	LogFile string   `json:"log_file"`
}

// commandOf records p's command line.
func commandOf(p *testenv.Process) command {
	spec := p.Spec()
	return command{Path: spec.Path, Args: spec.Args, Dir: spec.Dir, LogFile: spec.LogFile}
}

// state is what up leaves in DIR/state.json for down and status.
type state struct {
	Started  time.Time `json:"started"`
	Services []service `json:"services"`
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: cluster up|down|status [--dir DIR] [--server-arg ARG]... | cluster stop|kill|start NAME")
	}
	cmd := args[0]
	args = args[1:]
	var target string
	switch cmd {
	case "stop", "kill", "start":
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return fmt.Errorf("usage: cluster %s NAME (mariadb, redis, s1, s2, nginx)", cmd)
		}
		target, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("cluster "+cmd, flag.ContinueOnError)
	dir := fs.String("dir", "", "state directory (default: .cluster at the module root)")
	bin := fs.String("chatserver", "", "chatserver binary (default: bin/chatserver at the module root)")
	var serverArgs stringList
	fs.Var(&serverArgs, "server-arg", "extra chatserver argument (repeatable), e.g. --server-arg=--bcrypt-cost=4")
	nginxPort := fs.Int("nginx-port", 8000, "nginx listen port on 127.0.0.1")
	ports := fs.String("server-ports", "6000,6002", "chatserver ports on 127.0.0.1, one per node s1, s2, ...; each admin listens on port+1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var nodes []node
	for i, f := range strings.Split(*ports, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p <= 0 || p >= 65535 {
			return fmt.Errorf("--server-ports: bad port %q", f)
		}
		nodes = append(nodes, node{name: "s" + strconv.Itoa(i+1), port: p, admin: p + 1})
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		return err
	}
	if *dir == "" {
		*dir = filepath.Join(root, ".cluster")
	}
	if *bin == "" {
		*bin = filepath.Join(root, "bin", "chatserver")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "up":
		return up(ctx, out, config{dir: *dir, bin: *bin, nginxPort: *nginxPort, nodes: nodes, serverArgs: serverArgs})
	case "down":
		return down(ctx, out, *dir)
	case "status":
		return status(out, *dir)
	case "stop", "kill", "start":
		return one(ctx, out, *dir, cmd, target)
	default:
		return fmt.Errorf("unknown command %q (want up, down, status, stop, kill or start)", cmd)
	}
}

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

// readState returns the recorded state, or nil when there is none.
func readState(dir string) (*state, error) {
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("parse %s: %w", statePath(dir), err)
	}
	return &st, nil
}

// writeState records st and one NAME.pid file per service.
func writeState(dir string, st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	for _, s := range st.Services {
		if err := os.WriteFile(filepath.Join(dir, s.Name+".pid"), []byte(strconv.Itoa(s.Pid)+"\n"), 0o644); err != nil {
			return fmt.Errorf("write pid file: %w", err)
		}
	}
	tmp := statePath(dir) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, statePath(dir)); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// alive returns the recorded processes (and nginx workers) still running.
func alive(st *state) []string {
	var live []string
	for _, s := range st.Services {
		if testenv.PidAlive(s.Pid, s.Exe) {
			live = append(live, fmt.Sprintf("%s (pid %d)", s.Name, s.Pid))
		}
		for _, c := range s.Children {
			if testenv.PidAlive(c, s.Exe) {
				live = append(live, fmt.Sprintf("%s worker (pid %d)", s.Name, c))
			}
		}
	}
	return live
}

// exeName returns the program name of a running pid (its comm).
func exeName(pid int, fallback string) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil {
		return fallback
	}
	return strings.TrimSpace(string(b))
}

func up(ctx context.Context, out io.Writer, cfg config) (err error) {
	dir, bin, nodes := cfg.dir, cfg.bin, cfg.nodes
	if st, err := readState(dir); err != nil {
		return err
	} else if st != nil {
		if live := alive(st); len(live) > 0 {
			return fmt.Errorf("a cluster is already running from %s (%s); run `make cluster-down` first", dir, strings.Join(live, ", "))
		}
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("chatserver binary: %w (run `make build`)", err)
	}
	ports := []int{cfg.nginxPort}
	for _, n := range nodes {
		ports = append(ports, n.port, n.admin)
	}
	for _, port := range ports {
		busy, err := testenv.TCPListening(port)
		if err != nil {
			return err
		}
		if busy {
			return fmt.Errorf("port 127.0.0.1:%d is already in use; the cluster needs %v", port, ports)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	st := &state{Started: time.Now().UTC()}
	var stops []func() error // in start order; undone in reverse on failure
	defer func() {
		if err == nil {
			return
		}
		for i := len(stops) - 1; i >= 0; i-- {
			if serr := stops[i](); serr != nil {
				fmt.Fprintln(os.Stderr, "cluster: cleanup:", serr)
			}
		}
		_ = os.Remove(statePath(dir))
	}()

	fmt.Fprintln(out, "cluster: starting mariadb")
	// testenv's server options: InnoDB writes its redo log at each commit
	// and fsyncs it once a second (innodb_flush_log_at_trx_commit=2), so an
	// acknowledged message survives a crash of mariadbd or of a chatserver,
	// not a power loss, like the one-node SQLite store (WAL, synchronous=
	// NORMAL); no binary log; a thread pool. See internal/testenv/mariadb.go.
	db, err := testenv.StartMariaDBWith(ctx, filepath.Join(dir, "mariadb"), testenv.MariaDBOptions{Detach: true})
	if err != nil {
		return err
	}
	stops = append(stops, db.Stop)
	if err := db.CreateDatabase(ctx, database); err != nil {
		return err
	}
	st.Services = append(st.Services, service{Name: "mariadb", Pid: db.Pid(), Exe: exeName(db.Pid(), "mariadbd"), Addr: db.Addr(), Log: filepath.Join(db.Dir, "mariadbd.err"), Cmd: commandOf(db.Process())})

	fmt.Fprintln(out, "cluster: starting redis")
	rds, err := testenv.StartRedisWith(ctx, filepath.Join(dir, "redis"), testenv.RedisOptions{Detach: true})
	if err != nil {
		return err
	}
	stops = append(stops, rds.Stop)
	st.Services = append(st.Services, service{Name: "redis", Pid: rds.Pid(), Exe: exeName(rds.Pid(), "redis-server"), Addr: rds.Addr(), Log: filepath.Join(rds.Dir, "redis.log"), Cmd: commandOf(rds.Process())})

	for _, n := range nodes {
		fmt.Fprintf(out, "cluster: starting chatserver %s\n", n.name)
		p, svc, err := startServer(ctx, dir, bin, n, db.StoreURL(database), rds.URL(), cfg.serverArgs)
		if err != nil {
			return err
		}
		stops = append(stops, p.Stop)
		st.Services = append(st.Services, svc)
	}

	fmt.Fprintln(out, "cluster: starting nginx")
	var ups []string
	for _, n := range nodes {
		ups = append(ups, fmt.Sprintf("127.0.0.1:%d", n.port))
	}
	ngx, err := testenv.StartNginx(ctx, filepath.Join(dir, "nginx"), testenv.NginxConfig{
		Listen:        cfg.nginxPort,
		Upstreams:     ups,
		ProxyProtocol: true,
		Detach:        true,
	})
	if err != nil {
		return err
	}
	stops = append(stops, ngx.Stop)
	pids := ngx.Pids()
	st.Services = append(st.Services, service{Name: "nginx", Pid: pids[0], Exe: exeName(pids[0], "nginx"), Addr: ngx.Addr(), Log: filepath.Join(ngx.Dir, "error.log"), Children: pids[1:], Cmd: commandOf(ngx.Process())})

	if err := writeState(dir, st); err != nil {
		return err
	}
	rel := func(p string) string {
		if wd, err := os.Getwd(); err == nil {
			if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
				return r
			}
		}
		return p
	}
	fmt.Fprintf(out, "\nClusterChat cluster is up (state in %s):\n", rel(dir))
	for _, s := range st.Services {
		extra := ""
		switch s.Name {
		case "mariadb":
			extra = fmt.Sprintf("database %s: mariadb --no-defaults -h127.0.0.1 -P%d -uroot %s", database, db.Port, database)
		case "nginx":
			extra = "stream -> " + strings.Join(ups, ", ") + " (least_conn, PROXY protocol)"
		default:
			for _, n := range nodes {
				if n.name == s.Name {
					extra = fmt.Sprintf("admin http://127.0.0.1:%d/healthz", n.admin)
				}
			}
		}
		fmt.Fprintf(out, "  %-8s %-16s pid %-7d log %s\n", s.Name, s.Addr, s.Pid, rel(s.Log))
		if extra != "" {
			fmt.Fprintf(out, "  %-8s %s\n", "", extra)
		}
	}
	fmt.Fprintf(out, "\nConnect: bin/chatclient --addr 127.0.0.1:%d\nStop:    make cluster-down\n", cfg.nginxPort)
	return nil
}

// startServer starts one detached chatserver and waits until its admin
// /healthz answers 200 and its port listens.
func startServer(ctx context.Context, dir, bin string, n node, store, busURL string, extra []string) (*testenv.Process, service, error) {
	ndir := filepath.Join(dir, n.name)
	if err := os.MkdirAll(ndir, 0o755); err != nil {
		return nil, service{}, fmt.Errorf("%s dir: %w", n.name, err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", n.port)
	admin := fmt.Sprintf("127.0.0.1:%d", n.admin)
	args := []string{
		"--node", n.name,
		"--listen", listen,
		"--store", store,
		"--bus", busURL,
		"--proxy-protocol",
		"--admin", admin,
	}
	args = append(args, extra...)
	logFile := filepath.Join(ndir, "chatserver.log")
	p, err := testenv.StartProcess(testenv.ProcessSpec{
		Name:        "chatserver " + n.name,
		Path:        bin,
		Args:        args,
		Dir:         ndir,
		LogFile:     logFile,
		Detach:      true,
		StopTimeout: 15 * time.Second,
	})
	if err != nil {
		return nil, service{}, err
	}
	client := &http.Client{Timeout: time.Second}
	err = p.WaitReady(ctx, func(ctx context.Context) error {
		if ok, err := testenv.TCPListening(n.port); err != nil || !ok {
			return fmt.Errorf("port %d not listening yet (%v)", n.port, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz answered %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		_ = p.Stop()
		return nil, service{}, fmt.Errorf("chatserver %s: %w", n.name, err)
	}
	return p, service{Name: n.name, Pid: p.Pid(), Exe: exeName(p.Pid(), "chatserver"), Addr: listen, Log: logFile, Cmd: commandOf(p)}, nil
}

func down(ctx context.Context, out io.Writer, dir string) error {
	st, err := readState(dir)
	if err != nil {
		return err
	}
	if st == nil {
		fmt.Fprintf(out, "cluster: nothing to stop (no %s)\n", statePath(dir))
		return nil
	}
	var errs []error
	for i := len(st.Services) - 1; i >= 0; i-- {
		s := st.Services[i]
		if !testenv.PidAlive(s.Pid, s.Exe) {
			fmt.Fprintf(out, "cluster: %s (pid %d) was not running\n", s.Name, s.Pid)
			continue
		}
		fmt.Fprintf(out, "cluster: stopping %s (pid %d)\n", s.Name, s.Pid)
		timeout := 20 * time.Second
		if s.Name == "mariadb" {
			timeout = 60 * time.Second
		}
		if err := testenv.StopPid(ctx, s.Pid, s.Exe, syscall.SIGTERM, timeout); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", s.Name, err))
		}
		for _, c := range s.Children { // nginx workers end with their master
			if err := testenv.StopPid(ctx, c, s.Exe, syscall.SIGTERM, 5*time.Second); err != nil {
				errs = append(errs, fmt.Errorf("stop %s worker: %w", s.Name, err))
			}
		}
	}
	if live := alive(st); len(live) > 0 {
		errs = append(errs, fmt.Errorf("still running: %s", strings.Join(live, ", ")))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, s := range st.Services {
		_ = os.Remove(filepath.Join(dir, s.Name+".pid"))
	}
	if err := os.Remove(statePath(dir)); err != nil {
		return fmt.Errorf("remove state: %w", err)
	}
	fmt.Fprintln(out, "cluster: stopped; nothing left running (logs and data kept in", dir+")")
	return nil
}

func status(out io.Writer, dir string) error {
	st, err := readState(dir)
	if err != nil {
		return err
	}
	if st == nil {
		fmt.Fprintln(out, "cluster: not running (no state)")
		return nil
	}
	down := 0
	for _, s := range st.Services {
		state := "running"
		if !testenv.PidAlive(s.Pid, s.Exe) {
			state = "DOWN"
			down++
		}
		fmt.Fprintf(out, "  %-8s %-16s pid %-7d %s\n", s.Name, s.Addr, s.Pid, state)
	}
	if down > 0 {
		return fmt.Errorf("%d of %d processes are down", down, len(st.Services))
	}
	return nil
}

// one stops, kills or starts the service called name.
func one(ctx context.Context, out io.Writer, dir, cmd, name string) error {
	st, err := readState(dir)
	if err != nil {
		return err
	}
	if st == nil {
		return fmt.Errorf("no cluster state in %s (run `make cluster`)", dir)
	}
	i := -1
	var names []string
	for j, s := range st.Services {
		names = append(names, s.Name)
		if s.Name == name {
			i = j
		}
	}
	if i < 0 {
		return fmt.Errorf("no service %q (have %s)", name, strings.Join(names, ", "))
	}
	s := &st.Services[i]
	running := testenv.PidAlive(s.Pid, s.Exe)
	switch cmd {
	case "stop", "kill":
		if !running {
			fmt.Fprintf(out, "cluster: %s (pid %d) is not running\n", s.Name, s.Pid)
			return nil
		}
		sig := syscall.SIGTERM
		if cmd == "kill" {
			sig = syscall.SIGKILL
		}
		if err := testenv.StopPid(ctx, s.Pid, s.Exe, sig, 60*time.Second); err != nil {
			return err
		}
		for _, c := range s.Children {
			if err := testenv.StopPid(ctx, c, s.Exe, syscall.SIGKILL, 5*time.Second); err != nil {
				return err
			}
		}
		fmt.Fprintf(out, "cluster: %s (pid %d) %s\n", s.Name, s.Pid, map[string]string{"stop": "stopped", "kill": "killed"}[cmd])
		return nil
	}
	if running {
		return fmt.Errorf("%s is already running (pid %d)", s.Name, s.Pid)
	}
	if s.Cmd.Path == "" {
		return fmt.Errorf("%s: no command line recorded", s.Name)
	}
	_, portStr, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return fmt.Errorf("%s: address %q: %w", s.Name, s.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("%s: address %q: %w", s.Name, s.Addr, err)
	}
	p, err := testenv.StartProcess(testenv.ProcessSpec{
		Name: s.Name, Path: s.Cmd.Path, Args: s.Cmd.Args, Dir: s.Cmd.Dir, LogFile: s.Cmd.LogFile, Detach: true,
	})
	if err != nil {
		return err
	}
	workers := len(s.Children)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = p.WaitReady(ctx, func(ctx context.Context) error {
		if ok, err := testenv.TCPListening(port); err != nil || !ok {
			return fmt.Errorf("port %d not listening yet (%v)", port, err)
		}
		if k := len(testenv.ChildPids(p.Pid())); k < workers {
			return fmt.Errorf("%d of %d workers running", k, workers)
		}
		if s.Name == "mariadb" { // listening is not ready: a query must answer
			return pingMySQL(ctx, s.Addr)
		}
		return nil
	})
	if err != nil {
		_ = p.Stop()
		return err
	}
	s.Pid = p.Pid()
	s.Exe = exeName(p.Pid(), s.Exe)
	if workers > 0 {
		s.Children = testenv.ChildPids(p.Pid())
	}
	if err := writeState(dir, st); err != nil {
		return err
	}
	fmt.Fprintf(out, "cluster: %s started (pid %d)\n", s.Name, s.Pid)
	return nil
}

// pingMySQL runs SELECT 1 on a fresh connection to addr as root.
func pingMySQL(ctx context.Context, addr string) error {
	db, err := sql.Open("mysql", "root@tcp("+addr+")/?timeout=1s")
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer db.Close()
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("SELECT 1: %w", err)
	}
	return nil
}
