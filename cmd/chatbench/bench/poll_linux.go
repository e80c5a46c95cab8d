//go:build linux

package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// pollSet reads the traffic connections with epoll: a few goroutines, each
// waiting on its own epoll instance, read every connection that has data
// with one read(2) and handle its frames on the spot. Go's own poller would
// instead try each read first (EAGAIN), park the connection's goroutine and
// wake it again: twice the reads and a goroutine switch per frame, which
// were most of chatbench's CPU (the server shares the cores).
type pollSet struct {
	r     *run
	polls []*poller
	wg    sync.WaitGroup
	stop  atomic.Bool
}

// poller is one epoll instance and the connections registered with it.
type poller struct {
	set  *pollSet
	id   int // histogram shard of the latencies it records
	epfd int

	mu    sync.Mutex                  // serialises changes of conns
	conns atomic.Pointer[[]*leanConn] // by fd; replaced, never changed in place
}

// setConn stores lc (nil: none) as the connection of fd; p.mu is held.
func (p *poller) setConn(fd int, lc *leanConn) {
	var old []*leanConn
	if c := p.conns.Load(); c != nil {
		old = *c
	}
	nc := make([]*leanConn, max(len(old), fd+1))
	copy(nc, old)
	nc[fd] = lc
	p.conns.Store(&nc)
}

// conn returns the connection of fd, or nil.
func (p *poller) conn(fd int) *leanConn {
	if c := p.conns.Load(); c != nil && fd >= 0 && fd < len(*c) {
		return (*c)[fd]
	}
	return nil
}

// pollBufSize is a poller's read buffer, shared by its connections (a
// connection keeps only the start of a frame that a read cut off).
const pollBufSize = 256 << 10

// newPollSet starts one poller per CPU (at most 4); nil (chatbench then
// reads with a goroutine per connection) when epoll is not available.
func newPollSet(r *run) *pollSet {
	n := min(max(runtime.GOMAXPROCS(0), 1), 4)
	ps := &pollSet{r: r}
	for range n {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			r.logf("warning: epoll: %v; reading with a goroutine per connection", err)
			ps.close()
			return nil
		}
		ps.polls = append(ps.polls, &poller{set: ps, id: len(ps.polls), epfd: epfd})
	}
	for _, p := range ps.polls {
		ps.wg.Add(1)
		go func() {
			defer ps.wg.Done()
			p.loop()
		}()
	}
	return ps
}

// close stops the pollers; connections still registered end as closed.
func (ps *pollSet) close() {
	if ps == nil {
		return
	}
	ps.stop.Store(true)
	ps.wg.Wait()
	for _, p := range ps.polls {
		var conns []*leanConn
		if c := p.conns.Load(); c != nil {
			conns = *c
		}
		for _, lc := range conns {
			if lc != nil {
				p.drop(lc, net.ErrClosed)
			}
		}
		syscall.Close(p.epfd)
	}
}

// add takes nc's socket over for lc: lc gets its own descriptor (a dup;
// nc is closed, which takes the original out of Go's poller) and is
// registered with poller key mod the number of pollers. False (nc untouched) when nc is not a
// TCP connection or the socket cannot be taken over.
func (ps *pollSet) add(lc *leanConn, nc net.Conn, key int) bool {
	if ps == nil {
		return false
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return false
	}
	_ = tc.SetNoDelay(true)
	raw, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	var derr error
	if err := raw.Control(func(s uintptr) { fd, derr = syscall.Dup(int(s)) }); err != nil || derr != nil {
		return false
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return false
	}
	lc.laddr, lc.raddr = tc.LocalAddr(), tc.RemoteAddr()
	tc.Close()
	lc.fd = fd
	p := ps.polls[key%len(ps.polls)]
	lc.shard = p.id
	p.mu.Lock()
	p.setConn(fd, lc)
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.drop(lc, fmt.Errorf("epoll: %w", err))
	}
	return true
}

func (p *poller) loop() {
	events := make([]syscall.EpollEvent, 128)
	buf := make([]byte, pollBufSize)
	var d delivery
	for !p.set.stop.Load() {
		n, err := syscall.EpollWait(p.epfd, events, 100)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			p.set.r.logf("warning: epoll_wait: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for _, ev := range events[:n] {
			if lc := p.conn(int(ev.Fd)); lc != nil {
				p.readReady(lc, buf, &d)
			}
		}
		d.flush(p.set.r)
	}
}

// readReady reads once from lc (which epoll reported readable) and
// handles the frames that are complete.
func (p *poller) readReady(lc *leanConn, buf []byte, d *delivery) {
	var b []byte
	off := 0
	if lc.need > len(buf) {
		// A frame larger than the shared buffer: it collects in lc.carry.
		if cap(lc.carry) < lc.need {
			lc.carry = append(make([]byte, 0, lc.need), lc.carry...)
		}
		off = len(lc.carry)
		b = lc.carry[:cap(lc.carry)]
	} else {
		off = copy(buf, lc.carry)
		b = buf
	}
	n, err := syscall.Read(lc.fd, b[off:])
	if n <= 0 {
		switch {
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
			return
		case err == nil:
			err = io.EOF
		default:
			err = fmt.Errorf("read: %w", os.NewSyscallError("read", err))
		}
		p.drop(lc, err)
		return
	}
	used, need, ferr := lc.consume(b[:off+n], lc.r.now(), d)
	if ferr != nil {
		p.drop(lc, ferr)
		return
	}
	rest := b[used : off+n]
	if len(rest) == 0 && cap(lc.carry) > 64<<10 {
		lc.carry = nil // let a big frame's buffer go
	}
	lc.carry = append(lc.carry[:0], rest...)
	lc.need = need
}

// drop ends lc: out of epoll, its descriptor closed (once no write is
// using it), and lc stopped with err.
func (p *poller) drop(lc *leanConn, err error) {
	p.mu.Lock()
	if p.conn(lc.fd) != lc {
		p.mu.Unlock()
		return
	}
	p.setConn(lc.fd, nil)
	p.mu.Unlock()
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, lc.fd, nil)
	lc.fdmu.Lock()
	fd := lc.fd
	lc.fdClosed = true
	lc.fdmu.Unlock()
	syscall.Close(fd)
	lc.stop(err)
}

// rawWrite writes all of b to lc's descriptor; while the socket is full it
// retries until deadline, or (deadline zero, timeout > 0) for timeout from
// the first failed try; with neither, without end.
func (lc *leanConn) rawWrite(b []byte, deadline time.Time, timeout time.Duration) error {
	wait := 50 * time.Microsecond
	for len(b) > 0 {
		lc.fdmu.RLock()
		if lc.fdClosed {
			lc.fdmu.RUnlock()
			return net.ErrClosed
		}
		n, err := syscall.Write(lc.fd, b)
		lc.fdmu.RUnlock()
		if n > 0 {
			b = b[n:]
			continue
		}
		switch {
		case errors.Is(err, syscall.EINTR):
		case errors.Is(err, syscall.EAGAIN):
			if deadline.IsZero() && timeout > 0 {
				deadline = time.Now().Add(timeout)
			}
			if !deadline.IsZero() && time.Now().After(deadline) {
				return os.ErrDeadlineExceeded
			}
			time.Sleep(wait)
			wait = min(2*wait, 5*time.Millisecond)
		default:
			return os.NewSyscallError("write", err)
		}
	}
	return nil
}

// shutdown ends the connection from our side: the poller then reads EOF
// and drops it.
func (lc *leanConn) shutdown() {
	lc.fdmu.RLock()
	if !lc.fdClosed {
		_ = syscall.Shutdown(lc.fd, syscall.SHUT_RDWR)
	}
	lc.fdmu.RUnlock()
}
