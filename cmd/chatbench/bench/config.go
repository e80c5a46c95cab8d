package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Scenarios.
const (
	ScenarioPairs = "pairs" // N friend pairs, one sender each
	ScenarioGroup = "group" // N groups of G members, one sender each
	ScenarioConns = "conns" // N logged-in idle connections
	ScenarioStorm = "storm" // N token reconnects at once
)

// ErrUsage marks a bad command line (exit status 2).
var ErrUsage = errors.New("chatbench: usage")

// Config is one chatbench run. The zero value is not valid: use
// DefaultConfig or ParseFlags.
type Config struct {
	Scenario  string
	Addrs     []string      // users are spread round-robin over these
	Duration  time.Duration // sending (pairs, group) or holding (conns) time
	Rate      float64       // messages per second per sender; 0: as fast as the in-flight window allows
	Pairs     int
	GroupSize int
	Groups    int
	Conns     int
	Storm     int
	InFlight  int           // outstanding sends per sender connection
	MsgSize   int           // bytes of message text
	Grace     time.Duration // wait for deliveries after the last ack
	Timeout   time.Duration // per request
	SetupConc int           // connections set up at once
	PingEvery time.Duration // conns: each connection PINGs this often
	Settle    time.Duration // storm: pause between disconnecting and the storm
	PIDs      []int         // server processes to sample (RSS, CPU)
	JSON      bool          // final JSON line on stdout
	Password  string
	Prefix    string // user name prefix; "" → b<random>
	Quiet     bool   // no progress lines
	// ProxyProtocol sends a PROXY protocol v1 header on every connection,
	// to reach cluster servers (started with --proxy-protocol) directly
	// rather than through nginx, so that pairs surely cross servers.
	ProxyProtocol bool
	// PprofAddrs are admin addresses (HOST:PORT) of servers to CPU-profile
	// during the measured phase; PprofSeconds long (capped to the phase),
	// starting PprofDelay into it; the profiles go to PprofDir.
	PprofAddrs   []string
	PprofSeconds int
	PprofDelay   time.Duration
	PprofDir     string
	CPUProfile   string // chatbench's own CPU profile (whole run)
	// UsersFile (conns, storm): reuse the users and tokens saved there by an
	// earlier run against the same database, or save them there; with
	// SetupOnly the run ends after that. So the server can be restarted
	// between registering and measuring (a fresh process for RSS figures).
	UsersFile string
	SetupOnly bool

	// goroutineReaders: traffic connections are read by a goroutine each
	// (the path of systems without epoll), for tests.
	goroutineReaders bool
}

// DefaultConfig returns the defaults of the flags.
func DefaultConfig() Config {
	return Config{
		Scenario:  ScenarioPairs,
		Addrs:     []string{"127.0.0.1:8000"},
		Duration:  10 * time.Second,
		Rate:      50,
		Pairs:     100,
		GroupSize: 500,
		Groups:    2,
		Conns:     1000,
		Storm:     1000,
		InFlight:  32,
		MsgSize:   64,
		Grace:     3 * time.Second,
		Timeout:   10 * time.Second,
		SetupConc: 64,
		PingEvery: 30 * time.Second,
		Settle:    2 * time.Second,
		Password:  "benchpass",
	}
}

// ParseFlags parses chatbench's command line. Errors wrap ErrUsage.
func ParseFlags(args []string, stderr io.Writer) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("chatbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: chatbench --scenario pairs|group|conns|storm [flags]\n\n")
		fs.PrintDefaults()
	}
	addrs := fs.String("addr", strings.Join(c.Addrs, ","), "server `addresses` HOST:PORT, comma-separated; users are spread round-robin (pairs cross servers)")
	pprofs := fs.String("pprof", "", "admin `addresses` HOST:PORT of servers to CPU-profile during the measured phase (comma-separated)")
	fs.IntVar(&c.PprofSeconds, "pprof-seconds", 10, "length of the server CPU profiles (capped to the measured phase)")
	fs.DurationVar(&c.PprofDelay, "pprof-delay", time.Second, "start the server profiles this far into the measured phase")
	fs.StringVar(&c.PprofDir, "pprof-dir", ".", "directory for the server profiles (SCENARIO-HOST_PORT.pprof)")
	fs.StringVar(&c.UsersFile, "users", "", "conns, storm: reuse the users and tokens in this `file` (from an earlier run on the same database), or save them there")
	fs.BoolVar(&c.SetupOnly, "setup-only", false, "conns, storm: register the users (and save them with --users), then stop")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write chatbench's own CPU profile to this `file`")
	pids := fs.String("server-pid", "", "server `pids`, comma-separated: report their RSS (VmRSS) and CPU time")
	fs.StringVar(&c.Scenario, "scenario", c.Scenario, "pairs | group | conns | storm")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "how long to send (pairs, group) or to hold the connections (conns)")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "messages per second per sender (0: unpaced, limited by --inflight)")
	fs.IntVar(&c.Pairs, "pairs", c.Pairs, "pairs: number of friend pairs (one sender each)")
	fs.IntVar(&c.GroupSize, "group-size", c.GroupSize, "group: members per group (one of them sends)")
	fs.IntVar(&c.Groups, "groups", c.Groups, "group: number of groups")
	fs.IntVar(&c.Conns, "conns", c.Conns, "conns: logged-in idle connections to hold")
	fs.IntVar(&c.Storm, "storm", c.Storm, "storm: clients that reconnect with their tokens at once")
	fs.IntVar(&c.InFlight, "inflight", c.InFlight, "outstanding sends per sender connection (a slow server shows as latency)")
	fs.IntVar(&c.MsgSize, "msg-size", c.MsgSize, "bytes of message text (1-4096)")
	fs.DurationVar(&c.Grace, "grace", c.Grace, "after the last ack, wait this long at most for deliveries before counting losses")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "per-request timeout")
	fs.IntVar(&c.SetupConc, "setup-conc", c.SetupConc, "connections registered and logged in at once during setup")
	fs.DurationVar(&c.PingEvery, "ping-every", c.PingEvery, "conns: every connection PINGs this often (spread evenly)")
	fs.DurationVar(&c.Settle, "settle", c.Settle, "storm: pause between disconnecting all clients and the storm")
	fs.BoolVar(&c.JSON, "json", false, "print the report as one JSON line on stdout (the human summary goes to stderr)")
	fs.StringVar(&c.Password, "password", c.Password, "password of the benchmark users")
	fs.StringVar(&c.Prefix, "prefix", "", "user name prefix (default b<random>; names are PREFIX_i)")
	fs.BoolVar(&c.Quiet, "quiet", false, "no progress line every second")
	fs.BoolVar(&c.ProxyProtocol, "proxy-protocol", false, "send a PROXY v1 header first (to reach servers started with --proxy-protocol directly, bypassing nginx)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	c.Addrs = nil
	for _, a := range strings.Split(*addrs, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return c, fmt.Errorf("%w: --addr %q: %w", ErrUsage, a, err)
		}
		c.Addrs = append(c.Addrs, a)
	}
	for _, a := range strings.Split(*pprofs, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return c, fmt.Errorf("%w: --pprof %q: %w", ErrUsage, a, err)
		}
		c.PprofAddrs = append(c.PprofAddrs, a)
	}
	if *pids != "" {
		for _, p := range strings.Split(*pids, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil || n <= 0 {
				return c, fmt.Errorf("%w: --server-pid %q is not a process id", ErrUsage, p)
			}
			c.PIDs = append(c.PIDs, n)
		}
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// Validate checks a Config. Errors wrap ErrUsage.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, a...))
	}
	switch c.Scenario {
	case ScenarioPairs:
		if c.Pairs < 1 {
			return bad("--pairs must be at least 1")
		}
	case ScenarioGroup:
		if c.GroupSize < 2 || c.Groups < 1 {
			return bad("--group-size must be at least 2 and --groups at least 1")
		}
	case ScenarioConns:
		if c.Conns < 1 {
			return bad("--conns must be at least 1")
		}
		if c.PingEvery <= 0 {
			return bad("--ping-every must be positive")
		}
	case ScenarioStorm:
		if c.Storm < 1 {
			return bad("--storm must be at least 1")
		}
	default:
		return bad("--scenario %q: want pairs, group, conns or storm", c.Scenario)
	}
	switch {
	case len(c.Addrs) == 0:
		return bad("--addr: no address")
	case c.Duration <= 0:
		return bad("--duration must be positive")
	case c.Rate < 0:
		return bad("--rate must not be negative")
	case c.InFlight < 1:
		return bad("--inflight must be at least 1")
	case c.MsgSize < 1 || c.MsgSize > 4096:
		return bad("--msg-size must be 1-4096")
	case c.Grace < 0 || c.Timeout <= 0:
		return bad("--grace must not be negative and --timeout must be positive")
	case c.SetupConc < 1:
		return bad("--setup-conc must be at least 1")
	case len(c.Password) < 8 || len(c.Password) > 72:
		return bad("--password must be 8-72 bytes")
	case len(c.PprofAddrs) > 0 && (c.PprofSeconds < 1 || c.PprofDelay < 0):
		return bad("--pprof-seconds must be at least 1 and --pprof-delay not negative")
	case (c.UsersFile != "" || c.SetupOnly) && c.Scenario != ScenarioConns && c.Scenario != ScenarioStorm:
		return bad("--users and --setup-only are for the conns and storm scenarios")
	case len(c.Prefix) > 20:
		return bad("--prefix must be at most 20 bytes (names are at most 32)")
	}
	return nil
}
