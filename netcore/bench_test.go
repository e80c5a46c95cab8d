package netcore

// Benchmarks: echo round trips over loopback for netcore, raw gnet and a
// goroutine-per-connection net server, and resident memory per idle
// connection. See README.md for the command and figures.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/panjf2000/gnet/v2"
)

const benchConns = 1000

// echoTarget is a running echo server under benchmark.
type echoTarget struct {
	addr string
	stop func()
}

type serverKind struct {
	name  string
	start func(tb testing.TB) echoTarget
}

var serverKinds = []serverKind{
	{"netcore", startNetcoreEcho},
	{"gnet", startGnetEcho},
	{"net", startNetEcho},
}

func startNetcoreEcho(tb testing.TB) echoTarget {
	s, err := NewServer(Options{
		Addr:      "127.0.0.1:0",
		Logger:    testLogger(),
		OnMessage: func(c *Conn, f []byte) { _ = c.Send(f) },
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(); err != nil {
		tb.Fatal(err)
	}
	return echoTarget{s.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}}
}

// rawGnetEcho is a correct length-field echo written directly on gnet: the
// baseline netcore is measured against (no copies, no output queue).
type rawGnetEcho struct {
	gnet.BuiltinEventEngine
	eng    gnet.Engine
	booted chan struct{}
}

func (h *rawGnetEcho) OnBoot(eng gnet.Engine) gnet.Action {
	h.eng = eng
	close(h.booted)
	return gnet.None
}

func (h *rawGnetEcho) OnTraffic(c gnet.Conn) gnet.Action {
	for {
		if c.InboundBuffered() < 4 {
			return gnet.None
		}
		hdr, _ := c.Peek(4)
		n := int(binary.BigEndian.Uint32(hdr))
		if n == 0 || n > DefaultMaxFrame {
			return gnet.Close
		}
		if c.InboundBuffered() < 4+n {
			return gnet.None
		}
		frame, _ := c.Peek(4 + n)
		_, _ = c.Write(frame)
		_, _ = c.Discard(4 + n)
	}
}

func startGnetEcho(tb testing.TB) echoTarget {
	addr := freeAddr(tb)
	h := &rawGnetEcho{booted: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- gnet.Run(h, "tcp://"+addr, gnet.WithMulticore(true), gnet.WithReuseAddr(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay), gnet.WithLogger(gnetLogger{testLogger()}))
	}()
	select {
	case <-h.booted:
	case err := <-done:
		tb.Fatalf("gnet: %v", err)
	}
	return echoTarget{addr, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.eng.Stop(ctx)
		<-done
	}}
}

// startNetEcho is the classic goroutine-per-connection server.
func startNetEcho(tb testing.TB) echoTarget {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				var hdr [4]byte
				for {
					if _, err := io.ReadFull(r, hdr[:]); err != nil {
						return
					}
					n := binary.BigEndian.Uint32(hdr[:])
					if n == 0 || n > DefaultMaxFrame {
						return
					}
					buf := make([]byte, 4+n)
					copy(buf, hdr[:])
					if _, err := io.ReadFull(r, buf[4:]); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return echoTarget{ln.Addr().String(), func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}}
}

func freeAddr(tb testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// BenchmarkEcho measures closed-loop echo round trips with 1,000
// connections, each sending one frame and waiting for it; ns/op is per
// round trip over all connections. Reports rt/s and p99 latency.
func BenchmarkEcho(b *testing.B) {
	for _, size := range []int{64, 1024} {
		for _, k := range serverKinds {
			b.Run(fmt.Sprintf("%s/%dB", k.name, size), func(b *testing.B) {
				tgt := k.start(b)
				defer tgt.stop()
				benchEcho(b, tgt.addr, size)
			})
		}
	}
}

func benchEcho(b *testing.B, addr string, size int) {
	conns := make([]net.Conn, benchConns)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	frame := binary.BigEndian.AppendUint32(nil, uint32(size))
	frame = append(frame, make([]byte, size)...)
	hists := make([]*hdrhistogram.Histogram, benchConns)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.SetBytes(int64(2 * len(frame)))
	b.ResetTimer()
	start := time.Now()
	for i, c := range conns {
		h := hdrhistogram.New(1, 10_000_000, 3)
		hists[i] = h
		wg.Add(1)
		go func() {
			defer wg.Done()
			reply := make([]byte, len(frame))
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if _, err := c.Write(frame); err != nil {
					failed.Store(&err)
					return
				}
				if _, err := io.ReadFull(c, reply); err != nil {
					failed.Store(&err)
					return
				}
				_ = h.RecordValue(time.Since(t0).Microseconds())
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if p := failed.Load(); p != nil {
		b.Fatalf("round trip: %v", *p)
	}
	all := hdrhistogram.New(1, 10_000_000, 3)
	for _, h := range hists {
		all.Merge(h)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rt/s")
	b.ReportMetric(float64(all.ValueAtQuantile(99)), "p99-µs")
	b.ReportMetric(float64(all.ValueAtQuantile(50)), "p50-µs")
}

// BenchmarkIdleConnMemory measures the server process's resident memory
// per idle connection with 10,000 connections held by a child process.
// The measurement is made once per server kind; b.N is ignored.
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 10000
	for _, k := range serverKinds {
		b.Run(k.name, func(b *testing.B) {
			perConn, goroutines := idleMemory(b, k, n)
			b.ReportMetric(float64(perConn), "B/conn")
			b.ReportMetric(float64(goroutines), "goroutines")
		})
	}
}

var idleCache sync.Map // kind name -> [2]int64

func idleMemory(b *testing.B, k serverKind, n int) (int64, int64) {
	if v, ok := idleCache.Load(k.name); ok {
		r := v.([2]int64)
		return r[0], r[1]
	}
	tgt := k.start(b)
	defer tgt.stop()
	before := settledRSS()
	h := startHolder(b, tgt.addr, n)
	time.Sleep(200 * time.Millisecond) // let the server finish the last echoes
	after := settledRSS()
	goroutines := int64(numGoroutine())
	h.release(b)
	r := [2]int64{(after - before) / int64(n), goroutines}
	if after < 0 || before < 0 {
		b.Fatal(errors.New("cannot read /proc/self/status"))
	}
	idleCache.Store(k.name, r)
	return r[0], r[1]
}

// BenchmarkEchoOffLoop measures the cross-goroutine output path the chat
// server uses: each frame is handed to an Executor queue and the reply is
// sent from the worker. netcore's Send (per-connection buffer + one loop
// flush per batch) against gnet's AsyncWrite per frame.
func BenchmarkEchoOffLoop(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("netcore-send/%dB", size), func(b *testing.B) {
			exec := NewExecutor(ExecutorOptions{})
			defer exec.Close(context.Background())
			s, err := NewServer(Options{
				Addr:      "127.0.0.1:0",
				Logger:    testLogger(),
				OnConnect: func(c *Conn) { c.SetValue(exec.NewQueue()) },
				OnMessage: func(c *Conn, f []byte) {
					q := c.Value().(*Queue)
					if q.Submit(func() { _ = c.Send(f) }) != nil {
						c.ForceClose(ReasonOverload)
					}
				},
			})
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = s.Shutdown(ctx)
			}()
			benchEcho(b, s.Addr().String(), size)
		})
		b.Run(fmt.Sprintf("gnet-asyncwrite/%dB", size), func(b *testing.B) {
			exec := NewExecutor(ExecutorOptions{})
			defer exec.Close(context.Background())
			addr := freeAddr(b)
			h := &asyncGnetEcho{rawGnetEcho: rawGnetEcho{booted: make(chan struct{})}, exec: exec}
			done := make(chan error, 1)
			go func() {
				done <- gnet.Run(h, "tcp://"+addr, gnet.WithMulticore(true), gnet.WithReuseAddr(true),
					gnet.WithTCPNoDelay(gnet.TCPNoDelay), gnet.WithLogger(gnetLogger{testLogger()}))
			}()
			select {
			case <-h.booted:
			case err := <-done:
				b.Fatalf("gnet: %v", err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = h.eng.Stop(ctx)
				<-done
			}()
			benchEcho(b, addr, size)
		})
	}
}

// asyncGnetEcho replies from executor workers with AsyncWrite.
type asyncGnetEcho struct {
	rawGnetEcho
	exec *Executor
}

func (h *asyncGnetEcho) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	c.SetContext(h.exec.NewQueue())
	return nil, gnet.None
}

func (h *asyncGnetEcho) OnTraffic(c gnet.Conn) gnet.Action {
	q := c.Context().(*Queue)
	for {
		if c.InboundBuffered() < 4 {
			return gnet.None
		}
		hdr, _ := c.Peek(4)
		n := int(binary.BigEndian.Uint32(hdr))
		if n == 0 || n > DefaultMaxFrame {
			return gnet.Close
		}
		if c.InboundBuffered() < 4+n {
			return gnet.None
		}
		frame, _ := c.Peek(4 + n)
		cp := append([]byte(nil), frame...)
		_, _ = c.Discard(4 + n)
		if q.Submit(func() { _ = c.AsyncWrite(cp, nil) }) != nil {
			return gnet.Close
		}
	}
}

// BenchmarkSendFanout measures Send from a goroutine off the loops to many
// connections, the group fan-out path of the chat server: one op is one
// frame sent to each of 500 connections (and read by their clients).
func BenchmarkSendFanout(b *testing.B) {
	const fanout = 500
	var mu sync.Mutex
	var conns []*Conn
	s, err := NewServer(Options{
		Addr:   "127.0.0.1:0",
		Logger: testLogger(),
		OnConnect: func(c *Conn) {
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
	frame := make([]byte, 200)
	var wg sync.WaitGroup
	var read atomic.Int64
	clients := make([]net.Conn, fanout)
	for i := range clients {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				read.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	}
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
		wg.Wait()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(conns)
		mu.Unlock()
		if n == fanout {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d connections up", n, fanout)
		}
		time.Sleep(time.Millisecond)
	}
	want := int64(0)
	b.ResetTimer()
	cpu0 := processCPU(b)
	for range b.N {
		for _, c := range conns {
			if err := c.Send(frame); err != nil {
				b.Fatal(err)
			}
		}
		want += int64(fanout * (4 + len(frame)))
		// Keep at most a few rounds in flight, as a chat client reads.
		// Sleep rather than spin, so that cpu-ns/send is the cost of the
		// sends, flushes and reads, not of waiting.
		for read.Load() < want-int64(4*fanout*(4+len(frame))) {
			time.Sleep(20 * time.Microsecond)
		}
	}
	for read.Load() < want {
		if time.Now().After(deadline.Add(time.Minute)) {
			b.Fatal("clients did not receive everything")
		}
		time.Sleep(20 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*fanout)/b.Elapsed().Seconds(), "sends/s")
	// CPU of the whole process (server, sender and the clients reading):
	// steadier than wall-clock rates on a shared machine.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N*fanout), "cpu-ns/send")
}

// processCPU returns the process's user+system CPU time in nanoseconds.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
