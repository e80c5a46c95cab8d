package netcore

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestMain lets the test binary run as a client process ("hold" mode) so
// that 10,000 connections do not need 20,000 descriptors in one process.
func TestMain(m *testing.M) {
	if addr := os.Getenv("NETCORE_HOLD_ADDR"); addr != "" {
		n, _ := strconv.Atoi(os.Getenv("NETCORE_HOLD_CONNS"))
		if err := holdConns(addr, n); err != nil {
			fmt.Fprintln(os.Stderr, "hold:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// holdConns opens n connections to addr, echoes one frame on each, prints
// "ready" and keeps them open until stdin is closed.
func holdConns(addr string, n int) error {
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	const workers = 64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				c, err := dialRetry(addr)
				if err != nil {
					errs <- err
					return
				}
				conns[i] = c
				msg := binary.BigEndian.AppendUint32(nil, 5)
				if _, err := c.Write(append(msg, "hello"...)); err != nil {
					errs <- fmt.Errorf("conn %d write: %w", i, err)
					return
				}
				var got [9]byte
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				if _, err := io.ReadFull(c, got[:]); err != nil || string(got[4:]) != "hello" {
					errs <- fmt.Errorf("conn %d echo: %q %v", i, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
	for _, c := range conns {
		_ = c.Close()
	}
	return nil
}

func dialRetry(addr string) (net.Conn, error) {
	var err error
	for range 50 {
		var c net.Conn
		if c, err = net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
			return c, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("dial %s: %w", addr, err)
}
