package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// offlineFriends returns a logged-in a and a registered b (friends) whose
// sessions are all closed and seen offline by a.
func (e *env) offlineFriends(t *testing.T) (*Client, *User) {
	t.Helper()
	a := e.user(t, "a")
	b := e.user(t, "b")
	befriend(t, a, b)
	b.Close()
	waitOffline(t, a, b.User.ID)
	return a, b.User
}

// loginOffline logs u in on a new connection and returns the LOGIN response
// frame and the pushes msgid that follow it within the quiet period after
// the last one (offline delivery), in arrival order.
func (e *env) loginOffline(t *testing.T, u *User, msgid int, pred func(gjson.Result) bool, want int) (*Client, gjson.Result, []gjson.Result) {
	t.Helper()
	c := e.dial(t, "relogin")
	id := c.NextReqID()
	c.Send(string(Encode(1, id, M{"id": u.ID, "password": u.Password})))
	rf := c.ResponseFrame(1, id)
	if rf.JSON.Get("errno").Int() != 0 {
		t.Fatalf("LOGIN: %s", rf.Body)
	}
	c.User = u
	u.Token = rf.JSON.Get("token").String()
	match := func(f Frame) bool { return f.MsgID() == msgid && (pred == nil || pred(f.JSON)) }
	var out []gjson.Result
	for len(out) < want {
		f, err := c.TakeE(PushTimeout, match)
		if err != nil {
			t.Fatalf("offline pushes: got %d of %d: %v", len(out), want, err)
		}
		CheckFrame(t, c.Label, f)
		if f.N < rf.N {
			t.Errorf("offline push arrived before the LOGIN response: %s", f.Body)
		}
		out = append(out, f.JSON)
	}
	c.ExpectNoPush(msgid, QuietPeriod, pred)
	return c, rf.JSON, out
}

// §6 offline messages: pushed right after the LOGIN response, ascending;
// unread counts in LOGIN and LIST; nothing deleted before the ACK.
func testOfflineDelivery(t *testing.T, e *env) {
	a, b := e.offlineFriends(t)
	var times []int64
	for i := range 3 {
		_, tm := chat(t, a, b.ID, fmt.Sprintf("offline %d", i), fmt.Sprintf("o%d", i))
		times = append(times, tm)
	}
	fromA := fieldIs("from", a.User.ID)
	c, lr, ps := e.loginOffline(t, b, 201, fromA, 3)
	if u, last := unreadOf(t, lr, "friends", a.User.ID); u != 3 || last != 3 {
		t.Errorf("LOGIN friends entry: unread/lastseq %d/%d, want 3/3", u, last)
	}
	for i, p := range ps {
		checkChatMsg(t, p, a.User, b.ID, fmt.Sprintf("offline %d", i), int64(i+1), times[i], fmt.Sprintf("o%d", i), true)
	}
	if u, _ := unreadOf(t, list(t, c), "friends", a.User.ID); u != 3 {
		t.Errorf("a push does not move the cursor: unread %d, want 3", u)
	}
	// Not ACKed: the next login gets them again.
	c.Close()
	_, _, ps = e.loginOffline(t, b, 201, fromA, 3)
	if !equalSeqs(seqs(ps), []int64{1, 2, 3}) {
		t.Errorf("second login offline seqs %v", seqs(ps))
	}
}

// §6 offline messages of a group.
func testOfflineGroup(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	gid := createGroup(t, a, "off "+randName("", 5), "")
	joinGroup(t, b, gid)
	b.Close()
	for i := range 4 {
		gchat(t, a, gid, fmt.Sprintf("g%d", i), fmt.Sprintf("g%d", i))
	}
	_, lr, ps := e.loginOffline(t, b.User, 202, inGroup(gid), 4)
	if !equalSeqs(seqs(ps), []int64{1, 2, 3, 4}) {
		t.Errorf("group offline seqs %v, want [1 2 3 4]", seqs(ps))
	}
	for i, p := range ps {
		checkGroupMsg(t, p, gid, a.User, fmt.Sprintf("g%d", i), int64(i+1), 0, fmt.Sprintf("g%d", i), true)
	}
	if u, last := unreadOf(t, lr, "groups", gid); u != 4 || last != 4 {
		t.Errorf("LOGIN groups entry unread/lastseq %d/%d, want 4/4", u, last)
	}
}

// §3 ACK moves the cursor (max(cursor, seq)); offline delivery starts above it.
func testAckCursor(t *testing.T, e *env) {
	a, b := e.offlineFriends(t)
	for i := range 5 {
		chat(t, a, b.ID, fmt.Sprintf("m%d", i), fmt.Sprintf("c%d", i))
	}
	c, _, _ := e.loginOffline(t, b, 201, nil, 5)
	c.OK(19, M{"acks": []M{{"friendid": a.User.ID, "seq": 3}}})
	if u, _ := unreadOf(t, list(t, c), "friends", a.User.ID); u != 2 {
		t.Errorf("unread after ACK 3: %d, want 2", u)
	}
	c.OK(19, M{"acks": []M{{"friendid": a.User.ID, "seq": 1}}}) // lower: no move back
	if u, _ := unreadOf(t, list(t, c), "friends", a.User.ID); u != 2 {
		t.Errorf("unread after ACK 1 (below the cursor): %d, want 2", u)
	}
	c.OK(19, M{"acks": []M{{"friendid": a.User.ID, "seq": 3}}}) // same: fine
	c.Close()
	_, lr, ps := e.loginOffline(t, b, 201, nil, 2)
	if !equalSeqs(seqs(ps), []int64{4, 5}) {
		t.Errorf("offline after ACK 3: %v, want [4 5]", seqs(ps))
	}
	if u, last := unreadOf(t, lr, "friends", a.User.ID); u != 2 || last != 5 {
		t.Errorf("LOGIN unread/lastseq %d/%d, want 2/5", u, last)
	}
	// The other side's view is independent.
	if u, _ := unreadOf(t, list(t, a), "friends", b.ID); u != 0 {
		t.Errorf("sender's unread %d, want 0", u)
	}
}

// §6: more than 1000 above the cursor → the newest 1000.
func testOfflineNewest1000(t *testing.T, e *env) {
	a, b := e.offlineFriends(t)
	const total = 1005
	// Six sender connections, each within the default burst of 200.
	senders := []*Client{a}
	for i := range 5 {
		senders = append(senders, e.second(t, a, fmt.Sprintf("a%d", i+2)))
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(senders))
	ids := make([][]int64, len(senders))
	for si, s := range senders {
		wg.Go(func() {
			for i := si; i < total; i += len(senders) {
				id, err := s.SendReqE(5, M{"toid": b.ID, "msg": fmt.Sprintf("bulk %d", i), "cid": fmt.Sprintf("bulk%d", i)})
				if err != nil {
					errs <- err
					return
				}
				ids[si] = append(ids[si], id)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for si, s := range senders {
		for _, id := range ids[si] {
			if r := s.Response(5, id); r.Get("errno").Int() != 0 {
				t.Fatalf("bulk send: %s", r.Raw)
			}
		}
	}
	c, lr, ps := e.loginOffline(t, b, 201, nil, 1000)
	if u, last := unreadOf(t, lr, "friends", a.User.ID); u != total || last != total {
		t.Errorf("LOGIN unread/lastseq %d/%d, want %d/%d", u, last, total, total)
	}
	if got := seqs(ps); !equalSeqs(got, seqRange(total-999, total)) {
		t.Errorf("offline seqs: %d pushes from %d to %d, want the newest 1000 (%d..%d) ascending",
			len(got), got[0], got[len(got)-1], total-999, total)
	}
	// The older ones are there for HISTORY.
	h := history(t, c, M{"friendid": a.User.ID, "before": total - 999})
	if !equalSeqs(seqs(h), seqRange(1, total-1000)) {
		t.Errorf("history before %d: %v", total-999, seqs(h))
	}
}

// §3 ACK is all or nothing.
func testAckAllOrNothing(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	befriend(t, a, b)
	gid := createGroup(t, a, "ack "+randName("", 5), "")
	joinGroup(t, b, gid)
	other := createGroup(t, a, "ack2 "+randName("", 5), "")
	for i := range 3 {
		chat(t, a, b.User.ID, "m", fmt.Sprintf("f%d", i))
	}
	for i := range 2 {
		gchat(t, a, gid, "g", fmt.Sprintf("g%d", i))
	}
	gchat(t, a, other, "g", "o1")
	check := func(what string, wantF, wantG int64) {
		t.Helper()
		l := list(t, b)
		uf, _ := unreadOf(t, l, "friends", a.User.ID)
		ug, _ := unreadOf(t, l, "groups", gid)
		if uf != wantF || ug != wantG {
			t.Errorf("%s: unread friend/group %d/%d, want %d/%d", what, uf, ug, wantF, wantG)
		}
	}
	check("before", 3, 2)
	b.Err(19, M{"acks": []M{{"friendid": a.User.ID, "seq": 2}, {"groupid": gid, "seq": 5}}}, 400)
	check("after ACK with a seq beyond the group's last", 3, 2)
	b.Err(19, M{"acks": []M{{"friendid": a.User.ID, "seq": 4}, {"groupid": gid, "seq": 1}}}, 400)
	check("after ACK with a seq beyond the friend conversation's last", 3, 2)
	b.Err(19, M{"acks": []M{{"friendid": a.User.ID, "seq": 2}, {"groupid": other, "seq": 1}}}, 403)
	check("after ACK naming a group b is not in", 3, 2)
	stranger := e.reg(t)
	b.Err(19, M{"acks": []M{{"groupid": gid, "seq": 1}, {"friendid": stranger.ID, "seq": 1}}}, 403)
	check("after ACK naming a non-friend", 3, 2)
	b.Err(19, M{"acks": []M{{"groupid": gid, "seq": 1}, {"friendid": noSuchID, "seq": 1}}}, 404)
	check("after ACK naming no user", 3, 2)
	b.OK(19, M{"acks": []M{{"friendid": a.User.ID, "seq": 2}, {"groupid": gid, "seq": 2}}})
	check("after a good ACK", 1, 0)
	// Two entries for one conversation: the larger counts, in either order.
	b.OK(19, M{"acks": []M{{"friendid": a.User.ID, "seq": 3}, {"friendid": a.User.ID, "seq": 1}}})
	check("after ACK 3 and 1", 0, 0)
	chat(t, a, b.User.ID, "m", "f3")
	b.OK(19, M{"acks": []M{{"friendid": a.User.ID, "seq": 2}, {"friendid": a.User.ID, "seq": 4}}})
	check("after ACK 2 and 4", 0, 0)
}

// §3 ACK shapes.
func testAckShapes(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	befriend(t, a, b)
	gid := createGroup(t, a, "acks "+randName("", 5), "")
	chat(t, a, b.User.ID, "m", "s1")
	for _, f := range []M{
		{"acks": []M{}},
		{"acks": []M{{}}},
		{"acks": []M{{"seq": 1}}},
		{"acks": []M{{"friendid": b.User.ID}}},
		{"acks": []M{{"friendid": b.User.ID, "groupid": gid, "seq": 1}}},
		{"acks": []any{1, 2}},
		{"acks": "x"},
		{"acks": []M{{"friendid": b.User.ID, "seq": 1}, {"groupid": gid}}},
	} {
		a.Err(19, f, 400)
	}
	a.OK(19, M{"acks": []M{{"friendid": b.User.ID, "seq": 1}}})
	// An empty group: no seq is within it.
	a.Err(19, M{"acks": []M{{"groupid": gid, "seq": 1}}}, 400)
}

// §3: sending a message moves the sender's own cursor.
func testOwnSendCursor(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	befriend(t, a, b)
	for i := range 3 {
		chat(t, a, b.User.ID, "m", fmt.Sprintf("x%d", i))
	}
	if u, last := unreadOf(t, list(t, a), "friends", b.User.ID); u != 0 || last != 3 {
		t.Errorf("sender's unread/lastseq %d/%d, want 0/3", u, last)
	}
	if u, _ := unreadOf(t, list(t, b), "friends", a.User.ID); u != 3 {
		t.Errorf("recipient's unread %d, want 3", u)
	}
	chat(t, b, a.User.ID, "reply", "y1")
	if u, _ := unreadOf(t, list(t, a), "friends", b.User.ID); u != 1 {
		t.Errorf("after the reply the sender's unread is %d, want 1", u)
	}
	if u, _ := unreadOf(t, list(t, b), "friends", a.User.ID); u != 0 {
		t.Errorf("after replying the replier's unread is %d, want 0 (sending moves the cursor to 4)", u)
	}
	// Offline: the sender's own messages are not pushed back to it.
	a.Close()
	waitOffline(t, b, a.User.ID)
	_, _, ps := e.loginOffline(t, a.User, 201, nil, 1)
	if len(ps) != 1 || ps[0].Get("seq").Int() != 4 {
		t.Errorf("sender's offline push: %v, want [4]", seqs(ps))
	}
}

// §3 HISTORY paging: newest `limit` below `before`, ascending.
func testHistoryPaging(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	befriend(t, a, b)
	for i := 1; i <= 25; i++ {
		from, to := a, b
		if i%3 == 0 {
			from, to = b, a
		}
		chat(t, from, to.User.ID, fmt.Sprintf("h%d", i), fmt.Sprintf("h%d", i))
	}
	for _, tc := range []struct {
		f    M
		want []int64
	}{
		{M{"friendid": b.User.ID}, seqRange(6, 25)},
		{M{"friendid": b.User.ID, "limit": 100}, seqRange(1, 25)},
		{M{"friendid": b.User.ID, "limit": 1}, []int64{25}},
		{M{"friendid": b.User.ID, "before": 10}, seqRange(1, 9)},
		{M{"friendid": b.User.ID, "before": 10, "limit": 3}, []int64{7, 8, 9}},
		{M{"friendid": b.User.ID, "before": 1}, []int64{}},
		{M{"friendid": b.User.ID, "before": 2}, []int64{1}},
		{M{"friendid": b.User.ID, "before": 1000}, seqRange(6, 25)},
		{M{"friendid": b.User.ID, "before": 26, "limit": 5}, seqRange(21, 25)},
	} {
		h := history(t, a, tc.f)
		if got := seqs(h); !equalSeqs(got, tc.want) {
			t.Errorf("HISTORY %v: seqs %v, want %v", tc.f, got, tc.want)
		}
	}
	hb := history(t, b, M{"friendid": a.User.ID, "limit": 100})
	ha := history(t, a, M{"friendid": b.User.ID, "limit": 100})
	for i := range ha {
		if ha[i].Raw != hb[i].Raw && !sameJSON(ha[i], hb[i]) {
			t.Errorf("history differs between the two sides at %d: %s vs %s", i, ha[i].Raw, hb[i].Raw)
		}
		from, to := a.User, b.User.ID
		if (i+1)%3 == 0 {
			from, to = b.User, a.User.ID
		}
		checkChatMsg(t, ha[i], from, to, fmt.Sprintf("h%d", i+1), int64(i+1), 0, fmt.Sprintf("h%d", i+1), false)
	}
	r := a.OK(18, M{"friendid": b.User.ID, "before": 1})
	if r.Get("messages").Raw != "[]" {
		t.Errorf("empty history: want [], got %s", r.Raw)
	}
	// Group history pages the same way.
	gid := createGroup(t, a, "hist "+randName("", 5), "")
	if r := a.OK(18, M{"groupid": gid}); r.Get("messages").Raw != "[]" {
		t.Errorf("empty group history: want [], got %s", r.Raw)
	}
	for i := range 5 {
		gchat(t, a, gid, fmt.Sprintf("gh%d", i), fmt.Sprintf("gh%d", i))
	}
	if got := seqs(history(t, a, M{"groupid": gid, "before": 5, "limit": 2})); !equalSeqs(got, []int64{3, 4}) {
		t.Errorf("group history before 5 limit 2: %v", got)
	}
}

// sameJSON compares two objects key by key.
func sameJSON(a, b gjson.Result) bool {
	am, bm := a.Map(), b.Map()
	if len(am) != len(bm) {
		return false
	}
	for k, v := range am {
		if bm[k].Raw != v.Raw {
			return false
		}
	}
	return true
}

// §3 HISTORY errors.
func testHistoryErrors(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	s := e.user(t, "stranger")
	befriend(t, a, b)
	gid := createGroup(t, a, "herr "+randName("", 5), "")
	bid := b.User.ID
	for _, f := range []M{
		{"friendid": bid, "limit": 0},
		{"friendid": bid, "limit": 101},
		{"friendid": bid, "limit": -1},
		{"friendid": bid, "groupid": gid},
		{},
		{"limit": 5},
		{"friendid": bid, "before": 0},
	} {
		a.Err(18, f, 400)
	}
	a.OK(18, M{"friendid": bid, "limit": 100})
	a.Err(18, M{"friendid": s.User.ID}, 403)
	s.Err(18, M{"groupid": gid}, 403)
	a.Err(18, M{"friendid": noSuchID}, 404)
	a.Err(18, M{"groupid": noSuchID}, 404)
}

// §6: offline delivery and live pushes of one conversation do not overtake
// each other: one server's pushes reach a session in ascending seq.
func testOfflineThenLive(t *testing.T, e *env) {
	a, b := e.offlineFriends(t)
	const before, during = 300, 100
	// Each sender connection stays within the default burst of 200.
	send := func(s *Client, from, n int) []int64 {
		var buf []byte
		var ids []int64
		for i := from; i < from+n; i++ {
			id := s.NextReqID()
			ids = append(ids, id)
			buf = append(buf, FrameBytes(Encode(5, id, M{"toid": b.ID, "msg": fmt.Sprintf("m%d", i), "cid": fmt.Sprintf("m%d", i)}))...)
		}
		s.WriteRaw(buf)
		return ids
	}
	a2 := e.second(t, a, "a2")
	a3 := e.second(t, a, "a3")
	for _, id := range send(a, 0, before/2) {
		a.Response(5, id)
	}
	for _, id := range send(a2, before/2, before/2) {
		a2.Response(5, id)
	}
	// Log in while the next 100 are being sent.
	ids := send(a3, before, during)
	c := e.dial(t, "b")
	loginOn(t, c, b)
	for _, id := range ids {
		if r := a3.Response(5, id); r.Get("errno").Int() != 0 {
			t.Fatalf("send: %s", r.Raw)
		}
	}
	var got []int64
	seen := map[int64]bool{}
	dups := 0
	deadline := time.Now().Add(20 * time.Second)
	for len(seen) < before+during && time.Now().Before(deadline) {
		f, err := c.TakeE(time.Until(deadline), func(f Frame) bool { return f.MsgID() == 201 })
		if err != nil {
			break
		}
		s := f.JSON.Get("seq").Int()
		if seen[s] {
			dups++
			continue
		}
		seen[s] = true
		got = append(got, s)
	}
	if len(seen) != before+during {
		t.Fatalf("got %d of %d messages as pushes (offline + live)", len(seen), before+during)
	}
	if servers(e.tgt) == 1 {
		for i := 1; i < len(got); i++ {
			if got[i] < got[i-1] {
				t.Errorf("push of seq %d after seq %d: offline and live pushes crossed (position %d)", got[i], got[i-1], i)
				break
			}
		}
	}
	if dups > 0 {
		t.Logf("%d duplicate pushes (allowed: at-least-once)", dups)
	}
}
