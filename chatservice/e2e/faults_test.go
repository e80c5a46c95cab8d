package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"clusterchat/internal/testenv"
)

// conv names a conversation in the fault workload: a group, or the pair of
// users (lo, hi).
type conv struct {
	group  int64
	lo, hi int64
}

func (c conv) String() string {
	if c.group != 0 {
		return fmt.Sprintf("group %d", c.group)
	}
	return fmt.Sprintf("friends %d-%d", c.lo, c.hi)
}

func pair(a, b int64) conv {
	if a > b {
		a, b = b, a
	}
	return conv{lo: a, hi: b}
}

// acked is a message whose response said 0.
type acked struct {
	conv      conv
	from      int64
	msg, cid  string
	seq, time int64
	at        time.Time
}

// workload is continuous traffic from clients that retry with the same cid
// and reconnect through nginx with their token.
type workload struct {
	addr  string
	users []*User
	gid   int64
	pace  time.Duration

	mu      sync.Mutex
	acks    []acked
	errnos  map[int64]int
	pushes  map[int64][]gjson.Result // user → pushes 201/202 received
	errs    []string
	reconns int
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	sent    atomic.Int64
}

func (w *workload) fail(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) < 50 {
		w.errs = append(w.errs, fmt.Sprintf(format, args...))
	}
}

// newWorkload registers n users through addr, makes them a ring of friends
// and one group of all.
func newWorkload(t *testing.T, addr string, n int) *workload {
	t.Helper()
	w := &workload{addr: addr, errnos: map[int64]int{}, pushes: map[int64][]gjson.Result{}, stop: make(chan struct{}), pace: 30 * time.Millisecond}
	var cs []*Client
	for i := range n {
		c := Dial(t, addr, fmt.Sprintf("setup%d", i))
		u := regOn(t, c, randName(fmt.Sprintf("w%d", i), 10))
		loginOn(t, c, u)
		w.users = append(w.users, u)
		cs = append(cs, c)
	}
	for i := range n {
		befriend(t, cs[i], cs[(i+1)%n])
	}
	w.gid = createGroup(t, cs[0], "faults "+randName("", 4), "")
	for _, c := range cs[1:] {
		joinGroup(t, c, w.gid)
	}
	for _, c := range cs {
		c.Close()
	}
	return w
}

// start launches one worker per user.
func (w *workload) start(t *testing.T) {
	for i := range w.users {
		w.wg.Add(1)
		go w.worker(t, i)
	}
}

// finish stops the workers and waits for them; it may be called again.
func (w *workload) finish() {
	w.once.Do(func() { close(w.stop) })
	w.wg.Wait()
}

func (w *workload) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

func (w *workload) sleep(d time.Duration) bool {
	select {
	case <-w.stop:
		return false
	case <-time.After(d):
		return true
	}
}

// connect dials addr and logs in with the token, retrying until it works or
// the workload stops.
func (w *workload) connect(t *testing.T, i int) *Client {
	u := w.users[i]
	for attempt := 0; !w.stopped(); attempt++ {
		c, err := DialE(t, w.addr, fmt.Sprintf("w%d", i))
		if err == nil {
			r, err2 := c.ReqE(1, M{"token": u.Token}, 5*time.Second)
			if err2 == nil && r.Get("errno").Int() == 0 {
				w.mu.Lock()
				w.reconns++
				w.mu.Unlock()
				return c
			}
			c.Close()
			if err2 == nil && r.Get("errno").Int() != 503 {
				w.fail("worker %d: LOGIN with token: %s", i, r.Raw)
			}
		}
		if !w.sleep(100 * time.Millisecond) {
			return nil
		}
	}
	return nil
}

func (w *workload) collect(i int, c *Client) {
	fs := c.DrainE()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range fs {
		if m := f.MsgID(); (m == 201 || m == 202) && f.Valid {
			w.pushes[w.users[i].ID] = append(w.pushes[w.users[i].ID], f.JSON)
		}
	}
}

// worker i sends to its two friends and the group in turn; a message is
// retried with the same cid until its response says 0.
func (w *workload) worker(t *testing.T, i int) {
	defer w.wg.Done()
	n := len(w.users)
	me := w.users[i]
	var c *Client
	defer func() {
		if c != nil {
			w.collect(i, c)
			c.Close()
		}
	}()
	for k := 0; !w.stopped(); {
		var msgid int
		var f M
		var cv conv
		cid := fmt.Sprintf("w%d-%d", i, k)
		msg := fmt.Sprintf("message %d of worker %d", k, i)
		switch k % 3 {
		case 0:
			to := w.users[(i+1)%n].ID
			msgid, f, cv = 5, M{"toid": to, "msg": msg, "cid": cid}, pair(me.ID, to)
		case 1:
			to := w.users[(i+n-1)%n].ID
			msgid, f, cv = 5, M{"toid": to, "msg": msg, "cid": cid}, pair(me.ID, to)
		case 2:
			msgid, f, cv = 13, M{"groupid": w.gid, "msg": msg, "cid": cid}, conv{group: w.gid}
		}
		if c == nil {
			if c = w.connect(t, i); c == nil {
				return
			}
		}
		w.sent.Add(1)
		r, err := c.ReqE(msgid, f, 5*time.Second)
		if err != nil {
			// Dropped connection or lost response: reconnect, same cid.
			w.collect(i, c)
			c.Close()
			c = nil
			w.mu.Lock()
			w.errnos[-1]++
			w.mu.Unlock()
			w.sleep(50 * time.Millisecond)
			continue
		}
		w.collect(i, c)
		en := r.Get("errno").Int()
		w.mu.Lock()
		w.errnos[en]++
		w.mu.Unlock()
		switch en {
		case 0:
			w.mu.Lock()
			w.acks = append(w.acks, acked{cv, me.ID, msg, cid, r.Get("seq").Int(), r.Get("time").Int(), time.Now()})
			w.mu.Unlock()
			k++
			w.sleep(w.pace)
		case 503:
			w.sleep(100 * time.Millisecond)
		case 429:
			w.sleep(time.Duration(r.Get("retry_after").Int()) * time.Millisecond)
		default:
			w.fail("worker %d: %s %s: unexpected %s", i, cv, cid, r.Raw)
			k++
		}
	}
}

// check syncs every user through addr (HISTORY of each of its
// conversations) and checks: every acknowledged message is in every
// recipient's view, with its seq, time and content; no cid stored twice;
// each conversation is 1..last in order and the same for all its members;
// every push received matches the stored message.
func (w *workload) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.errs {
		t.Error(e)
	}
	n := len(w.users)
	members := map[conv][]int{}
	for i := range w.users {
		members[pair(w.users[i].ID, w.users[(i+1)%n].ID)] = append(members[pair(w.users[i].ID, w.users[(i+1)%n].ID)], i, (i+1)%n)
		members[conv{group: w.gid}] = append(members[conv{group: w.gid}], i)
	}
	views := map[conv]map[int][]gjson.Result{}
	for i, u := range w.users {
		var c *Client
		deadline := time.Now().Add(30 * time.Second)
		for {
			c = Dial(t, w.addr, fmt.Sprintf("check%d", i))
			r := c.Req(1, M{"token": u.Token})
			if r.Get("errno").Int() == 0 {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatalf("checker login of %d: %s", u.ID, r.Raw)
			}
			time.Sleep(200 * time.Millisecond)
		}
		for cv, ms := range members {
			mine := false
			for _, m := range ms {
				mine = mine || m == i
			}
			if !mine {
				continue
			}
			f := M{"groupid": cv.group}
			if cv.group == 0 {
				other := cv.lo
				if other == u.ID {
					other = cv.hi
				}
				f = M{"friendid": other}
			}
			var all []gjson.Result
			before := int64(0)
			for {
				q := M{"limit": 100}
				for k, v := range f {
					q[k] = v
				}
				if before > 0 {
					q["before"] = before
				}
				page := history(t, c, q)
				all = append(page, all...)
				if len(page) < 100 || page[0].Get("seq").Int() == 1 {
					break
				}
				before = page[0].Get("seq").Int()
			}
			if views[cv] == nil {
				views[cv] = map[int][]gjson.Result{}
			}
			views[cv][i] = all
		}
		c.Close()
	}
	stored := map[conv]map[int64]gjson.Result{}
	for cv, byUser := range views {
		stored[cv] = map[int64]gjson.Result{}
		var ref []gjson.Result
		refUser := -1
		for i, v := range byUser {
			cids := map[string]int64{}
			for k, m := range v {
				if m.Get("seq").Int() != int64(k+1) {
					t.Errorf("%s as seen by user %d: position %d holds seq %d (want 1..last in order)", cv, w.users[i].ID, k, m.Get("seq").Int())
					break
				}
				key := fmt.Sprint(m.Get("from").Int(), "/", m.Get("cid").String())
				if s, dup := cids[key]; dup {
					t.Errorf("%s: message from %s stored twice (seq %d and %d)", cv, key, s, m.Get("seq").Int())
				}
				cids[key] = m.Get("seq").Int()
				stored[cv][m.Get("seq").Int()] = m
			}
			if ref == nil {
				ref, refUser = v, i
				continue
			}
			if len(v) != len(ref) {
				t.Errorf("%s: user %d sees %d messages, user %d sees %d", cv, w.users[i].ID, len(v), w.users[refUser].ID, len(ref))
				continue
			}
			for k := range v {
				if !sameJSON(v[k], ref[k]) {
					t.Errorf("%s: users %d and %d see different seq %d: %s vs %s", cv, w.users[i].ID, w.users[refUser].ID, k+1, v[k].Raw, ref[k].Raw)
					break
				}
			}
		}
	}
	lost := 0
	for _, a := range w.acks {
		m, ok := stored[a.conv][a.seq]
		if !ok || m.Get("from").Int() != a.from || m.Get("cid").String() != a.cid || m.Get("msg").String() != a.msg || m.Get("time").Int() != a.time {
			lost++
			if lost <= 10 {
				t.Errorf("acknowledged message %s seq %d cid %s (acked at %s) not in the store as acknowledged: %s",
					a.conv, a.seq, a.cid, a.at.Format("15:04:05.000"), m.Raw)
			}
		}
	}
	bad := 0
	for uid, ps := range w.pushes {
		for _, p := range ps {
			cv := conv{group: p.Get("groupid").Int()}
			if cv.group == 0 {
				cv = pair(p.Get("from").Int(), p.Get("toid").Int())
			}
			m, ok := stored[cv][p.Get("seq").Int()]
			if !ok || m.Get("cid").String() != p.Get("cid").String() || m.Get("from").Int() != p.Get("from").Int() || m.Get("time").Int() != p.Get("time").Int() {
				bad++
				if bad <= 5 {
					t.Errorf("user %d got push %s which does not match the stored %s", uid, p.Raw, m.Raw)
				}
			}
		}
	}
	total := 0
	for _, v := range stored {
		total += len(v)
	}
	t.Logf("workload: %d requests, %d acknowledged, %d stored, %d lost, %d bad pushes, %d logins; errnos %v",
		w.sent.Load(), len(w.acks), total, lost, bad, w.reconns, w.errnos)
	if len(w.acks) == 0 {
		t.Errorf("no message was acknowledged")
	}
}

// acksBetween counts acknowledgements in [from, to).
func (w *workload) acksBetween(from, to time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, a := range w.acks {
		if !a.at.Before(from) && a.at.Before(to) {
			n++
		}
	}
	return n
}

// waitAcks waits until at least n acknowledgements arrived after since.
func (w *workload) waitAcks(t *testing.T, since time.Time, n int, within time.Duration) {
	t.Helper()
	waitFor(t, within, fmt.Sprintf("%d acknowledgements after %s", n, since.Format("15:04:05.000")), func() bool {
		return w.acksBetween(since, time.Now().Add(time.Hour)) >= n
	})
}

// testFaults: kill -9 one server; restart Redis; stop MariaDB for 10 s —
// each under continuous traffic, then the checker.
func testFaults(t *testing.T, ci *clusterInfra) {
	t.Run("kill9_one_server", func(t *testing.T) {
		c := ci.start(t, false)
		w := newWorkload(t, c.Addrs()[0], 4)
		w.start(t)
		defer w.finish()
		w.waitAcks(t, time.Now(), 40, 20*time.Second)
		// b's only session is on s1: after s1 dies it must not stay online.
		b, a := proxiedPair(t, c) // b on s1, a on s2
		if err := c.servers[0].Kill(); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		waitFor(t, 15*time.Second, "a user whose server was killed shown offline", func() bool {
			f, ok := entry(list(t, a).Get("friends"), b.User.ID)
			return ok && !f.Get("online").Bool()
		})
		t.Logf("offline %v after the kill", time.Since(killed))
		w.waitAcks(t, killed, 40, 20*time.Second) // s2 carries on
		time.Sleep(time.Until(killed.Add(2 * time.Second)))
		if err := c.servers[0].Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		w.waitAcks(t, time.Now(), 40, 20*time.Second)
		w.finish()
		w.check(t)
	})
	t.Run("restart_redis", func(t *testing.T) {
		c := ci.start(t, false)
		w := newWorkload(t, c.Addrs()[0], 4)
		w.start(t)
		defer w.finish()
		w.waitAcks(t, time.Now(), 40, 20*time.Second)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := c.redis.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		restarted := time.Now()
		w.waitAcks(t, restarted, 60, 30*time.Second)
		w.finish()
		w.check(t)
		// Live pushes across servers work again after the restart.
		checkLivePush(t, c)
		checkResync(t, c)
	})
	t.Run("balancer_dies", func(t *testing.T) {
		c := ci.start(t, false)
		w := newWorkload(t, c.Addrs()[0], 4)
		w.start(t)
		defer w.finish()
		w.waitAcks(t, time.Now(), 40, 20*time.Second)
		old := c.nginx
		if err := old.Stop(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // clients find nothing listening
		c.nginx = testenv.NginxForTest(t, testenv.NginxConfig{
			Listen:        old.Port,
			Upstreams:     []string{c.servers[0].Addr(), c.servers[1].Addr()},
			ProxyProtocol: true,
			FailTimeout:   2 * time.Second,
			Template:      os.Getenv("E2E_NGINX_TEMPLATE"),
		})
		w.waitAcks(t, time.Now(), 40, 30*time.Second)
		w.finish()
		w.check(t)
	})
	t.Run("stop_mariadb_10s", func(t *testing.T) {
		c := ci.start(t, false)
		w := newWorkload(t, c.Addrs()[0], 4)
		w.start(t)
		defer w.finish()
		w.waitAcks(t, time.Now(), 40, 20*time.Second)
		if err := ci.db.Stop(); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		// During the outage nothing may claim wrong credentials or success:
		// a token or password LOGIN, REG and HISTORY answer 503.
		time.Sleep(time.Second)
		u := w.users[0]
		for _, rq := range []struct {
			msgid int
			f     M
		}{
			{1, M{"token": u.Token}},
			{1, M{"id": u.ID, "password": u.Password}},
			{2, M{"name": randName("out", 8), "password": "password123"}},
		} {
			x := Dial(t, c.Addrs()[0], "outage")
			if r := x.Req(rq.msgid, rq.f); r.Get("errno").Int() != 503 {
				t.Errorf("msgid %d while MariaDB is down: want 503, got %s", rq.msgid, r.Raw)
			}
			x.Close()
		}
		time.Sleep(time.Until(stopped.Add(10 * time.Second))) // the outage under test
		w.mu.Lock()
		n503 := w.errnos[503]
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		up := time.Now() // the outage ends when the restart begins
		if err := ci.db.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		// Nothing can be acknowledged while the database is down (allow 1 s
		// for responses to commits made just before the stop).
		// A retry of a message committed before the stop may be answered
		// with its original seq and time; a message first stored during the
		// outage cannot be.
		w.mu.Lock()
		for _, a := range w.acks {
			if a.at.After(stopped.Add(time.Second)) && a.at.Before(up) {
				if a.time >= stopped.UnixMilli() {
					t.Errorf("acknowledged while MariaDB was stopped (%s to %s): %s seq %d cid %s time %s, acked at %s",
						stopped.Format("15:04:05.000"), up.Format("15:04:05.000"), a.conv, a.seq, a.cid,
						time.UnixMilli(a.time).Format("15:04:05.000"), a.at.Format("15:04:05.000"))
				} else {
					t.Logf("retry answered from before the outage: %s seq %d cid %s time %s, acked at %s",
						a.conv, a.seq, a.cid, time.UnixMilli(a.time).Format("15:04:05.000"), a.at.Format("15:04:05.000"))
				}
			}
		}
		w.mu.Unlock()
		if n503 == 0 {
			t.Errorf("no 503 answered while MariaDB was stopped (errnos %v)", w.errnos)
		}
		w.waitAcks(t, up, 40, 60*time.Second)
		w.finish()
		w.check(t)
	})
}

// checkLivePush: a message between users on different servers is pushed.
func checkLivePush(t *testing.T, c *clusterTarget) {
	t.Helper()
	a, b := proxiedPair(t, c)
	deadline := time.Now().Add(20 * time.Second)
	for k := 0; ; k++ {
		seq, _ := chat(t, a, b.User.ID, "live", fmt.Sprintf("live%d", k))
		if _, err := b.TakeE(2*time.Second, func(f Frame) bool { return f.MsgID() == 201 && f.JSON.Get("seq").Int() == seq }); err == nil {
			return
		} else if !errors.Is(err, ErrTimeout) || time.Now().After(deadline) {
			t.Fatalf("no live push across servers after the Redis restart: %v", err)
		}
	}
}

// dialProxied connects to a server that expects a PROXY protocol header
// (as behind nginx) and writes one.
func dialProxied(t *testing.T, addr, label string) *Client {
	t.Helper()
	x := Dial(t, addr, label)
	x.WriteRaw([]byte("PROXY TCP4 127.0.0.1 127.0.0.1 50000 6000\r\n"))
	return x
}

// proxiedPair returns friends a (on s1) and b (on s2), connected directly
// to the PROXY-protocol servers.
func proxiedPair(t *testing.T, c *clusterTarget) (*Client, *Client) {
	t.Helper()
	var cs []*Client
	for i := range 2 {
		x := dialProxied(t, c.servers[i].Addr(), fmt.Sprintf("p%d@s%d", i, i+1))
		loginOn(t, x, regOn(t, x, randName("px", 8)))
		cs = append(cs, x)
	}
	befriend(t, cs[0], cs[1])
	return cs[0], cs[1]
}

// checkResync: messages acknowledged while Redis is down reach an online
// recipient on the other server once Redis is back (the servers resubscribe
// and re-run the offline push), without a new login.
func checkResync(t *testing.T, c *clusterTarget) {
	t.Helper()
	a, b := proxiedPair(t, c)
	if err := c.redis.Stop(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	var acked []int64
	n503 := 0
	for k := 0; k < 3 && time.Since(down) < 5*time.Second; {
		r, err := a.ReqE(5, M{"toid": b.User.ID, "msg": fmt.Sprintf("during outage %d", k), "cid": fmt.Sprintf("out%d", k)}, 5*time.Second)
		if err != nil {
			t.Fatalf("send while Redis is down: %v", err)
		}
		switch r.Get("errno").Int() {
		case 0:
			acked = append(acked, r.Get("seq").Int())
			k++
		case 503:
			n503++
			time.Sleep(100 * time.Millisecond)
		default:
			t.Fatalf("send while Redis is down: %s", r.Raw)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := c.redis.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("while Redis was down: %d acknowledged, %d answered 503", len(acked), n503)
	for _, seq := range acked {
		if _, err := b.TakeE(20*time.Second, func(f Frame) bool { return f.MsgID() == 201 && f.JSON.Get("seq").Int() == seq }); err != nil {
			t.Errorf("message seq %d, acknowledged while Redis was down, never pushed to the online recipient on the other server after Redis came back: %v", seq, err)
		}
	}
}
