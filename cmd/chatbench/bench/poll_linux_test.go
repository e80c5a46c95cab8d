//go:build linux

package bench

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// TestPollerForwardsBigFrames: frames the poller does not handle reach the
// client library's side (Read) byte for byte, also frames larger than the
// poller's buffer and frames cut across many reads.
func TestPollerForwardsBigFrames(t *testing.T) {
	r := &run{cfg: DefaultConfig(), epoch: time.Now(), ackHist: newShardedHist(), delHist: newShardedHist()}
	r.cfg.Timeout = 5 * time.Second
	ps := newPollSet(r)
	if ps == nil { // only when epoll_create1 fails, which on Linux is a fault
		t.Fatal("newPollSet: no epoll poller on Linux")
	}
	defer ps.close()
	r.polls = ps
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv := <-accepted
	if srv == nil {
		t.Fatal("accept failed")
	}
	defer srv.Close()
	lc := newLeanConn(r, nc, nil)
	if lc.nc != nil {
		t.Fatal("not in poll mode")
	}
	// Three frames: small, bigger than the poller's buffer, small.
	var want []byte
	for _, n := range []int{40, 3*pollBufSize + 123, 17} {
		body := bytes.Repeat([]byte("y"), n)
		copy(body, `{"msgid":299,"errno":400,"errmsg":"`)
		body[n-2], body[n-1] = '"', '}'
		want = binary.BigEndian.AppendUint32(want, uint32(n))
		want = append(want, body...)
	}
	go func() {
		// In uneven pieces, with pauses, so reads cut frames anywhere.
		for b := want; len(b) > 0; {
			n := min(len(b), 70001)
			if _, err := srv.Write(b[:n]); err != nil {
				return
			}
			b = b[n:]
			time.Sleep(time.Millisecond)
		}
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(lc, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("forwarded bytes differ")
	}
	// Writes go out on the socket.
	if _, err := lc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(srv, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("server read %q, %v", buf, err)
	}
	// The peer's close ends Read with EOF.
	srv.Close()
	if n, err := lc.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("after close: %d, %v; want EOF", n, err)
	}
	if err := lc.Close(); err != nil {
		t.Fatal(err)
	}
}
