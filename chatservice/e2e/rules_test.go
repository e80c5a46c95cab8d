package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// badUserNames break the text rules of a user name (§3).
func badUserNames() map[string]string {
	r := randName("", 10)
	return map[string]string{
		"empty":              "",
		"leading_space":      " " + r,
		"trailing_space":     r + " ",
		"leading_nbsp":       "\u00a0" + r,
		"trailing_ideo":      r + "\u3000",
		"cc_bell":            "a\u0007" + r,
		"cc_newline":         r + "\nx",
		"cc_del":             r + "\x7f",
		"cc_tab":             "\t" + r,
		"cf_zwsp":            "a\u200b" + r,
		"cf_soft_hyphen":     r + "\u00adx",
		"cf_rlo":             "\u202e" + r,
		"cf_bom":             "\ufeff" + r,
		"33_ascii":           randName("", 33),
		"33_code_points":     randName("", 25) + strings.Repeat("é", 8),
		"33_code_points_cjk": strings.Repeat("名", 30) + randName("", 3),
	}
}

// §3 text rules: user names (REG and SET_NAME).
func testUserNames(t *testing.T, e *env) {
	c := e.user(t, "names")
	reg := e.dial(t, "reg")
	for name, n := range badUserNames() {
		r := reg.Req(2, M{"name": n, "password": "password123"})
		if r.Get("errno").Int() != 400 {
			t.Errorf("REG name %s %q: want 400, got %s", name, n, r.Raw)
		}
		r = c.Req(20, M{"name": n})
		if r.Get("errno").Int() != 400 {
			t.Errorf("SET_NAME %s %q: want 400, got %s", name, n, r.Raw)
		}
	}
	// Valid: 32 code points (64 bytes), inner spaces, non-ASCII; stored exactly.
	for _, n := range []string{
		randName("", 24) + strings.Repeat("é", 8),
		randName("", 32),
		randName("a b ", 8),
		"名" + randName("", 8) + "字",
		randName("", 8) + "-_.!?@#",
	} {
		u := regOn(t, reg, n)
		r := reg.OK(1, M{"name": n, "password": u.Password})
		if r.Get("user.name").String() != n {
			t.Errorf("name %q stored as %s", n, r.Get("user.name").Raw)
		}
		reg.OK(3, nil)
	}
	n := randName("", 20) + strings.Repeat("ü", 12)
	r := c.OK(20, M{"name": n})
	if r.Get("user.name").String() != n || r.Get("user.id").Int() != c.User.ID {
		t.Errorf("SET_NAME %q: %s", n, r.Raw)
	}
}

// §3 text rules: passwords are 8–72 bytes (not code points).
func testPasswords(t *testing.T, e *env) {
	c := e.dial(t, "pw")
	for _, p := range []string{"1234567", strings.Repeat("p", 73), strings.Repeat("€", 25), "äää"} {
		c.Err(2, M{"name": randName("pw", 10), "password": p}, 400)
	}
	for _, p := range []string{"12345678", strings.Repeat("q", 72), strings.Repeat("€", 24), "ääää", "with spaces \u200b\n"} {
		name := randName("pw", 10)
		r := c.OK(2, M{"name": name, "password": p})
		id := r.Get("user.id").Int()
		c.OK(1, M{"id": id, "password": p})
		c.OK(3, nil)
		if len(p) == 72 {
			// 73 bytes with the same first 72 breaks the text rules → wrong credentials
			// (bcrypt alone would ignore the 73rd byte).
			c.Err(1, M{"id": id, "password": p + "x"}, 401)
			c.Err(1, M{"id": id, "password": p[:71]}, 401)
		}
	}
}

// §3 text rules: group names (1–64 code points) and descriptions (0–256, no Cc).
func testGroupNames(t *testing.T, e *env) {
	c := e.user(t, "groups")
	r := randName("", 8)
	for name, n := range map[string]string{
		"empty":          "",
		"65_code_points": randName("", 57) + strings.Repeat("ö", 8),
		"65_ascii":       randName("", 65),
		"leading_space":  " " + r,
		"trailing_space": r + " ",
		"cc":             r + "\u0001",
		"newline":        r + "\n",
		"cf":             r + "\u200d" + r,
	} {
		if res := c.Req(9, M{"groupname": n, "groupdesc": "d"}); res.Get("errno").Int() != 400 {
			t.Errorf("CREATE_GROUP groupname %s %q: want 400, got %s", name, n, res.Raw)
		}
	}
	for name, d := range map[string]string{
		"257_code_points": strings.Repeat("ü", 257),
		"257_ascii":       strings.Repeat("d", 257),
		"cc_newline":      "line1\nline2",
		"cc_nul":          "a\u0000b",
	} {
		if res := c.Req(9, M{"groupname": "g" + r, "groupdesc": d}); res.Get("errno").Int() != 400 {
			t.Errorf("CREATE_GROUP groupdesc %s: want 400, got %s", name, res.Raw)
		}
	}
	for _, f := range []M{
		{"groupdesc": "d"},
		{"groupname": 5},
		{"groupname": Raw(`null`)},
		{"groupname": "g" + r, "groupdesc": Raw(`null`)},
		{"groupname": "g" + r, "groupdesc": 7},
	} {
		c.Err(9, f, 400)
	}
	// Valid ones, stored exactly as given; names need not be unique.
	name64 := randName("", 56) + strings.Repeat("ö", 8)
	createGroup(t, c, name64, strings.Repeat("ü", 256))
	createGroup(t, c, "g"+r, "  spaces and a \u200b zero-width space are fine  ")
	createGroup(t, c, "g"+r, "")
	g := c.OK(9, M{"groupname": "x y " + r})
	if g.Get("group.desc").Raw != `""` {
		t.Errorf("CREATE_GROUP without groupdesc: want desc \"\", got %s", g.Raw)
	}
	l := list(t, c)
	if n := len(l.Get("groups").Array()); n != 4 {
		t.Errorf("LIST after 4 groups created: %d groups: %s", n, l.Raw)
	}
}

// §3 text rules: msg 1–4096 bytes (longer → 413), cid 1–64 bytes.
func testMsgAndCID(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	befriend(t, a, b)
	gid := createGroup(t, a, "g"+randName("", 6), "")
	to := b.User.ID
	for _, tc := range []struct {
		name  string
		f     M
		errno int
	}{
		{"msg_empty", M{"toid": to, "msg": "", "cid": "e1"}, 400},
		{"msg_4097", M{"toid": to, "msg": strings.Repeat("m", 4097), "cid": "e2"}, 413},
		{"msg_4098_multibyte", M{"toid": to, "msg": strings.Repeat("€", 1366), "cid": "e3"}, 413},
		{"msg_huge", M{"toid": to, "msg": strings.Repeat("m", 60000), "cid": "e4"}, 413},
		{"msg_number", M{"toid": to, "msg": 5, "cid": "e5"}, 400},
		{"msg_null", M{"toid": to, "msg": Raw(`null`), "cid": "e6"}, 400},
		{"msg_missing", M{"toid": to, "cid": "e7"}, 400},
		{"cid_empty", M{"toid": to, "msg": "m", "cid": ""}, 400},
		{"cid_65", M{"toid": to, "msg": "m", "cid": strings.Repeat("c", 65)}, 400},
		{"cid_66_multibyte", M{"toid": to, "msg": "m", "cid": strings.Repeat("€", 22)}, 400},
		{"cid_number", M{"toid": to, "msg": "m", "cid": 5}, 400},
		{"cid_missing", M{"toid": to, "msg": "m"}, 400},
		{"cid_null", M{"toid": to, "msg": "m", "cid": Raw(`null`)}, 400},
		{"toid_missing", M{"msg": "m", "cid": "e8"}, 400},
	} {
		if r := a.Req(5, tc.f); r.Get("errno").Int() != int64(tc.errno) {
			t.Errorf("ONE_CHAT %s: want %d, got %s", tc.name, tc.errno, r.Raw)
		}
	}
	for _, tc := range []struct {
		name  string
		f     M
		errno int
	}{
		{"msg_4097", M{"groupid": gid, "msg": strings.Repeat("m", 4097), "cid": "g1"}, 413},
		{"msg_empty", M{"groupid": gid, "msg": "", "cid": "g2"}, 400},
		{"cid_65", M{"groupid": gid, "msg": "m", "cid": strings.Repeat("c", 65)}, 400},
		{"groupid_missing", M{"msg": "m", "cid": "g3"}, 400},
	} {
		if r := a.Req(13, tc.f); r.Get("errno").Int() != int64(tc.errno) {
			t.Errorf("GROUP_CHAT %s: want %d, got %s", tc.name, tc.errno, r.Raw)
		}
	}
	// Nothing of that was stored.
	if h := history(t, b, M{"friendid": a.User.ID}); len(h) != 0 {
		t.Errorf("rejected messages were stored: %v", seqs(h))
	}
	// The limits themselves are fine; msg has no character rules.
	m4096 := strings.Repeat("€", 1365) + "a"
	var seq int64
	for i, m := range []string{strings.Repeat("m", 4096), m4096, "tab\tnewline\nbell\u0007 \u200b", " "} {
		cid := fmt.Sprintf("ok%d", i)
		if i == 0 {
			cid = strings.Repeat("c", 64)
		}
		if i == 1 {
			cid = strings.Repeat("€", 21) + "x"
		}
		s, _ := chat(t, a, to, m, cid)
		seq++
		if s != seq {
			t.Errorf("seq %d, want %d", s, seq)
		}
		p := b.ExpectPush(201, PushTimeout, fieldIs("seq", s))
		if p.Get("msg").String() != m || p.Get("cid").String() != cid {
			t.Errorf("push of message %d: msg/cid changed: %.200s", i, p.Raw)
		}
	}
	gchat(t, a, gid, strings.Repeat("g", 4096), strings.Repeat("k", 64))
}

// §3 fields: integers without fraction or exponent, positive ids, no null.
func testIntegersAndNull(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	befriend(t, a, b)
	gid := createGroup(t, a, "g"+randName("", 6), "")
	chat(t, a, b.User.ID, "one", "c1")
	bid := b.User.ID
	badIDs := map[string]Raw{
		"fraction": Raw(fmt.Sprintf("%d.0", bid)),
		"exponent": Raw(fmt.Sprintf("%de0", bid)),
		"string":   Raw(fmt.Sprintf(`"%d"`, bid)),
		"null":     Raw(`null`),
		"zero":     Raw(`0`),
		"negative": Raw(fmt.Sprintf("-%d", bid)),
		"bool":     Raw(`true`),
		"object":   Raw(`{}`),
		"array":    Raw(fmt.Sprintf("[%d]", bid)),
	}
	gids := map[string]Raw{
		"fraction": Raw(fmt.Sprintf("%d.0", gid)),
		"exponent": Raw(fmt.Sprintf("%dE0", gid)),
		"string":   Raw(fmt.Sprintf(`"%d"`, gid)),
		"null":     Raw(`null`),
		"zero":     Raw(`0`),
		"negative": Raw(`-1`),
	}
	for name, v := range badIDs {
		for _, rq := range []struct {
			id int
			f  M
		}{
			{5, M{"toid": v, "msg": "m", "cid": "x" + name}},
			{6, M{"friendid": v}},
			{7, M{"friendid": v}},
			{8, M{"friendid": v}},
			{18, M{"friendid": v}},
			{19, M{"acks": []M{{"friendid": v, "seq": 1}}}},
		} {
			if r := a.Req(rq.id, rq.f); r.Get("errno").Int() != 400 {
				t.Errorf("msgid %d with id %s (%s): want 400, got %s", rq.id, name, v, r.Raw)
			}
		}
	}
	for name, v := range gids {
		for _, rq := range []struct {
			id int
			f  M
		}{
			{10, M{"groupid": v}},
			{11, M{"groupid": v}},
			{12, M{"groupid": v}},
			{13, M{"groupid": v, "msg": "m", "cid": "y" + name}},
			{14, M{"groupid": v}},
			{18, M{"groupid": v}},
			{19, M{"acks": []M{{"groupid": v, "seq": 1}}}},
		} {
			if r := a.Req(rq.id, rq.f); r.Get("errno").Int() != 400 {
				t.Errorf("msgid %d with groupid %s (%s): want 400, got %s", rq.id, name, v, r.Raw)
			}
		}
	}
	for _, tc := range []struct {
		name string
		id   int
		f    M
	}{
		{"before_0", 18, M{"friendid": bid, "before": 0}},
		{"before_negative", 18, M{"friendid": bid, "before": -3}},
		{"before_null", 18, M{"friendid": bid, "before": Raw(`null`)}},
		{"before_fraction", 18, M{"friendid": bid, "before": Raw(`2.5`)}},
		{"before_string", 18, M{"friendid": bid, "before": "2"}},
		{"limit_null", 18, M{"friendid": bid, "limit": Raw(`null`)}},
		{"limit_exponent", 18, M{"friendid": bid, "limit": Raw(`1e1`)}},
		{"limit_fraction", 18, M{"friendid": bid, "limit": Raw(`10.0`)}},
		{"limit_string", 18, M{"friendid": bid, "limit": "5"}},
		{"friendid_null_with_groupid", 18, M{"friendid": Raw(`null`), "groupid": gid}},
		{"ack_seq_0", 19, M{"acks": []M{{"friendid": bid, "seq": 0}}}},
		{"ack_seq_negative", 19, M{"acks": []M{{"friendid": bid, "seq": -1}}}},
		{"ack_seq_fraction", 19, M{"acks": []M{{"friendid": bid, "seq": Raw(`1.0`)}}}},
		{"ack_seq_null", 19, M{"acks": []M{{"friendid": bid, "seq": Raw(`null`)}}}},
		{"ack_seq_string", 19, M{"acks": []M{{"friendid": bid, "seq": "1"}}}},
		{"ack_groupid_null", 19, M{"acks": []M{{"friendid": bid, "groupid": Raw(`null`), "seq": 1}}}},
		{"acks_null", 19, M{"acks": Raw(`null`)}},
		{"acks_object", 19, M{"acks": M{"friendid": bid, "seq": 1}}},
		{"acks_missing", 19, M{}},
		{"find_groups_query_null", 16, M{"query": Raw(`null`)}},
		{"find_groups_query_number", 16, M{"query": 5}},
		{"find_users_query_null", 17, M{"query": Raw(`null`)}},
		{"find_users_query_missing", 17, M{}},
		{"find_users_query_number", 17, M{"query": 1}},
		{"set_name_null", 20, M{"name": Raw(`null`)}},
		{"set_name_missing", 20, M{}},
	} {
		if r := a.Req(tc.id, tc.f); r.Get("errno").Int() != 400 {
			t.Errorf("%s: want 400, got %s", tc.name, r.Raw)
		}
	}
	// None of the ACKs moved a cursor.
	if u, _ := unreadOf(t, list(t, b), "friends", a.User.ID); u != 1 {
		t.Errorf("after rejected ACKs b's unread is %d, want 1", u)
	}
}

// §3: a user id naming oneself where another user is meant → 400.
func testSelf(t *testing.T, e *env) {
	a := e.user(t, "self")
	me := a.User.ID
	a.Err(6, M{"friendid": me}, 400)
	a.Err(7, M{"friendid": me}, 400)
	a.Err(8, M{"friendid": me}, 400)
	a.Err(5, M{"toid": me, "msg": "hi", "cid": "s1"}, 400)
	a.Err(18, M{"friendid": me}, 400)
	a.Err(19, M{"acks": []M{{"friendid": me, "seq": 1}}}, 400)
}

// §3 order of checks: shape, login, exists (404), permission (403), state.
func testOrderOfChecks(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	stranger := e.user(t, "stranger")
	befriend(t, a, b)
	gid := createGroup(t, b, "g"+randName("", 6), "")
	a.Err(5, M{"toid": noSuchID, "msg": "", "cid": "o1"}, 400)
	a.Err(5, M{"toid": noSuchID, "msg": strings.Repeat("x", 4097), "cid": "o2"}, 413)
	a.Err(5, M{"toid": stranger.User.ID, "msg": strings.Repeat("x", 4097), "cid": "o3"}, 413)
	a.Err(5, M{"toid": noSuchID, "msg": "m", "cid": "o4"}, 404)
	a.Err(5, M{"toid": stranger.User.ID, "msg": "m", "cid": "o5"}, 403)
	a.Err(13, M{"groupid": noSuchID, "msg": "m", "cid": "o6"}, 404)
	a.Err(13, M{"groupid": gid, "msg": "m", "cid": "o7"}, 403)
	a.Err(14, M{"groupid": noSuchID}, 404)
	a.Err(11, M{"groupid": noSuchID}, 404)
	a.Err(12, M{"groupid": noSuchID}, 404)
	a.Err(10, M{"groupid": noSuchID}, 404)
	a.Err(18, M{"groupid": noSuchID}, 404)
	a.Err(18, M{"friendid": noSuchID}, 404)
	a.Err(6, M{"friendid": noSuchID}, 404)
	a.Err(7, M{"friendid": noSuchID}, 404)
	a.Err(8, M{"friendid": noSuchID}, 404)
	chat(t, a, b.User.ID, "m", "o8")
	// ACK: 404 before 403 before the seq-beyond-last 400.
	a.Err(19, M{"acks": []M{{"friendid": b.User.ID, "seq": 999}, {"groupid": gid, "seq": 1}}}, 403)
	a.Err(19, M{"acks": []M{{"groupid": gid, "seq": 1}, {"friendid": noSuchID, "seq": 1}}}, 404)
	a.Err(19, M{"acks": []M{{"friendid": stranger.User.ID, "seq": 1}}}, 403)
	a.Err(19, M{"acks": []M{{"friendid": b.User.ID, "seq": 2}}}, 400)
	a.OK(19, M{"acks": []M{{"friendid": b.User.ID, "seq": 1}}})
}

// §3: user names clash when strings.ToLower makes them equal — not under
// Unicode case folding or a database collation (accents, final sigma).
func testNameCase(t *testing.T, e *env) {
	c := e.dial(t, "case")
	r := randName("", 10)
	sigma := regOn(t, c, "Σ"+r)
	c.Err(2, M{"name": "σ" + r, "password": "password123"}, 409) // ToLower("Σ") == "σ"
	final := regOn(t, c, "ς"+r)                                  // ToLower("Σ") != "ς": no clash
	kelvin := "\u212a" + r                                       // KELVIN SIGN lower-cases to "k"
	regOn(t, c, "k"+r)
	c.Err(2, M{"name": kelvin, "password": "password123"}, 409)
	plain := regOn(t, c, "e"+r)
	acute := regOn(t, c, "é"+r)                                       // an accent is a different name
	nfd := regOn(t, c, "e\u0301"+r)                                   // stored exactly as given: NFD is not NFC
	ss := regOn(t, c, "straße"+r)                                     // no folding of ß to ss
	regOn(t, c, "strasse"+r)                                          //
	c.Err(2, M{"name": "STRAßE" + r, "password": "password123"}, 409) // ToLower("STRAßE") == "straße"
	for _, tc := range []struct {
		login string
		u     *User
	}{
		{"σ" + r, sigma}, {"Σ" + r, sigma}, {"ς" + r, final}, {"E" + r, plain}, {"É" + r, acute},
		{"E\u0301" + r, nfd}, {"STRAßE" + r, ss},
	} {
		l := e.dial(t, "login")
		res := l.OK(1, M{"name": tc.login, "password": tc.u.Password})
		if res.Get("user.id").Int() != tc.u.ID || res.Get("user.name").String() != tc.u.Name {
			t.Errorf("LOGIN name %q: want user {%d %q}, got %s", tc.login, tc.u.ID, tc.u.Name, res.Get("user").Raw)
		}
		l.Close()
	}
	// FIND_USERS compares the same way.
	me := e.user(t, "finder")
	res := me.OK(17, M{"query": "E" + r})
	if us := res.Get("users").Array(); len(us) != 1 || us[0].Get("id").Int() != plain.ID {
		t.Errorf("FIND_USERS %q: want only user %d (not the accented or NFD ones), got %s", "E"+r, plain.ID, res.Raw)
	}
	res = me.OK(17, M{"query": "σ" + r})
	if us := res.Get("users").Array(); len(us) != 1 || us[0].Get("id").Int() != sigma.ID {
		t.Errorf("FIND_USERS %q: want only user %d, got %s", "σ"+r, sigma.ID, res.Raw)
	}
}
