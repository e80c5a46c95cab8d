package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// groupEvent matches push 206 for gid with event ev about user id.
func groupEvent(gid int64, ev string, id int64) func(gjson.Result) bool {
	return func(r gjson.Result) bool {
		return r.Get("groupid").Int() == gid && r.Get("event").String() == ev && r.Get("user.id").Int() == id
	}
}

func inGroup(gid int64) func(gjson.Result) bool {
	return func(r gjson.Result) bool { return r.Get("groupid").Int() == gid }
}

// expectEvent waits for a GROUP_EVENT and checks its shape.
func expectEvent(t *testing.T, c *Client, gid int64, ev string, u *User) gjson.Result {
	t.Helper()
	p := c.ExpectPush(206, PushTimeout, groupEvent(gid, ev, u.ID))
	requireKeys(t, "GROUP_EVENT", p, "groupid:int", "event:string", "user:object")
	if p.Get("user.name").String() != u.Name {
		t.Errorf("GROUP_EVENT %s: user name %q, want %q", ev, p.Get("user.name").String(), u.Name)
	}
	return p
}

// members returns GROUP_MEMBERS as id → entry.
func members(t *testing.T, c *Client, gid int64) map[int64]gjson.Result {
	t.Helper()
	r := c.OK(14, M{"groupid": gid})
	if !r.Get("members").IsArray() {
		t.Fatalf("GROUP_MEMBERS members not an array: %s", r.Raw)
	}
	out := map[int64]gjson.Result{}
	for _, m := range r.Get("members").Array() {
		requireKeys(t, "GROUP_MEMBERS entry", m, "id:int", "name:string", "role:string", "online:bool")
		out[m.Get("id").Int()] = m
	}
	return out
}

// §3/§4 CREATE_GROUP, JOIN_GROUP, join events, GROUP_MEMBERS.
func testGroupCreateJoin(t *testing.T, e *env) {
	a1 := e.user(t, "a1")
	a2 := e.second(t, a1, "a2")
	b1 := e.user(t, "b1")
	b2 := e.second(t, b1, "b2")
	c := e.user(t, "c")
	d := e.user(t, "d")
	name, desc := "G "+randName("", 6), "about "+randName("", 6)
	gid := createGroup(t, a1, name, desc)
	g, ok := entry(list(t, a1).Get("groups"), gid)
	if !ok || g.Get("name").String() != name || g.Get("desc").String() != desc || g.Get("role").String() != "owner" ||
		g.Get("unread").Int() != 0 || g.Get("lastseq").Int() != 0 {
		t.Errorf("LIST groups entry of the new group: %s", g.Raw)
	}
	r := b1.OK(10, M{"groupid": gid})
	if r.Get("group.id").Int() != gid || r.Get("group.name").String() != name || r.Get("group.desc").String() != desc ||
		r.Get("group.role").String() != "member" {
		t.Errorf("JOIN_GROUP response: %s", r.Raw)
	}
	for _, x := range []*Client{a1, a2, b2} {
		expectEvent(t, x, gid, "join", b1.User)
	}
	b1.ExpectNoPush(206, QuietPeriod)
	b1.Err(10, M{"groupid": gid}, 409)
	b2.Err(10, M{"groupid": gid}, 409)
	a1.Err(10, M{"groupid": gid}, 409) // the owner is a member
	joinGroup(t, c, gid)
	for _, x := range []*Client{a1, a2, b1, b2} {
		expectEvent(t, x, gid, "join", c.User)
	}
	c.ExpectNoPush(206, QuietPeriod)
	d.ExpectNoPush(206, 0)
	ms := members(t, b1, gid)
	want := map[int64]string{a1.User.ID: "owner", b1.User.ID: "member", c.User.ID: "member"}
	if len(ms) != len(want) {
		t.Errorf("GROUP_MEMBERS: %d members, want %d", len(ms), len(want))
	}
	for id, role := range want {
		m, ok := ms[id]
		if !ok || m.Get("role").String() != role || !m.Get("online").Bool() {
			t.Errorf("GROUP_MEMBERS member %d: want role %s online true, got %s", id, role, m.Raw)
		}
	}
	if ms[c.User.ID].Get("name").String() != c.User.Name {
		t.Errorf("GROUP_MEMBERS name: %s", ms[c.User.ID].Raw)
	}
	d.Err(14, M{"groupid": gid}, 403)
	if g, ok := entry(list(t, b1).Get("groups"), gid); !ok || g.Get("role").String() != "member" {
		t.Errorf("LIST groups for a member: %s", g.Raw)
	}
	// Online flag follows the sessions.
	c.Close()
	waitFor(t, 5*time.Second, "c offline in GROUP_MEMBERS", func() bool {
		return !members(t, a1, gid)[c.User.ID].Get("online").Bool()
	})
}

// §3/§4 GROUP_CHAT: members only, pushes to every member's sessions and the
// sender's other sessions.
func testGroupChat(t *testing.T, e *env) {
	a1 := e.user(t, "a1")
	a2 := e.second(t, a1, "a2")
	b1 := e.user(t, "b1")
	b2 := e.second(t, b1, "b2")
	c := e.user(t, "c")
	d := e.user(t, "d")
	gid := createGroup(t, a1, "chat "+randName("", 5), "")
	joinGroup(t, b1, gid)
	joinGroup(t, c, gid)
	type sent struct {
		from      *User
		msg, cid  string
		seq, time int64
	}
	var all []sent
	for i, s := range []*Client{a1, b2, c, a2} {
		msg, cid := fmt.Sprintf("group msg %d", i), fmt.Sprintf("gc%d", i)
		seq, tm := gchat(t, s, gid, msg, cid)
		if seq != int64(i+1) {
			t.Errorf("group message %d: seq %d", i, seq)
		}
		all = append(all, sent{s.User, msg, cid, seq, tm})
		for _, x := range []*Client{a1, a2, b1, b2, c} {
			if x == s {
				continue
			}
			p := x.ExpectPush(202, PushTimeout, fieldIs("seq", seq), inGroup(gid))
			checkGroupMsg(t, p, gid, s.User, msg, seq, tm, cid, true)
		}
		s.ExpectNoPush(202, QuietPeriod, fieldIs("seq", seq))
	}
	d.ExpectNoPush(202, 0)
	d.Err(13, M{"groupid": gid, "msg": "intruder", "cid": "d1"}, 403)
	d.Err(18, M{"groupid": gid}, 403)
	d.Err(19, M{"acks": []M{{"groupid": gid, "seq": 1}}}, 403)
	for _, x := range []*Client{a1, b1, c} {
		h := history(t, x, M{"groupid": gid})
		if len(h) != len(all) {
			t.Fatalf("group history: %d, want %d", len(h), len(all))
		}
		for i, m := range h {
			checkGroupMsg(t, m, gid, all[i].from, all[i].msg, all[i].seq, all[i].time, all[i].cid, false)
		}
	}
	u, last := unreadOf(t, list(t, b1), "groups", gid)
	if last != 4 || u != 2 { // b sent seq 2, which moved its cursor to 2
		t.Errorf("b's group unread/lastseq %d/%d, want 2/4", u, last)
	}
}

// §3/§4 QUIT_GROUP: quit events; the owner's quit passes ownership to the
// earliest joined member, with an owner event right after the quit.
func testGroupQuitOwner(t *testing.T, e *env) {
	c := e.user(t, "c") // registered first: the lowest id, but joins last
	a1 := e.user(t, "a1")
	a2 := e.second(t, a1, "a2")
	b := e.user(t, "b")
	d := e.user(t, "d")
	gid := createGroup(t, a1, "quit "+randName("", 5), "")
	joinGroup(t, b, gid)
	for _, x := range []*Client{a1, a2} {
		expectEvent(t, x, gid, "join", b.User)
	}
	joinGroup(t, c, gid)
	for _, x := range []*Client{a1, a2, b} {
		expectEvent(t, x, gid, "join", c.User)
	}
	d.Err(11, M{"groupid": gid}, 403)
	a1.OK(11, M{"groupid": gid})
	quitOrOwner := func(r gjson.Result) bool {
		ev := r.Get("event").String()
		return r.Get("groupid").Int() == gid && (ev == "quit" || ev == "owner")
	}
	for _, x := range []*Client{b, c, a2} {
		evs := x.Collect(206, 2, PushTimeout, quitOrOwner)
		if evs[0].Get("event").String() != "quit" || evs[0].Get("user.id").Int() != a1.User.ID ||
			evs[1].Get("event").String() != "owner" || evs[1].Get("user.id").Int() != b.User.ID {
			t.Errorf("%s: want quit(%d) then owner(%d), got %s then %s", x.Label, a1.User.ID, b.User.ID, evs[0].Raw, evs[1].Raw)
		}
		if evs[1].Get("user.name").String() != b.User.Name {
			t.Errorf("owner event user name: %s", evs[1].Raw)
		}
	}
	a1.ExpectNoPush(206, QuietPeriod, quitOrOwner)
	ms := members(t, c, gid)
	if len(ms) != 2 || ms[b.User.ID].Get("role").String() != "owner" || ms[c.User.ID].Get("role").String() != "member" {
		t.Errorf("members after the owner quit: %v", ms)
	}
	if g, ok := entry(list(t, b).Get("groups"), gid); !ok || g.Get("role").String() != "owner" {
		t.Errorf("new owner's LIST role: %s", g.Raw)
	}
	if _, ok := entry(list(t, a1).Get("groups"), gid); ok {
		t.Errorf("the leaver still lists the group")
	}
	a1.Err(14, M{"groupid": gid}, 403)
	a1.Err(11, M{"groupid": gid}, 403)
	a1.Err(13, M{"groupid": gid, "msg": "m", "cid": "q1"}, 403)
	a1.Err(12, M{"groupid": gid}, 403)
	// Rejoining makes a plain member.
	joinGroup(t, a2, gid)
	expectEvent(t, a1, gid, "join", a1.User)
	expectEvent(t, b, gid, "join", a1.User)
	c.Err(12, M{"groupid": gid}, 403) // a member, not the owner
	// A member's quit: no owner event.
	c.OK(11, M{"groupid": gid})
	expectEvent(t, b, gid, "quit", c.User)
	expectEvent(t, a1, gid, "quit", c.User)
	b.ExpectNoPush(206, QuietPeriod, func(r gjson.Result) bool { return r.Get("event").String() == "owner" })
}

// §3: when the last member quits the group is deleted, with no deleted event.
func testGroupLastMember(t *testing.T, e *env) {
	a1 := e.user(t, "a1")
	a2 := e.second(t, a1, "a2")
	b := e.user(t, "b")
	name := "last " + randName("", 8)
	gid := createGroup(t, a1, name, "")
	joinGroup(t, b, gid)
	b.OK(11, M{"groupid": gid})
	expectEvent(t, a2, gid, "quit", b.User)
	a1.OK(11, M{"groupid": gid})
	expectEvent(t, a2, gid, "quit", a1.User)
	a2.ExpectNoPush(206, QuietPeriod, func(r gjson.Result) bool {
		return r.Get("event").String() == "deleted" || r.Get("event").String() == "owner"
	})
	b.Err(10, M{"groupid": gid}, 404)
	a1.Err(10, M{"groupid": gid}, 404)
	a1.Err(14, M{"groupid": gid}, 404)
	r := b.OK(16, M{"query": name})
	if _, ok := entry(r.Get("groups"), gid); ok {
		t.Errorf("FIND_GROUPS still finds the deleted group: %s", r.Raw)
	}
}

// §3/§4 DELETE_GROUP: owner only; deleted event to every member's sessions;
// then every request on the group → 404.
func testGroupDelete(t *testing.T, e *env) {
	a1 := e.user(t, "a1")
	a2 := e.second(t, a1, "a2")
	b1 := e.user(t, "b1")
	b2 := e.second(t, b1, "b2")
	c := e.user(t, "c")
	d := e.user(t, "d")
	name := "del " + randName("", 8)
	gid := createGroup(t, a1, name, "")
	joinGroup(t, b1, gid)
	joinGroup(t, c, gid)
	gchat(t, b1, gid, "before delete", "x1")
	b1.Err(12, M{"groupid": gid}, 403)
	d.Err(12, M{"groupid": gid}, 403)
	a1.OK(12, M{"groupid": gid})
	for _, x := range []*Client{a2, b1, b2, c} {
		expectEvent(t, x, gid, "deleted", a1.User)
	}
	a1.ExpectNoPush(206, QuietPeriod, func(r gjson.Result) bool { return r.Get("event").String() == "deleted" })
	d.ExpectNoPush(206, 0)
	for _, x := range []*Client{a1, b1, d} {
		x.Err(10, M{"groupid": gid}, 404)
		x.Err(11, M{"groupid": gid}, 404)
		x.Err(12, M{"groupid": gid}, 404)
		x.Err(13, M{"groupid": gid, "msg": "m", "cid": "after" + x.Label}, 404)
		x.Err(14, M{"groupid": gid}, 404)
		x.Err(18, M{"groupid": gid}, 404)
		x.Err(19, M{"acks": []M{{"groupid": gid, "seq": 1}}}, 404)
		if _, ok := entry(list(t, x).Get("groups"), gid); ok {
			t.Errorf("%s still lists the deleted group", x.Label)
		}
	}
	if _, ok := entry(d.OK(16, M{"query": name}).Get("groups"), gid); ok {
		t.Errorf("FIND_GROUPS finds the deleted group")
	}
	// A new login does not push messages of the deleted group.
	b3 := e.dial(t, "b3")
	b3.OK(1, M{"token": b1.User.Token})
	b3.ExpectNoPush(202, QuietPeriod, inGroup(gid))
}

// §3 JOIN_GROUP: a member receives no message sent before it joined (push,
// HISTORY, offline), not even after quitting and joining again.
func testGroupJoinerHistory(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	gid := createGroup(t, a, "late "+randName("", 5), "")
	for i := range 3 {
		gchat(t, a, gid, fmt.Sprintf("early %d", i), fmt.Sprintf("e%d", i))
	}
	joinGroup(t, b, gid)
	if h := history(t, b, M{"groupid": gid}); len(h) != 0 {
		t.Errorf("joiner sees history from before the join: %v", seqs(h))
	}
	if h := history(t, b, M{"groupid": gid, "before": 3, "limit": 100}); len(h) != 0 {
		t.Errorf("joiner sees history from before the join (before=3): %v", seqs(h))
	}
	if u, last := unreadOf(t, list(t, b), "groups", gid); u != 0 || last != 3 {
		t.Errorf("joiner's unread/lastseq %d/%d, want 0/3", u, last)
	}
	b.ExpectNoPush(202, QuietPeriod)
	b2 := e.dial(t, "b2")
	b2.OK(1, M{"token": b.User.Token})
	b2.ExpectNoPush(202, QuietPeriod)
	b2.Close()
	seq, _ := gchat(t, a, gid, "after join", "e3")
	b.ExpectPush(202, PushTimeout, fieldIs("seq", seq))
	if h := history(t, b, M{"groupid": gid}); !equalSeqs(seqs(h), []int64{4}) {
		t.Errorf("joiner's history %v, want [4]", seqs(h))
	}
	b.OK(11, M{"groupid": gid})
	gchat(t, a, gid, "while away", "e4") // seq 5
	joinGroup(t, b, gid)
	for _, m := range history(t, b, M{"groupid": gid, "limit": 100}) {
		if m.Get("seq").Int() == 5 {
			t.Errorf("after rejoining, history shows seq 5 sent while b was not a member")
		}
	}
	b3 := e.dial(t, "b3")
	b3.OK(1, M{"token": b.User.Token})
	b3.ExpectNoPush(202, QuietPeriod, func(r gjson.Result) bool { return r.Get("seq").Int() <= 5 })
	b.ExpectNoPush(202, 0, fieldIs("seq", 5))
	if u, last := unreadOf(t, list(t, b), "groups", gid); u != 0 || last != 5 {
		t.Errorf("rejoiner's unread/lastseq %d/%d, want 0/5", u, last)
	}
	seq, _ = gchat(t, a, gid, "after rejoin", "e5")
	b.ExpectPush(202, PushTimeout, fieldIs("seq", seq))
	h := history(t, b, M{"groupid": gid})
	if len(h) == 0 || h[len(h)-1].Get("seq").Int() != 6 {
		t.Errorf("rejoiner's history %v should end with 6", seqs(h))
	}
}

func checkAscending(t *testing.T, what string, arr []gjson.Result) {
	t.Helper()
	ids := make([]int64, len(arr))
	for i, x := range arr {
		ids[i] = x.Get("id").Int()
	}
	if !sort.SliceIsSorted(ids, func(i, j int) bool { return ids[i] < ids[j] }) {
		t.Errorf("%s not ascending by id: %v", what, ids)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			t.Errorf("%s lists id %d twice", what, ids[i])
		}
	}
}

// §3 FIND_GROUPS: name prefix, case-insensitive, ascending by id, at most 50,
// with member counts.
func testFindGroups(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	p := randName("Fg", 8)
	g1 := createGroup(t, a, p+"one", "d1")
	g2 := createGroup(t, a, strings.ToUpper(p)+"TWO", "d2")
	g3 := createGroup(t, a, swapCase(p)+"three", "")
	createGroup(t, a, "x"+p, "")
	joinGroup(t, b, g1)
	for _, q := range []string{p, strings.ToLower(p), strings.ToUpper(p), swapCase(p)} {
		r := b.OK(16, M{"query": q})
		gs := r.Get("groups").Array()
		if len(gs) != 3 || gs[0].Get("id").Int() != g1 || gs[1].Get("id").Int() != g2 || gs[2].Get("id").Int() != g3 {
			t.Errorf("FIND_GROUPS %q: want ids [%d %d %d], got %s", q, g1, g2, g3, r.Raw)
			continue
		}
		for i, want := range []struct {
			name, desc string
			n          int64
		}{{p + "one", "d1", 2}, {strings.ToUpper(p) + "TWO", "d2", 1}, {swapCase(p) + "three", "", 1}} {
			requireKeys(t, "FIND_GROUPS entry", gs[i], "id:int", "name:string", "desc:string", "members:int")
			if gs[i].Get("name").String() != want.name || gs[i].Get("desc").String() != want.desc || gs[i].Get("members").Int() != want.n {
				t.Errorf("FIND_GROUPS entry %d: want {%q %q members %d}, got %s", i, want.name, want.desc, want.n, gs[i].Raw)
			}
		}
	}
	if gs := b.OK(16, M{"query": p + "O"}).Get("groups").Array(); len(gs) != 1 || gs[0].Get("id").Int() != g1 {
		t.Errorf("FIND_GROUPS %q: %v", p+"O", gs)
	}
	if r := b.OK(16, M{"query": p + "zzz"}); r.Get("groups").Raw != "[]" {
		t.Errorf("FIND_GROUPS with no match: want [], got %s", r.Raw)
	}
	// Non-ASCII case folding (strings.ToLower).
	u := randName("", 6)
	gu := createGroup(t, a, "ÄÖ"+strings.ToUpper(u), "")
	if gs := b.OK(16, M{"query": "äö" + u}).Get("groups").Array(); len(gs) != 1 || gs[0].Get("id").Int() != gu {
		t.Errorf("FIND_GROUPS äö…: want [%d], got %v", gu, gs)
	}
	// Empty or missing query: all groups, ascending, at most 50.
	for _, f := range []M{{"query": ""}, nil} {
		gs := b.OK(16, f).Get("groups").Array()
		if len(gs) == 0 || len(gs) > 50 {
			t.Errorf("FIND_GROUPS %v: %d groups, want 1–50", f, len(gs))
		}
		checkAscending(t, "FIND_GROUPS empty query", gs)
	}
	// At most 50: the 50 lowest ids.
	q := randName("Many", 6)
	var ids []int64
	for i := range 55 {
		ids = append(ids, createGroup(t, a, fmt.Sprintf("%s %02d", q, i), ""))
	}
	gs := b.OK(16, M{"query": strings.ToLower(q)}).Get("groups").Array()
	if len(gs) != 50 {
		t.Fatalf("FIND_GROUPS of 55 matches: %d, want 50", len(gs))
	}
	checkAscending(t, "FIND_GROUPS", gs)
	for i, g := range gs {
		if g.Get("id").Int() != ids[i] {
			t.Errorf("FIND_GROUPS entry %d: id %d, want %d (the 50 lowest ids)", i, g.Get("id").Int(), ids[i])
			break
		}
	}
}

// §3 FIND_USERS: prefix, case-insensitive, ascending by id, at most 50,
// without the caller, with online flags.
func testFindUsers(t *testing.T, e *env) {
	p := randName("Fu", 8)
	reg := e.dial(t, "reg")
	ua := regOn(t, reg, p+"a")
	ub := regOn(t, reg, strings.ToUpper(p)+"B")
	uc := regOn(t, reg, swapCase(p)+"c")
	me := regOn(t, reg, p+"me")
	regOn(t, reg, "x"+p)
	ca := e.login(t, ua, "a")
	_ = ca
	c := e.login(t, me, "me")
	for _, q := range []string{p, strings.ToLower(p), strings.ToUpper(p)} {
		r := c.OK(17, M{"query": q})
		us := r.Get("users").Array()
		if len(us) != 3 || us[0].Get("id").Int() != ua.ID || us[1].Get("id").Int() != ub.ID || us[2].Get("id").Int() != uc.ID {
			t.Errorf("FIND_USERS %q: want ids [%d %d %d] (caller %d left out), got %s", q, ua.ID, ub.ID, uc.ID, me.ID, r.Raw)
			continue
		}
		for i, u := range []*User{ua, ub, uc} {
			requireKeys(t, "FIND_USERS entry", us[i], "id:int", "name:string", "online:bool")
			if us[i].Get("name").String() != u.Name || us[i].Get("online").Bool() != (u == ua) {
				t.Errorf("FIND_USERS entry %d: want {%q online %v}, got %s", i, u.Name, u == ua, us[i].Raw)
			}
		}
	}
	if r := c.OK(17, M{"query": p + "m"}); r.Get("users").Raw != "[]" {
		t.Errorf("FIND_USERS matching only the caller: want [], got %s", r.Raw)
	}
	c.Err(17, M{"query": ""}, 400)
	// At most 50, the lowest ids.
	q := randName("Mu", 6)
	var ids []int64
	for i := range 55 {
		ids = append(ids, regOn(t, reg, fmt.Sprintf("%s%02d", q, i)).ID)
	}
	us := c.OK(17, M{"query": strings.ToUpper(q)}).Get("users").Array()
	if len(us) != 50 {
		t.Fatalf("FIND_USERS of 55 matches: %d, want 50", len(us))
	}
	checkAscending(t, "FIND_USERS", us)
	for i, u := range us {
		if u.Get("id").Int() != ids[i] {
			t.Errorf("FIND_USERS entry %d: id %d, want %d", i, u.Get("id").Int(), ids[i])
			break
		}
	}
}

// §3 FIND_GROUPS / FIND_USERS: the query is a literal prefix (no LIKE
// wildcards, no escapes).
func testFindLiteral(t *testing.T, e *env) {
	a := e.user(t, "a")
	p := randName("Lit", 8)
	under := createGroup(t, a, p+"_x", "")
	createGroup(t, a, p+"yx", "")
	pct := createGroup(t, a, p+"%z", "")
	createGroup(t, a, p+"zz", "")
	bs := createGroup(t, a, p+`\w`, "")
	createGroup(t, a, p+"w", "")
	for _, tc := range []struct {
		q    string
		want []int64
	}{
		{p + "_", []int64{under}},
		{p + "%", []int64{pct}},
		{p + `\`, []int64{bs}},
		{p + `\w`, []int64{bs}},
		{p + "_x", []int64{under}},
	} {
		gs := a.OK(16, M{"query": tc.q}).Get("groups").Array()
		var got []int64
		for _, g := range gs {
			got = append(got, g.Get("id").Int())
		}
		if !equalSeqs(got, tc.want) {
			t.Errorf("FIND_GROUPS %q: ids %v, want %v", tc.q, got, tc.want)
		}
	}
	reg := e.dial(t, "reg")
	uu := regOn(t, reg, p+"_u")
	regOn(t, reg, p+"Au")
	up := regOn(t, reg, p+"%u")
	regOn(t, reg, p+"Bu")
	for _, tc := range []struct {
		q    string
		want []int64
	}{
		{p + "_", []int64{uu.ID}},
		{p + "%", []int64{up.ID}},
	} {
		us := a.OK(17, M{"query": tc.q}).Get("users").Array()
		var got []int64
		for _, u := range us {
			got = append(got, u.Get("id").Int())
		}
		if !equalSeqs(got, tc.want) {
			t.Errorf("FIND_USERS %q: ids %v, want %v", tc.q, got, tc.want)
		}
	}
}

// §3 JOIN_GROUP: a message sent while b was not a member is not pushed to b,
// even when b joins right after it was acknowledged (the fan-out must follow
// the membership at the message's seq, not at the time of pushing).
func testGroupRejoinRace(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	gid := createGroup(t, a, "rejoin "+randName("", 5), "")
	joinGroup(t, b, gid)
	var away []int64
	for i := range 20 {
		b.OK(11, M{"groupid": gid})
		seq, _ := gchat(t, a, gid, fmt.Sprintf("away %d", i), fmt.Sprintf("away%d", i))
		away = append(away, seq)
		joinGroup(t, b, gid) // at once
		seq, _ = gchat(t, a, gid, fmt.Sprintf("back %d", i), fmt.Sprintf("back%d", i))
		if _, err := b.TakeE(2*time.Second, func(f Frame) bool {
			return f.MsgID() == 202 && f.JSON.Get("seq").Int() == seq && f.JSON.Get("groupid").Int() == gid
		}); err != nil {
			t.Errorf("round %d: b (a member again) got no push of seq %d: %v", i, seq, err)
		}
	}
	for _, s := range away {
		if b.Peek(func(f Frame) bool {
			return f.MsgID() == 202 && f.JSON.Get("seq").Int() == s && f.JSON.Get("groupid").Int() == gid
		}) {
			t.Errorf("b got a push of seq %d, sent while b was not a member", s)
		}
	}
}
