package netcore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// DefaultLoops is the number of event loops of a server whose
// Options.Loops is 0: one per CPU.
func DefaultLoops() int { return runtime.NumCPU() }

// Options configures a Server. Callbacks run on the connection's event
// loop: they must not block (hand blocking work to an Executor), and they
// are called one at a time per connection.
type Options struct {
	// Addr is the listen address, "host:port" without scheme (port 0 picks
	// a free port; see Server.Addr). Required.
	Addr string
	// Loops is the number of event loops; default DefaultLoops(). Each
	// loop waits in a blocking epoll_wait(2), which keeps its P until the
	// runtime's sysmon takes it back, so that with GOMAXPROCS = cores the
	// idle loops can hold every P and whatever becomes runnable waits for
	// sysmon: replies from the runtime's network poller (database or Redis
	// clients), workers woken by another goroutine, timers. Run with
	// GOMAXPROCS of at least the cores plus Loops (cmd/chatserver's
	// --procs auto does this).
	Loops int
	// NewCodec makes each connection's codec; default
	// NewLengthFieldCodec(MaxFrame).
	NewCodec func() Codec
	// MaxFrame bounds the default codec's frames; default 65536.
	MaxFrame int
	// IdleTimeout closes connections that sent no complete frame for this long, for
	// ReasonIdle, without a message. 0 disables it.
	IdleTimeout time.Duration
	// HighWater is the most unsent output, in bytes, a connection may have:
	// passing it calls OnHighWater and closes the connection for
	// ReasonHighWater. 0 disables it (gnet then buffers without limit).
	HighWater int
	// ProxyProtocol expects a PROXY protocol v1 or v2 header first on every
	// connection; OnConnect fires once it was read and Conn.RemoteAddr then
	// returns the client address it names. A bad header closes the
	// connection for ReasonProtocol.
	ProxyProtocol bool
	// ProxyHeaderTimeout closes a connection whose PROXY header is not
	// complete after this long (ReasonProtocol); default 10s. Only with
	// ProxyProtocol.
	ProxyHeaderTimeout time.Duration
	// Logger receives netcore's and gnet's logs; default slog.Default().
	Logger *slog.Logger

	// OnConnect: a connection is up. Loop.
	OnConnect func(c *Conn)
	// OnDisconnect: a connection is closed; called exactly once for every
	// connection that got OnConnect. err is the I/O error, if any. Loop.
	OnDisconnect func(c *Conn, reason CloseReason, err error)
	// OnMessage: one decoded frame; frame is a copy owned by the callee.
	// Loop.
	OnMessage func(c *Conn, frame []byte)
	// OnFrameError: the codec rejected the input (errors.Is ErrFrameEmpty,
	// ErrFrameTooLarge, ErrLineTooLong ...). The callback may Send a last
	// frame; then the connection is flushed (briefly) and closed for
	// ReasonProtocol, without reading the rest of the input. Loop.
	OnFrameError func(c *Conn, err error)
	// OnWriteComplete: all output handed to the connection so far has been
	// written to the socket. Loop.
	OnWriteComplete func(c *Conn)
	// OnHighWater: unsent output reached buffered bytes (> HighWater); the
	// connection is closed right after. Loop.
	OnHighWater func(c *Conn, buffered int)
	// OnShutdown: Server.Shutdown is about to drain and close c; new
	// connections are already refused. The callback may Send a last frame
	// (a "going away" notice). Called from Shutdown's goroutine.
	OnShutdown func(c *Conn)
}

// Server is a TCP server running on gnet event loops.
type Server struct {
	opts Options
	log  *slog.Logger
	h    *handler

	mu      sync.Mutex
	conns   *Conn // open connections: a list through Conn.prev/next
	nconns  int
	loops   map[gnet.EventLoop]*loop
	started bool
	closing bool
	eng     gnet.Engine
	addr    net.Addr

	nextID  atomic.Uint64
	booted  chan struct{}
	runDone chan struct{}
	runErr  error
	stopped chan struct{}
	bufPool sync.Pool
}

// NewServer validates opts and returns a Server that is not yet listening.
// Any goroutine.
func NewServer(opts Options) (*Server, error) {
	if opts.Addr == "" {
		return nil, errors.New("netcore: Options.Addr is required")
	}
	if strings.Contains(opts.Addr, "://") {
		return nil, fmt.Errorf("netcore: Options.Addr %q must be host:port without scheme", opts.Addr)
	}
	if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
		return nil, fmt.Errorf("netcore: Options.Addr %q: %w", opts.Addr, err)
	}
	if opts.Loops <= 0 {
		opts.Loops = DefaultLoops()
	}
	if opts.MaxFrame <= 0 {
		opts.MaxFrame = DefaultMaxFrame
	}
	if opts.NewCodec == nil {
		// The length-field codec is stateless: one for all connections.
		codec := NewLengthFieldCodec(opts.MaxFrame)
		opts.NewCodec = func() Codec { return codec }
	}
	if opts.IdleTimeout < 0 || opts.HighWater < 0 {
		return nil, errors.New("netcore: IdleTimeout and HighWater must not be negative")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ProxyHeaderTimeout <= 0 {
		opts.ProxyHeaderTimeout = 10 * time.Second
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		loops:   make(map[gnet.EventLoop]*loop),
		booted:  make(chan struct{}),
		runDone: make(chan struct{}),
		stopped: make(chan struct{}),
	}
	s.h = &handler{s: s}
	s.bufPool.New = func() any { b := make([]byte, 0, 512); return &b }
	return s, nil
}

// Start starts the event loops and returns once the server is listening,
// or with the error that prevented it. Call it once. Any goroutine.
func (s *Server) Start() error {
	s.mu.Lock()
	if s.started || s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.started = true
	s.mu.Unlock()
	go func() {
		defer close(s.runDone)
		s.runErr = gnet.Run(s.h, "tcp://"+s.opts.Addr,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(s.opts.Loops),
			gnet.WithReuseAddr(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(gnetLogger{s.log}),
		)
	}()
	select {
	case <-s.booted:
		return nil
	case <-s.runDone:
		s.mu.Lock()
		// Nothing to shut down; a failed server cannot be started again.
		s.started, s.closing = false, true
		close(s.stopped)
		s.mu.Unlock()
		if s.runErr == nil {
			s.runErr = errors.New("engine exited")
		}
		return fmt.Errorf("netcore: listen on %s: %w", s.opts.Addr, s.runErr)
	}
}

// Addr returns the address the server listens on (the real port when
// Options.Addr had port 0), or nil before Start. Any goroutine.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Shutdown stops the server gracefully: new connections are refused
// (accepted and closed at once, counted as ReasonRejected), every open
// connection's pending output is flushed and its write side shut, each
// connection closes when its peer closes (or is forced closed when ctx
// ends), then the event loops stop. It returns ctx's error if connections
// had to be forced. Any goroutine except a loop callback.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		select {
		case <-s.stopped:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("netcore: shutdown: %w", ctx.Err())
		}
	}
	s.closing = true
	started := s.started
	snapshot := s.snapshotLocked()
	s.mu.Unlock()
	if !started {
		close(s.stopped)
		return nil
	}
	defer close(s.stopped)

	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	for _, c := range snapshot {
		if cb := s.opts.OnShutdown; cb != nil {
			cb(c) // new connections are refused by now; c.Send still works
		}
		c.ShutdownWith(ReasonShutdown, timeout)
	}
	var result error
	if err := s.waitConns(ctx); err != nil {
		result = fmt.Errorf("netcore: shutdown: connections forced closed: %w", err)
		s.mu.Lock()
		left := s.snapshotLocked() // including connections still reading a PROXY header
		s.mu.Unlock()
		for _, c := range left {
			c.ForceClose(ReasonShutdown)
		}
		grace, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.waitConns(grace)
		cancel()
	}

	// Engine.Stop polls every 500 ms; gnet.Run returns as soon as the
	// engine is down, so wait for that instead.
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stopErr := make(chan error, 1)
	go func() { stopErr <- s.eng.Stop(stopCtx) }()
	select {
	case err := <-stopErr:
		if err != nil && result == nil {
			result = fmt.Errorf("netcore: shutdown: stop engine: %w", err)
		}
	case <-s.runDone:
	}
	select {
	case <-s.runDone:
	case <-stopCtx.Done():
		if result == nil {
			result = fmt.Errorf("netcore: shutdown: engine did not exit: %w", stopCtx.Err())
		}
	}
	s.mu.Lock()
	for _, l := range s.loops {
		close(l.done) // stop the drivers; the counters stay for Stats
	}
	s.mu.Unlock()
	return result
}

// waitConns polls until no connection is left or ctx ends.
func (s *Server) waitConns(ctx context.Context) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		n := s.nconns
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Range calls fn for each open connection (OnConnect done) until fn
// returns false. It iterates over a snapshot, so fn may close connections.
// Any goroutine.
func (s *Server) Range(fn func(c *Conn) bool) {
	s.mu.Lock()
	snapshot := s.snapshotLocked()
	s.mu.Unlock()
	for _, c := range snapshot {
		if c.flags.Load()&flagConnected != 0 && !fn(c) {
			return
		}
	}
}

// Stats returns a snapshot of the server's counters. Any goroutine.
func (s *Server) Stats() Stats {
	st := Stats{Closes: make(map[CloseReason]uint64, numReasons)}
	for _, r := range Reasons() {
		st.Closes[r] = 0
	}
	s.mu.Lock()
	st.Conns = int64(s.nconns)
	loops := make([]*loop, 0, len(s.loops))
	for _, l := range s.loops {
		loops = append(loops, l)
	}
	s.mu.Unlock()
	for _, l := range loops {
		st.add(&l.stats)
	}
	return st
}

// snapshotLocked copies the connection set; s.mu must be held.
func (s *Server) snapshotLocked() []*Conn {
	snapshot := make([]*Conn, 0, s.nconns)
	for c := s.conns; c != nil; c = c.next {
		snapshot = append(snapshot, c)
	}
	return snapshot
}

// addConnLocked puts c on the server's list; s.mu must be held.
func (s *Server) addConnLocked(c *Conn) {
	c.next = s.conns
	if c.next != nil {
		c.next.prev = c
	}
	s.conns = c
	s.nconns++
}

// removeConn takes c off the server's list, if it is on it.
func (s *Server) removeConn(c *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.prev == nil && s.conns != c {
		return // never added (rejected) or already removed
	}
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		s.conns = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
	s.nconns--
}

func (s *Server) getBuf() *[]byte { return s.bufPool.Get().(*[]byte) }

func (s *Server) putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	*b = (*b)[:0]
	s.bufPool.Put(b)
}

// loopFor returns netcore's state for a gnet loop, creating it on first use.
func (s *Server) loopFor(el gnet.EventLoop) *loop {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loops[el]
	if l == nil {
		l = newLoop(s, el)
		s.loops[el] = l
		go l.drive()
	}
	return l
}

// handler implements gnet.EventHandler; it is separate from Server to keep
// gnet's methods out of netcore's API.
type handler struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	s := h.s
	var addr net.Addr
	if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			switch sa := sa.(type) {
			case *unix.SockaddrInet4:
				addr = &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
			case *unix.SockaddrInet6:
				addr = &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
			}
		}
		_ = unix.Close(fd)
	}
	s.mu.Lock()
	s.eng = eng
	s.addr = addr
	s.mu.Unlock()
	close(s.booted)
	return gnet.None
}

func (h *handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s := h.s
	l := s.loopFor(gc.EventLoop())
	c := &Conn{
		id:     s.nextID.Add(1),
		loop:   l,
		gc:     gc,
		codec:  s.opts.NewCodec(),
		remote: gc.RemoteAddr(),
	}
	gc.SetContext(c)
	l.stats.accepted.Add(1)

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		c.setReason(ReasonRejected)
		return nil, gnet.Close
	}
	s.addConnLocked(c)
	s.mu.Unlock()

	if l.wheel != nil {
		l.wheel.add(c)
	}
	if s.opts.ProxyProtocol {
		c.proxyPending = true
		t := c.RunAfter(s.opts.ProxyHeaderTimeout, func() {
			if c.proxyPending {
				s.log.Debug("netcore: PROXY header timeout", "conn", c.id, "remote", c.RemoteAddr())
				c.closeOnLoop(ReasonProtocol)
			}
		})
		c.mu.Lock()
		if c.extra != nil && !c.closed {
			c.extra.proxyTimer = t
		}
		c.mu.Unlock()
		return nil, gnet.None
	}
	c.inTraffic = true
	c.connect()
	c.inTraffic = false
	if c.wantClose {
		return nil, gnet.Close
	}
	return nil, gnet.None
}

func (h *handler) OnClose(gc gnet.Conn, err error) gnet.Action {
	if c, ok := gc.Context().(*Conn); ok {
		c.onClose(err)
	}
	return gnet.None
}

func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*Conn)
	if !ok {
		return gnet.Close
	}
	return c.onTraffic()
}
