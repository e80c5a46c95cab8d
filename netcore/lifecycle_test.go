package netcore

import (
	"bufio"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOnShutdownLastFrame: OnShutdown may send a last frame; it arrives
// before EOF, after everything sent earlier.
func TestOnShutdownLastFrame(t *testing.T) {
	var shutdownCalls atomic.Int64
	s, err := NewServer(Options{
		Addr:   "127.0.0.1:0",
		Loops:  2,
		Logger: testLogger(),
		OnConnect: func(c *Conn) {
			_ = c.Send([]byte("welcome"))
		},
		OnShutdown: func(c *Conn) {
			shutdownCalls.Add(1)
			if err := c.Send([]byte("goaway")); err != nil {
				panic(err)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	const n = 20
	results := make(chan error, n)
	for range n {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		r := bufio.NewReader(c)
		if f, err := readFrame(r); err != nil || string(f) != "welcome" {
			t.Fatalf("%q %v", f, err)
		}
		go func() {
			defer c.Close()
			f, err := readFrame(r)
			if err == nil && string(f) != "goaway" {
				err = io.ErrUnexpectedEOF
			}
			if err == nil {
				_, err = io.Copy(io.Discard, r) // then EOF
			}
			results <- err
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-results; err != nil {
			t.Fatalf("client: %v", err)
		}
	}
	if shutdownCalls.Load() != n {
		t.Fatalf("OnShutdown called %d times", shutdownCalls.Load())
	}
}

// TestCloseRaces: connections closed concurrently by the peer, ForceClose,
// Shutdown and Send-heavy goroutines get exactly one OnDisconnect each,
// and the counters add up.
func TestCloseRaces(t *testing.T) {
	const n = 200
	var mu sync.Mutex
	disconnects := map[uint64]int{}
	conns := make(chan *Conn, n)
	s := startServer(t, Options{
		IdleTimeout: time.Second,
		HighWater:   256 << 10,
		OnConnect:   func(c *Conn) { conns <- c },
		OnMessage:   func(c *Conn, f []byte) { _ = c.Send(f) },
		OnDisconnect: func(c *Conn, r CloseReason, err error) {
			mu.Lock()
			disconnects[c.ID()]++
			mu.Unlock()
		},
	})
	clients := make([]net.Conn, n)
	for i := range clients {
		clients[i] = dial(t, s)
	}
	var wg sync.WaitGroup
	for i := range n {
		c := <-conns
		client := clients[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Traffic in both directions, then a random way to die, while
			// a sender keeps going.
			go func() {
				body := make([]byte, 512)
				for c.Send(body) == nil {
					time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
				}
			}()
			_, _ = client.Write(encodeFrame([]byte("ping")))
			time.Sleep(time.Duration(rand.IntN(5000)) * time.Microsecond)
			switch i % 4 {
			case 0:
				_ = client.Close()
			case 1:
				c.ForceClose(ReasonForced)
			case 2:
				c.Shutdown(100 * time.Millisecond)
				go func() { _, _ = io.Copy(io.Discard, client) }()
			case 3:
				c.ForceClose(ReasonOverload)
				c.Shutdown(time.Second)
				_ = client.Close()
			}
		}()
	}
	wg.Wait()
	waitFor(t, 10*time.Second, "all closed", func() bool { return s.Stats().Conns == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(disconnects) != n {
		t.Fatalf("%d connections got OnDisconnect, want %d", len(disconnects), n)
	}
	for id, k := range disconnects {
		if k != 1 {
			t.Fatalf("conn %d: OnDisconnect called %d times", id, k)
		}
	}
	st := s.Stats()
	var closes uint64
	for _, v := range st.Closes {
		closes += v
	}
	if closes != st.Accepted || st.Accepted != n {
		t.Fatalf("closes %d, accepted %d: %+v", closes, st.Accepted, st)
	}
}
