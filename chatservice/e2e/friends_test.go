package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// second logs in another session of c's user.
func (e *env) second(t *testing.T, c *Client, label string) *Client {
	t.Helper()
	c2 := e.dial(t, label)
	r := c2.OK(1, M{"token": c.User.Token})
	if r.Get("user.id").Int() != c.User.ID {
		t.Fatalf("token login of %d: %s", c.User.ID, r.Raw)
	}
	c2.User = c.User
	return c2
}

// §3/§4 ADD_FRIEND: request push 203; cross request → friends, 204 both sides.
func testFriendRequest(t *testing.T, e *env) {
	a1 := e.user(t, "a1")
	a2 := e.second(t, a1, "a2")
	b1 := e.user(t, "b1")
	b2 := e.second(t, b1, "b2")
	A, B := a1.User, b1.User

	r := a1.OK(6, M{"friendid": B.ID})
	if r.Get("status").String() != "requested" {
		t.Fatalf("ADD_FRIEND: want status requested, got %s", r.Raw)
	}
	for _, b := range []*Client{b1, b2} {
		p := b.ExpectPush(203, PushTimeout)
		if p.Get("user.id").Int() != A.ID || p.Get("user.name").String() != A.Name {
			t.Errorf("FRIEND_REQUEST: want user {%d %q}, got %s", A.ID, A.Name, p.Raw)
		}
		requireKeys(t, "FRIEND_REQUEST", p, "user:object")
	}
	a2.ExpectNoPush(203, QuietPeriod)
	a1.ExpectNoPush(203, 0)
	// The request shows in B's requests (LIST and LOGIN), not in A's.
	if q, ok := entry(list(t, b1).Get("requests"), A.ID); !ok || q.Get("name").String() != A.Name {
		t.Errorf("B's LIST requests lacks A")
	}
	b3 := e.dial(t, "b3")
	lr := b3.OK(1, M{"token": B.Token})
	if _, ok := entry(lr.Get("requests"), A.ID); !ok {
		t.Errorf("B's LOGIN requests lacks A: %s", lr.Raw)
	}
	if n := len(list(t, a1).Get("requests").Array()); n != 0 {
		t.Errorf("A's requests should be empty (only requests to the user): %d", n)
	}
	a1.Err(6, M{"friendid": B.ID}, 409) // already requested
	a2.Err(6, M{"friendid": B.ID}, 409)

	// B asks A: both friends at once.
	r = b1.OK(6, M{"friendid": A.ID})
	if r.Get("status").String() != "friends" {
		t.Fatalf("cross ADD_FRIEND: want status friends, got %s", r.Raw)
	}
	for _, a := range []*Client{a1, a2} {
		p := a.ExpectPush(204, PushTimeout)
		if p.Get("friend.id").Int() != B.ID || p.Get("friend.name").String() != B.Name || !p.Get("friend.online").Bool() {
			t.Errorf("FRIEND_ADDED to A: want friend {%d %q online true}, got %s", B.ID, B.Name, p.Raw)
		}
		requireKeys(t, "FRIEND_ADDED friend", p.Get("friend"), "id:int", "name:string", "online:bool")
	}
	for _, b := range []*Client{b2, b3} {
		p := b.ExpectPush(204, PushTimeout)
		if p.Get("friend.id").Int() != A.ID || p.Get("friend.name").String() != A.Name || !p.Get("friend.online").Bool() {
			t.Errorf("FRIEND_ADDED to B's other sessions: want friend {%d %q online true}, got %s", A.ID, A.Name, p.Raw)
		}
	}
	b1.ExpectNoPush(204, QuietPeriod)
	for _, c := range []*Client{a1, b1} {
		l := list(t, c)
		other := B.ID
		if c == b1 {
			other = A.ID
		}
		f, ok := entry(l.Get("friends"), other)
		if !ok || !f.Get("online").Bool() || f.Get("unread").Int() != 0 || f.Get("lastseq").Int() != 0 {
			t.Errorf("LIST friends: want %d online, unread 0, lastseq 0: %s", other, l.Raw)
		}
		if len(l.Get("requests").Array()) != 0 {
			t.Errorf("requests not empty after befriending: %s", l.Raw)
		}
	}
	a1.Err(6, M{"friendid": B.ID}, 409) // already friends
	b1.Err(6, M{"friendid": A.ID}, 409)
	a1.Err(7, M{"friendid": B.ID}, 409)
}

// §3 ACCEPT_FRIEND: needs a pending request from friendid.
func testAccept(t *testing.T, e *env) {
	a := e.user(t, "a")
	c1 := e.user(t, "c1")
	c2 := e.second(t, c1, "c2")
	d := e.user(t, "d")
	a.OK(6, M{"friendid": c1.User.ID})
	c1.ExpectPush(203, PushTimeout, userIs("user", a.User.ID))
	c1.Err(7, M{"friendid": d.User.ID}, 404) // no request from d
	a.Err(7, M{"friendid": c1.User.ID}, 404) // the request is from a, not to a
	c1.OK(7, M{"friendid": a.User.ID})
	p := a.ExpectPush(204, PushTimeout)
	if p.Get("friend.id").Int() != c1.User.ID || p.Get("friend.name").String() != c1.User.Name || !p.Get("friend.online").Bool() {
		t.Errorf("FRIEND_ADDED to the asker: %s", p.Raw)
	}
	p = c2.ExpectPush(204, PushTimeout)
	if p.Get("friend.id").Int() != a.User.ID {
		t.Errorf("FRIEND_ADDED to the acceptor's other session: %s", p.Raw)
	}
	c1.ExpectNoPush(204, QuietPeriod)
	c1.Err(7, M{"friendid": a.User.ID}, 409) // already friends
	a.Err(7, M{"friendid": c1.User.ID}, 409)
	// Now they can chat.
	chat(t, a, c1.User.ID, "hello", "h1")
	// Accepting an offline user's request: FRIEND_ADDED.friend.online is false.
	x := e.user(t, "x")
	x.OK(6, M{"friendid": a.User.ID})
	a.ExpectPush(203, PushTimeout, userIs("user", x.User.ID))
	x.Close()
	waitFor(t, 5*time.Second, "x offline", func() bool {
		r := a.OK(17, M{"query": x.User.Name})
		u, ok := entry(r.Get("users"), x.User.ID)
		return ok && !u.Get("online").Bool()
	})
	a.OK(7, M{"friendid": x.User.ID})
	f, ok := entry(list(t, a).Get("friends"), x.User.ID)
	if !ok || f.Get("online").Bool() {
		t.Errorf("accepted offline friend: want online false: %s", f.Raw)
	}
}

// §3/§4 DEL_FRIEND: both directions, 208 to the other user and the remover's other sessions.
func testDelFriend(t *testing.T, e *env) {
	a1 := e.user(t, "a1")
	a2 := e.second(t, a1, "a2")
	b1 := e.user(t, "b1")
	b2 := e.second(t, b1, "b2")
	befriend(t, a1, b1)
	chat(t, a1, b1.User.ID, "before", "d1")
	a1.OK(8, M{"friendid": b1.User.ID})
	for _, b := range []*Client{b1, b2} {
		p := b.ExpectPush(208, PushTimeout)
		if p.Get("id").Int() != a1.User.ID {
			t.Errorf("FRIEND_REMOVED to the other user: want id %d, got %s", a1.User.ID, p.Raw)
		}
	}
	p := a2.ExpectPush(208, PushTimeout)
	if p.Get("id").Int() != b1.User.ID {
		t.Errorf("FRIEND_REMOVED to the remover's other session: want id %d, got %s", b1.User.ID, p.Raw)
	}
	a1.ExpectNoPush(208, QuietPeriod)
	a1.Err(8, M{"friendid": b1.User.ID}, 404)
	b1.Err(8, M{"friendid": a1.User.ID}, 404)
	a1.Err(5, M{"toid": b1.User.ID, "msg": "after", "cid": "d2"}, 403)
	b1.Err(5, M{"toid": a1.User.ID, "msg": "after", "cid": "d3"}, 403)
	b1.Err(18, M{"friendid": a1.User.ID}, 403)
	a1.Err(19, M{"acks": []M{{"friendid": b1.User.ID, "seq": 1}}}, 403)
	for _, c := range []*Client{a1, b1} {
		if n := len(list(t, c).Get("friends").Array()); n != 0 {
			t.Errorf("friends after DEL_FRIEND: %d", n)
		}
	}
	// Removed from the other side works the same.
	befriend(t, b1, a1)
	b2.OK(8, M{"friendid": a1.User.ID})
	a1.ExpectPush(208, PushTimeout, fieldIs("id", b1.User.ID))
	a2.ExpectPush(208, PushTimeout, fieldIs("id", b1.User.ID))
	b1.ExpectPush(208, PushTimeout, fieldIs("id", a1.User.ID))
	b2.ExpectNoPush(208, QuietPeriod)
	x := e.user(t, "x")
	a1.Err(8, M{"friendid": x.User.ID}, 404) // never friends
}

// §3 DEL_FRIEND on a pending request: declining and withdrawing.
func testDeclineWithdraw(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	c := e.user(t, "c")
	// b declines a's request.
	a.OK(6, M{"friendid": b.User.ID})
	b.ExpectPush(203, PushTimeout, userIs("user", a.User.ID))
	b.OK(8, M{"friendid": a.User.ID})
	a.ExpectPush(208, PushTimeout, fieldIs("id", b.User.ID))
	if n := len(list(t, b).Get("requests").Array()); n != 0 {
		t.Errorf("declined request still listed")
	}
	b.Err(7, M{"friendid": a.User.ID}, 404)
	b.Err(8, M{"friendid": a.User.ID}, 404)
	// a may ask again.
	if r := a.OK(6, M{"friendid": b.User.ID}); r.Get("status").String() != "requested" {
		t.Errorf("re-request: %s", r.Raw)
	}
	// a withdraws its request to c.
	a.OK(6, M{"friendid": c.User.ID})
	c.ExpectPush(203, PushTimeout, userIs("user", a.User.ID))
	a.OK(8, M{"friendid": c.User.ID})
	c.ExpectPush(208, PushTimeout, fieldIs("id", a.User.ID))
	if n := len(list(t, c).Get("requests").Array()); n != 0 {
		t.Errorf("withdrawn request still listed at the target")
	}
	c.Err(7, M{"friendid": a.User.ID}, 404)
	// c asking a now is a plain request (the old one is gone).
	if r := c.OK(6, M{"friendid": a.User.ID}); r.Get("status").String() != "requested" {
		t.Errorf("after withdraw: %s", r.Raw)
	}
}

// §3: friends who part and befriend again continue the same conversation.
func testRefriend(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	befriend(t, a, b)
	chat(t, a, b.User.ID, "m1", "r1")
	chat(t, a, b.User.ID, "m2", "r2")
	b.OK(19, M{"acks": []M{{"friendid": a.User.ID, "seq": 1}}})
	a.OK(8, M{"friendid": b.User.ID})
	b.ExpectPush(208, PushTimeout)
	befriend(t, b, a)
	u, last := unreadOf(t, list(t, b), "friends", a.User.ID)
	if u != 1 || last != 2 {
		t.Errorf("after refriending b's unread/lastseq = %d/%d, want 1/2 (cursor kept)", u, last)
	}
	if s, _ := chat(t, b, a.User.ID, "m3", "r3"); s != 3 {
		t.Errorf("seq after refriending = %d, want 3", s)
	}
	h := history(t, a, M{"friendid": b.User.ID})
	if !equalSeqs(seqs(h), []int64{1, 2, 3}) {
		t.Errorf("history after refriending: %v, want [1 2 3]", seqs(h))
	}
	// The cid of the earlier friendship is still taken.
	a.Err(5, M{"toid": b.User.ID, "msg": "other", "cid": "r1"}, 409)
}

// §3 ONE_CHAT errors: 404 no user, 403 not friend, 400 self.
func testChatErrors(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	a.Err(5, M{"toid": noSuchID, "msg": "m", "cid": "x1"}, 404)
	a.Err(5, M{"toid": b.User.ID, "msg": "m", "cid": "x2"}, 403)
	a.OK(6, M{"friendid": b.User.ID})
	a.Err(5, M{"toid": b.User.ID, "msg": "m", "cid": "x3"}, 403) // requested is not friends
	a.Err(5, M{"toid": a.User.ID, "msg": "m", "cid": "x4"}, 400)
	b.ExpectNoPush(201, QuietPeriod)
}

// §3/§4 ONE_CHAT: seq 1, 2, 3; pushes to the recipient and the sender's
// other sessions (not the requesting connection); the same seq/time in
// pushes and HISTORY.
func testChatPushes(t *testing.T, e *env) {
	a1 := e.user(t, "a1")
	a2 := e.second(t, a1, "a2")
	b1 := e.user(t, "b1")
	b2 := e.second(t, b1, "b2")
	befriend(t, a1, b1)
	A, B := a1.User, b1.User
	type sent struct {
		from      *User
		to        int64
		msg, cid  string
		seq, time int64
	}
	var all []sent
	for i := range 3 {
		msg, cid := fmt.Sprintf("hello %d", i), fmt.Sprintf("cid-%d-%s", i, randName("", 4))
		before := time.Now()
		seq, tm := chat(t, a1, B.ID, msg, cid)
		if seq != int64(i+1) {
			t.Errorf("message %d: seq %d, want %d", i, seq, i+1)
		}
		if d := time.UnixMilli(tm).Sub(before); d < -time.Minute || d > time.Minute {
			t.Errorf("time %d is %v from now", tm, d)
		}
		all = append(all, sent{A, B.ID, msg, cid, seq, tm})
		for _, c := range []*Client{b1, b2, a2} {
			p := c.ExpectPush(201, PushTimeout, fieldIs("seq", seq))
			checkChatMsg(t, p, A, B.ID, msg, seq, tm, cid, true)
		}
	}
	// b2 answers: pushes to a1, a2, b1, not b2.
	seq, tm := chat(t, b2, A.ID, "reply", "rep")
	if seq != 4 {
		t.Errorf("reply seq %d, want 4", seq)
	}
	all = append(all, sent{B, A.ID, "reply", "rep", seq, tm})
	for _, c := range []*Client{a1, a2, b1} {
		checkChatMsg(t, c.ExpectPush(201, PushTimeout, fieldIs("seq", 4)), B, A.ID, "reply", 4, tm, "rep", true)
	}
	a1.ExpectNoPush(201, QuietPeriod, func(r gjson.Result) bool { return r.Get("from").Int() == A.ID })
	b2.ExpectNoPush(201, 0, func(r gjson.Result) bool { return r.Get("from").Int() == B.ID })
	// HISTORY on both sides: the same messages, shaped as the push without msgid.
	for _, c := range []*Client{a1, b1} {
		other := B.ID
		if c == b1 {
			other = A.ID
		}
		h := history(t, c, M{"friendid": other})
		if len(h) != len(all) {
			t.Fatalf("history: %d messages, want %d", len(h), len(all))
		}
		for i, m := range h {
			s := all[i]
			checkChatMsg(t, m, s.from, s.to, s.msg, s.seq, s.time, s.cid, false)
		}
	}
}

// §3 exactly-once submission by cid.
func testChatCID(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	c := e.user(t, "c")
	befriend(t, a, b)
	befriend(t, a, c)
	gid := createGroup(t, a, "g"+randName("", 5), "")
	seq, tm := chat(t, a, b.User.ID, "once", "k1")
	b.ExpectPush(201, PushTimeout, fieldIs("seq", seq))
	for range 3 {
		s2, t2 := chat(t, a, b.User.ID, "once", "k1")
		if s2 != seq || t2 != tm {
			t.Errorf("retry with the same cid: seq/time %d/%d, want the original %d/%d", s2, t2, seq, tm)
		}
	}
	// A retry on another connection of the sender is the same.
	a2 := e.second(t, a, "a2")
	if s2, t2 := chat(t, a2, b.User.ID, "once", "k1"); s2 != seq || t2 != tm {
		t.Errorf("retry from another session: %d/%d, want %d/%d", s2, t2, seq, tm)
	}
	a.Err(5, M{"toid": b.User.ID, "msg": "another msg", "cid": "k1"}, 409)
	a.Err(5, M{"toid": c.User.ID, "msg": "once", "cid": "k1"}, 409)
	a.Err(13, M{"groupid": gid, "msg": "once", "cid": "k1"}, 409)
	gs, gt := gchat(t, a, gid, "group once", "k2")
	if s2, t2 := gchat(t, a, gid, "group once", "k2"); s2 != gs || t2 != gt {
		t.Errorf("group retry: %d/%d, want %d/%d", s2, t2, gs, gt)
	}
	a.Err(5, M{"toid": b.User.ID, "msg": "group once", "cid": "k2"}, 409)
	// Another sender may use the same cid.
	if s, _ := chat(t, b, a.User.ID, "once", "k1"); s != seq+1 {
		t.Errorf("b's message with a's cid: seq %d, want %d", s, seq+1)
	}
	// Nothing new was stored by the retries: no gap, one copy.
	if s, _ := chat(t, a, b.User.ID, "next", "k3"); s != seq+2 {
		t.Errorf("next seq %d, want %d", s, seq+2)
	}
	h := history(t, b, M{"friendid": a.User.ID})
	if !equalSeqs(seqs(h), []int64{1, 2, 3}) {
		t.Errorf("history %v, want [1 2 3]", seqs(h))
	}
	cnt := 0
	for _, m := range h {
		if m.Get("msg").String() == "once" {
			cnt++
		}
	}
	if cnt != 2 {
		t.Errorf("history holds %d copies of \"once\", want 2 (a's and b's)", cnt)
	}
}

// §4: fromname is the sender's name when it sent.
func testFromName(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	befriend(t, a, b)
	old := a.User.Name
	chat(t, a, b.User.ID, "as old", "f1")
	newName := randName("New", 10)
	a.OK(20, M{"name": newName})
	b.ExpectPush(207, PushTimeout)
	chat(t, a, b.User.ID, "as new", "f2")
	p := b.ExpectPush(201, PushTimeout, fieldIs("seq", 2))
	if p.Get("fromname").String() != newName {
		t.Errorf("push after rename: fromname %q, want %q", p.Get("fromname").String(), newName)
	}
	h := history(t, b, M{"friendid": a.User.ID})
	if len(h) != 2 || h[0].Get("fromname").String() != old || h[1].Get("fromname").String() != newName {
		t.Errorf("history fromnames: want [%q %q], got %v", old, newName, h)
	}
}
