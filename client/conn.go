package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"clusterchat/chatservice/protocol"
)

// Conn is one client connection to a chatserver. All methods are safe for
// concurrent use from any goroutine. Requests may be pipelined: several
// goroutines can wait in Do at once; small frames written at the same time go
// out in one system call.
type Conn struct {
	nc   net.Conn
	opts Options

	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]*call
	closed  bool
	err     error

	wmu      sync.Mutex
	wbuf     []byte
	wkick    chan struct{}
	lastSend atomic.Int64 // unix nanos of the last frame queued

	pushes chan Push
	done   chan struct{}
	rdone  chan struct{}
	wdone  chan struct{}
}

type call struct {
	ch chan callResult
}

type callResult struct {
	resp Response
	err  error
}

var callPool = sync.Pool{New: func() any { return &call{ch: make(chan callResult, 1)} }}

// Dial connects to addr (host:port) and starts the connection's reader and
// writer goroutines. ctx bounds the connect only.
func Dial(ctx context.Context, addr string, opts ...Option) (*Conn, error) {
	var o Options
	for _, f := range opts {
		f(&o)
	}
	o.setDefaults()
	d := net.Dialer{Timeout: o.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", addr, err)
	}
	return NewConn(nc, opts...), nil
}

// NewConn wraps an established net.Conn (for example a TLS connection or one
// end of net.Pipe) and starts its goroutines. The Conn owns nc from then on.
func NewConn(nc net.Conn, opts ...Option) *Conn {
	var o Options
	for _, f := range opts {
		f(&o)
	}
	o.setDefaults()
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c := &Conn{
		nc:      nc,
		opts:    o,
		pending: make(map[uint64]*call),
		wkick:   make(chan struct{}, 1),
		pushes:  make(chan Push, o.PushBuffer),
		done:    make(chan struct{}),
		rdone:   make(chan struct{}),
		wdone:   make(chan struct{}),
	}
	c.lastSend.Store(time.Now().UnixNano())
	go c.readLoop()
	go c.writeLoop()
	return c
}

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr returns the server's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Pushes returns the channel of server pushes (msgid 201–299, including
// GOAWAY and ERROR pushes that answer no request). It is closed after the
// connection ends and every push read before that was delivered.
func (c *Conn) Pushes() <-chan Push { return c.pushes }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (nil while it is open). After Close
// it returns ErrClosed.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection; pending requests fail with ErrClosed. It
// waits for the reader and writer goroutines to stop. Queued but unsent
// frames are discarded.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	<-c.rdone
	<-c.wdone
	return nil
}

// fail ends the connection once with the given reason.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.err = err
	pend := c.pending
	c.pending = nil
	c.mu.Unlock()
	_ = c.nc.Close()
	close(c.done)
	werr := err
	if !errors.Is(err, ErrClosed) {
		werr = fmt.Errorf("%w: %w", ErrClosed, err)
	}
	for _, cl := range pend {
		cl.ch <- callResult{err: werr}
	}
}

// Do sends request msgid with the given fields and waits for its response.
// fields may be nil, a map, a struct (encoded with encoding/json), or a
// json.RawMessage / []byte holding an encoded JSON object; "msgid" and
// "reqid" are set by Do. A response with errno ≠ 0 is returned together
// with an *Error. A context that ends first abandons the request (its
// response, when it comes, is dropped).
func (c *Conn) Do(ctx context.Context, msgid int, fields any) (Response, error) {
	var obj []byte
	switch v := fields.(type) {
	case nil:
	case json.RawMessage:
		obj = v
	case []byte:
		obj = v
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return Response{}, fmt.Errorf("client: encode %s request: %w", protocol.Name(msgid), err)
		}
		obj = b
	}
	if obj != nil && (len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}') {
		return Response{}, fmt.Errorf("client: %s request: %w", protocol.Name(msgid), ErrBadFields)
	}
	f := c.begin(msgid)
	if obj != nil {
		f.rawObject(obj)
	}
	return c.roundTrip(ctx, msgid, f)
}

// DoRaw sends body, which must be one complete frame body (it is sent as
// is, without a reqid being added), and returns without waiting. It is for
// tests of the server's handling of bad frames; answers arrive on Pushes
// (ERROR) or are dropped (responses without a pending reqid are delivered as
// pushes too).
func (c *Conn) DoRaw(body []byte) error {
	if len(body) > c.opts.MaxSendFrame {
		return fmt.Errorf("client: raw frame of %d bytes: %w", len(body), ErrFrameTooLarge)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	return c.WriteRaw(append(hdr[:], body...))
}

// WriteRaw queues arbitrary bytes on the connection (no framing at all). It
// is for tests of split, merged and malformed frames.
func (c *Conn) WriteRaw(b []byte) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return c.closedErr()
	}
	c.queue(b)
	return nil
}

func (c *Conn) closedErr() error {
	err := c.Err()
	if err == nil || errors.Is(err, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrClosed, err)
}

// begin starts a frame for msgid with a fresh reqid.
func (c *Conn) begin(msgid int) *frameBuf {
	return getFrame(msgid, c.nextID.Add(1))
}

// roundTrip finishes f, registers the call, queues the frame and waits.
func (c *Conn) roundTrip(ctx context.Context, msgid int, f *frameBuf) (Response, error) {
	n := f.finish()
	if n > c.opts.MaxSendFrame {
		putFrame(f)
		return Response{}, fmt.Errorf("client: %s request of %d bytes (max %d): %w",
			protocol.Name(msgid), n, c.opts.MaxSendFrame, ErrFrameTooLarge)
	}
	reqid := f.reqid
	cl := callPool.Get().(*call)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		putFrame(f)
		callPool.Put(cl)
		return Response{}, c.closedErr()
	}
	c.pending[reqid] = cl
	c.mu.Unlock()
	c.queue(f.b)
	putFrame(f)

	select {
	case r := <-cl.ch:
		callPool.Put(cl)
		if r.err != nil {
			return r.resp, fmt.Errorf("client: %s: %w", protocol.Name(msgid), r.err)
		}
		return r.resp, r.resp.Err()
	case <-ctx.Done():
		c.mu.Lock()
		_, still := c.pending[reqid]
		if still {
			delete(c.pending, reqid)
		}
		c.mu.Unlock()
		if !still {
			// The answer is being delivered right now: take it so cl can be reused.
			r := <-cl.ch
			callPool.Put(cl)
			if r.err != nil {
				return r.resp, fmt.Errorf("client: %s: %w", protocol.Name(msgid), r.err)
			}
			return r.resp, r.resp.Err()
		}
		callPool.Put(cl)
		return Response{}, fmt.Errorf("client: %s: %w", protocol.Name(msgid), ctx.Err())
	}
}

// queue appends bytes to the write buffer and wakes the writer.
func (c *Conn) queue(b []byte) {
	c.wmu.Lock()
	c.wbuf = append(c.wbuf, b...)
	c.wmu.Unlock()
	c.lastSend.Store(time.Now().UnixNano())
	select {
	case c.wkick <- struct{}{}:
	default:
	}
}

func (c *Conn) writeLoop() {
	defer close(c.wdone)
	var spare []byte
	var tick <-chan time.Time
	if c.opts.KeepAlive > 0 {
		t := time.NewTicker(c.opts.KeepAlive / 4)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-c.done:
			return
		case <-tick:
			if time.Since(time.Unix(0, c.lastSend.Load())) >= c.opts.KeepAlive {
				go c.keepAlive()
			}
			continue
		case <-c.wkick:
		}
		c.wmu.Lock()
		buf := c.wbuf
		c.wbuf = spare[:0]
		c.wmu.Unlock()
		if len(buf) == 0 {
			spare = buf
			continue
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
		if _, err := c.nc.Write(buf); err != nil {
			c.fail(fmt.Errorf("client: write: %w", err))
			return
		}
		if cap(buf) > 1<<20 {
			buf = nil // let a burst's big buffer go
		}
		spare = buf
	}
}

func (c *Conn) keepAlive() {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.KeepAlive)
	defer cancel()
	_, err := c.Ping(ctx)
	switch {
	case err == nil, errors.Is(err, ErrClosed):
	case errors.Is(err, context.DeadlineExceeded):
		// No answer within a whole keepalive period: the peer is gone.
		c.fail(fmt.Errorf("client: keepalive: no answer to PING within %v", c.opts.KeepAlive))
	default:
		c.opts.Logger.Debug("keepalive ping failed", "err", err)
	}
}

func (c *Conn) readLoop() {
	defer close(c.rdone)
	defer close(c.pushes)
	br := bufio.NewReaderSize(c.nc, 64<<10)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.EOF
			}
			c.fail(fmt.Errorf("client: read: %w", err))
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 || uint64(n) > uint64(c.opts.MaxFrame) {
			c.fail(fmt.Errorf("client: frame header announces %d bytes (max %d): %w", n, c.opts.MaxFrame, ErrFrameTooLarge))
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			c.fail(fmt.Errorf("client: read frame body: %w", err))
			return
		}
		h, err := parseHeader(body)
		if err != nil {
			c.fail(fmt.Errorf("client: frame from server: %w", err))
			return
		}
		if h.hasReqID && (h.msgid > protocol.Response && h.msgid < 200 || h.msgid == protocol.PushError) {
			c.mu.Lock()
			cl := c.pending[h.reqid]
			if cl != nil {
				delete(c.pending, h.reqid)
			}
			c.mu.Unlock()
			if cl != nil {
				r := Response{MsgID: h.msgid, ReqID: h.reqid, Errno: h.errno, ErrMsg: h.errmsg, RetryAfter: h.retryAfter, Raw: body}
				if h.msgid == protocol.PushError && r.Errno == 0 {
					r.Errno = protocol.ErrBadRequest
				}
				cl.ch <- callResult{resp: r}
				continue
			}
		}
		p := Push{MsgID: h.msgid, Raw: body}
		if c.opts.PushHandler != nil {
			c.opts.PushHandler(p)
			continue
		}
		select {
		case c.pushes <- p:
		case <-c.done:
			return
		}
	}
}
