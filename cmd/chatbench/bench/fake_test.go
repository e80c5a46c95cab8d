package bench

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeServer speaks just enough of the protocol for chatbench (REG, LOGIN,
// PING, ADD/ACCEPT_FRIEND, ONE_CHAT, CREATE/JOIN_GROUP, GROUP_CHAT) so that
// the checker can be tested against injected faults: fault(seq) decides
// what happens to the push of message seq to one recipient.
type fakeServer struct {
	ln      net.Listener
	fault   func(seq int64) faultKind
	proxy   bool         // expect a PROXY v1 header naming the peer
	proxied atomic.Int64 // headers verified
	// chatDelay, in nanoseconds, holds each ONE_CHAT's response (its
	// push goes at once). The hold blocks the connection's read loop, so
	// with more than one in flight the holds add up: meant for --inflight 1.
	chatDelay atomic.Int64

	mu      sync.Mutex
	nextID  int64
	byName  map[string]*fakeUser
	byID    map[int64]*fakeUser
	tokens  map[string]*fakeUser
	convSeq map[string]int64
	hist    map[string][]map[string]any // conversation → messages, ascending
	groups  map[int64][]int64
	wg      sync.WaitGroup
	conns   map[*fakeConn]struct{}
}

type faultKind int

const (
	deliver faultKind = iota
	drop
	duplicate
	swapNext // hold this push and send it after the next one
	vanish   // acknowledge, but neither push nor keep for HISTORY
)

type fakeUser struct {
	id       int64
	name     string
	sessions map[*fakeConn]struct{}
}

type fakeConn struct {
	nc   net.Conn
	wmu  sync.Mutex
	user *fakeUser
	held []byte // swapNext
}

func startFake(t *testing.T, fault func(int64) faultKind, proxy bool) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if fault == nil {
		fault = func(int64) faultKind { return deliver }
	}
	s := &fakeServer{
		ln: ln, fault: fault, proxy: proxy,
		byName: map[string]*fakeUser{}, byID: map[int64]*fakeUser{}, tokens: map[string]*fakeUser{},
		convSeq: map[string]int64{}, hist: map[string][]map[string]any{}, groups: map[int64][]int64{}, conns: map[*fakeConn]struct{}{},
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c := &fakeConn{nc: nc}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.serve(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

func (c *fakeConn) write(body []byte) {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	c.wmu.Lock()
	_, _ = c.nc.Write(append(hdr[:], body...))
	c.wmu.Unlock()
}

func (s *fakeServer) serve(c *fakeConn) {
	defer func() {
		c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		if c.user != nil {
			delete(c.user.sessions, c)
		}
		s.mu.Unlock()
	}()
	br := bufio.NewReader(c.nc)
	if s.proxy {
		line, err := br.ReadString('\n')
		ra := c.nc.RemoteAddr().(*net.TCPAddr)
		want := fmt.Sprintf("PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n", ra.Port, s.ln.Addr().(*net.TCPAddr).Port)
		if err != nil || line != want {
			return
		}
		s.proxied.Add(1)
	}
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		var req map[string]any
		if err := json.Unmarshal(body, &req); err != nil {
			return
		}
		resp := s.handle(c, req)
		if d := s.chatDelay.Load(); d > 0 && num(req, "msgid") == 5 {
			time.Sleep(time.Duration(d))
		}
		resp["msgid"] = int(req["msgid"].(float64)) + 100
		resp["reqid"] = req["reqid"]
		if _, ok := resp["errno"]; !ok {
			resp["errno"] = 0
		}
		b, _ := json.Marshal(resp)
		c.write(b)
	}
}

func num(req map[string]any, k string) int64  { f, _ := req[k].(float64); return int64(f) }
func str(req map[string]any, k string) string { s, _ := req[k].(string); return s }

func (s *fakeServer) handle(c *fakeConn, req map[string]any) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(errno int) map[string]any { return map[string]any{"errno": errno, "errmsg": "fake"} }
	switch int(num(req, "msgid")) {
	case 2: // REG
		name := str(req, "name")
		if s.byName[name] != nil {
			return fail(409)
		}
		s.nextID++
		u := &fakeUser{id: s.nextID, name: name, sessions: map[*fakeConn]struct{}{}}
		s.byName[name], s.byID[u.id] = u, u
		return map[string]any{"user": map[string]any{"id": u.id, "name": name}}
	case 1: // LOGIN
		var u *fakeUser
		if tok := str(req, "token"); tok != "" {
			u = s.tokens[tok]
		} else {
			u = s.byName[str(req, "name")]
		}
		if u == nil {
			return fail(401)
		}
		tok := "t" + strconv.FormatInt(u.id, 10)
		s.tokens[tok] = u
		c.user = u
		u.sessions[c] = struct{}{}
		return map[string]any{"token": tok, "user": map[string]any{"id": u.id, "name": u.name},
			"friends": []any{}, "groups": []any{}, "requests": []any{}}
	case 4:
		return map[string]any{"time": time.Now().UnixMilli()}
	}
	if c.user == nil {
		return fail(401)
	}
	switch int(num(req, "msgid")) {
	case 6: // ADD_FRIEND
		s.push(num(req, "friendid"), []byte(fmt.Sprintf(`{"msgid":203,"user":{"id":%d,"name":"x"}}`, c.user.id)))
		return map[string]any{"status": "requested"}
	case 7: // ACCEPT_FRIEND
		return map[string]any{}
	case 5: // ONE_CHAT
		to := num(req, "toid")
		a, b := c.user.id, to
		if a > b {
			a, b = b, a
		}
		key := fmt.Sprintf("f%d-%d", a, b)
		s.convSeq[key]++
		seq := s.convSeq[key]
		p := fmt.Sprintf(`{"msgid":201,"from":%d,"fromname":"x","toid":%d,"msg":%q,"seq":%d,"time":1,"cid":%q}`,
			c.user.id, to, str(req, "msg"), seq, str(req, "cid"))
		if s.fault(seq) != vanish {
			s.hist[key] = append(s.hist[key], map[string]any{"from": c.user.id, "toid": to, "msg": str(req, "msg"), "seq": seq, "time": 1, "cid": str(req, "cid")})
		}
		s.pushChat(to, seq, []byte(p))
		return map[string]any{"seq": seq, "time": 1}
	case 9: // CREATE_GROUP
		s.nextID++
		s.groups[s.nextID] = []int64{c.user.id}
		return map[string]any{"group": map[string]any{"id": s.nextID, "name": str(req, "groupname"), "desc": "", "role": "owner"}}
	case 10: // JOIN_GROUP
		g := num(req, "groupid")
		for _, m := range s.groups[g] {
			s.push(m, []byte(fmt.Sprintf(`{"msgid":206,"groupid":%d,"event":"join","user":{"id":%d,"name":"x"}}`, g, c.user.id)))
		}
		s.groups[g] = append(s.groups[g], c.user.id)
		return map[string]any{"group": map[string]any{"id": g, "name": "g", "desc": "", "role": "member"}}
	case 13: // GROUP_CHAT
		g := num(req, "groupid")
		key := fmt.Sprintf("g%d", g)
		s.convSeq[key]++
		seq := s.convSeq[key]
		p := fmt.Sprintf(`{"msgid":202,"groupid":%d,"from":%d,"fromname":"x","msg":%q,"seq":%d,"time":1,"cid":%q}`,
			g, c.user.id, str(req, "msg"), seq, str(req, "cid"))
		s.hist[key] = append(s.hist[key], map[string]any{"groupid": g, "from": c.user.id, "msg": str(req, "msg"), "seq": seq, "time": 1, "cid": str(req, "cid")})
		for _, m := range s.groups[g] {
			if m != c.user.id {
				s.pushChat(m, seq, []byte(p))
			}
		}
		return map[string]any{"seq": seq, "time": 1}
	case 18: // HISTORY
		key := fmt.Sprintf("g%d", num(req, "groupid"))
		if f := num(req, "friendid"); f != 0 {
			a, b := c.user.id, f
			if a > b {
				a, b = b, a
			}
			key = fmt.Sprintf("f%d-%d", a, b)
		}
		before, limit := num(req, "before"), int(num(req, "limit"))
		var page []map[string]any
		for _, m := range s.hist[key] {
			if before == 0 || m["seq"].(int64) < before {
				page = append(page, m)
			}
		}
		if len(page) > limit {
			page = page[len(page)-limit:]
		}
		if page == nil {
			page = []map[string]any{}
		}
		return map[string]any{"messages": page}
	}
	return fail(400)
}

// push sends body to every session of user id (s.mu held).
func (s *fakeServer) push(id int64, body []byte) {
	if u := s.byID[id]; u != nil {
		for c := range u.sessions {
			c.write(body)
		}
	}
}

func (s *fakeServer) pushChat(id, seq int64, body []byte) {
	u := s.byID[id]
	if u == nil {
		return
	}
	for c := range u.sessions {
		switch s.fault(seq) {
		case drop, vanish:
			continue
		case duplicate:
			c.write(body)
			c.write(body)
		case swapNext:
			c.held = body
			continue
		default:
			c.write(body)
		}
		if c.held != nil {
			c.write(c.held)
			c.held = nil
		}
	}
}
