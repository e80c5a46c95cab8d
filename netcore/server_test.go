package netcore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewServerValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"empty addr", Options{}},
		{"scheme", Options{Addr: "tcp://127.0.0.1:0"}},
		{"no port", Options{Addr: "127.0.0.1"}},
		{"negative idle", Options{Addr: "127.0.0.1:0", IdleTimeout: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewServer(tc.opts); err == nil {
				t.Fatal("NewServer accepted bad options")
			}
		})
	}
}

func TestStartTwiceAndBusyPort(t *testing.T) {
	s := startServer(t, echoOpts())
	if err := s.Start(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("second Start: %v, want ErrServerClosed", err)
	}
	s2, err := NewServer(Options{Addr: s.Addr().String(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(); err == nil {
		_ = s2.Shutdown(context.Background())
		t.Fatal("Start on a busy port succeeded")
	}
	if err := s2.Start(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Start after a failed Start: %v", err)
	}
	if err := s2.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after a failed Start: %v", err)
	}
}

// TestSplitAtEveryByte sends a stream of frames split at every byte
// boundary, waiting until the server has read the first part.
func TestSplitAtEveryByte(t *testing.T) {
	s := startServer(t, echoOpts())
	c := dial(t, s)
	r := bufio.NewReader(c)
	frames := [][]byte{[]byte("a"), []byte("hello, world"), bytes.Repeat([]byte{0xAB}, 300)}
	var stream []byte
	for _, f := range frames {
		stream = append(stream, encodeFrame(f)...)
	}
	for i := 1; i < len(stream); i++ {
		before := s.Stats().BytesIn
		if _, err := c.Write(stream[:i]); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "server read first part", func() bool { return s.Stats().BytesIn >= before+uint64(i) })
		if _, err := c.Write(stream[i:]); err != nil {
			t.Fatal(err)
		}
		for j, want := range frames {
			got, err := readFrame(r)
			if err != nil {
				t.Fatalf("split %d frame %d: %v", i, j, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("split %d frame %d: got %d bytes, want %d", i, j, len(got), len(want))
			}
		}
	}
}

func TestThousandFramesInOneWrite(t *testing.T) {
	var got atomic.Int64
	opts := echoOpts()
	echo := opts.OnMessage
	opts.OnMessage = func(c *Conn, f []byte) { got.Add(1); echo(c, f) }
	s := startServer(t, opts)
	c := dial(t, s)
	var buf []byte
	for i := range 1000 {
		buf = append(buf, encodeFrame([]byte(strconv.Itoa(i)))...)
	}
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range 1000 {
		f, err := readFrame(r)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if string(f) != strconv.Itoa(i) {
			t.Fatalf("frame %d = %q", i, f)
		}
	}
	if got.Load() != 1000 {
		t.Fatalf("OnMessage called %d times", got.Load())
	}
}

func TestFramesCopiedBeforeLeavingLoop(t *testing.T) {
	ch := make(chan []byte, 100)
	s := startServer(t, Options{OnMessage: func(c *Conn, f []byte) { ch <- f }})
	c := dial(t, s)
	var buf []byte
	for i := range 100 {
		buf = append(buf, encodeFrame(bytes.Repeat([]byte{byte(i)}, 100))...)
	}
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for range 100 {
		select {
		case f := <-ch:
			frames = append(frames, f)
		case <-time.After(5 * time.Second):
			t.Fatal("timeout")
		}
	}
	// More traffic reuses the loop's buffers; earlier frames must not change.
	if _, err := c.Write(encodeFrame(bytes.Repeat([]byte{0xFF}, 1000))); err != nil {
		t.Fatal(err)
	}
	<-ch
	for i, f := range frames {
		if !bytes.Equal(f, bytes.Repeat([]byte{byte(i)}, 100)) {
			t.Fatalf("frame %d changed after delivery", i)
		}
	}
}

func TestBadLengthCloses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		length uint32
		want   error
	}{
		{"zero", 0, ErrFrameEmpty},
		{"max+1", 1025, ErrFrameTooLarge},
		{"huge", 0xFFFFFFFF, ErrFrameTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frameErr := make(chan error, 1)
			closed := make(chan closeEvent, 1)
			s := startServer(t, Options{
				MaxFrame:     1024,
				OnMessage:    func(c *Conn, f []byte) { _ = c.Send(f) },
				OnFrameError: func(c *Conn, err error) { frameErr <- err; _ = c.Send([]byte("bye")) },
				OnDisconnect: func(c *Conn, r CloseReason, err error) { closed <- closeEvent{c.ID(), r, err} },
			})
			c := dial(t, s)
			// A valid frame first, then only the bad header: no body follows,
			// so the close proves the length was checked before waiting.
			msg := encodeFrame([]byte("ok"))
			msg = binary.BigEndian.AppendUint32(msg, tc.length)
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(c)
			for _, want := range []string{"ok", "bye"} {
				f, err := readFrame(r)
				if err != nil || string(f) != want {
					t.Fatalf("read %q: %q, %v", want, f, err)
				}
			}
			expectClosed(t, c, 5*time.Second)
			select {
			case err := <-frameErr:
				if !errors.Is(err, tc.want) {
					t.Fatalf("OnFrameError(%v), want %v", err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no OnFrameError")
			}
			select {
			case ev := <-closed:
				if ev.reason != ReasonProtocol {
					t.Fatalf("reason %v, want protocol", ev.reason)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no OnDisconnect")
			}
		})
	}
}

// TestConcurrentSendOrder: 100 goroutines send on one connection; each
// goroutine's frames arrive in its order.
func TestConcurrentSendOrder(t *testing.T) {
	const goroutines, perG = 100, 200
	s := startServer(t, Options{OnConnect: func(c *Conn) {
		for g := range goroutines {
			go func() {
				for i := range perG {
					if err := c.Send(fmt.Appendf(nil, "%d:%d", g, i)); err != nil {
						panic(err)
					}
				}
			}()
		}
	}})
	c := dial(t, s)
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	next := make([]int, goroutines)
	for n := range goroutines * perG {
		f, err := readFrame(r)
		if err != nil {
			t.Fatalf("frame %d: %v", n, err)
		}
		gs, is, _ := strings.Cut(string(f), ":")
		g, _ := strconv.Atoi(gs)
		i, _ := strconv.Atoi(is)
		if next[g] != i {
			t.Fatalf("goroutine %d: got seq %d, want %d", g, i, next[g])
		}
		next[g]++
	}
}

// TestConnShutdownDelivers16MiB: pending output is flushed before close.
func TestConnShutdownDelivers16MiB(t *testing.T) {
	const total = 16 << 20
	const chunk = 64 << 10
	sent := make(chan struct{})
	closed := make(chan closeEvent, 1)
	s := startServer(t, Options{
		MaxFrame: chunk,
		OnConnect: func(c *Conn) {
			body := bytes.Repeat([]byte{'x'}, chunk)
			for range total / chunk {
				if err := c.Send(body); err != nil {
					panic(err)
				}
			}
			c.Shutdown(30 * time.Second)
			if err := c.Send(body); !errors.Is(err, ErrConnClosed) {
				panic(fmt.Sprintf("Send after Shutdown: %v", err))
			}
			close(sent)
		},
		OnDisconnect: func(c *Conn, r CloseReason, err error) { closed <- closeEvent{c.ID(), r, err} },
	})
	c := dial(t, s)
	<-sent
	time.Sleep(50 * time.Millisecond) // let the server hit EAGAIN with output buffered
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", n, err)
	}
	if want := int64(total + total/chunk*4); n != want {
		t.Fatalf("received %d bytes, want %d", n, want)
	}
	_ = c.Close()
	ev := <-closed
	if ev.reason != ReasonShutdown {
		t.Fatalf("reason %v", ev.reason)
	}
}

func TestConnShutdownTimeoutForces(t *testing.T) {
	closed := make(chan closeEvent, 1)
	s := startServer(t, Options{
		OnConnect: func(c *Conn) {
			_ = c.Send(bytes.Repeat([]byte{'x'}, 60000))
			for range 200 {
				_ = c.Send(bytes.Repeat([]byte{'x'}, 60000))
			}
			c.Shutdown(300 * time.Millisecond)
		},
		OnDisconnect: func(c *Conn, r CloseReason, err error) { closed <- closeEvent{c.ID(), r, err} },
	})
	_ = dial(t, s) // never reads
	start := time.Now()
	select {
	case ev := <-closed:
		if ev.reason != ReasonShutdown {
			t.Fatalf("reason %v", ev.reason)
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Fatalf("closed after %v, before the timeout", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not force-closed after the timeout")
	}
}

// TestHighWater: a client that never reads is closed at the mark; an echo
// client on the same server is unaffected.
func TestHighWater(t *testing.T) {
	const hw = 1 << 20
	var hwCalls atomic.Int64
	closed := make(chan closeEvent, 4)
	s := startServer(t, Options{
		HighWater: hw,
		OnMessage: func(c *Conn, f []byte) {
			if string(f) == "flood" {
				body := bytes.Repeat([]byte{'f'}, 32<<10)
				for range 200 {
					if c.Send(body) != nil {
						return
					}
				}
				return
			}
			_ = c.Send(f)
		},
		OnHighWater: func(c *Conn, buffered int) {
			if buffered <= hw {
				panic("OnHighWater below the mark")
			}
			hwCalls.Add(1)
		},
		OnDisconnect: func(c *Conn, r CloseReason, err error) { closed <- closeEvent{c.ID(), r, err} },
	})
	slow := dial(t, s)
	good := dial(t, s)
	if _, err := slow.Write(encodeFrame([]byte("flood"))); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-closed:
		if ev.reason != ReasonHighWater {
			t.Fatalf("reason %v, want high_water", ev.reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slow reader not closed")
	}
	if hwCalls.Load() != 1 {
		t.Fatalf("OnHighWater called %d times", hwCalls.Load())
	}
	r := bufio.NewReader(good)
	for i := range 100 {
		if _, err := good.Write(encodeFrame([]byte("ping" + strconv.Itoa(i)))); err != nil {
			t.Fatal(err)
		}
		f, err := readFrame(r)
		if err != nil || string(f) != "ping"+strconv.Itoa(i) {
			t.Fatalf("good client: %q %v", f, err)
		}
	}
	if got := s.Stats().Closes[ReasonHighWater]; got != 1 {
		t.Fatalf("Closes[high_water] = %d", got)
	}
}

func TestIdleKick(t *testing.T) {
	const idle = 200 * time.Millisecond
	closed := make(chan closeEvent, 4)
	s := startServer(t, Options{
		IdleTimeout:  idle,
		OnMessage:    func(c *Conn, f []byte) {},
		OnDisconnect: func(c *Conn, r CloseReason, err error) { closed <- closeEvent{c.ID(), r, err} },
	})
	start := time.Now()
	quiet := dial(t, s)
	busy := dial(t, s)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(idle / 4)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				if _, err := busy.Write([]byte{0, 0, 0, 1, 'x'}); err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	expectClosed(t, quiet, 3*time.Second)
	if d := time.Since(start); d < idle {
		t.Fatalf("idle conn closed after %v < %v", d, idle)
	}
	ev := <-closed
	if ev.reason != ReasonIdle {
		t.Fatalf("reason %v, want idle", ev.reason)
	}
	time.Sleep(3 * idle) // the busy connection must survive several timeouts
	select {
	case ev := <-closed:
		t.Fatalf("busy connection closed: %v", ev.reason)
	default:
	}
	if n := s.Stats().Conns; n != 1 {
		t.Fatalf("Conns = %d, want 1", n)
	}
}

// goid returns the current goroutine's id (test-only diagnostics).
func goid() string {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	f := strings.Fields(string(buf[:n]))
	return f[1]
}

func TestTimersRunOnLoop(t *testing.T) {
	type rec struct{ msgG, timerG string }
	res := make(chan rec, 1)
	var every atomic.Int64
	var everyTimer atomic.Pointer[Timer]
	s := startServer(t, Options{
		Loops: 1,
		OnMessage: func(c *Conn, f []byte) {
			g := goid()
			c.RunAfter(20*time.Millisecond, func() {
				res <- rec{g, goid()}
				if err := c.Send([]byte("timer")); err != nil {
					panic(err)
				}
			})
			tm := c.RunEvery(10*time.Millisecond, func() {
				if goid() != g {
					panic("RunEvery off the loop")
				}
				every.Add(1)
			})
			everyTimer.Store(tm)
			stopped := c.RunAfter(10*time.Millisecond, func() { panic("stopped timer ran") })
			if !stopped.Stop() {
				panic("Stop reported inactive")
			}
		},
	})
	c := dial(t, s)
	if _, err := c.Write(encodeFrame([]byte("go"))); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.msgG != r.timerG {
		t.Fatalf("timer ran on goroutine %s, callbacks on %s", r.timerG, r.msgG)
	}
	f, err := readFrame(c)
	if err != nil || string(f) != "timer" {
		t.Fatalf("%q %v", f, err)
	}
	waitFor(t, 5*time.Second, "RunEvery ticks", func() bool { return every.Load() >= 3 })
	everyTimer.Load().Stop()
	n := every.Load()
	time.Sleep(50 * time.Millisecond)
	if every.Load() > n+1 {
		t.Fatalf("RunEvery kept running after Stop: %d -> %d", n, every.Load())
	}
}

func TestGracefulServerShutdown(t *testing.T) {
	const conns = 50
	var mu sync.Mutex
	reasons := map[CloseReason]int{}
	opts := echoOpts()
	opts.OnConnect = func(c *Conn) { _ = c.Send([]byte("welcome")) }
	opts.OnDisconnect = func(c *Conn, r CloseReason, err error) { mu.Lock(); reasons[r]++; mu.Unlock() }
	opts.Addr = "127.0.0.1:0"
	opts.Loops = 2
	opts.Logger = testLogger()
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	var clients []net.Conn
	for range conns {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		clients = append(clients, c)
	}
	for _, c := range clients {
		if f, err := readFrame(c); err != nil || string(f) != "welcome" {
			t.Fatalf("%q %v", f, err)
		}
	}
	// Each client reads until EOF and then closes, as a real client does.
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(io.Discard, c)
			_ = c.Close()
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if reasons[ReasonShutdown] != conns {
		t.Fatalf("reasons %v", reasons)
	}
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Fatal("dial after Shutdown succeeded")
	}
	if st := s.Stats(); st.Conns != 0 || st.Accepted != conns {
		t.Fatalf("stats %+v", st)
	}
}

func TestServerShutdownForcesStuckPeers(t *testing.T) {
	s, err := NewServer(Options{Addr: "127.0.0.1:0", Loops: 1, Logger: testLogger(),
		OnConnect: func(c *Conn) {
			for range 100 {
				_ = c.Send(bytes.Repeat([]byte{'x'}, 60000))
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", s.Addr().String()) // never reads
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, 5*time.Second, "connection", func() bool { return s.Stats().Conns == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
}

func TestConnAPI(t *testing.T) {
	type seen struct {
		ctxDone bool
		value   any
	}
	got := make(chan seen, 1)
	var conn atomic.Pointer[Conn]
	s := startServer(t, Options{
		OnConnect: func(c *Conn) { c.SetValue("v1"); conn.Store(c) },
		OnMessage: func(c *Conn, f []byte) { c.ForceClose(ReasonOverload) },
		OnDisconnect: func(c *Conn, r CloseReason, err error) {
			if r != ReasonOverload {
				panic(r.String())
			}
			got <- seen{c.Context().Err() != nil, c.Value()}
		},
	})
	c := dial(t, s)
	waitFor(t, 5*time.Second, "connect", func() bool { return conn.Load() != nil })
	sc := conn.Load()
	ctx := sc.Context()
	if sc.ID() == 0 || sc.RemoteAddr().String() != c.LocalAddr().String() {
		t.Fatalf("id %d remote %v local %v", sc.ID(), sc.RemoteAddr(), c.LocalAddr())
	}
	var visited int
	s.Range(func(rc *Conn) bool { visited++; return true })
	if visited != 1 {
		t.Fatalf("Range visited %d", visited)
	}
	if _, err := c.Write(encodeFrame([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	ev := <-got
	if !ev.ctxDone || ev.value != "v1" {
		t.Fatalf("%+v", ev)
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
		t.Fatal("context not cancelled")
	}
	if err := sc.Send([]byte("late")); !errors.Is(err, ErrConnClosed) {
		t.Fatalf("Send after close: %v", err)
	}
	expectClosed(t, c, 5*time.Second)
	st := s.Stats()
	if st.Closes[ReasonOverload] != 1 || st.FramesIn != 1 || st.Accepted != 1 || st.Dropped != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWriteComplete(t *testing.T) {
	done := make(chan struct{}, 16)
	s := startServer(t, Options{
		OnMessage: func(c *Conn, f []byte) {
			for range 100 {
				_ = c.Send(bytes.Repeat([]byte{'w'}, 60000))
			}
		},
		OnWriteComplete: func(c *Conn) { done <- struct{}{} },
	})
	c := dial(t, s)
	if _, err := c.Write(encodeFrame([]byte("go"))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("write complete before the client read 6 MB")
	default:
	}
	go func() { _, _ = io.CopyN(io.Discard, c, 100*60004) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no OnWriteComplete")
	}
}

func TestSetCodecMidStream(t *testing.T) {
	s := startServer(t, Options{
		NewCodec: func() Codec { return NewLineCodec(100) },
		OnMessage: func(c *Conn, f []byte) {
			if string(f) == "BINARY" {
				c.SetCodec(NewLengthFieldCodec(100))
				_ = c.Send([]byte("switched"))
				return
			}
			_ = c.Send(append([]byte("echo:"), f...))
		},
	})
	c := dial(t, s)
	// Text line, the switch command and a binary frame in one write.
	msg := append([]byte("hello\r\n\r\nBINARY\r\n"), encodeFrame([]byte("bin"))...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for _, want := range []string{"echo:hello", "echo:"} {
		line, err := r.ReadString('\n')
		if err != nil || line != want+"\r\n" {
			t.Fatalf("line %q %v, want %q", line, err, want)
		}
	}
	for _, want := range []string{"switched", "echo:bin"} {
		f, err := readFrame(r)
		if err != nil || string(f) != want {
			t.Fatalf("frame %q %v, want %q", f, err, want)
		}
	}
}

func TestLineTooLongCloses(t *testing.T) {
	frameErr := make(chan error, 1)
	s := startServer(t, Options{
		NewCodec:     func() Codec { return NewLineCodec(32) },
		OnFrameError: func(c *Conn, err error) { frameErr <- err; _ = c.Send([]byte("500 line too long")) },
	})
	c := dial(t, s)
	if _, err := c.Write(bytes.Repeat([]byte{'a'}, 80)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "500 line too long\r\n" {
		t.Fatalf("%q %v", line, err)
	}
	if err := <-frameErr; !errors.Is(err, ErrLineTooLong) {
		t.Fatal(err)
	}
	expectClosed(t, c, 5*time.Second)
}

func TestProxyProtocol(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header []byte
		want   string
	}{
		{"v1", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 40000 7000\r\n"), "203.0.113.7:40000"},
		{"v2", proxyV2Header(t), "198.51.100.9:5555"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addrs := make(chan string, 1)
			s := startServer(t, Options{
				ProxyProtocol: true,
				OnConnect:     func(c *Conn) { addrs <- c.RemoteAddr().String() },
				OnMessage:     func(c *Conn, f []byte) { _ = c.Send([]byte(c.RemoteAddr().String())) },
			})
			c := dial(t, s)
			// Header split from the first frame, which follows in the same write.
			if _, err := c.Write(tc.header[:5]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
			if _, err := c.Write(append(tc.header[5:], encodeFrame([]byte("hi"))...)); err != nil {
				t.Fatal(err)
			}
			if got := <-addrs; got != tc.want {
				t.Fatalf("OnConnect RemoteAddr %s, want %s", got, tc.want)
			}
			f, err := readFrame(c)
			if err != nil || string(f) != tc.want {
				t.Fatalf("%q %v", f, err)
			}
		})
	}
	t.Run("header timeout", func(t *testing.T) {
		s := startServer(t, Options{ProxyProtocol: true, ProxyHeaderTimeout: 100 * time.Millisecond,
			OnConnect: func(c *Conn) { panic("connected") }})
		c := dial(t, s)
		if _, err := c.Write([]byte("PROXY TCP4 1.2.3.4")); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, c, 5*time.Second)
		waitFor(t, 5*time.Second, "protocol close", func() bool { return s.Stats().Closes[ReasonProtocol] == 1 })
	})
	t.Run("garbage", func(t *testing.T) {
		s := startServer(t, Options{ProxyProtocol: true, OnConnect: func(c *Conn) { panic("connected") }})
		c := dial(t, s)
		if _, err := c.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, c, 5*time.Second)
		waitFor(t, 5*time.Second, "protocol close", func() bool { return s.Stats().Closes[ReasonProtocol] == 1 })
	})
}

func proxyV2Header(t *testing.T) []byte {
	t.Helper()
	b := append([]byte{}, proxyV2Sig...)
	b = append(b, 0x21, 0x11, 0, 12) // v2 PROXY, TCP over IPv4, 12 bytes
	b = append(b, 198, 51, 100, 9, 10, 0, 0, 1)
	b = binary.BigEndian.AppendUint16(b, 5555)
	b = binary.BigEndian.AppendUint16(b, 7000)
	return b
}

// TestFanoutSendOrder: goroutines off the loops each send a sequence to
// every one of many connections (the connections share their loops' flush
// lists); every client gets every frame, in order per goroutine.
func TestFanoutSendOrder(t *testing.T) {
	const conns, goroutines, perG = 50, 4, 300
	var mu sync.Mutex
	var all []*Conn
	ready := make(chan struct{})
	s := startServer(t, Options{OnConnect: func(c *Conn) {
		mu.Lock()
		defer mu.Unlock()
		all = append(all, c)
		if len(all) == conns {
			close(ready)
		}
	}})
	clients := make([]net.Conn, conns)
	for i := range clients {
		clients[i] = dial(t, s)
	}
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("connections not up")
	}
	for g := range goroutines {
		go func() {
			for i := range perG {
				f := fmt.Appendf(nil, "%d:%d", g, i)
				for _, c := range all {
					if err := c.Send(f); err != nil {
						panic(err)
					}
				}
			}
		}()
	}
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := bufio.NewReader(c)
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			next := make([]int, goroutines)
			for n := range goroutines * perG {
				f, err := readFrame(r)
				if err != nil {
					errs <- fmt.Errorf("frame %d: %w", n, err)
					return
				}
				gs, is, _ := strings.Cut(string(f), ":")
				g, _ := strconv.Atoi(gs)
				i, _ := strconv.Atoi(is)
				if next[g] != i {
					errs <- fmt.Errorf("goroutine %d: got seq %d, want %d", g, i, next[g])
					return
				}
				next[g]++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
