package netcore

import (
	"bufio"
	"context"
	"testing"
	"time"
)

// TestWaitUnsentPacesBulkOutput: a producer that waits between chunks gets
// 16 MiB through a slow reader with a 1 MiB high-water mark; one that does
// not wait is closed at the mark. The unpaced case has a reader that reads
// nothing and a producer that offers 64 MiB, more than the loopback socket
// buffers can take whatever their tuning, so that the mark must be reached
// however fast or slow the machine is.
func TestWaitUnsentPacesBulkOutput(t *testing.T) {
	const chunk, mark = 64 << 10, 1 << 20
	for _, paced := range []bool{true, false} {
		total := 16 << 20
		if !paced {
			total = 64 << 20
		}
		done := make(chan error, 1)
		opts := Options{Addr: "127.0.0.1:0", HighWater: mark, Logger: testLogger()}
		opts.OnConnect = func(c *Conn) {
			go func() {
				body := make([]byte, chunk)
				for sent := 0; sent < total; sent += chunk {
					if paced {
						if err := c.WaitUnsent(context.Background(), mark/2); err != nil {
							done <- err
							return
						}
					}
					if err := c.Send(body); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
		}
		s := startServer(t, opts)
		conn := dial(t, s)
		if !paced {
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("unpaced producer sent %d MiB to a reader that reads nothing without being stopped at the high-water mark", total>>20)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("unpaced producer neither finished nor was stopped within 30 s")
			}
			continue
		}
		r := bufio.NewReaderSize(conn, 4096)
		got := 0
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for got < total {
			f, err := readFrame(r)
			if err != nil {
				break
			}
			got += len(f)
			if got%(1<<20) == 0 {
				time.Sleep(40 * time.Millisecond) // a slow but live reader
			}
		}
		if err := <-done; err != nil || got != total {
			t.Fatalf("paced: got %d of %d bytes, producer: %v", got, total, err)
		}
	}
}

// TestIdleCountsFramesNotBytes: a peer trickling the bytes of a frame that
// never completes is idle.
func TestIdleCountsFramesNotBytes(t *testing.T) {
	const idle = 200 * time.Millisecond
	closed := make(chan CloseReason, 1)
	s := startServer(t, Options{
		Addr:         "127.0.0.1:0",
		IdleTimeout:  idle,
		Logger:       testLogger(),
		OnMessage:    func(c *Conn, f []byte) {},
		OnDisconnect: func(c *Conn, r CloseReason, err error) { closed <- r },
	})
	conn := dial(t, s)
	if _, err := conn.Write([]byte{0, 0, 0x10, 0}); err != nil { // announces 4096 bytes
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	tk := time.NewTicker(idle / 4)
	defer tk.Stop()
	for {
		select {
		case r := <-closed:
			if r != ReasonIdle {
				t.Fatalf("closed for %v, want idle", r)
			}
			return
		case <-tk.C:
			_, _ = conn.Write([]byte{'x'})
		case <-deadline:
			t.Fatal("a connection trickling a partial frame was never closed as idle")
		}
	}
}
