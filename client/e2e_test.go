package client_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"clusterchat/chatservice/protocol"
	"clusterchat/client"
	"clusterchat/client/servertest"
)

var (
	buildOnce sync.Once
	serverBin string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// realServer builds cmd/chatserver once and starts a fresh one.
func realServer(t testing.TB, extra ...string) *servertest.Server {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "client-e2e-")
		if buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		serverBin, buildErr = servertest.ServerBinary(ctx, buildDir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return servertest.Start(t, serverBin, t.TempDir(), extra...)
}

func tctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dialT(t testing.TB, addr string, opts ...client.Option) *client.Conn {
	t.Helper()
	c, err := client.Dial(tctx(t), addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// user registers a fresh user and returns a logged-in connection.
func user(t testing.TB, addr, name string) (*client.Conn, client.LoginResult) {
	t.Helper()
	c := dialT(t, addr)
	if _, err := c.Register(tctx(t), name, "password1"); err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	lr, err := c.LoginPassword(tctx(t), name, "password1")
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	return c, lr
}

func nextPush(t *testing.T, c *client.Conn, msgid int) client.Push {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case p, ok := <-c.Pushes():
			if !ok {
				t.Fatalf("connection closed waiting for push %s: %v", protocol.Name(msgid), c.Err())
			}
			if p.MsgID == msgid {
				return p
			}
		case <-timeout:
			t.Fatalf("no push %s", protocol.Name(msgid))
		}
	}
}

func TestE2EHelpers(t *testing.T) {
	srv := realServer(t)
	ctx := tctx(t)
	a, la := user(t, srv.Addr, "alice")
	b, lb := user(t, srv.Addr, "bob")
	if la.Token == "" || la.User.Name != "alice" || la.Friends == nil || la.Groups == nil || la.Requests == nil {
		t.Fatalf("login result %+v", la)
	}
	if _, err := a.Register(ctx, "ALICE", "password1"); !client.IsErrno(err, protocol.ErrConflict) {
		t.Fatalf("duplicate name: %v", err)
	}
	if tm, err := a.Ping(ctx); err != nil || tm <= 0 {
		t.Fatalf("ping %d %v", tm, err)
	}
	us, err := a.FindUsers(ctx, "b")
	if err != nil || len(us) != 1 || us[0].ID != lb.User.ID || !us[0].Online {
		t.Fatalf("findusers %+v %v", us, err)
	}
	st, err := a.AddFriend(ctx, lb.User.ID)
	if err != nil || st != protocol.StatusRequested {
		t.Fatalf("addfriend %q %v", st, err)
	}
	if p := nextPush(t, b, protocol.PushFriendRequest); p.Get("user.id").Int() != la.User.ID {
		t.Fatalf("friend request %s", p.Raw)
	}
	if err := b.AcceptFriend(ctx, la.User.ID); err != nil {
		t.Fatal(err)
	}
	nextPush(t, a, protocol.PushFriendAdded)

	cids := client.NewCIDGen()
	cid := cids.Next()
	seq, tm, err := a.SendChat(ctx, lb.User.ID, "hello \x1b[31mbob", cid)
	if err != nil || seq != 1 || tm <= 0 {
		t.Fatalf("sendchat %d %d %v", seq, tm, err)
	}
	seq2, tm2, err := a.SendChat(ctx, lb.User.ID, "hello \x1b[31mbob", cid)
	if err != nil || seq2 != seq || tm2 != tm {
		t.Fatalf("resend with same cid: %d %d %v", seq2, tm2, err)
	}
	if _, _, err := a.SendChat(ctx, lb.User.ID, "other", cid); !client.IsErrno(err, protocol.ErrConflict) {
		t.Fatalf("cid reuse: %v", err)
	}
	p := nextPush(t, b, protocol.PushChat)
	m, err := p.Message()
	if err != nil || m.Seq != 1 || m.Msg != "hello \x1b[31mbob" || m.From != la.User.ID || m.FromName != "alice" || m.CID != cid {
		t.Fatalf("chat push %+v %v", m, err)
	}
	hist, err := b.History(ctx, client.HistoryQuery{FriendID: la.User.ID})
	if err != nil || len(hist) != 1 || hist[0].Seq != 1 || hist[0].Time != tm {
		t.Fatalf("history %+v %v", hist, err)
	}
	l, err := b.List(ctx)
	if err != nil || len(l.Friends) != 1 || l.Friends[0].Unread != 1 {
		t.Fatalf("list %+v %v", l, err)
	}
	if err := b.Ack(ctx, []client.AckItem{{FriendID: la.User.ID, Seq: 1}}); err != nil {
		t.Fatal(err)
	}
	if l, _ = b.List(ctx); l.Friends[0].Unread != 0 {
		t.Fatalf("unread after ack %+v", l.Friends)
	}
	if err := b.Ack(ctx, []client.AckItem{{FriendID: la.User.ID, Seq: 9}}); !client.IsErrno(err, protocol.ErrBadRequest) {
		t.Fatalf("ack beyond: %v", err)
	}

	g, err := a.CreateGroup(ctx, "gophers", "all about Go")
	if err != nil || g.Role != "owner" || g.Name != "gophers" {
		t.Fatalf("creategroup %+v %v", g, err)
	}
	if g2, err := b.JoinGroup(ctx, g.ID); err != nil || g2.Role != "member" {
		t.Fatalf("join %+v %v", g2, err)
	}
	nextPush(t, a, protocol.PushGroupEvent)
	fg, err := b.FindGroups(ctx, "GO")
	if err != nil || len(fg) != 1 || fg[0].Members != 2 {
		t.Fatalf("findgroups %+v %v", fg, err)
	}
	ms, err := a.GroupMembers(ctx, g.ID)
	if err != nil || len(ms) != 2 {
		t.Fatalf("members %+v %v", ms, err)
	}
	gseq, _, err := b.GroupChat(ctx, g.ID, "hi group", cids.Next())
	if err != nil || gseq != 1 {
		t.Fatalf("groupchat %d %v", gseq, err)
	}
	if m, err := func() (client.Message, error) { p := nextPush(t, a, protocol.PushGroupChat); return p.Message() }(); err != nil || m.GroupID != g.ID || m.Conv(la.User.ID) != client.GroupConv(g.ID) {
		t.Fatalf("group push %+v %v", m, err)
	}
	if err := b.DeleteGroup(ctx, g.ID); !client.IsErrno(err, protocol.ErrForbidden) {
		t.Fatalf("delete by member: %v", err)
	}
	if err := b.QuitGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if u, err := b.SetName(ctx, "Bobby"); err != nil || u.Name != "Bobby" {
		t.Fatalf("setname %+v %v", u, err)
	}
	nextPush(t, a, protocol.PushProfile)
	if err := b.DelFriend(ctx, la.User.ID); err != nil {
		t.Fatal(err)
	}
	nextPush(t, a, protocol.PushFriendRemoved)

	// token login on a second connection, then LOGOUT revokes it.
	a2 := dialT(t, srv.Addr)
	if lr, err := a2.LoginToken(ctx, la.Token); err != nil || lr.User.ID != la.User.ID {
		t.Fatalf("token login %+v %v", lr, err)
	}
	if err := a.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	a3 := dialT(t, srv.Addr)
	if _, err := a3.LoginToken(ctx, la.Token); !client.IsErrno(err, protocol.ErrUnauthorized) {
		t.Fatalf("revoked token: %v", err)
	}
	// Bad frames from the client get ERROR pushes and the connection stays.
	if err := a3.DoRaw([]byte(`{"msgid":`)); err != nil {
		t.Fatal(err)
	}
	if p := nextPush(t, a3, protocol.PushError); p.Get("errno").Int() != 400 {
		t.Fatalf("error push %s", p.Raw)
	}
	if _, err := a3.Do(ctx, 77, nil); !client.IsErrno(err, protocol.ErrBadRequest) {
		t.Fatalf("undefined msgid: %v", err)
	}
}

// TestE2EPipelined sends many requests at once from many goroutines on one
// connection and checks each gets its own answer.
func TestE2EPipelined(t *testing.T) {
	srv := realServer(t)
	ctx := tctx(t)
	a, la := user(t, srv.Addr, "pipe_a")
	b, lb := user(t, srv.Addr, "pipe_b")
	if _, err := a.AddFriend(ctx, lb.User.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.AcceptFriend(ctx, la.User.ID); err != nil {
		t.Fatal(err)
	}
	const n = 150 // below the server's burst of 200
	var wg sync.WaitGroup
	seqs := make(chan int64, n)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq, _, err := a.SendChat(ctx, lb.User.ID, fmt.Sprint("m", i), fmt.Sprint("cid", i))
			if err != nil {
				errs <- err
				return
			}
			seqs <- seq
		}()
	}
	wg.Wait()
	close(seqs)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[int64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Errorf("seq %d twice", s)
		}
		seen[s] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct seqs, want %d", len(seen), n)
	}
}

// TestE2ESession runs two Sessions: offline messages, live messages, a
// killed connection with reconnect, exactly-once display and ACKs.
func TestE2ESession(t *testing.T) {
	srv := realServer(t)
	ctx := tctx(t)
	a, la := user(t, srv.Addr, "sess_a")
	_, lb := user(t, srv.Addr, "sess_b")
	b := dialT(t, srv.Addr)
	if _, err := b.LoginID(ctx, lb.User.ID, "password1"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddFriend(ctx, lb.User.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.AcceptFriend(ctx, la.User.ID); err != nil {
		t.Fatal(err)
	}
	// Three messages while bob's session is not running: offline delivery.
	for i := 1; i <= 3; i++ {
		if _, _, err := a.SendChat(ctx, lb.User.ID, fmt.Sprint("offline ", i), fmt.Sprint("o", i)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var got []int64
	connected := 0
	s := client.NewSession(client.SessionOptions{
		Addr: srv.Addr, Name: "sess_b", Password: "password1",
		GapWait: 100 * time.Millisecond, AckDelay: 20 * time.Millisecond, MinBackoff: 20 * time.Millisecond,
		OnEvent: func(ev client.Event) {
			mu.Lock()
			defer mu.Unlock()
			switch ev.Kind {
			case client.EventMessage:
				got = append(got, ev.Msg.Seq)
			case client.EventConnected:
				connected++
			}
		},
	})
	if _, err := s.Login(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitSeqs := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			l := len(got)
			mu.Unlock()
			if l >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("got %v, want %d messages", got, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitSeqs(3)
	// Own message through the session, then a live one from alice.
	if m, err := s.SendChat(ctx, la.User.ID, "from bob"); err != nil || m.Seq != 4 {
		t.Fatalf("session send %+v %v", m, err)
	}
	if _, _, err := a.SendChat(ctx, lb.User.ID, "live", "l1"); err != nil {
		t.Fatal(err)
	}
	waitSeqs(5)
	// Kill the connection under the session; messages sent meanwhile
	// arrive after the token login.
	s.Conn().Close()
	if _, _, err := a.SendChat(ctx, lb.User.ID, "while away", "l2"); err != nil {
		t.Fatal(err)
	}
	waitSeqs(6)
	mu.Lock()
	if fmt.Sprint(got) != "[1 2 3 4 5 6]" || connected < 2 {
		t.Fatalf("got %v connected %d", got, connected)
	}
	mu.Unlock()
	// Everything shown was ACKed: unread drops to 0.
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := b.List(ctx)
		if err == nil && len(l.Friends) == 1 && l.Friends[0].Unread == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unread not 0: %+v %v", l, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkE2ESendChat: pipelined ONE_CHAT round trips on one connection
// to a real chatserver (rate limit off), with the recipient online
// draining its pushes through a PushHandler.
func BenchmarkE2ESendChat(b *testing.B) {
	srv := realServer(b, "--msg-rate", "0")
	ctx := context.Background()
	a, la := user(b, srv.Addr, "bench_a")
	var pushes atomic.Int64
	r := dialT(b, srv.Addr, client.WithPushHandler(func(client.Push) { pushes.Add(1) }))
	if _, err := r.Register(ctx, "bench_b", "password1"); err != nil {
		b.Fatal(err)
	}
	lb, err := r.LoginPassword(ctx, "bench_b", "password1")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := a.AddFriend(ctx, lb.User.ID); err != nil {
		b.Fatal(err)
	}
	if err := r.AcceptFriend(ctx, la.User.ID); err != nil {
		b.Fatal(err)
	}
	cids := client.NewCIDGen()
	b.SetParallelism(32) // 64 requests in flight on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := a.SendChat(ctx, lb.User.ID, "benchmark message", cids.Next()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
