package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"clusterchat/internal/testenv"
)

// clusterInfra is what every cluster target of one TestCluster shares: a
// private MariaDB (each target gets its own database in it).
type clusterInfra struct {
	db *testenv.MariaDB
	n  atomic.Int64
}

// clusterTarget is two chatservers (s1, s2) on one MySQL database and one
// Redis, reached through nginx (PROXY protocol to the servers) or directly.
type clusterTarget struct {
	direct  bool
	dbName  string
	store   string
	redis   *testenv.Redis
	servers []*ServerProc
	nginx   *testenv.Nginx
}

// Addrs: [nginx] through the balancer, [s1, s2] directly.
func (c *clusterTarget) Addrs() []string {
	if c.direct {
		return []string{c.servers[0].Addr(), c.servers[1].Addr()}
	}
	return []string{c.nginx.Addr()}
}

// Servers is 2: pushes of messages accepted by different servers may cross.
func (c *clusterTarget) Servers() int { return len(c.servers) }

// Crash SIGKILLs both servers.
func (c *clusterTarget) Crash(t *testing.T) {
	t.Helper()
	for _, s := range c.servers {
		if err := s.Kill(); err != nil {
			t.Fatal(err)
		}
	}
}

// Restart starts both servers again (same database, same Redis).
func (c *clusterTarget) Restart(t *testing.T) {
	t.Helper()
	for _, s := range c.servers {
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

// Terminate SIGTERMs both servers at once.
func (c *clusterTarget) Terminate(t *testing.T, within time.Duration) error {
	errs := make([]error, len(c.servers))
	var wg sync.WaitGroup
	for i, s := range c.servers {
		wg.Go(func() {
			if d, err := s.Terminate(within); err != nil {
				errs[i] = fmt.Errorf("%s after %v: %w", s.Opts.Node, d, err)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// start starts a cluster target with its own database and Redis.
func (ci *clusterInfra) start(t *testing.T, direct bool, flags ...string) *clusterTarget {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := &clusterTarget{direct: direct, dbName: fmt.Sprintf("chat_e2e_%d", ci.n.Add(1))}
	if err := ci.db.CreateDatabase(ctx, c.dbName); err != nil {
		t.Fatal(err)
	}
	c.store = ci.db.StoreURL(c.dbName)
	c.redis = testenv.RedisForTest(t)
	for _, node := range []string{"s1", "s2"} {
		fl := append([]string(nil), flags...)
		if !direct {
			fl = append(fl, "--proxy-protocol")
		}
		// Started one after the other: the first one creates the schema.
		proc, err := StartServer(ctx, ServerOptions{
			Bin: serverBin, Dir: t.TempDir(), Store: c.store, Bus: c.redis.URL(), Node: node, Flags: fl,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			proc.Stop()
			if tr := proc.Trouble(); tr != "" {
				t.Errorf("chatserver %s reported trouble:\n%s", node, tr)
			}
			if t.Failed() {
				t.Logf("chatserver %s %v log (tail):\n%s", node, proc.Args, tailLines(proc.Logs(), 120))
			}
		})
		c.servers = append(c.servers, proc)
	}
	if !direct {
		c.nginx = testenv.NginxForTest(t, testenv.NginxConfig{
			Upstreams:     []string{c.servers[0].Addr(), c.servers[1].Addr()},
			ProxyProtocol: true,
			FailTimeout:   2 * time.Second,
			Template:      os.Getenv("E2E_NGINX_TEMPLATE"), // empty: the project's nginx/nginx.conf
		})
	}
	return c
}

// TestCluster runs the suite through nginx and against each server
// directly, then the cross-server and fault tests, on private MariaDB,
// Redis, nginx and two chatservers.
func TestCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	db, err := testenv.StartMariaDBWith(ctx, t.TempDir(), testenv.MariaDBOptions{
		// Commits survive a chatserver crash with this too; it only spares fsyncs.
		ExtraArgs: []string{"--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0"},
	})
	cancel()
	if err != nil {
		t.Fatalf("start mariadb: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Stop(); err != nil {
			t.Errorf("stop mariadb: %v", err)
		}
	})
	ci := &clusterInfra{db: db}
	t.Run("suites", func(t *testing.T) {
		t.Run("nginx", func(t *testing.T) {
			t.Parallel()
			RunSuite(t, func(t *testing.T, flags ...string) Target { return ci.start(t, false, flags...) })
		})
		t.Run("direct", func(t *testing.T) {
			t.Parallel()
			RunSuite(t, func(t *testing.T, flags ...string) Target { return ci.start(t, true, flags...) })
		})
	})
	t.Run("cross_server", func(t *testing.T) {
		tgt := ci.start(t, true)
		e := &env{tgt: tgt, newTarget: func(t *testing.T, flags ...string) Target { return ci.start(t, true, flags...) }}
		for _, c := range crossCases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				c.fn(t, e, tgt)
			})
		}
	})
	t.Run("proxy_protocol_real_address", func(t *testing.T) {
		testProxyProtocol(t, ci)
	})
	t.Run("faults", func(t *testing.T) {
		testFaults(t, ci)
	})
}

var crossCases = []struct {
	name string
	fn   func(t *testing.T, e *env, c *clusterTarget)
}{
	{"one_to_one", testCrossOneToOne},
	{"group_both_servers", testCrossGroup},
	{"presence", testCrossPresence},
	{"same_user_both_servers", testCrossMultiDevice},
	{"offline_s1_login_s2", testCrossOffline},
	{"login_throttle_per_account", testCrossThrottle},
	{"cid_retry_other_server", testCrossCIDRetry},
	{"races", testCrossRaces},
	{"caches_follow_other_server", testCrossCaches},
}

// on logs a fresh (or given) user in on server i.
func on(t *testing.T, c *clusterTarget, i int, u *User, label string) *Client {
	t.Helper()
	cl := Dial(t, c.servers[i].Addr(), label)
	loginOn(t, cl, u)
	return cl
}

func regAt(t *testing.T, c *clusterTarget) *User {
	t.Helper()
	cl := Dial(t, c.servers[0].Addr(), "reg")
	defer cl.Close()
	return regOn(t, cl, randName("x", 12))
}

// One-to-one between users on different servers, both directions.
func testCrossOneToOne(t *testing.T, e *env, c *clusterTarget) {
	a := on(t, c, 0, regAt(t, c), "a@s1")
	b := on(t, c, 1, regAt(t, c), "b@s2")
	befriend(t, a, b)
	for i := range 5 {
		from, to := a, b
		if i%2 == 1 {
			from, to = b, a
		}
		msg := fmt.Sprintf("cross %d", i)
		seq, tm := chat(t, from, to.User.ID, msg, fmt.Sprintf("x%d", i))
		if seq != int64(i+1) {
			t.Errorf("seq %d, want %d", seq, i+1)
		}
		checkChatMsg(t, to.ExpectPush(201, PushTimeout, fieldIs("seq", seq)), from.User, to.User.ID, msg, seq, tm, fmt.Sprintf("x%d", i), true)
	}
	ha := history(t, a, M{"friendid": b.User.ID})
	hb := history(t, b, M{"friendid": a.User.ID})
	if len(ha) != 5 || len(hb) != 5 {
		t.Fatalf("history lengths %d/%d", len(ha), len(hb))
	}
	for i := range ha {
		if !sameJSON(ha[i], hb[i]) {
			t.Errorf("history differs between servers at %d: %s vs %s", i, ha[i].Raw, hb[i].Raw)
		}
	}
	// Friend request and removal pushes cross too.
	x := on(t, c, 1, regAt(t, c), "x@s2")
	x.OK(6, M{"friendid": a.User.ID})
	a.ExpectPush(203, PushTimeout, userIs("user", x.User.ID))
	a.OK(8, M{"friendid": x.User.ID})
	x.ExpectPush(208, PushTimeout, fieldIs("id", a.User.ID))
}

// A group with members on both servers.
func testCrossGroup(t *testing.T, e *env, c *clusterTarget) {
	var ms []*Client
	for i := range 4 {
		ms = append(ms, on(t, c, i%2, regAt(t, c), fmt.Sprintf("m%d@s%d", i, i%2+1)))
	}
	gid := createGroup(t, ms[0], "cross "+randName("", 5), "")
	for i, m := range ms[1:] {
		joinGroup(t, m, gid)
		for _, o := range ms[:i+1] {
			expectEvent(t, o, gid, "join", m.User)
		}
	}
	for round := range 3 {
		for i, s := range ms {
			msg := fmt.Sprintf("r%d from %d", round, i)
			seq, tm := gchat(t, s, gid, msg, fmt.Sprintf("r%d-%d", round, i))
			for _, o := range ms {
				if o != s {
					checkGroupMsg(t, o.ExpectPush(202, PushTimeout, fieldIs("seq", seq), inGroup(gid)), gid, s.User, msg, seq, tm, fmt.Sprintf("r%d-%d", round, i), true)
				}
			}
		}
	}
	if got := seqs(history(t, ms[1], M{"groupid": gid})); !equalSeqs(got, seqRange(1, 12)) {
		t.Errorf("group history on s2: %v", got)
	}
	// Ownership transfer seen on the other server.
	ms[0].OK(11, M{"groupid": gid})
	evs := ms[3].Collect(206, 2, PushTimeout, inGroup(gid))
	if evs[0].Get("event").String() != "quit" || evs[1].Get("event").String() != "owner" || evs[1].Get("user.id").Int() != ms[1].User.ID {
		t.Errorf("owner transfer across servers: %s, %s", evs[0].Raw, evs[1].Raw)
	}
	ms[1].OK(12, M{"groupid": gid})
	expectEvent(t, ms[2], gid, "deleted", ms[1].User)
	expectEvent(t, ms[3], gid, "deleted", ms[1].User)
}

// Presence and online flags across servers.
func testCrossPresence(t *testing.T, e *env, c *clusterTarget) {
	a := on(t, c, 0, regAt(t, c), "a@s1")
	bu := regAt(t, c)
	b := on(t, c, 1, bu, "b@s2")
	befriend(t, a, b)
	isB := fieldIs("id", bu.ID)
	b.Close()
	if p := a.ExpectPush(205, PushTimeout, isB); p.Get("online").Bool() {
		t.Errorf("presence after b left s2: %s", p.Raw)
	}
	b2 := on(t, c, 1, bu, "b2@s2")
	if p := a.ExpectPush(205, PushTimeout, isB); !p.Get("online").Bool() {
		t.Errorf("presence after b joined s2: %s", p.Raw)
	}
	b3 := on(t, c, 0, bu, "b3@s1") // a second session, on the other server
	a.ExpectNoPush(205, QuietPeriod, isB)
	b2.Close()
	a.ExpectNoPush(205, QuietPeriod, isB) // b3 still online on s1
	if f, _ := entry(list(t, a).Get("friends"), bu.ID); !f.Get("online").Bool() {
		t.Errorf("LIST on s1: b should be online (session on s1): %s", f.Raw)
	}
	if u, _ := entry(a.OK(17, M{"query": bu.Name}).Get("users"), bu.ID); !u.Get("online").Bool() {
		t.Errorf("FIND_USERS: b should be online: %s", u.Raw)
	}
	b3.Close()
	if p := a.ExpectPush(205, PushTimeout, isB); p.Get("online").Bool() {
		t.Errorf("presence after b's last session closed: %s", p.Raw)
	}
	// Online flags seen from the other server.
	x := on(t, c, 1, regAt(t, c), "x@s2")
	gid := createGroup(t, x, "pres "+randName("", 4), "")
	joinGroup(t, a, gid)
	if m := members(t, x, gid)[a.User.ID]; !m.Get("online").Bool() {
		t.Errorf("GROUP_MEMBERS on s2: a (on s1) should be online: %s", m.Raw)
	}
}

// The same user logged in on both servers gets every push on both.
func testCrossMultiDevice(t *testing.T, e *env, c *clusterTarget) {
	bu := regAt(t, c)
	b1 := on(t, c, 0, bu, "b@s1")
	b2 := Dial(t, c.servers[1].Addr(), "b@s2")
	b2.OK(1, M{"token": bu.Token})
	b2.User = bu
	a := on(t, c, 1, regAt(t, c), "a@s2")
	befriend(t, a, b1)
	b2.ExpectPush(204, PushTimeout, userIs("friend", a.User.ID))
	seq, _ := chat(t, a, bu.ID, "to both", "mb1")
	b1.ExpectPush(201, PushTimeout, fieldIs("seq", seq))
	b2.ExpectPush(201, PushTimeout, fieldIs("seq", seq))
	seq, _ = chat(t, b1, a.User.ID, "from s1", "mb2")
	b2.ExpectPush(201, PushTimeout, fieldIs("seq", seq)) // the sender's other session, on s2
	a.ExpectPush(201, PushTimeout, fieldIs("seq", seq))
	n := randName("Mb", 8)
	b2.OK(20, M{"name": n})
	if p := b1.ExpectPush(207, PushTimeout); p.Get("user.name").String() != n {
		t.Errorf("PROFILE to the other server's session: %s", p.Raw)
	}
	a.ExpectPush(207, PushTimeout)
	// LOGOUT on s2 revokes the token everywhere.
	b2.OK(3, nil)
	x := Dial(t, c.servers[0].Addr(), "x@s1")
	x.Err(1, M{"token": bu.Token}, 401)
	b1.OK(15, nil)
}

// Offline on s1, then login on s2.
func testCrossOffline(t *testing.T, e *env, c *clusterTarget) {
	bu := regAt(t, c)
	b := on(t, c, 0, bu, "b@s1")
	a := on(t, c, 0, regAt(t, c), "a@s1")
	befriend(t, a, b)
	gid := createGroup(t, a, "off "+randName("", 4), "")
	joinGroup(t, b, gid)
	b.Close()
	waitOffline(t, a, bu.ID)
	for i := range 3 {
		chat(t, a, bu.ID, fmt.Sprintf("o%d", i), fmt.Sprintf("o%d", i))
		gchat(t, a, gid, fmt.Sprintf("g%d", i), fmt.Sprintf("g%d", i))
	}
	b2 := Dial(t, c.servers[1].Addr(), "b@s2")
	lr := b2.OK(1, M{"id": bu.ID, "password": bu.Password})
	if u, _ := unreadOf(t, lr, "friends", a.User.ID); u != 3 {
		t.Errorf("unread on s2: %d", u)
	}
	if got := seqs(b2.Collect(201, 3, PushTimeout, nil)); !equalSeqs(got, []int64{1, 2, 3}) {
		t.Errorf("offline chat on s2: %v", got)
	}
	if got := seqs(b2.Collect(202, 3, PushTimeout, inGroup(gid))); !equalSeqs(got, []int64{1, 2, 3}) {
		t.Errorf("offline group on s2: %v", got)
	}
	b2.OK(19, M{"acks": []M{{"friendid": a.User.ID, "seq": 3}, {"groupid": gid, "seq": 2}}})
	b2.Close()
	b3 := Dial(t, c.servers[0].Addr(), "b@s1 again")
	lr = b3.OK(1, M{"token": bu.Token})
	if u, _ := unreadOf(t, lr, "groups", gid); u != 1 {
		t.Errorf("group unread back on s1 after the ACK on s2: %d", u)
	}
	if got := seqs(b3.Collect(202, 1, PushTimeout, inGroup(gid))); !equalSeqs(got, []int64{3}) {
		t.Errorf("offline group back on s1: %v", got)
	}
	b3.ExpectNoPush(201, QuietPeriod)
}

// The failed-login throttle is per account, whichever server saw the failures.
func testCrossThrottle(t *testing.T, e *env, c *clusterTarget) {
	u := regAt(t, c)
	pre := on(t, c, 1, u, "pre@s2")
	c1 := Dial(t, c.servers[0].Addr(), "fail@s1")
	for range 10 {
		c1.Err(1, M{"id": u.ID, "password": "wrong-password"}, 401)
	}
	c1.Err(1, M{"id": u.ID, "password": u.Password}, 429)
	c2 := Dial(t, c.servers[1].Addr(), "login@s2")
	r := c2.Err(1, M{"id": u.ID, "password": u.Password}, 429)
	if r.Get("errno").Int() == 429 {
		return
	}
	// Five failures on each server also make ten.
	v := regAt(t, c)
	for i := range 10 {
		Dial(t, c.servers[i%2].Addr(), fmt.Sprintf("f%d", i)).Err(1, M{"id": v.ID, "password": "wrong-password"}, 401)
	}
	Dial(t, c.servers[0].Addr(), "v@s1").Err(1, M{"id": v.ID, "password": v.Password}, 429)
	pre.OK(15, nil)
}

// A retry with the same cid on the other server returns the original seq
// and time and stores nothing new.
func testCrossCIDRetry(t *testing.T, e *env, c *clusterTarget) {
	a1 := on(t, c, 0, regAt(t, c), "a@s1")
	a2 := Dial(t, c.servers[1].Addr(), "a@s2")
	a2.OK(1, M{"token": a1.User.Token})
	a2.User = a1.User
	b := on(t, c, 1, regAt(t, c), "b@s2")
	befriend(t, a1, b)
	gid := createGroup(t, b, "cid "+randName("", 4), "")
	joinGroup(t, a1, gid)
	seq, tm := chat(t, a1, b.User.ID, "once", "k1")
	if s2, t2 := chat(t, a2, b.User.ID, "once", "k1"); s2 != seq || t2 != tm {
		t.Errorf("retry on s2: %d/%d, want %d/%d", s2, t2, seq, tm)
	}
	a2.Err(5, M{"toid": b.User.ID, "msg": "other", "cid": "k1"}, 409)
	a2.Err(13, M{"groupid": gid, "msg": "once", "cid": "k1"}, 409)
	gs, gt := gchat(t, a2, gid, "g once", "k2")
	if s2, t2 := gchat(t, a1, gid, "g once", "k2"); s2 != gs || t2 != gt {
		t.Errorf("group retry on s1: %d/%d, want %d/%d", s2, t2, gs, gt)
	}
	if h := history(t, b, M{"friendid": a1.User.ID}); len(h) != 1 {
		t.Errorf("history after cross-server retries: %v", seqs(h))
	}
	if h := history(t, b, M{"groupid": gid}); len(h) != 1 {
		t.Errorf("group history after cross-server retries: %v", seqs(h))
	}
}

// both sends request msgid on c1 (fields f1) and c2 (fields f2) at the same
// moment and returns the two responses.
func both(t *testing.T, c1 *Client, msgid1 int, f1 M, c2 *Client, msgid2 int, f2 M) (gjson.Result, gjson.Result) {
	t.Helper()
	var id1, id2 int64
	var err1, err2 error
	var wg sync.WaitGroup
	start := make(chan struct{})
	wg.Go(func() { <-start; id1, err1 = c1.SendReqE(msgid1, f1) })
	wg.Go(func() { <-start; id2, err2 = c2.SendReqE(msgid2, f2) })
	close(start)
	wg.Wait()
	if err1 != nil || err2 != nil {
		t.Fatalf("send: %v %v", err1, err2)
	}
	return c1.Response(msgid1, id1), c2.Response(msgid2, id2)
}

// Races between the two servers: the same cid at once, crossed friend
// requests, the same name, the same join.
func testCrossRaces(t *testing.T, e *env, c *clusterTarget) {
	for i := range 10 {
		// The same message (same cid) from the same user on both servers at once.
		au := regAt(t, c)
		a1 := on(t, c, 0, au, "a@s1")
		a2 := Dial(t, c.servers[1].Addr(), "a@s2")
		a2.OK(1, M{"token": au.Token})
		b := on(t, c, 1, regAt(t, c), "b@s2")
		befriend(t, a1, b)
		f := M{"toid": b.User.ID, "msg": "double", "cid": "dbl"}
		r1, r2 := both(t, a1, 5, f, a2, 5, f)
		if r1.Get("errno").Int() != 0 || r2.Get("errno").Int() != 0 || r1.Get("seq").Int() != r2.Get("seq").Int() || r1.Get("time").Int() != r2.Get("time").Int() {
			t.Errorf("round %d: the same cid at once on two servers: %s and %s (want both 0 with one seq/time)", i, r1.Raw, r2.Raw)
		}
		if h := history(t, b, M{"friendid": au.ID}); len(h) != 1 {
			t.Errorf("round %d: the same cid at once stored %d messages", i, len(h))
		}

		// Crossed friend requests at once: they end up friends.
		x := on(t, c, 0, regAt(t, c), "x@s1")
		y := on(t, c, 1, regAt(t, c), "y@s2")
		r1, r2 = both(t, x, 6, M{"friendid": y.User.ID}, y, 6, M{"friendid": x.User.ID})
		if r1.Get("errno").Int() != 0 && r2.Get("errno").Int() != 0 {
			t.Errorf("round %d: crossed ADD_FRIEND: %s and %s", i, r1.Raw, r2.Raw)
		}
		waitFor(t, 5*time.Second, "crossed requests end as friends", func() bool {
			_, okx := entry(list(t, x).Get("friends"), y.User.ID)
			_, oky := entry(list(t, y).Get("friends"), x.User.ID)
			if okx && oky {
				return true
			}
			// Both "requested" with no friendship: accept to finish the round
			// but report it.
			if r1.Get("status").String() == "requested" && r2.Get("status").String() == "requested" {
				t.Errorf("round %d: crossed ADD_FRIEND both answered requested and they are not friends: %s / %s", i, r1.Raw, r2.Raw)
				return true
			}
			return false
		})
		if len(list(t, x).Get("requests").Array())+len(list(t, y).Get("requests").Array()) != 0 {
			t.Errorf("round %d: pending requests left after crossed ADD_FRIEND", i)
		}

		// The same new name on both servers at once: one wins.
		name := randName("Race", 10)
		r1, r2 = both(t, x, 20, M{"name": name}, y, 20, M{"name": strings.ToUpper(name)})
		if n := r1.Get("errno").Int() + r2.Get("errno").Int(); n != 409 {
			t.Errorf("round %d: SET_NAME race: %s and %s (want one 0 and one 409)", i, r1.Raw, r2.Raw)
		}
		r1, r2 = both(t, x, 2, M{"name": name + "r", "password": "password123"}, y, 2, M{"name": name + "R", "password": "password123"})
		if n := r1.Get("errno").Int() + r2.Get("errno").Int(); n != 409 {
			t.Errorf("round %d: REG race: %s and %s (want one 0 and one 409)", i, r1.Raw, r2.Raw)
		}

		// The same user joining one group from both servers at once.
		gid := createGroup(t, x, "race "+randName("", 4), "")
		r1, r2 = both(t, a1, 10, M{"groupid": gid}, a2, 10, M{"groupid": gid})
		if n := r1.Get("errno").Int() + r2.Get("errno").Int(); n != 409 {
			t.Errorf("round %d: JOIN race: %s and %s (want one 0 and one 409)", i, r1.Raw, r2.Raw)
		}
		if n := len(members(t, x, gid)); n != 2 {
			t.Errorf("round %d: %d members after the JOIN race, want 2", i, n)
		}

		// The owner and the earliest member quit at once: the one left
		// must be the owner.
		g2 := createGroup(t, x, "race2 "+randName("", 4), "")
		joinGroup(t, y, g2)
		joinGroup(t, b, g2)
		r1, r2 = both(t, x, 11, M{"groupid": g2}, y, 11, M{"groupid": g2})
		if r1.Get("errno").Int() != 0 || r2.Get("errno").Int() != 0 {
			t.Errorf("round %d: QUIT race: %s and %s", i, r1.Raw, r2.Raw)
		}
		ms := members(t, b, g2)
		if len(ms) != 1 || ms[b.User.ID].Get("role").String() != "owner" {
			t.Errorf("round %d: after owner and heir quit at once, members %v (want b alone, as owner)", i, ms)
		}
		// The last two members quit at once: the group is gone.
		g3 := createGroup(t, x, "race3 "+randName("", 4), "")
		joinGroup(t, y, g3)
		r1, r2 = both(t, x, 11, M{"groupid": g3}, y, 11, M{"groupid": g3})
		if r1.Get("errno").Int() != 0 || r2.Get("errno").Int() != 0 {
			t.Errorf("round %d: last-two QUIT race: %s and %s", i, r1.Raw, r2.Raw)
		}
		if r := b.Req(10, M{"groupid": g3}); r.Get("errno").Int() != 404 {
			t.Errorf("round %d: after the last two members quit at once, JOIN answered %s (want 404: the group is deleted)", i, r.Raw)
		}
	}
}

// Caches on one server must not outlive a change made on the other: after
// DEL_FRIEND on s2, ONE_CHAT on s1 is 403; after QUIT_GROUP on s2, the same
// user's GROUP_CHAT on s1 is 403; after DELETE_GROUP on s1, requests on s2
// are 404.
func testCrossCaches(t *testing.T, e *env, c *clusterTarget) {
	for i := range 10 {
		au := regAt(t, c)
		a1 := on(t, c, 0, au, "a@s1")
		a2 := Dial(t, c.servers[1].Addr(), "a@s2")
		a2.OK(1, M{"token": au.Token})
		a2.User = au
		b := on(t, c, 1, regAt(t, c), "b@s2")
		befriend(t, a1, b)
		chat(t, a1, b.User.ID, "warm", fmt.Sprintf("w%d", i)) // s1 now knows they are friends
		b.OK(8, M{"friendid": au.ID})
		if r := a1.Req(5, M{"toid": b.User.ID, "msg": "after removal", "cid": fmt.Sprintf("x%d", i)}); r.Get("errno").Int() != 403 {
			t.Errorf("round %d: ONE_CHAT on s1 right after DEL_FRIEND on s2: %s (want 403)", i, r.Raw)
		}
		befriend(t, b, a2)
		if r := a1.Req(5, M{"toid": b.User.ID, "msg": "friends again", "cid": fmt.Sprintf("y%d", i)}); r.Get("errno").Int() != 0 {
			t.Errorf("round %d: ONE_CHAT on s1 right after befriending again on s2: %s (want 0)", i, r.Raw)
		}

		gid := createGroup(t, b, "cache "+randName("", 4), "")
		joinGroup(t, a1, gid)
		gchat(t, a1, gid, "warm", fmt.Sprintf("gw%d", i)) // s1 now knows a is a member
		a2.OK(11, M{"groupid": gid})
		if r := a1.Req(13, M{"groupid": gid, "msg": "after quit", "cid": fmt.Sprintf("gx%d", i)}); r.Get("errno").Int() != 403 {
			t.Errorf("round %d: GROUP_CHAT on s1 right after QUIT_GROUP on s2: %s (want 403)", i, r.Raw)
		}
		if r := a1.Req(14, M{"groupid": gid}); r.Get("errno").Int() != 403 {
			t.Errorf("round %d: GROUP_MEMBERS on s1 right after QUIT_GROUP on s2: %s (want 403)", i, r.Raw)
		}
		joinGroup(t, a2, gid)
		gchat(t, b, gid, "warm", fmt.Sprintf("gb%d", i)) // s2 knows the group
		x := on(t, c, 0, regAt(t, c), "x@s1")
		joinGroup(t, x, gid)
		r := a1.Req(13, M{"groupid": gid, "msg": "member again", "cid": fmt.Sprintf("gy%d", i)})
		if r.Get("errno").Int() != 0 {
			t.Errorf("round %d: GROUP_CHAT on s1 right after JOIN_GROUP on s2: %s (want 0)", i, r.Raw)
		}
		// The owner (b, on s2) deletes; s1 must answer 404 at once.
		b.OK(12, M{"groupid": gid})
		for _, rq := range []struct {
			id int
			f  M
		}{
			{13, M{"groupid": gid, "msg": "deleted", "cid": fmt.Sprintf("gz%d", i)}},
			{14, M{"groupid": gid}},
			{10, M{"groupid": gid}},
		} {
			if r := x.Req(rq.id, rq.f); r.Get("errno").Int() != 404 {
				t.Errorf("round %d: msgid %d on s1 right after DELETE_GROUP on s2: %s (want 404)", i, rq.id, r.Raw)
			}
		}
		x.OK(16, M{"query": "cache "})
	}
}

// Behind nginx with --proxy-protocol the servers see the real client
// address (their logs name the client's own port, not nginx's).
func testProxyProtocol(t *testing.T, ci *clusterInfra) {
	c := ci.start(t, false)
	cl := Dial(t, c.Addrs()[0], "client")
	loginOn(t, cl, regOn(t, cl, randName("pp", 8)))
	want := "remote=" + cl.conn.LocalAddr().String()
	waitFor(t, 5*time.Second, "a server log line with "+want, func() bool {
		for _, s := range c.servers {
			if strings.Contains(s.Logs(), want) {
				return true
			}
		}
		return false
	})
}
