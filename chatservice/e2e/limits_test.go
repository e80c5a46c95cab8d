package e2e

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// §2: requests pipelined in one write are answered in order.
func testPipelined(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	befriend(t, a, b)
	type rq struct {
		msgid int
		reqid int64
		errno int64
	}
	var want []rq
	var buf []byte
	for i := range 50 {
		var msgid int
		var f M
		var errno int64
		switch i % 6 {
		case 0:
			msgid = 4
		case 1:
			msgid, f = 15, nil
		case 2:
			msgid, f = 5, M{"toid": b.User.ID, "msg": fmt.Sprintf("p%d", i), "cid": fmt.Sprintf("p%d", i)}
		case 3:
			msgid, f, errno = 18, M{"friendid": noSuchID}, 404
		case 4:
			msgid, f, errno = 50, nil, 400
		case 5:
			msgid, f = 17, M{"query": "u"}
		}
		id := a.NextReqID()
		want = append(want, rq{msgid, id, errno})
		buf = append(buf, FrameBytes(Encode(msgid, id, f))...)
	}
	a.WriteRaw(buf)
	var last int64
	for _, w := range want {
		r := a.Response(w.msgid, w.reqid)
		if r.Get("errno").Int() != w.errno {
			t.Errorf("pipelined msgid %d: want errno %d, got %s", w.msgid, w.errno, r.Raw)
		}
		if w.msgid == 5 {
			if s := r.Get("seq").Int(); s != last+1 {
				t.Errorf("pipelined ONE_CHAT seq %d after %d", s, last)
			}
			last = r.Get("seq").Int()
		}
	}
}

// §6 rate limit: with --msg-rate 10 --msg-burst 20 the 21st immediate
// request gets 429 with retry_after; bad frames do not count.
func testRateLimit(t *testing.T, e *env) {
	tgt := e.newTarget(t, "--msg-rate", "10", "--msg-burst", "20")
	burst := func(c *Client, extra []byte) []int64 {
		var buf []byte
		var ids []int64
		for range 20 {
			id := c.NextReqID()
			ids = append(ids, id)
			buf = append(buf, FrameBytes(Encode(4, id, nil))...)
		}
		c.WriteRaw(append(buf, extra...))
		return ids
	}
	c := dialTo(t, tgt, 0, "rate")
	var extra []byte
	for id := int64(21); id <= 25; id++ {
		extra = append(extra, FrameBytes(Encode(4, id, nil))...)
	}
	ids := burst(c, extra)
	for i, id := range ids {
		if r := c.Response(4, id); r.Get("errno").Int() != 0 {
			t.Errorf("request %d of the burst: %s", i+1, r.Raw)
		}
	}
	// The 21st should get 429; if the frames were spread over more than
	// 100 ms on the way (a token refilled), a later one of these five must.
	var r gjson.Result
	first := int64(0)
	for id := int64(21); id <= 25; id++ {
		x := c.Response(4, id)
		if x.Get("errno").Int() == 429 && first == 0 {
			first, r = id, x
		}
	}
	if first == 0 {
		t.Fatalf("none of requests 21-25 sent at once got 429 (rate 10/s, burst 20)")
	}
	if first != 21 {
		t.Logf("the first 429 was request %d", first)
	}
	ra := r.Get("retry_after").Int()
	if ra <= 0 || ra > 1000 {
		t.Errorf("retry_after %d ms: at 10/s one token takes at most 100 ms", ra)
	}
	time.Sleep(time.Duration(ra+50) * time.Millisecond) // the server said when
	c.OK(4, nil)

	// Bad frames do not count.
	c2 := dialTo(t, tgt, 1, "rate-bad")
	var bad []byte
	for range 15 {
		bad = append(bad, FrameBytes([]byte("not json"))...)
	}
	c2.WriteRaw(bad)
	ids = burst(c2, nil)
	for range 15 {
		r := c2.Take(ReqTimeout, "ERROR", IsResponse)
		if r.Get("msgid").Int() != 299 {
			t.Fatalf("want ERROR for a bad frame, got %s", r.Raw)
		}
	}
	for i, id := range ids {
		if r := c2.Response(4, id); r.Get("errno").Int() != 0 {
			t.Errorf("request %d after 15 bad frames: %s (bad frames must not count)", i+1, r.Raw)
		}
	}
	// Rate limit comes before the shape check; it is per connection.
	c3 := dialTo(t, tgt, 0, "rate-shape")
	ids = burst(c3, FrameBytes(Encode(5, 22, M{})))
	for _, id := range ids {
		c3.Response(4, id)
	}
	if r := c3.Response(5, 22); r.Get("errno").Int() != 429 {
		t.Errorf("a bad-shape request over the limit: want 429, got %s", r.Raw)
	}
	c4 := dialTo(t, tgt, 1, "rate-login")
	u := regOn(t, c4, randName("rl", 10))
	ids = burst(c4, FrameBytes(Encode(1, 23, M{"id": u.ID, "password": u.Password})))
	for _, id := range ids {
		c4.Response(4, id)
	}
	if r := c4.Response(1, 23); r.Get("errno").Int() != 429 {
		t.Errorf("LOGIN over the rate limit: want 429, got %s", r.Raw)
	}
}

// §6 idle timeout: a silent connection is closed without a word; any frame
// resets the timer.
func testIdleTimeout(t *testing.T, e *env) {
	tgt := e.newTarget(t, "--idle-timeout", "1s")
	start := time.Now()
	silent := dialTo(t, tgt, 0, "silent")
	u := e.regOnTarget(t, tgt)
	logged := dialTo(t, tgt, 1, "logged")
	loginOn(t, logged, u)
	active := dialTo(t, tgt, 0, "active")
	// A byte every 300 ms that never completes a frame is not a frame.
	trickle := dialTo(t, tgt, 0, "trickle")
	trickleDone := make(chan struct{})
	go func() {
		defer close(trickleDone)
		hdr := FrameBytes([]byte(`{"msgid":4,"pad":"` + strings.Repeat("p", 100) + `"}`))
		for i := 0; i < len(hdr)-1; i++ {
			if trickle.WriteRawE(hdr[i:i+1]) != nil {
				return
			}
			if closed, _ := trickle.Closed(); closed {
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
	}()
	// Keep `active` busy for 2.5 s with PINGs, then 1 s with bad frames.
	for time.Since(start) < 2500*time.Millisecond {
		active.OK(4, nil)
		time.Sleep(250 * time.Millisecond)
	}
	var last time.Time
	for i := range 4 {
		if i > 0 {
			time.Sleep(250 * time.Millisecond)
		}
		active.Send("junk")
		last = time.Now()
		active.Take(ReqTimeout, "ERROR", IsResponse)
	}
	if closed, _ := active.Closed(); closed {
		t.Fatalf("an active connection was closed by the idle timeout")
	}
	for _, c := range []*Client{silent, logged, trickle} {
		if rest := c.ExpectClosed(3 * time.Second); len(rest) > 0 {
			t.Errorf("%s: idle close must be without a word, got %s", c.Label, rest[0].Body)
		}
	}
	rest := active.ExpectClosed(4 * time.Second)
	if d := time.Since(last); d < 900*time.Millisecond {
		t.Errorf("closed %v after the last frame; the idle timeout is 1s", d)
	}
	if len(rest) > 0 {
		t.Errorf("idle close must be without a word, got %s", rest[0].Body)
	}
	<-trickleDone
}

// regOnTarget registers a user on a private target.
func (e *env) regOnTarget(t *testing.T, tgt Target) *User {
	t.Helper()
	c := dialTo(t, tgt, 0, "reg")
	defer c.Close()
	return regOn(t, c, randName("u", 12))
}

// §1/§6 max frame: with --max-frame 1024, 1024 is fine, 1025 → ERROR 413 and close.
func testMaxFrame(t *testing.T, e *env) {
	tgt := e.newTarget(t, "--max-frame", "1024")
	body := func(n int) string {
		s := `{"msgid":4,"reqid":3,"pad":""}`
		return `{"msgid":4,"reqid":3,"pad":"` + strings.Repeat("p", n-len(s)) + `"}`
	}
	c := dialTo(t, tgt, 0, "mf")
	c.Send(body(1024))
	if r := c.Response(4, 3); r.Get("errno").Int() != 0 {
		t.Fatalf("frame of 1024 bytes: %s", r.Raw)
	}
	c.Send(body(1025))
	expectErrorThenClose(t, c, 413)
	c2 := dialTo(t, tgt, 0, "mf2")
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 1025)
	c2.WriteRaw(hdr[:])
	expectErrorThenClose(t, c2, 413)
}

// §6 high water: a connection whose unsent output exceeds --high-water is closed.
func testHighWater(t *testing.T, e *env) {
	tgt := e.newTarget(t, "--high-water", "65536", "--msg-rate", "0")
	a := dialTo(t, tgt, 0, "a")
	u := e.regOnTarget(t, tgt)
	loginOn(t, a, e.regOnTarget(t, tgt))
	b := dialTo(t, tgt, 0, "b")
	loginOn(t, b, u)
	befriend(t, a, b)
	// b is offline while the messages are stored (live pushes of 400 KB to a
	// 64 KB high-water mark may legitimately close even a fast reader).
	b.Close()
	waitOffline(t, a, u.ID)
	big := strings.Repeat("x", 4000)
	var buf []byte
	var ids []int64
	for i := range 100 {
		id := a.NextReqID()
		ids = append(ids, id)
		buf = append(buf, FrameBytes(Encode(5, id, M{"toid": u.ID, "msg": big, "cid": fmt.Sprintf("hw%d", i)}))...)
	}
	a.WriteRaw(buf)
	for _, id := range ids {
		if r := a.Response(5, id); r.Get("errno").Int() != 0 {
			t.Fatalf("send: %s", r.Raw)
		}
	}
	// A normal reader gets its 400 KB offline backlog although the high-water
	// mark is 64 KB: offline delivery must be paced, not cut off.
	b2 := dialTo(t, tgt, 0, "b2")
	loginOn(t, b2, u)
	if got := seqs(b2.Collect(201, 100, 20*time.Second, nil)); !equalSeqs(got, seqRange(1, 100)) {
		t.Errorf("offline backlog over the high-water mark: %v", got)
	}
	b2.OK(4, nil)
	b2.Close()

	// A reader that does not read: a small receive buffer, 150 HISTORY
	// requests of ~400 KB each, then nothing read for a while.
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", tgt.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	out := FrameBytes(Encode(1, 1, M{"token": u.Token}))
	const n = 150
	for i := range n {
		out = append(out, FrameBytes(Encode(18, int64(100+i), M{"friendid": a.User.ID, "limit": 100}))...)
	}
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // not reading is the point
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	responses := 0
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || isConnReset(err) || errors.Is(err, io.ErrUnexpectedEOF) {
				break
			}
			t.Fatalf("after %d responses: %v (the server did not close the slow connection)", responses, err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(r, body); err != nil {
			break
		}
		if gjson.GetBytes(body, "msgid").Int() == 118 {
			responses++
		}
	}
	if responses >= n {
		t.Errorf("all %d HISTORY responses (~%d MB) were delivered: the high-water limit did not close the connection", n, n*400/1000)
	}
	t.Logf("high water: connection closed after %d of %d HISTORY responses", responses, n)
	// The server is fine afterwards.
	a.OK(4, nil)
}
