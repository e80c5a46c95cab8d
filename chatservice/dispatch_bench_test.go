package chatservice

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"clusterchat/bus"
	"clusterchat/bus/memory"
	"clusterchat/model"
)

// benchStore answers the calls of ONE_CHAT and GROUP_CHAT from memory; any
// other method panics (the embedded interface is nil).
type benchStore struct {
	model.Store
	mu      sync.Mutex
	seqs    map[model.Conv]int64
	members []model.Member
}

func (st *benchStore) StoreMessage(_ context.Context, m model.NewMessage) (model.Message, bool, error) {
	st.mu.Lock()
	st.seqs[m.Conv]++
	seq := st.seqs[m.Conv]
	st.mu.Unlock()
	return model.Message{Conv: m.Conv, Seq: seq, From: m.From, FromName: m.FromName, Body: m.Body, CID: m.CID, Time: m.Time}, false, nil
}

func (st *benchStore) AreFriends(context.Context, int64, int64) (bool, error) { return true, nil }

func (st *benchStore) GroupMembers(context.Context, int64) ([]model.Member, error) {
	return st.members, nil
}

func (st *benchStore) GroupRecipients(context.Context, int64) ([]model.Recipient, error) {
	rs := make([]model.Recipient, len(st.members))
	for i, m := range st.members {
		rs[i] = model.Recipient{UserID: m.User.ID, JoinedSeq: m.JoinedSeq}
	}
	return rs, nil
}

// countingConn is a transport that only counts what it is sent.
type countingConn struct {
	id     uint64
	ctx    context.Context
	frames int
	bytes  int
}

func (c *countingConn) ID() uint64               { return c.id }
func (c *countingConn) Context() context.Context { return c.ctx }
func (c *countingConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
}
func (c *countingConn) Shutdown(time.Duration)                {}
func (c *countingConn) WaitUnsent(context.Context, int) error { return nil }
func (c *countingConn) Send(f []byte) error {
	c.frames++
	c.bytes += len(f)
	return nil
}

// newBenchService returns a service on benchStore with users 1..n logged
// in, one session each (returned in user order).
func newBenchService(b *testing.B, n int) (*Service, *benchStore, []*session) {
	b.Helper()
	st := &benchStore{seqs: make(map[model.Conv]int64)}
	svc, err := New(Config{Listen: "127.0.0.1:0", SoleServer: true}, st, func(o bus.Options) (bus.Bus, error) { return memory.New(o), nil })
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = svc.exec.Close(ctx)
		_ = svc.bus.Close()
	})
	sessions := make([]*session, n)
	for i := range sessions {
		id := int64(i + 1)
		s := &session{conn: &countingConn{id: uint64(id), ctx: context.Background()}}
		s.userID.Store(id)
		svc.reg.add(id, "user"+strconv.FormatInt(id, 10), s)
		st.members = append(st.members, model.Member{User: model.User{ID: id}})
		sessions[i] = s
	}
	return svc, st, sessions
}

// benchDispatch runs frame b.N times as sess[0]'s request and checks that
// sess[1] got a push for each.
func benchDispatch(b *testing.B, svc *Service, sess []*session, frame []byte) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		req, ferr := parseFrame(frame)
		if ferr != nil {
			b.Fatal(ferr.errmsg)
		}
		svc.handle(sess[0], req, false, 0)
	}
	b.StopTimer()
	if got := sess[1].conn.(*countingConn).frames; got != b.N {
		b.Fatalf("%d pushes for %d messages", got, b.N)
	}
}

// BenchmarkDispatchOneChat is one ONE_CHAT as a request runs on its
// connection's queue: parse the frame, handle it (friend check from the
// cache, store, response, push to the peer) with a store in memory.
func BenchmarkDispatchOneChat(b *testing.B) {
	svc, _, sess := newBenchService(b, 2)
	svc.reg.cacheFriend(1, 2)
	frame := []byte(`{"msgid":5,"reqid":12345,"toid":2,"msg":"0123456789012345678901234567890123456789012345678901234567890123","cid":"1.12345.1764581234567890"}`)
	benchDispatch(b, svc, sess, frame)
}

// BenchmarkDispatchGroupChat is one GROUP_CHAT to a group of 500 members
// (cached), each on a local session: one op is one message and its 499
// pushes.
func BenchmarkDispatchGroupChat(b *testing.B) {
	svc, _, sess := newBenchService(b, 500)
	frame := []byte(`{"msgid":13,"reqid":7,"groupid":3,"msg":"0123456789012345678901234567890123456789012345678901234567890123","cid":"1.7.1764581234567890"}`)
	benchDispatch(b, svc, sess, frame)
}
