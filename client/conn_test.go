package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"clusterchat/chatservice/protocol"
)

// fakeServer accepts one connection and hands each decoded request frame to
// handle, which writes whatever bytes it likes.
type fakeServer struct {
	ln   net.Listener
	conn chan net.Conn
}

func newFakeServer(t *testing.T, handle func(nc net.Conn, body []byte)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeServer{ln: ln, conn: make(chan net.Conn, 1)}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		fs.conn <- nc
		t.Cleanup(func() { nc.Close() })
		br := bufio.NewReader(nc)
		for {
			var hdr [4]byte
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				return
			}
			body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
			if _, err := io.ReadFull(br, body); err != nil {
				return
			}
			handle(nc, body)
		}
	}()
	return fs
}

func frame(body string) []byte {
	b := make([]byte, 4, 4+len(body))
	binary.BigEndian.PutUint32(b, uint32(len(body)))
	return append(b, body...)
}

// echoResponse answers a request with msgid+100, its reqid and errno 0.
func echoResponse(body []byte, extra string) []byte {
	msgid := int(gjson.GetBytes(body, "msgid").Int())
	reqid := gjson.GetBytes(body, "reqid").Uint()
	return frame(fmt.Sprintf(`{"msgid":%d,"reqid":%d,"errno":0%s}`, msgid+100, reqid, extra))
}

func dial(t *testing.T, fs *fakeServer, opts ...Option) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, fs.ln.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestSplitFrames(t *testing.T) {
	fs := newFakeServer(t, func(nc net.Conn, body []byte) {
		// A push and the response, written one byte per write.
		out := append(frame(`{"msgid":205,"id":7,"online":true}`), echoResponse(body, `,"time":1234`)...)
		for i := range out {
			if _, err := nc.Write(out[i : i+1]); err != nil {
				return
			}
		}
	})
	c := dial(t, fs)
	tm, err := c.Ping(ctx(t))
	if err != nil || tm != 1234 {
		t.Fatalf("Ping = %d, %v; want 1234", tm, err)
	}
	p := <-c.Pushes()
	if p.MsgID != protocol.PushPresence || p.Get("id").Int() != 7 {
		t.Fatalf("push = %d %s", p.MsgID, p.Raw)
	}
}

func TestMergedFramesAndPipelining(t *testing.T) {
	var mu sync.Mutex
	var batch []byte
	const n = 200
	count := 0
	fs := newFakeServer(t, func(nc net.Conn, body []byte) {
		mu.Lock()
		defer mu.Unlock()
		// Answer in reverse order of a batch of 10, with a push in between,
		// all in one write: reqid matching must sort it out.
		batch = append(echoResponse(body, fmt.Sprintf(`,"seq":%d`, gjson.GetBytes(body, "toid").Int())), batch...)
		batch = append(batch, frame(`{"msgid":201,"from":1,"toid":2,"msg":"x","seq":1,"time":1,"cid":"c"}`)...)
		count++
		if count%10 == 0 {
			if _, err := nc.Write(batch); err != nil {
				return
			}
			batch = nil
		}
	})
	c := dial(t, fs, WithPushBuffer(1))
	go func() {
		for range c.Pushes() {
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq, _, err := c.SendChat(ctx(t), int64(i), "hello", fmt.Sprint("c", i))
			if err != nil {
				errs <- err
				return
			}
			if seq != int64(i) {
				errs <- fmt.Errorf("request %d got seq %d", i, seq)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestErrorResponse(t *testing.T) {
	fs := newFakeServer(t, func(nc net.Conn, body []byte) {
		msgid := int(gjson.GetBytes(body, "msgid").Int())
		reqid := gjson.GetBytes(body, "reqid").Uint()
		var out string
		switch msgid {
		case protocol.Reg:
			// duplicate keys: the first occurrence counts.
			out = fmt.Sprintf(`{"msgid":102,"reqid":%d,"errno":409,"errmsg":"name taken","errno":0}`, reqid)
		case protocol.Login:
			out = fmt.Sprintf(`{"msgid":101,"reqid":%d,"errno":429,"errmsg":"slow down","retry_after":1500}`, reqid)
		default:
			out = fmt.Sprintf(`{"msgid":299,"reqid":%d,"errno":400,"errmsg":"bad frame"}`, reqid)
		}
		nc.Write(frame(out))
	})
	c := dial(t, fs)
	_, err := c.Register(ctx(t), "bob", "password1")
	var ce *Error
	if !errors.As(err, &ce) || ce.Errno != 409 || ce.Msg != "name taken" || !IsErrno(err, 409) {
		t.Fatalf("Register err = %v", err)
	}
	_, err = c.LoginPassword(ctx(t), "bob", "password1")
	if !errors.As(err, &ce) || ce.Errno != 429 || ce.RetryAfter != 1500 {
		t.Fatalf("Login err = %#v", err)
	}
	_, err = c.Do(ctx(t), 50, map[string]any{"x": 1})
	if !IsErrno(err, 400) {
		t.Fatalf("Do err = %v, want 400 from ERROR push", err)
	}
	if !strings.Contains(err.Error(), "bad request") {
		t.Errorf("error text %q", err)
	}
}

func TestOversizedFrameFromServer(t *testing.T) {
	fs := newFakeServer(t, func(nc net.Conn, body []byte) {
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], 1<<30)
		nc.Write(hdr[:])
	})
	c := dial(t, fs, WithMaxFrame(1<<20))
	_, err := c.Ping(ctx(t))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping err = %v, want ErrClosed", err)
	}
	<-c.Done()
	if !errors.Is(c.Err(), ErrFrameTooLarge) {
		t.Fatalf("Err = %v, want ErrFrameTooLarge", c.Err())
	}
	if _, ok := <-c.Pushes(); ok {
		t.Fatal("Pushes not closed")
	}
	if _, err := c.Ping(ctx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping after close = %v", err)
	}
}

func TestBadJSONFromServer(t *testing.T) {
	fs := newFakeServer(t, func(nc net.Conn, body []byte) { nc.Write(frame(`{"msgid":104,`)) })
	c := dial(t, fs)
	if _, err := c.Ping(ctx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping err = %v", err)
	}
	if !errors.Is(c.Err(), ErrBadFrame) {
		t.Fatalf("Err = %v", c.Err())
	}
}

func TestContextCancel(t *testing.T) {
	got := make(chan []byte, 10)
	fs := newFakeServer(t, func(nc net.Conn, body []byte) {
		got <- body
		if int(gjson.GetBytes(body, "msgid").Int()) == protocol.List {
			return // never answer
		}
		nc.Write(echoResponse(body, `,"time":5`))
	})
	c := dial(t, fs)
	cx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.List(cx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("List err = %v", err)
	}
	if tm, err := c.Ping(ctx(t)); err != nil || tm != 5 {
		t.Fatalf("Ping after cancel = %d %v", tm, err)
	}
}

func TestRequestEncoding(t *testing.T) {
	got := make(chan []byte, 1)
	fs := newFakeServer(t, func(nc net.Conn, body []byte) {
		got <- body
		nc.Write(echoResponse(body, ""))
	})
	c := dial(t, fs)
	msg := "quote\" back\\ nl\n tab\t ctl\x01 esc\x1b uni é 😀 \u2028 bad\xff"
	if _, _, err := c.SendChat(ctx(t), 42, msg, "cid-1"); err != nil {
		t.Fatal(err)
	}
	body := <-got
	if !json.Valid(body) {
		t.Fatalf("invalid JSON sent: %q", body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	want := strings.ToValidUTF8(msg, "\ufffd")
	if m["msg"] != want || m["toid"] != float64(42) || m["cid"] != "cid-1" || m["msgid"] != float64(5) {
		t.Fatalf("sent %v", m)
	}
	if err := c.Ack(ctx(t), []AckItem{{FriendID: 3, Seq: 9}, {GroupID: 4, Seq: 1}}); err != nil {
		t.Fatal(err)
	}
	body = <-got
	if a := gjson.GetBytes(body, "acks").Raw; a != `[{"friendid":3,"seq":9},{"groupid":4,"seq":1}]` {
		t.Fatalf("acks = %s", a)
	}
	// Do with a struct and with raw JSON.
	if _, err := c.Do(ctx(t), protocol.FindUsers, struct {
		Query string `json:"query"`
	}{"al"}); err != nil {
		t.Fatal(err)
	}
	if q := gjson.GetBytes(<-got, "query").String(); q != "al" {
		t.Fatalf("query = %q", q)
	}
	if _, err := c.Do(ctx(t), protocol.List, json.RawMessage(`{ }`)); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !json.Valid(b) {
		t.Fatalf("invalid %q", b)
	}
	if _, err := c.Do(ctx(t), protocol.List, []byte(`[1]`)); !errors.Is(err, ErrBadFields) {
		t.Fatalf("array fields: %v", err)
	}
	// Too large for the server: refused locally.
	if _, _, err := c.SendChat(ctx(t), 1, strings.Repeat("x", 70000), "c"); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("huge: %v", err)
	}
}

func TestKeepAlive(t *testing.T) {
	pings := make(chan struct{}, 10)
	fs := newFakeServer(t, func(nc net.Conn, body []byte) {
		if int(gjson.GetBytes(body, "msgid").Int()) == protocol.Ping {
			pings <- struct{}{}
		}
		nc.Write(echoResponse(body, ""))
	})
	dial(t, fs, WithKeepAlive(100*time.Millisecond))
	select {
	case <-pings:
	case <-time.After(5 * time.Second):
		t.Fatal("no keepalive PING")
	}
}

func TestPeerClose(t *testing.T) {
	fs := newFakeServer(t, func(nc net.Conn, body []byte) {
		nc.Write(frame(`{"msgid":290,"reason":"shutdown"}`))
		nc.Close()
	})
	c := dial(t, fs)
	_, err := c.Ping(ctx(t))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v", err)
	}
	p, ok := <-c.Pushes()
	if !ok || p.MsgID != protocol.PushGoAway || p.Name() != "GOAWAY" {
		t.Fatalf("push %v %v", p, ok)
	}
	if !errors.Is(c.Err(), io.EOF) {
		t.Fatalf("Err = %v", c.Err())
	}
}

func TestParseMessage(t *testing.T) {
	m, err := ParseMessage([]byte(`{"msgid":202,"groupid":3,"from":1,"fromname":"a\u001b[31m","msg":"hi","seq":4,"time":99,"cid":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Conv(1) != GroupConv(3) || m.FromName != "a\x1b[31m" || m.Seq != 4 {
		t.Fatalf("%+v", m)
	}
	m, err = ParseMessage([]byte(`{"from":1,"toid":2,"msg":"hi","seq":1,"time":1,"cid":"x"}`))
	if err != nil || m.Conv(1) != FriendConv(2) || m.Conv(2) != FriendConv(1) {
		t.Fatalf("%+v %v", m, err)
	}
	if _, err := ParseMessage([]byte(`{"msg":"x"}`)); !errors.Is(err, ErrBadFrame) {
		t.Fatal(err)
	}
	g := NewCIDGen()
	if a, b := g.Next(), g.Next(); a == b || len(a) > protocol.MaxCID {
		t.Fatal(a, b)
	}
}

func BenchmarkSendChat(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		br := bufio.NewReader(nc)
		bw := bufio.NewWriter(nc)
		for {
			var hdr [4]byte
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				return
			}
			body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
			if _, err := io.ReadFull(br, body); err != nil {
				return
			}
			bw.Write(echoResponse(body, `,"seq":1,"time":2`))
			if br.Buffered() == 0 {
				bw.Flush()
			}
		}
	}()
	c, err := Dial(context.Background(), ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := c.SendChat(context.Background(), 2, "hello world", "cid-123"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkReadPushes: frames from the server through the reader to a
// PushHandler (the chatbench receive path).
func BenchmarkReadPushes(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	one := frame(`{"msgid":201,"from":12345,"fromname":"sender_0001","toid":67890,"msg":"benchmark message payload","seq":123456,"time":1764547200000,"cid":"9f2c0a7e5b1d4e33-42"}`)
	batch := bytes.Repeat(one, 256)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		for sent := 0; sent < b.N; sent += 256 {
			if _, err := nc.Write(batch); err != nil {
				return
			}
		}
	}()
	got := make(chan struct{})
	var n int
	c, err := Dial(context.Background(), ln.Addr().String(), WithPushHandler(func(p Push) {
		if m, err := p.Message(); err != nil || m.Seq != 123456 {
			b.Error("bad push")
		}
		n++
		if n == b.N {
			close(got)
		}
	}))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	b.SetBytes(int64(len(one)))
	<-got
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
}
