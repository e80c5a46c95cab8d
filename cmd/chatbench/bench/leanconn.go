package bench

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"clusterchat/chatservice/protocol"
)

// leanBase: reqids at or above it are chatbench's own sends (the client
// library counts its reqids up from 1; the protocol allows up to 2^53−1).
const leanBase = 1 << 52

// leanMaxFrame is the largest frame the reader accepts (the client
// library's default).
const leanMaxFrame = 16 << 20

// leanBufSize is the reader's buffer: a read takes whatever the socket
// holds, up to this much.
const leanBufSize = 64 << 10

// A leanConn is the socket of one traffic connection (pairs, group),
// shared by the client library and chatbench's own hot path. The
// client.Conn that sets the connection up (REG, LOGIN, friends, groups,
// and HISTORY in the final check) is given the leanConn as its net.Conn;
// the sends of the measured phase are written straight to the socket by
// the sender's goroutine (no handoff to a writer goroutine, no per-request
// context), and one reader goroutine reads every frame itself with a cheap
// field scan (scanFrame): CHAT and GROUP_CHAT pushes go to the receiver,
// responses to chatbench's sends (reqid ≥ leanBase) to the sender, and
// every other frame is handed, bytes unchanged, to the client library's
// reader through Read.
type leanConn struct {
	nc net.Conn // goroutine mode; nil when a poller reads the connection
	r  *run
	rx *receiver // the connection's chat pushes; nil: forwarded like any push
	// shard is the histogram shard of the latencies recorded by its
	// reader: the poller's (one reader, one shard: no contention, warm
	// cache), in goroutine mode rx's index.
	shard int

	snd atomic.Pointer[sender] // set when it sends: responses to leanBase reqids

	wmu  sync.Mutex // one writer at a time, so frames never interleave
	wset time.Time  // goroutine mode: when chatbench last set the write deadline (under wmu)
	cwdl time.Time  // poll mode: the client library's write deadline (under wmu)

	// Poll mode (pollSet): the socket's own descriptor, read by a poller.
	fd           int // -1 in goroutine mode
	laddr, raddr net.Addr
	fdmu         sync.RWMutex // read-held around each write(2), so fd is not closed (and reused) meanwhile
	fdClosed     bool         // under fdmu
	carry        []byte       // the start of a frame a read cut off (poller only)
	need         int          // its whole size with header (poller only)

	mu     sync.Mutex
	cond   *sync.Cond // signalled when fwd grows or err is set
	fwd    []byte     // frames for the client library, unread part from foff
	foff   int
	err    error // why the reader stopped; Read returns it once fwd is drained
	closed bool  // Close was called

	done chan struct{} // closed when the reader has stopped
}

var _ net.Conn = (*leanConn)(nil)

// newLeanConn takes over nc: one of the run's pollers reads it (poll
// mode), or else a reader goroutine of its own.
func newLeanConn(r *run, nc net.Conn, rx *receiver) *leanConn {
	lc := &leanConn{r: r, rx: rx, fd: -1, done: make(chan struct{})}
	if rx != nil {
		lc.shard = rx.idx
	}
	lc.cond = sync.NewCond(&lc.mu)
	// The two users of a pair share a poller: a send's ack and its push
	// arrive together and are read in one wake-up.
	key := 0
	if rx != nil {
		key = rx.idx
		if r.cfg.Scenario == ScenarioPairs {
			key /= 2
		}
	}
	if r.polls.add(lc, nc, key) {
		return lc
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	lc.nc = nc
	go lc.readLoop()
	return lc
}

// Read hands the client library the frames chatbench does not handle.
func (lc *leanConn) Read(p []byte) (int, error) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for lc.foff == len(lc.fwd) && lc.err == nil && !lc.closed {
		lc.cond.Wait()
	}
	if lc.foff < len(lc.fwd) {
		n := copy(p, lc.fwd[lc.foff:])
		lc.foff += n
		if lc.foff == len(lc.fwd) {
			lc.fwd, lc.foff = lc.fwd[:0], 0
		}
		return n, nil
	}
	if lc.err != nil {
		return 0, lc.err
	}
	return 0, net.ErrClosed
}

// Write is the client library's writer: its frames go out whole, between
// chatbench's own.
func (lc *leanConn) Write(p []byte) (int, error) {
	lc.wmu.Lock()
	defer lc.wmu.Unlock()
	if lc.nc == nil {
		if err := lc.rawWrite(p, lc.cwdl, 0); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return lc.nc.Write(p)
}

// writeFrames writes chatbench's sends (complete frames) within --timeout
// (in goroutine mode the write deadline is renewed at most once a second).
func (lc *leanConn) writeFrames(b []byte) error {
	lc.wmu.Lock()
	defer lc.wmu.Unlock()
	if lc.nc == nil {
		if err := lc.rawWrite(b, time.Time{}, lc.r.cfg.Timeout); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		return nil
	}
	if now := time.Now(); now.Sub(lc.wset) > time.Second {
		lc.wset = now
		_ = lc.nc.SetWriteDeadline(now.Add(lc.r.cfg.Timeout))
	}
	if _, err := lc.nc.Write(b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// Close closes the socket; the reader stops and the client library's Read
// returns.
func (lc *leanConn) Close() error {
	lc.mu.Lock()
	lc.closed = true
	lc.cond.Broadcast()
	lc.mu.Unlock()
	lc.abort(nil)
	<-lc.done
	return nil
}

// abort ends the connection (the reader then stops); a non-nil err is why,
// and becomes the connection's error (what the client library's Read
// returns) unless it already has one.
func (lc *leanConn) abort(err error) {
	if err != nil {
		lc.mu.Lock()
		if lc.err == nil && !lc.closed {
			lc.err = err
		}
		lc.mu.Unlock()
	}
	if lc.nc == nil {
		lc.shutdown()
		return
	}
	_ = lc.nc.Close()
}

// LocalAddr implements net.Conn.
func (lc *leanConn) LocalAddr() net.Addr {
	if lc.nc == nil {
		return lc.laddr
	}
	return lc.nc.LocalAddr()
}

// RemoteAddr implements net.Conn.
func (lc *leanConn) RemoteAddr() net.Addr {
	if lc.nc == nil {
		return lc.raddr
	}
	return lc.nc.RemoteAddr()
}

// SetDeadline sets the write deadline only: reading is the reader
// goroutine's, which runs until the connection ends.
func (lc *leanConn) SetDeadline(t time.Time) error { return lc.SetWriteDeadline(t) }

// SetReadDeadline is ignored (see SetDeadline).
func (lc *leanConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline implements net.Conn.
func (lc *leanConn) SetWriteDeadline(t time.Time) error {
	if lc.nc == nil {
		lc.wmu.Lock()
		lc.cwdl = t
		lc.wmu.Unlock()
		return nil
	}
	return lc.nc.SetWriteDeadline(t)
}

// readLoop (goroutine mode) reads frames until the connection ends.
func (lc *leanConn) readLoop() {
	var err error
	defer func() { lc.stop(err) }()
	buf := make([]byte, leanBufSize)
	var r, w int // buf[r:w] is read and not yet handled
	var d delivery
	for {
		var n int
		n, err = lc.nc.Read(buf[w:])
		w += n
		used, need, ferr := lc.consume(buf[r:w], lc.r.now(), &d)
		d.flush(lc.r)
		r += used
		if ferr != nil {
			err = ferr
		}
		if err != nil {
			return
		}
		switch {
		case r == w:
			r, w = 0, 0
		case need > len(buf):
			nb := make([]byte, need)
			w = copy(nb, buf[r:w])
			buf, r = nb, 0
		case len(buf)-r < max(need, 4096) || len(buf)-w < 4096:
			w = copy(buf, buf[r:w])
			r = 0
		}
	}
}

// consume handles the complete frames at the start of b (received at now)
// and returns how many bytes they took and, when b ends inside a frame,
// that frame's whole size. Frame bodies alias b: handlers take what they
// need before returning.
func (lc *leanConn) consume(b []byte, now time.Duration, d *delivery) (used, need int, err error) {
	for len(b)-used >= 4 {
		size := int(binary.BigEndian.Uint32(b[used:]))
		if size == 0 || size > leanMaxFrame {
			return used, 0, fmt.Errorf("frame header announces %d bytes (max %d)", size, leanMaxFrame)
		}
		if len(b)-used-4 < size {
			return used, 4 + size, nil
		}
		lc.frame(b[used:used+4+size], now, d)
		used += 4 + size
	}
	return used, 0, nil
}

// stop records why the reader ended, wakes the client library's reader
// and fails the sends still waiting for an answer.
func (lc *leanConn) stop(err error) {
	lc.mu.Lock()
	if lc.err == nil {
		if lc.closed {
			err = net.ErrClosed
		}
		lc.err = err
	}
	lc.cond.Broadcast()
	lc.mu.Unlock()
	if lc.nc != nil {
		_ = lc.nc.Close()
	}
	if s := lc.snd.Load(); s != nil {
		s.failAll(lc.r, "closed")
	}
	close(lc.done)
}

// frame routes one frame (raw: header and body).
func (lc *leanConn) frame(raw []byte, now time.Duration, d *delivery) {
	var fi frameInfo
	if scanFrame(raw[4:], &fi) {
		switch {
		case fi.msgid == protocol.PushChat || fi.msgid == protocol.PushGroupChat:
			if lc.rx != nil {
				seq, stamp, ok := chatFields(&fi)
				lc.rx.onChat(seq, stamp, ok, now, lc.shard, d)
				return
			}
		case fi.hasReqID && fi.reqid >= leanBase &&
			(fi.msgid > protocol.Response && fi.msgid < 200 || fi.msgid == protocol.PushError):
			if s := lc.snd.Load(); s != nil {
				s.onAck(lc.r, &fi, now, lc.shard)
				return
			}
		}
	}
	// Anything else (and what the scan cannot read: the client library
	// then fails the connection as before) is the client library's.
	lc.mu.Lock()
	lc.fwd = append(lc.fwd, raw...)
	lc.cond.Signal()
	lc.mu.Unlock()
}

// delivery sums one read's chat pushes, so that the shared counters are
// updated once per read rather than once per push.
type delivery struct {
	delivered, unique, duplicated, outOfOrder, bad int64
	last                                           time.Duration
}

func (d *delivery) flush(r *run) {
	if *d == (delivery{}) {
		return
	}
	st := &r.st
	if d.delivered > 0 {
		st.delivered.Add(d.delivered)
		storeMax(&st.lastDelivery, int64(d.last))
	}
	if d.unique > 0 {
		st.unique.Add(d.unique)
	}
	if d.duplicated > 0 {
		st.duplicated.Add(d.duplicated)
	}
	if d.outOfOrder > 0 {
		st.outOfOrder.Add(d.outOfOrder)
	}
	if d.bad > 0 {
		st.badPushes.Add(d.bad)
	}
	*d = delivery{}
}
