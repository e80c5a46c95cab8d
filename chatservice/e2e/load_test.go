package e2e

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// MultiServer is a target with more than one chatserver behind it; pushes
// of messages accepted by different servers may cross (§6).
type MultiServer interface {
	Servers() int
}

func servers(tgt Target) int {
	if m, ok := tgt.(MultiServer); ok {
		return m.Servers()
	}
	return 1
}

type stored struct {
	from      int64
	msg, cid  string
	time, seq int64
}

// §6: 3 members send 100 group messages each at once → every member ends
// with seq 1..300 and identical content (pushes and HISTORY).
func testGroupConcurrency(t *testing.T, e *env) {
	const per = 100
	ms := []*Client{e.user(t, "m1"), e.user(t, "m2"), e.user(t, "m3")}
	gid := createGroup(t, ms[0], "load "+randName("", 5), "")
	joinGroup(t, ms[1], gid)
	joinGroup(t, ms[2], gid)
	for _, m := range ms {
		m.Drain(206)
	}
	ids := make([][]int64, len(ms))
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, m := range ms {
		wg.Go(func() {
			<-start
			for k := range per {
				id, err := m.SendReqE(13, M{"groupid": gid, "msg": fmt.Sprintf("from %d #%d", i, k), "cid": fmt.Sprintf("L%d-%d", i, k)})
				if err != nil {
					errs[i] = err
					return
				}
				ids[i] = append(ids[i], id)
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	bySeq := map[int64]stored{}
	for i, m := range ms {
		var prev int64
		for k, id := range ids[i] {
			r := m.Response(13, id)
			if r.Get("errno").Int() != 0 {
				t.Fatalf("member %d message %d: %s", i, k, r.Raw)
			}
			s := r.Get("seq").Int()
			if s <= prev {
				t.Errorf("member %d: seq %d after %d (one sender's messages are in order)", i, s, prev)
			}
			prev = s
			if old, dup := bySeq[s]; dup {
				t.Errorf("seq %d given twice: %v and member %d #%d", s, old, i, k)
			}
			bySeq[s] = stored{ms[i].User.ID, fmt.Sprintf("from %d #%d", i, k), fmt.Sprintf("L%d-%d", i, k), r.Get("time").Int(), s}
		}
	}
	for s := int64(1); s <= 3*per; s++ {
		if _, ok := bySeq[s]; !ok {
			t.Fatalf("seq %d missing: the seqs are not 1..%d", s, 3*per)
		}
	}
	check := func(who string, m gjson.Result) {
		s := m.Get("seq").Int()
		w, ok := bySeq[s]
		if !ok || m.Get("from").Int() != w.from || m.Get("msg").String() != w.msg || m.Get("cid").String() != w.cid ||
			m.Get("time").Int() != w.time || m.Get("groupid").Int() != gid {
			t.Errorf("%s: message seq %d is %s, want %+v", who, s, m.Raw, w)
		}
	}
	var views [][]string
	for i, m := range ms {
		pushes := m.Collect(202, 2*per, 20*time.Second, inGroup(gid))
		seen := map[int64]bool{}
		var prev int64
		for _, p := range pushes {
			check(fmt.Sprintf("member %d push", i), p)
			s := p.Get("seq").Int()
			if seen[s] {
				t.Errorf("member %d: push of seq %d twice", i, s)
			}
			seen[s] = true
			if bySeq[s].from == m.User.ID {
				t.Errorf("member %d: got a push of its own message seq %d on the sending connection", i, s)
			}
			if servers(e.tgt) == 1 && s < prev {
				t.Errorf("member %d: push seq %d after %d (one server: ascending)", i, s, prev)
			}
			prev = max(prev, s)
		}
		for s, w := range bySeq {
			if w.from != m.User.ID && !seen[s] {
				t.Errorf("member %d: no push of seq %d", i, s)
			}
		}
		var all []string
		before := int64(3*per + 1)
		for before > 1 {
			h := history(t, m, M{"groupid": gid, "before": before, "limit": 100})
			if len(h) == 0 {
				t.Fatalf("member %d: history before %d is empty", i, before)
			}
			page := make([]string, 0, len(h))
			for k, x := range h {
				check(fmt.Sprintf("member %d history", i), x)
				if k > 0 && x.Get("seq").Int() != h[k-1].Get("seq").Int()+1 {
					t.Errorf("member %d history: seq %d after %d", i, x.Get("seq").Int(), h[k-1].Get("seq").Int())
				}
				page = append(page, x.Raw)
			}
			all = append(page, all...)
			before = h[0].Get("seq").Int()
		}
		views = append(views, all)
	}
	for i := 1; i < len(views); i++ {
		if len(views[i]) != len(views[0]) {
			t.Fatalf("member %d history has %d messages, member 0 has %d", i, len(views[i]), len(views[0]))
		}
		for k := range views[0] {
			if !sameJSON(gjson.Parse(views[i][k]), gjson.Parse(views[0][k])) {
				t.Errorf("history differs at %d: %s vs %s", k, views[i][k], views[0][k])
			}
		}
	}
	keys := make([]int64, 0, len(bySeq))
	for s := range bySeq {
		keys = append(keys, s)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	if len(views[0]) != len(keys) {
		t.Errorf("history has %d messages, %d were acknowledged", len(views[0]), len(keys))
	}
}

// §6 durability: every acknowledged message survives SIGKILL of the server.
func testDurability(t *testing.T, e *env) {
	tgt := e.newTarget(t)
	cr, ok := tgt.(Crasher)
	if !ok {
		t.Fatalf("target %T cannot be crashed and restarted", tgt)
	}
	a := dialTo(t, tgt, 0, "a")
	loginOn(t, a, e.regOnTarget(t, tgt))
	b := dialTo(t, tgt, 0, "b")
	bu := e.regOnTarget(t, tgt)
	loginOn(t, b, bu)
	befriend(t, a, b)
	gid := createGroup(t, a, "dur "+randName("", 5), "")
	joinGroup(t, b, gid)
	b.Close()
	const n = 50
	var buf []byte
	var ids []int64
	for i := range n {
		id := a.NextReqID()
		ids = append(ids, id)
		buf = append(buf, FrameBytes(Encode(5, id, M{"toid": bu.ID, "msg": fmt.Sprintf("durable %d", i), "cid": fmt.Sprintf("d%d", i)}))...)
	}
	for i := range 10 {
		id := a.NextReqID()
		ids = append(ids, id)
		buf = append(buf, FrameBytes(Encode(13, id, M{"groupid": gid, "msg": fmt.Sprintf("group durable %d", i), "cid": fmt.Sprintf("gd%d", i)}))...)
	}
	a.WriteRaw(buf)
	times := map[int64]int64{}
	for i, id := range ids {
		msgid := 5
		if i >= n {
			msgid = 13
		}
		r := a.Response(msgid, id)
		if r.Get("errno").Int() != 0 {
			t.Fatalf("send %d: %s", i, r.Raw)
		}
		if i < n {
			times[r.Get("seq").Int()] = r.Get("time").Int()
		}
	}
	cr.Crash(t) // right after the last acknowledgement
	a.ExpectClosed(5 * time.Second)
	cr.Restart(t)

	c := dialTo(t, tgt, 0, "b-again")
	id := c.NextReqID()
	c.Send(string(Encode(1, id, M{"id": bu.ID, "password": bu.Password})))
	lr := c.Response(1, id)
	if lr.Get("errno").Int() != 0 {
		t.Fatalf("LOGIN after restart: %s", lr.Raw)
	}
	if u, last := unreadOf(t, lr, "friends", a.User.ID); u != n || last != n {
		t.Errorf("after restart unread/lastseq %d/%d, want %d/%d", u, last, n, n)
	}
	ps := c.Collect(201, n, 10*time.Second, nil)
	for i, p := range ps {
		checkChatMsg(t, p, a.User, bu.ID, fmt.Sprintf("durable %d", i), int64(i+1), times[int64(i+1)], fmt.Sprintf("d%d", i), true)
	}
	gs := c.Collect(202, 10, 10*time.Second, inGroup(gid))
	if !equalSeqs(seqs(gs), seqRange(1, 10)) {
		t.Errorf("group offline after restart: %v", seqs(gs))
	}
	if h := history(t, c, M{"friendid": a.User.ID, "limit": 100}); !equalSeqs(seqs(h), seqRange(1, n)) {
		t.Errorf("history after restart: %v", seqs(h))
	}
	// The sender's token survived; the conversation goes on.
	a2 := dialTo(t, tgt, 0, "a-again")
	a2.OK(1, M{"token": a.User.Token})
	if s, _ := chat(t, a2, bu.ID, "after restart", "d-after"); s != n+1 {
		t.Errorf("seq after restart %d, want %d", s, n+1)
	}
	// A retry of an acknowledged cid returns the original.
	if s, tm := chat(t, a2, bu.ID, "durable 7", "d7"); s != 8 || tm != times[8] {
		t.Errorf("retry after restart: %d/%d, want 8/%d", s, tm, times[8])
	}
}

// §7 SIGTERM: GOAWAY to every connection, then exit 0 within 10 s.
func testSigterm(t *testing.T, e *env) {
	tgt := e.newTarget(t)
	tm, ok := tgt.(Terminator)
	if !ok {
		t.Fatalf("target %T cannot be terminated", tgt)
	}
	anon := dialTo(t, tgt, 0, "anon")
	anon.OK(4, nil)
	a := dialTo(t, tgt, 0, "a")
	loginOn(t, a, e.regOnTarget(t, tgt))
	b := dialTo(t, tgt, 0, "b")
	loginOn(t, b, e.regOnTarget(t, tgt))
	befriend(t, a, b)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- tm.Terminate(t, 10*time.Second) }()
	for i, c := range []*Client{anon, a, b} {
		p := c.ExpectPush(290, 10*time.Second)
		if i == 0 && servers(tgt) == 1 {
			// "Stop accepting": a connection made now is not served (with
			// several servers, the others may not have had SIGTERM yet).
			if late, err := DialE(t, tgt.Addrs()[0], "late"); err == nil {
				if r, err := late.ReqE(4, nil, 2*time.Second); err == nil && r.Get("errno").Int() == 0 {
					t.Errorf("a connection made after GOAWAY was served: %s", r.Raw)
				}
				late.Close()
			}
		}
		if r := p.Get("reason"); r.Type != gjson.String || r.Str == "" {
			t.Errorf("%s: GOAWAY without a reason: %s", c.Label, p.Raw)
		}
		goaway := time.Since(start)
		c.ExpectClosed(10 * time.Second)
		t.Logf("%s: GOAWAY %v after SIGTERM, closed after %v", c.Label, goaway, time.Since(start))
	}
	if err := <-done; err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	d := time.Since(start)
	if d > 10*time.Second {
		t.Errorf("exit took %v after SIGTERM, want ≤ 10 s", d)
	}
	t.Logf("exit %v after SIGTERM", d)
	if l, ok := tgt.(interface{ Logs() string }); ok && d > 3*time.Second {
		t.Logf("slow exit; server log:\n%s", tailLines(l.Logs(), 30))
	}
}
