package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"clusterchat/chatservice/protocol"
)

// chatFake is a scripted server for Session tests: user 1 ("me") has friend
// 2, whose conversation holds messages 1..N. It accepts any number of
// connections; hooks decide what to do with each request.
type chatFake struct {
	t  *testing.T
	ln net.Listener

	mu       sync.Mutex
	conns    int
	logins   []string // "password" or "token:..."
	acks     []int64
	cids     []string
	dropChat int // drop the connection on the first dropChat ONE_CHATs
	lastSeq  int64
	onLogin  func(w func(string)) // pushes after the LOGIN response
}

func newChatFake(t *testing.T) *chatFake {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &chatFake{t: t, ln: ln, lastSeq: 5}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); f.serve(nc) }()
		}
	}()
	return f
}

func chatMsg(seq int64) string {
	return fmt.Sprintf(`"from":2,"fromname":"bob","toid":1,"msg":"m%d","seq":%d,"time":%d,"cid":"c%d"`, seq, seq, 1000+seq, seq)
}

func (f *chatFake) serve(nc net.Conn) {
	defer nc.Close()
	f.mu.Lock()
	f.conns++
	f.mu.Unlock()
	var wmu sync.Mutex
	w := func(body string) {
		wmu.Lock()
		defer wmu.Unlock()
		nc.Write(frame(body))
	}
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
		msgid := int(gjson.GetBytes(body, "msgid").Int())
		reqid := gjson.GetBytes(body, "reqid").Uint()
		resp := func(extra string) { w(fmt.Sprintf(`{"msgid":%d,"reqid":%d,"errno":0%s}`, msgid+100, reqid, extra)) }
		switch msgid {
		case protocol.Login:
			f.mu.Lock()
			kind := "password"
			if tok := gjson.GetBytes(body, "token"); tok.Exists() {
				kind = "token:" + tok.String()
			}
			f.logins = append(f.logins, kind)
			last := f.lastSeq
			hook := f.onLogin
			f.mu.Unlock()
			resp(fmt.Sprintf(`,"token":"tok1","user":{"id":1,"name":"me"},"friends":[{"id":2,"name":"bob","online":true,"unread":%d,"lastseq":%d}],"groups":[],"requests":[]`, last-1, last))
			if hook != nil {
				hook(w)
			}
		case protocol.Ping:
			resp(`,"time":1`)
		case protocol.History:
			before, limit := gjson.GetBytes(body, "before").Int(), gjson.GetBytes(body, "limit").Int()
			var ms string
			for s := max(1, before-limit); s < before; s++ {
				if ms != "" {
					ms += ","
				}
				ms += "{" + chatMsg(s) + "}"
			}
			resp(`,"messages":[` + ms + `]`)
		case protocol.AckMsgs:
			f.mu.Lock()
			f.acks = append(f.acks, gjson.GetBytes(body, "acks.0.seq").Int())
			f.mu.Unlock()
			resp("")
		case protocol.OneChat:
			f.mu.Lock()
			f.cids = append(f.cids, gjson.GetBytes(body, "cid").String())
			drop := f.dropChat > 0
			if drop {
				f.dropChat--
			} else {
				f.lastSeq++
			}
			seq := f.lastSeq
			f.mu.Unlock()
			if drop {
				return // lose the request: the client must retry with the same cid
			}
			resp(fmt.Sprintf(`,"seq":%d,"time":2000`, seq))
		default:
			resp("")
		}
	}
}

type eventLog struct {
	mu  sync.Mutex
	evs []Event
}

func (l *eventLog) add(e Event) { l.mu.Lock(); l.evs = append(l.evs, e); l.mu.Unlock() }

func (l *eventLog) messages() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s []int64
	for _, e := range l.evs {
		if e.Kind == EventMessage {
			s = append(s, e.Msg.Seq)
		}
	}
	return s
}

func (l *eventLog) count(k EventKind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.evs {
		if e.Kind == k {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSessionOrderingGapFillDedupeAck(t *testing.T) {
	f := newChatFake(t)
	// LOGIN says lastseq 5, unread 4: the cursor is 1. The "offline" pushes
	// arrive as 2, 3, 3 (duplicate), 5 (4 is missing: filled by HISTORY).
	f.onLogin = func(w func(string)) {
		for _, s := range []int64{2, 3, 3, 5} {
			w(`{"msgid":201,` + chatMsg(s) + `}`)
		}
	}
	var log eventLog
	s := NewSession(SessionOptions{
		Addr: f.ln.Addr().String(), Name: "me", Password: "password1",
		OnEvent: log.add, GapWait: 50 * time.Millisecond, AckDelay: 20 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond,
	})
	lr, err := s.Login(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if lr.Token != "tok1" || s.User().ID != 1 {
		t.Fatalf("login %+v", lr)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- s.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-runDone })

	waitFor(t, "messages 2..5", func() bool { return len(log.messages()) >= 4 })
	if got := fmt.Sprint(log.messages()); got != "[2 3 4 5]" {
		t.Fatalf("messages = %s, want [2 3 4 5]", got)
	}
	waitFor(t, "ACK of 5", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.acks) > 0 && f.acks[len(f.acks)-1] == 5
	})

	// A send whose connection dies before the answer is retried, after a
	// token login on a new connection, with the same cid.
	f.mu.Lock()
	f.dropChat = 1
	f.onLogin = nil
	f.mu.Unlock()
	m, err := s.SendChat(ctx(t), 2, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if m.Seq != 6 {
		t.Fatalf("sent seq %d, want 6", m.Seq)
	}
	f.mu.Lock()
	cids, logins := append([]string(nil), f.cids...), append([]string(nil), f.logins...)
	f.mu.Unlock()
	if len(cids) != 2 || cids[0] != cids[1] {
		t.Fatalf("cids %v: want the same cid twice", cids)
	}
	if len(logins) != 2 || logins[0] != "password" || logins[1] != "token:tok1" {
		t.Fatalf("logins %v", logins)
	}
	waitFor(t, "own message 6", func() bool { return len(log.messages()) == 5 })
	if log.count(EventDisconnected) != 1 || log.count(EventConnected) != 2 {
		t.Fatalf("disconnected %d connected %d", log.count(EventDisconnected), log.count(EventConnected))
	}
	log.mu.Lock()
	last := log.evs[len(log.evs)-1]
	log.mu.Unlock()
	if last.Kind != EventMessage || !last.Own || last.Conv != FriendConv(2) {
		t.Fatalf("last event %+v", last)
	}
	if s.Delivered(FriendConv(2)) != 6 {
		t.Fatalf("delivered %d", s.Delivered(FriendConv(2)))
	}
}

func TestSessionGoAwayReconnects(t *testing.T) {
	f := newChatFake(t)
	f.lastSeq = 0
	first := true
	f.onLogin = func(w func(string)) {
		if first {
			first = false
			w(`{"msgid":290,"reason":"shutdown"}`)
		}
	}
	var log eventLog
	s := NewSession(SessionOptions{Addr: f.ln.Addr().String(), ID: 1, Password: "password1", OnEvent: log.add, MinBackoff: 10 * time.Millisecond})
	if _, err := s.Login(ctx(t)); err != nil {
		t.Fatal(err)
	}
	go s.Run(context.Background())
	t.Cleanup(func() { s.Close() })
	waitFor(t, "reconnect after GOAWAY", func() bool { return log.count(EventConnected) == 2 })
	if c := s.Conn(); c == nil {
		t.Fatal("no connection after reconnect")
	}
}

// TestSessionLargeGap: a gap wider than one HISTORY page is filled page by
// page, and everything is shown once in order.
func TestSessionLargeGap(t *testing.T) {
	f := newChatFake(t)
	f.lastSeq = 251 // LOGIN: lastseq 251, unread 250: the cursor is 1
	f.onLogin = func(w func(string)) { w(`{"msgid":201,` + chatMsg(251) + `}`) }
	var log eventLog
	s := NewSession(SessionOptions{Addr: f.ln.Addr().String(), Name: "me", Password: "password1",
		OnEvent: log.add, GapWait: 20 * time.Millisecond, AckDelay: 10 * time.Millisecond})
	if _, err := s.Login(ctx(t)); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "250 messages", func() bool { return len(log.messages()) >= 250 })
	got := log.messages()
	for i, seq := range got {
		if seq != int64(i+2) {
			t.Fatalf("message %d has seq %d (want %d): %v", i, seq, i+2, got)
		}
	}
	if len(got) != 250 {
		t.Fatalf("%d messages", len(got))
	}
	waitFor(t, "ACK of 251", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.acks) > 0 && f.acks[len(f.acks)-1] == 251
	})
}
