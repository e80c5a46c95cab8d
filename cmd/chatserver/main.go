// Command chatserver runs one ClusterChat server.
//
//	chatserver [--listen 127.0.0.1:8000] [--store sqlite:chat.db | mysql://USER:PASS@tcp(HOST:PORT)/DB]
//	           [--bus memory | redis://HOST:PORT/DB] [--node NAME] [--admin HOST:PORT] [--config FILE]
//	           [--max-frame N] [--idle-timeout 90s] [--high-water N] [--msg-rate N] [--msg-burst N]
//	           [--bcrypt-cost N] [--proxy-protocol] [--gc-percent auto|off|N] [--memory-limit BYTES]
//	           [--procs auto|N]
//
// Settings come from flags, then CHAT_* environment variables, then the
// YAML config file (a flag beats the environment, which beats the file).
// SIGTERM or SIGINT: answer the requests already received, stop accepting,
// push GOAWAY, flush, exit 0 within 10 s.
//
// GC: --gc-percent auto (the default unless GOGC is set) lowers GOGC from
// 100 at 8 MiB of live heap to 50 at 16 MiB and above, so that many idle
// connections do not cost twice their live heap in RSS (see gc.go).
// --procs auto (the default unless GOMAXPROCS is set) runs GOMAXPROCS at
// the cores plus one per event loop, because an idle loop waits in
// epoll_wait holding one, and the database's and Redis's replies, the
// store writer and the workers need one (see procs.go).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"clusterchat/bus"
	"clusterchat/bus/memory"
	redisbus "clusterchat/bus/redis"
	"clusterchat/chatservice"
	"clusterchat/model"
	"clusterchat/model/mysql"
	"clusterchat/model/sqlite"
	"clusterchat/netcore"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "chatserver:", err)
		os.Exit(1)
	}
}

// settings are the run contract of PROTOCOL.md §7: flag name → config key.
var settings = []struct {
	flag, key, def, help string
}{
	{"listen", "listen", "127.0.0.1:8000", "address to listen on (HOST:PORT)"},
	{"store", "store", "sqlite:chat.db", "store: sqlite:PATH or mysql://USER:PASS@tcp(HOST:PORT)/DB"},
	{"bus", "bus", "memory", "bus: memory (one node) or redis://HOST:PORT/DB"},
	{"node", "node", "", "this server's unique name in a cluster (default: the host name and listen port)"},
	{"admin", "admin", "", "HTTP address for /healthz, /metrics and /debug/pprof (off when empty)"},
	{"max-frame", "limits.max_frame", "65536", "largest frame body in bytes"},
	{"idle-timeout", "limits.idle_timeout", "90s", "close a connection silent for this long"},
	{"high-water", "limits.high_water", "4194304", "close a connection whose unsent output exceeds this many bytes"},
	{"msg-rate", "limits.msg_rate", "100", "requests per second per connection (0: no limit)"},
	{"msg-burst", "limits.msg_burst", "200", "request burst per connection (0: no limit)"},
	{"bcrypt-cost", "auth.bcrypt_cost", "10", "bcrypt cost of password hashes (4 for tests and benchmarks)"},
	{"log-level", "log.level", "info", "log level: debug, info, warn, error"},
	{"gc-percent", "runtime.gc_percent", "", "GOGC: auto (headroom half the live heap, at least 8 MiB), off, or a percentage (default: $GOGC if set, else auto)"},
	{"memory-limit", "runtime.memory_limit", "", "soft memory limit, bytes or with KiB/MiB/GiB (as GOMEMLIMIT; default: none beyond $GOMEMLIMIT)"},
	{"procs", "runtime.procs", "", "GOMAXPROCS: auto (the cores plus one per event loop, as each loop's epoll_wait holds one) or a number (default: $GOMAXPROCS if set, else auto)"},
}

func run(args []string) error {
	fs := pflag.NewFlagSet("chatserver", pflag.ContinueOnError)
	for _, s := range settings {
		fs.String(s.flag, s.def, s.help)
	}
	fs.Bool("proxy-protocol", false, "expect a PROXY protocol header on every connection (behind nginx)")
	configFile := fs.String("config", "", "YAML config file (keys as in the flags' descriptions: listen, limits.max_frame, ...)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	v := viper.New()
	for _, s := range settings {
		if err := v.BindPFlag(s.key, fs.Lookup(s.flag)); err != nil {
			return fmt.Errorf("bind flag %s: %w", s.flag, err)
		}
	}
	if err := v.BindPFlag("proxy_protocol", fs.Lookup("proxy-protocol")); err != nil {
		return fmt.Errorf("bind flag proxy-protocol: %w", err)
	}
	v.SetEnvPrefix("CHAT")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if *configFile != "" {
		v.SetConfigFile(*configFile)
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("read config %s: %w", *configFile, err)
		}
	}

	log, err := newLogger(v.GetString("log.level"))
	if err != nil {
		return err
	}
	idle, err := time.ParseDuration(v.GetString("limits.idle_timeout"))
	if err != nil {
		return fmt.Errorf("limits.idle_timeout: %w", err)
	}
	ints := map[string]int{}
	for key, min := range map[string]int{"limits.max_frame": 1, "limits.high_water": 1, "limits.msg_rate": 0, "limits.msg_burst": 0, "auth.bcrypt_cost": 4} {
		n, err := strconv.Atoi(strings.TrimSpace(v.GetString(key)))
		if err != nil || n < min {
			return fmt.Errorf("%s = %q: want an integer >= %d", key, v.GetString(key), min)
		}
		ints[key] = n
	}
	cfg := chatservice.Config{
		Listen:        v.GetString("listen"),
		Node:          v.GetString("node"),
		MaxFrame:      ints["limits.max_frame"],
		IdleTimeout:   idle,
		HighWater:     ints["limits.high_water"],
		MsgRate:       offIfZero(ints["limits.msg_rate"]),
		MsgBurst:      offIfZero(ints["limits.msg_burst"]),
		BcryptCost:    ints["auth.bcrypt_cost"],
		ProxyProtocol: v.GetBool("proxy_protocol"),
		// A SQLite file is this server's alone (it is not shared between
		// servers); a MySQL database may be.
		SoleServer: strings.HasPrefix(v.GetString("store"), "sqlite:"),
		Logger:     log,
	}
	if idle == 0 {
		cfg.IdleTimeout = -1
	}
	if cfg.Node == "" {
		host, _ := os.Hostname()
		cfg.Node = host + ":" + cfg.Listen
	}
	if idle < 0 {
		return fmt.Errorf("limits.idle_timeout %v: must not be negative", idle)
	}
	if cfg.BcryptCost > 31 {
		return fmt.Errorf("auth.bcrypt_cost %d: must be 4-31", cfg.BcryptCost)
	}

	gcp, gcSet, err := parseGCPolicy(v.GetString("runtime.gc_percent"))
	if err != nil {
		return err
	}
	memLimit, err := parseMemoryLimit(v.GetString("runtime.memory_limit"))
	if err != nil {
		return err
	}
	loops := cfg.Loops
	if loops <= 0 {
		loops = netcore.DefaultLoops()
	}
	procs, err := parseProcs(v.GetString("runtime.procs"), runtime.GOMAXPROCS(0), loops)
	if err != nil {
		return err
	}
	if procs > 0 {
		runtime.GOMAXPROCS(procs)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	applyGC(ctx, gcp, gcSet, memLimit, log)

	store, err := openStore(ctx, v.GetString("store"), log)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("closing store", "err", err)
		}
	}()
	busURL := v.GetString("bus")
	svc, err := chatservice.New(cfg, store, func(o bus.Options) (bus.Bus, error) { return openBus(ctx, busURL, o) })
	if err != nil {
		return err
	}
	if err := svc.Start(); err != nil {
		return err
	}
	log.Info("chatserver started", "node", cfg.Node, "listen", svc.Addr(), "store", redactDSN(v.GetString("store")), "bus", busURL, "gomaxprocs", runtime.GOMAXPROCS(0))

	var admin *http.Server
	if addr := v.GetString("admin"); addr != "" {
		if admin, err = startAdmin(addr, svc, log); err != nil {
			return err
		}
	}

	<-ctx.Done()
	log.Info("shutting down: answering the requests in flight, then GOAWAY to every connection")
	sctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := svc.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	if admin != nil {
		_ = admin.Shutdown(sctx)
	}
	log.Info("chatserver stopped")
	return nil
}

// offIfZero maps the run contract's "0 turns the limit off" to the
// service's negative "off".
func offIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log.level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func openStore(ctx context.Context, dsn string, log *slog.Logger) (model.Store, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		s, err := sqlite.Open(ctx, strings.TrimPrefix(dsn, "sqlite:"), sqlite.Options{})
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return s, nil
	case strings.HasPrefix(dsn, "mysql://"):
		s, err := mysql.Open(ctx, strings.TrimPrefix(dsn, "mysql://"), mysql.Options{})
		if err != nil {
			return nil, fmt.Errorf("open store %s: %w", redactDSN(dsn), err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("store %q: want sqlite:PATH or mysql://USER:PASS@tcp(HOST:PORT)/DB", redactDSN(dsn))
}

func openBus(ctx context.Context, url string, o bus.Options) (bus.Bus, error) {
	switch {
	case url == "memory":
		return memory.New(o), nil
	case strings.HasPrefix(url, "redis://"):
		b, err := redisbus.New(ctx, url, redisbus.Options{Options: o})
		if err != nil {
			return nil, fmt.Errorf("open bus %s: %w", url, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("bus %q: want memory or redis://HOST:PORT/DB", url)
}

// redactDSN hides a password in a DSN for logs.
func redactDSN(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	if at < 0 {
		return dsn
	}
	head := dsn[:at]
	if i := strings.LastIndex(head, ":"); i > strings.Index(head, "//")+1 && i >= 0 {
		return head[:i] + ":***" + dsn[at:]
	}
	return dsn
}

func startAdmin(addr string, svc *chatservice.Service, log *slog.Logger) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := svc.Ready(ctx); err != nil {
			http.Error(w, "store unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(svc.Metrics().Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server", "err", err)
		}
	}()
	log.Info("admin listening", "addr", ln.Addr().String())
	return srv, nil
}
