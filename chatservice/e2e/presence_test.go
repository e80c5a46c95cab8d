package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// §4 PRESENCE: to friends, when the first session logs in and when the last
// one logs out or closes.
func testPresence(t *testing.T, e *env) {
	a := e.user(t, "a")
	bu := e.reg(t)
	b0 := e.login(t, bu, "b0")
	c := e.user(t, "c") // not b's friend
	befriend(t, a, b0)
	b0.Close()
	isB := fieldIs("id", bu.ID)
	p := a.ExpectPush(205, PushTimeout, isB)
	requireKeys(t, "PRESENCE", p, "id:int", "online:bool")
	if p.Get("online").Bool() {
		t.Fatalf("PRESENCE after b's only session closed: %s", p.Raw)
	}
	b1 := e.login(t, bu, "b1")
	if p := a.ExpectPush(205, PushTimeout, isB); !p.Get("online").Bool() {
		t.Errorf("PRESENCE on b's first login: want online true, got %s", p.Raw)
	}
	b2 := e.dial(t, "b2")
	b2.OK(1, M{"token": bu.Token})
	a.ExpectNoPush(205, QuietPeriod, isB) // not the first session
	b1.Close()
	a.ExpectNoPush(205, QuietPeriod, isB) // not the last session
	if f, _ := entry(list(t, a).Get("friends"), bu.ID); !f.Get("online").Bool() {
		t.Errorf("b still has a session but LIST says offline: %s", f.Raw)
	}
	b2.Close()
	if p := a.ExpectPush(205, PushTimeout, isB); p.Get("online").Bool() {
		t.Errorf("PRESENCE on b's last close: want online false, got %s", p.Raw)
	}
	// LOGOUT of the last session counts like a close.
	b3 := e.login(t, bu, "b3")
	if p := a.ExpectPush(205, PushTimeout, isB); !p.Get("online").Bool() {
		t.Errorf("PRESENCE: want online true, got %s", p.Raw)
	}
	b3.OK(3, nil)
	if p := a.ExpectPush(205, PushTimeout, isB); p.Get("online").Bool() {
		t.Errorf("PRESENCE after LOGOUT of the last session: want online false, got %s", p.Raw)
	}
	c.ExpectNoPush(205, 0, isB)
	// a's own sessions get no presence about a.
	b3.ExpectNoPush(205, 0)
}

// §3: online flags in LIST, FIND_USERS and GROUP_MEMBERS.
func testPresenceFlags(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	befriend(t, a, b)
	gid := createGroup(t, a, "pres "+randName("", 5), "")
	joinGroup(t, b, gid)
	flags := func() (bool, bool, bool) {
		f, _ := entry(list(t, a).Get("friends"), b.User.ID)
		u, _ := entry(a.OK(17, M{"query": b.User.Name}).Get("users"), b.User.ID)
		return f.Get("online").Bool(), u.Get("online").Bool(), members(t, a, gid)[b.User.ID].Get("online").Bool()
	}
	if l, u, m := flags(); !l || !u || !m {
		t.Errorf("b online: LIST %v FIND_USERS %v GROUP_MEMBERS %v, want all true", l, u, m)
	}
	b.Close()
	waitFor(t, 5*time.Second, "b offline everywhere", func() bool {
		l, u, m := flags()
		return !l && !u && !m
	})
	b2 := e.login(t, b.User, "b2")
	_ = b2
	waitFor(t, 5*time.Second, "b online everywhere", func() bool {
		l, u, m := flags()
		return l && u && m
	})
}

// §3/§4 SET_NAME and PROFILE.
func testSetName(t *testing.T, e *env) {
	a1 := e.user(t, "a1")
	a2 := e.second(t, a1, "a2")
	b := e.user(t, "b")
	c := e.user(t, "c")
	befriend(t, a1, b)
	old := a1.User.Name
	n2 := randName("Nm", 10)
	r := a1.OK(20, M{"name": n2})
	if r.Get("user.id").Int() != a1.User.ID || r.Get("user.name").String() != n2 {
		t.Fatalf("SET_NAME response: %s", r.Raw)
	}
	a1.User.Name = n2
	for _, x := range []*Client{b, a2} {
		p := x.ExpectPush(207, PushTimeout)
		if p.Get("user.id").Int() != a1.User.ID || p.Get("user.name").String() != n2 {
			t.Errorf("PROFILE to %s: %s", x.Label, p.Raw)
		}
	}
	a1.ExpectNoPush(207, QuietPeriod)
	c.ExpectNoPush(207, 0)
	// The same name: 0 and no PROFILE.
	if r := a1.OK(20, M{"name": n2}); r.Get("user.name").String() != n2 {
		t.Errorf("SET_NAME to the current name: %s", r.Raw)
	}
	b.ExpectNoPush(207, QuietPeriod)
	a2.ExpectNoPush(207, 0)
	// A change of case only is a change.
	n3 := swapCase(n2)
	a2.OK(20, M{"name": n3})
	a1.User.Name = n3
	for _, x := range []*Client{b, a1} {
		if p := x.ExpectPush(207, PushTimeout); p.Get("user.name").String() != n3 {
			t.Errorf("PROFILE after a case change to %s: %s", x.Label, p.Raw)
		}
	}
	if f, _ := entry(list(t, b).Get("friends"), a1.User.ID); f.Get("name").String() != n3 {
		t.Errorf("friend's LIST shows name %q, want %q", f.Get("name").String(), n3)
	}
	// The old name is free at once; the new one is taken case-insensitively.
	reg := e.dial(t, "reg")
	regOn(t, reg, old)
	reg.Err(2, M{"name": strings.ToLower(n3), "password": "password123"}, 409)
	c.Err(20, M{"name": strings.ToUpper(n3)}, 409)
	c.Err(20, M{"name": old}, 409)
	// LOGIN by the new name works; by the old one with a's password does not.
	l := e.dial(t, "login")
	l.OK(1, M{"name": strings.ToUpper(n3), "password": a1.User.Password})
	l2 := e.dial(t, "login2")
	l2.Err(1, M{"name": old, "password": a1.User.Password}, 401)
}

// §4 multi-device: every session of a user receives the pushes; a
// logged-out connection receives none.
func testMultiDevice(t *testing.T, e *env) {
	a1 := e.user(t, "a1")
	a2 := e.second(t, a1, "a2")
	a3 := e.second(t, a1, "a3")
	b := e.user(t, "b")
	befriend(t, b, a1)
	a2.Drain(204)
	a3.Drain(204)
	gid := createGroup(t, b, "multi "+randName("", 5), "")
	joinGroup(t, a3, gid)
	seq, _ := chat(t, b, a1.User.ID, "to all devices", "md1")
	gseq, _ := gchat(t, b, gid, "to the group", "md2")
	for _, x := range []*Client{a1, a2, a3} {
		x.ExpectPush(201, PushTimeout, fieldIs("seq", seq))
		x.ExpectPush(202, PushTimeout, fieldIs("seq", gseq))
	}
	a3.Close()
	a1.OK(3, nil)
	seq, _ = chat(t, b, a1.User.ID, "after logout", "md3")
	a2.ExpectPush(201, PushTimeout, fieldIs("seq", seq))
	a1.ExpectNoPush(201, QuietPeriod, fieldIs("seq", seq))
}

// §4: fromname is the sender's name when it sent, also when the rename was
// made on another session (possibly on another server) and the group and
// friend views follow it.
func testRenameOtherSession(t *testing.T, e *env) {
	a1 := e.user(t, "a1")
	a2 := e.second(t, a1, "a2")
	b := e.user(t, "b")
	befriend(t, a1, b)
	gid := createGroup(t, b, "ren "+randName("", 4), "")
	joinGroup(t, a1, gid)
	chat(t, a1, b.User.ID, "warm", "rw1")
	gchat(t, a1, gid, "warm", "rw2")
	for i := range 3 {
		n := randName(fmt.Sprintf("Rn%d", i), 8)
		a2.OK(20, M{"name": n})
		a1.ExpectPush(207, PushTimeout, func(r gjson.Result) bool { return r.Get("user.name").String() == n })
		seq, _ := chat(t, a1, b.User.ID, "after rename", fmt.Sprintf("rn%d", i))
		if p := b.ExpectPush(201, PushTimeout, fieldIs("seq", seq)); p.Get("fromname").String() != n {
			t.Errorf("round %d: CHAT from the session that did not rename: fromname %q, want %q", i, p.Get("fromname").String(), n)
		}
		gseq, _ := gchat(t, a1, gid, "after rename", fmt.Sprintf("gn%d", i))
		if p := b.ExpectPush(202, PushTimeout, fieldIs("seq", gseq)); p.Get("fromname").String() != n {
			t.Errorf("round %d: GROUP_CHAT push fromname %q, want %q", i, p.Get("fromname").String(), n)
		}
		if m := members(t, b, gid)[a1.User.ID]; m.Get("name").String() != n {
			t.Errorf("round %d: GROUP_MEMBERS name %q, want %q", i, m.Get("name").String(), n)
		}
		if f, _ := entry(list(t, b).Get("friends"), a1.User.ID); f.Get("name").String() != n {
			t.Errorf("round %d: friend's LIST name %q, want %q", i, f.Get("name").String(), n)
		}
	}
}
