package netcore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Connection states, loop-owned.
const (
	stateOpen       = iota
	stateDraining   // Shutdown: waiting for output to drain
	stateHalfClosed // SHUT_WR sent: waiting for the peer's FIN or the timeout
	stateClosed
)

// protocolDrainTimeout bounds the flush before a protocol-error close.
const protocolDrainTimeout = 2 * time.Second

// Conn is one TCP connection of a Server. Methods say whether they are safe
// from any goroutine or only on the connection's loop (inside a callback or
// a timer function of this connection).
//
// A server may hold tens of thousands of idle connections, so the struct is
// kept small: state that few connections need (timers, a Done channel,
// AfterFunc registrations) lives in a connExtra allocated on first use, the
// connection context is the Conn itself (see connCtx), and the server's set
// of connections is a list threaded through the Conns.
type Conn struct {
	id   uint64
	loop *loop
	gc   gnet.Conn

	unsent   atomic.Int64 // gnet's outbound buffer as last seen on the loop
	flushing atomic.Int64 // bytes taken from out by a flush not yet reflected in unsent
	value    atomic.Pointer[any]
	flags    atomic.Uint32 // flagConnected, flagClosed, flagPaced

	// Guarded by mu. codec is written only on the loop (under mu), so the
	// loop reads it without mu.
	mu          sync.Mutex
	outFrames   int32
	out         *[]byte // encoded output not yet given to gnet
	codec       Codec
	remote      net.Addr
	extra       *connExtra // nil until needed
	reason      uint8      // a CloseReason, valid when reasonSet
	flushQueued bool       // a flush will run on the loop
	sendClosed  bool
	closed      bool // closed for good (Context done)
	reasonSet   bool

	// Loop-owned.
	state        uint8
	inTraffic    bool
	wantClose    bool
	proxyPending bool
	hwFired      bool
	leftover     int32 // inbound bytes already counted in bytesIn
	lastActive   int64

	// Server.mu: the server's list of connections.
	prev, next *Conn
}

// Conn.flags bits.
const (
	flagConnected = 1 << iota // OnConnect was called
	flagClosed                // closed for good (Context done)
	flagPaced                 // a WaitUnsent caller wants unsent kept fresh
)

// connExtra is the rarely needed part of a Conn, allocated on first use.
// Guarded by Conn.mu.
type connExtra struct {
	timers     map[*Timer]struct{}
	proxyTimer *Timer
	done       chan struct{} // the Context's Done channel
	afters     map[*afterFunc]struct{}
}

// extraLocked returns c.extra, allocating it. c.mu must be held.
func (c *Conn) extraLocked() *connExtra {
	if c.extra == nil {
		c.extra = &connExtra{}
	}
	return c.extra
}

func (c *Conn) srv() *Server { return c.loop.srv }

// inbound adapts a Conn's gnet.Conn to Inbound without a field of its own.
type inbound Conn

func (in *inbound) Buffered() int { return in.gc.InboundBuffered() }
func (in *inbound) Peek(n int) ([]byte, error) {
	b, err := in.gc.Peek(n)
	if err != nil {
		return nil, fmt.Errorf("netcore: peek %d bytes: %w", n, err)
	}
	return b, nil
}

// ID returns the connection's server-unique id (1, 2, ...). Any goroutine.
func (c *Conn) ID() uint64 { return c.id }

// RemoteAddr returns the peer's address; with Options.ProxyProtocol the
// client address from the PROXY header. Any goroutine.
func (c *Conn) RemoteAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remote
}

// SetValue attaches user data to the connection. Any goroutine.
func (c *Conn) SetValue(v any) { c.value.Store(&v) }

// Value returns the data set by SetValue, or nil. Any goroutine.
func (c *Conn) Value() any {
	if p := c.value.Load(); p != nil {
		return *p
	}
	return nil
}

// Context returns a context that is done (context.Canceled) when the
// connection closes. It allocates nothing until its Done channel is asked
// for. Any goroutine.
func (c *Conn) Context() context.Context { return (*connCtx)(c) }

// Send encodes frame with the connection's codec and queues it for
// writing. Any goroutine; the caller may reuse frame when Send returns.
// Frames sent from one goroutine are written in call order. Send returns
// ErrConnClosed once the connection is closed or shutting down, and the
// codec's error (ErrFrameTooLarge, ErrFrameEmpty, ErrBadLine, ...) for a
// frame it cannot encode. Send never blocks on the network: output beyond
// Options.HighWater closes the connection instead.
func (c *Conn) Send(frame []byte) error {
	c.mu.Lock()
	if c.sendClosed {
		c.mu.Unlock()
		c.loop.stats.dropped.Add(1)
		return fmt.Errorf("netcore: send on conn %d: %w", c.id, ErrConnClosed)
	}
	if c.out == nil {
		c.out = c.srv().getBuf()
	}
	if hw := c.srv().opts.HighWater; hw > 0 && len(*c.out)+len(frame) > hw {
		// Output queued faster than the loop hands it to gnet: the
		// connection is past the mark before gnet even sees it.
		queued := len(*c.out) + len(frame)
		c.sendClosed = true
		if !c.reasonSet {
			c.reason, c.reasonSet = uint8(ReasonHighWater), true
		}
		c.mu.Unlock()
		c.loop.stats.dropped.Add(1)
		_ = c.loop.exec(func() { c.highWater(queued) })
		return fmt.Errorf("netcore: send on conn %d: output past high-water mark: %w", c.id, ErrConnClosed)
	}
	b, err := c.codec.Encode(*c.out, frame)
	if err != nil {
		c.mu.Unlock()
		return fmt.Errorf("netcore: send on conn %d: %w", c.id, err)
	}
	*c.out = b
	c.outFrames++
	trigger := !c.flushQueued
	c.flushQueued = true
	c.mu.Unlock()
	if trigger {
		if err := c.loop.scheduleFlush(c); err != nil {
			return fmt.Errorf("netcore: send on conn %d: %w: %w", c.id, ErrConnClosed, err)
		}
	}
	return nil
}

// Shutdown closes the connection gracefully for ReasonShutdown: Send fails
// from now on, output already sent is flushed, then the write side is shut
// (the peer reads EOF) and the connection closes when the peer closes its
// side or one second later, and after timeout at the latest (timeout <= 0:
// no limit on the flush). Any goroutine.
func (c *Conn) Shutdown(timeout time.Duration) { c.ShutdownWith(ReasonShutdown, timeout) }

// ShutdownWith is Shutdown with the close reason to report. The first
// reason given to ShutdownWith or ForceClose is the one reported. Any
// goroutine.
func (c *Conn) ShutdownWith(reason CloseReason, timeout time.Duration) {
	c.setReason(reason)
	_ = c.loop.exec(func() { c.beginDrain(reason, timeout) })
}

// ForceClose closes the connection now for reason. Output not yet written
// is dropped, except that gnet makes one last non-blocking write of what it
// holds. Any goroutine.
func (c *Conn) ForceClose(reason CloseReason) {
	c.setReason(reason)
	_ = c.loop.exec(func() { c.closeOnLoop(reason) })
}

// SetCodec switches the connection's codec: bytes still buffered and all
// later input are decoded with it, later Sends encode with it. Only on the
// connection's loop (from a callback such as OnMessage).
func (c *Conn) SetCodec(codec Codec) {
	if codec == nil {
		return
	}
	c.mu.Lock()
	c.codec = codec
	c.mu.Unlock()
}

// setReason records the close reason; the first one wins.
func (c *Conn) setReason(r CloseReason) {
	c.mu.Lock()
	if !c.reasonSet {
		c.reason, c.reasonSet = uint8(r), true
	}
	c.sendClosed = true
	c.mu.Unlock()
}

// flush hands queued output to gnet. Loop only.
func (c *Conn) flush() {
	c.mu.Lock()
	b, frames := c.out, c.outFrames
	c.out, c.outFrames = nil, 0
	c.flushQueued = false
	if b != nil {
		// Until afterWrite stores gnet's new figure, Unsent counts these
		// bytes here (an overestimate at worst), so that a pacing producer
		// does not see them vanish while they are being written.
		c.flushing.Store(int64(len(*b)))
	}
	c.mu.Unlock()
	if b == nil {
		return
	}
	defer c.flushing.Store(0)
	if c.state == stateClosed || c.state == stateHalfClosed {
		c.srv().putBuf(b)
		return
	}
	n := len(*b)
	_, err := c.gc.Write(*b)
	c.srv().putBuf(b)
	if err != nil {
		return // gnet closed the connection (OnClose ran)
	}
	c.loop.stats.framesOut.Add(uint64(frames))
	c.loop.stats.bytesOut.Add(uint64(n))
	c.afterWrite()
}

// afterWrite checks the high-water mark and output completion. Loop only.
func (c *Conn) afterWrite() {
	if c.state == stateClosed {
		return
	}
	buffered := c.gc.OutboundBuffered()
	c.unsent.Store(int64(buffered))
	o := &c.srv().opts
	if o.HighWater > 0 && buffered > o.HighWater {
		c.highWater(buffered)
		return
	}
	if buffered > 0 {
		if o.OnWriteComplete != nil || c.state == stateDraining || c.flags.Load()&flagPaced != 0 {
			c.loop.watchAdd(c)
		}
		return
	}
	c.outputDrained()
}

// highWater reports the mark and closes. Loop only.
func (c *Conn) highWater(buffered int) {
	if c.state == stateClosed || c.hwFired {
		return
	}
	c.hwFired = true
	if cb := c.srv().opts.OnHighWater; cb != nil {
		cb(c, buffered)
	}
	c.closeOnLoop(ReasonHighWater)
}

// checkOutput is the loop's poll of a watched connection. Loop only.
func (c *Conn) checkOutput() {
	if c.state == stateClosed {
		c.loop.watchDel(c)
		return
	}
	buffered := c.gc.OutboundBuffered()
	c.unsent.Store(int64(buffered))
	if buffered > 0 {
		return
	}
	c.loop.watchDel(c)
	c.outputDrained()
}

func (c *Conn) outputDrained() {
	switch c.state {
	case stateDraining:
		c.finishDrain()
	case stateOpen:
		if cb := c.srv().opts.OnWriteComplete; cb != nil {
			cb(c)
		}
	}
}

// beginDrain starts a graceful close. Loop only.
func (c *Conn) beginDrain(reason CloseReason, timeout time.Duration) {
	if c.state != stateOpen {
		return
	}
	c.setReason(reason)
	c.state = stateDraining
	if timeout > 0 {
		// A connection timer: stopped when the connection closes.
		c.RunAfter(timeout, func() { c.closeOnLoop(reason) })
	}
	c.flush()
	if c.state == stateDraining && c.gc.OutboundBuffered() == 0 {
		c.finishDrain()
	} else if c.state == stateDraining {
		c.loop.watchAdd(c)
	}
}

// finishDrain shuts the write side once all output is out. Loop only.
// The peer then has lingerTimeout to read the rest and close its side
// before the connection is closed anyway: a peer that ignores the FIN does
// not hold the connection (or a server shutdown) until the drain timeout.
func (c *Conn) finishDrain() {
	c.state = stateHalfClosed
	if err := unix.Shutdown(c.gc.Fd(), unix.SHUT_WR); err != nil {
		c.closeOnLoop(ReasonShutdown)
		return
	}
	time.AfterFunc(lingerTimeout, func() {
		_ = c.loop.exec(func() { c.closeOnLoop(ReasonShutdown) })
	})
}

// lingerTimeout bounds the wait for the peer's close after a drained
// Shutdown.
const lingerTimeout = time.Second

// closeOnLoop closes the connection now. Loop only.
func (c *Conn) closeOnLoop(reason CloseReason) {
	if c.state == stateClosed {
		return
	}
	c.setReason(reason)
	if c.inTraffic {
		c.wantClose = true
		return
	}
	_ = c.loop.el.Close(c.gc)
}

// onTraffic handles readable input. Loop only.
func (c *Conn) onTraffic() gnet.Action {
	gc := c.gc
	total := gc.InboundBuffered()
	c.loop.stats.bytesIn.Add(uint64(max(total-int(c.leftover), 0)))
	if c.state != stateOpen {
		_, _ = gc.Discard(-1)
		c.leftover = 0
		return gnet.None
	}
	c.inTraffic = true
	c.mu.Lock()
	c.flushQueued = true
	c.mu.Unlock()

	if c.proxyPending {
		c.readProxy()
	}
	if !c.proxyPending {
		c.decodeAll()
	}

	c.flush()
	c.inTraffic = false
	if c.state == stateClosed {
		return gnet.None
	}
	if c.state != stateOpen {
		_, _ = gc.Discard(-1)
	}
	c.leftover = int32(min(gc.InboundBuffered(), math.MaxInt32))
	if c.wantClose {
		return gnet.Close
	}
	return gnet.None
}

// decodeAll delivers every complete buffered frame. Loop only.
func (c *Conn) decodeAll() {
	onMsg := c.srv().opts.OnMessage
	for c.state == stateOpen && !c.wantClose {
		frame, n, err := c.codec.Decode((*inbound)(c))
		if err != nil {
			c.frameError(err)
			return
		}
		if n == 0 {
			return
		}
		cp := make([]byte, len(frame))
		copy(cp, frame)
		_, _ = c.gc.Discard(n)
		c.loop.stats.framesIn.Add(1)
		// Only a whole frame counts as activity: a peer trickling a
		// partial frame is still idle.
		if w := c.loop.wheel; w != nil {
			c.lastActive = w.cur
		}
		if onMsg != nil {
			onMsg(c, cp)
		}
	}
}

// frameError reports a codec violation and closes after a brief flush.
// Loop only.
func (c *Conn) frameError(err error) {
	if cb := c.srv().opts.OnFrameError; cb != nil && c.flags.Load()&flagConnected != 0 {
		cb(c, err)
	} else {
		c.srv().log.Debug("netcore: protocol error", "conn", c.id, "remote", c.RemoteAddr(), "err", err)
	}
	_, _ = c.gc.Discard(-1)
	c.beginDrain(ReasonProtocol, protocolDrainTimeout)
}

// onClose runs from gnet's OnClose. Loop only.
func (c *Conn) onClose(err error) {
	if c.state == stateClosed {
		return
	}
	c.state = stateClosed
	c.loop.watchDel(c)

	c.mu.Lock()
	c.closed, c.sendClosed = true, true
	if !c.reasonSet {
		c.reason, c.reasonSet = uint8(ReasonPeer), true
	}
	reason := CloseReason(c.reason)
	if c.out != nil {
		c.srv().putBuf(c.out)
		c.out = nil
	}
	var timers map[*Timer]struct{}
	if c.extra != nil {
		timers = c.extra.timers
		c.extra.timers = nil
	}
	c.closeCtxLocked()
	c.mu.Unlock()
	for t := range timers {
		t.t.Stop()
	}

	c.loop.stats.closes[reason].Add(1)
	c.srv().removeConn(c)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	if c.flags.Load()&flagConnected != 0 {
		if cb := c.srv().opts.OnDisconnect; cb != nil {
			cb(c, reason, err)
		}
	}
}

// connect fires OnConnect. Loop only.
func (c *Conn) connect() {
	c.flags.Or(flagConnected)
	if cb := c.srv().opts.OnConnect; cb != nil {
		cb(c)
	}
}
