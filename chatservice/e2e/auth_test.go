package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// §3 REG: creates an account, does not log in, names unique case-insensitively.
func testReg(t *testing.T, e *env) {
	c := e.dial(t, "reg")
	name := randName("Reg", 10)
	u := regOn(t, c, name)
	c.Err(15, nil, 401) // REG does not log in
	c.Err(2, M{"name": name, "password": "password123"}, 409)
	c.Err(2, M{"name": strings.ToUpper(name), "password": "password123"}, 409)
	c.Err(2, M{"name": strings.ToLower(name), "password": "password123"}, 409)

	// REG on a logged-in connection: allowed, and the login is kept.
	loginOn(t, c, u)
	other := regOn(t, c, randName("Reg", 10))
	if other.ID == u.ID {
		t.Fatalf("two accounts with id %d", u.ID)
	}
	c.Err(1, M{"id": other.ID, "password": other.Password}, 409) // still logged in as u
	if r := c.OK(15, nil); !r.Get("friends").IsArray() {
		t.Errorf("LIST: %s", r.Raw)
	}
}

// §3 REG: shape errors → 400.
func testRegBadShape(t *testing.T, e *env) {
	c := e.dial(t, "regshape")
	n := randName("rs", 10)
	for _, f := range []M{
		{},
		{"name": n},
		{"password": "password123"},
		{"name": 5, "password": "password123"},
		{"name": n, "password": 12345678},
		{"name": "", "password": "password123"},
		{"name": n, "password": ""},
		{"name": Raw(`null`), "password": "password123"},
		{"name": n, "password": Raw(`null`)},
		{"name": []string{n}, "password": "password123"},
	} {
		c.Err(2, f, 400)
	}
}

// §3 LOGIN by id, by name (case-insensitive) and by token.
func testLoginWays(t *testing.T, e *env) {
	c0 := e.dial(t, "reg")
	u := regOn(t, c0, randName("LoGin", 10))
	c1 := e.dial(t, "byid")
	r1 := loginOn(t, c1, u)
	tok1 := r1.Get("token").String()
	for _, k := range []string{"friends", "groups", "requests"} {
		if r1.Get(k).Raw != "[]" {
			t.Errorf("new account: %s should be [], got %s", k, r1.Get(k).Raw)
		}
	}
	c2 := e.dial(t, "byname")
	r2 := c2.OK(1, M{"name": swapCase(u.Name), "password": u.Password})
	checkLoginResponse(t, r2, u)
	tok2 := r2.Get("token").String()
	if tok2 == tok1 {
		t.Errorf("two password logins returned the same token (each must issue a new one)")
	}
	c3 := e.dial(t, "bytoken")
	r3 := c3.OK(1, M{"token": tok1})
	checkLoginResponse(t, r3, u)
	if r3.Get("token").String() != tok1 {
		t.Errorf("token LOGIN must return that token: got %s", r3.Get("token").Raw)
	}
	c4 := e.dial(t, "bytoken2")
	c4.OK(1, M{"token": tok2})
	// All four sessions are logged in at once.
	for _, c := range []*Client{c1, c2, c3, c4} {
		c.OK(15, nil)
	}
}

func swapCase(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 32)
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r + 32)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// §3 LOGIN: exactly one credential form, else 400.
func testLoginBadShape(t *testing.T, e *env) {
	u := e.reg(t)
	c := e.dial(t, "loginshape")
	for _, f := range []M{
		{},
		{"password": u.Password},
		{"id": u.ID},
		{"name": u.Name},
		{"id": u.ID, "name": u.Name, "password": u.Password},
		{"token": "abc", "password": u.Password},
		{"token": "abc", "id": u.ID},
		{"token": "abc", "name": u.Name},
		{"token": "abc", "id": u.ID, "password": u.Password},
		{"id": "1", "password": u.Password},
		{"id": Raw(`1.0`), "password": u.Password},
		{"id": Raw(`1e3`), "password": u.Password},
		{"name": 7, "password": u.Password},
		{"id": u.ID, "password": 12345678},
		{"token": 5},
		{"token": Raw(`null`)},
		{"id": Raw(`null`), "password": u.Password},
		{"id": u.ID, "password": Raw(`null`)},
		{"name": u.Name, "password": u.Password, "token": Raw(`null`)},
	} {
		c.Err(1, f, 400)
	}
	// None of these counted as failed logins, and the right one still works.
	loginOn(t, c, u)
}

// §3 LOGIN: every wrong credential → 401 with the same errmsg.
func testLogin401(t *testing.T, e *env) {
	u := e.reg(t)
	c := e.dial(t, "login401")
	var msgs []string
	for _, f := range []M{
		{"id": u.ID, "password": u.Password + "x"},
		{"name": u.Name, "password": "wrong-password"},
		{"name": randName("nobody", 12), "password": u.Password},
		{"id": noSuchID, "password": u.Password},
		{"token": "not-a-token-" + randName("", 20)},
		{"id": u.ID, "password": "short"},                         // breaks the text rules: wrong credentials
		{"id": u.ID, "password": strings.Repeat("p", 73)},         // too long: wrong credentials
		{"name": strings.Repeat("n", 33), "password": u.Password}, // too long a name: wrong credentials
		{"name": " " + u.Name, "password": u.Password},
	} {
		r := c.Err(1, f, 401)
		msgs = append(msgs, r.Get("errmsg").String())
	}
	// A lone surrogate breaks the text rules too: wrong credentials.
	for _, raw := range []string{
		`{"msgid":1,"reqid":5,"name":"a\ud800b","password":"password123"}`,
		fmt.Sprintf(`{"msgid":1,"reqid":5,"id":%d,"password":"pass\udc00word"}`, u.ID),
	} {
		r := c.RawReq(raw)
		if r.Get("msgid").Int() != 101 || r.Get("errno").Int() != 401 {
			t.Errorf("LOGIN %s: want response 101 errno 401, got %s", raw, r.Raw)
		}
		msgs = append(msgs, r.Get("errmsg").String())
	}
	for i, m := range msgs {
		if m != msgs[0] {
			t.Errorf("401 errmsg differs: case 0 %q, case %d %q (must not tell what was wrong)", msgs[0], i, m)
		}
	}
	c.Err(15, nil, 401)
	loginOn(t, c, u)
}

// §3 LOGIN on a logged-in connection → 409 (after the credential check).
func testLogin409(t *testing.T, e *env) {
	u := e.reg(t)
	c := e.login(t, u, "l409")
	c.Err(1, M{"id": u.ID, "password": u.Password}, 409)
	c.Err(1, M{"token": u.Token}, 409)
	c.Err(1, M{"name": u.Name, "password": u.Password}, 409)
	c.Err(1, M{"id": u.ID, "password": "wrong-password"}, 401) // credentials before "already"
	other := e.reg(t)
	c.Err(1, M{"id": other.ID, "password": other.Password}, 409)
	c.OK(15, nil) // still logged in as u
}

// §3 LOGIN: 10 failed password logins in 60 s → 429 with retry_after, even
// with the right password; token logins unaffected.
func testLoginThrottle(t *testing.T, e *env) {
	u := e.reg(t)
	pre := e.login(t, u, "pre") // a token issued before the failures
	tok := u.Token
	c := e.dial(t, "throttle")
	start := time.Now()
	for i := range 10 {
		f := M{"id": u.ID, "password": "wrong-password"}
		if i%2 == 1 {
			f = M{"name": u.Name, "password": "wrong-password"}
		}
		c.Err(1, f, 401)
	}
	r := c.Err(1, M{"id": u.ID, "password": u.Password}, 429)
	ra := r.Get("retry_after").Int()
	if ra <= 0 || ra > 60000 || time.Duration(ra)*time.Millisecond < 60*time.Second-time.Since(start)-5*time.Second {
		t.Errorf("retry_after %d ms: want about 60 s minus the %v since the first failure", ra, time.Since(start))
	}
	c.Err(1, M{"name": strings.ToUpper(u.Name), "password": u.Password}, 429)
	c.Err(1, M{"id": u.ID, "password": "wrong-password"}, 429)
	// Other connections are throttled too (it is per account).
	c2 := e.dial(t, "throttle2")
	c2.Err(1, M{"id": u.ID, "password": u.Password}, 429)
	// Token logins are not affected.
	c3 := e.dial(t, "token")
	c3.OK(1, M{"token": tok})
	// Another account is not affected.
	v := e.reg(t)
	c4 := e.dial(t, "other")
	loginOn(t, c4, v)
	// A shape error is still a 400 (shape comes before the throttle).
	c2.Err(1, M{"id": u.ID}, 400)
	// The already-logged-in session is untouched.
	pre.OK(15, nil)
}

// §3 LOGOUT revokes the token of this connection's login; others stay logged in.
func testLogout(t *testing.T, e *env) {
	u := e.reg(t)
	c1 := e.login(t, u, "c1")
	tok := u.Token
	c2 := e.dial(t, "c2")
	c2.OK(1, M{"token": tok})
	c3 := e.login(t, u, "c3") // another token
	tok3 := u.Token

	c2.OK(3, M{})
	c2.Err(15, nil, 401) // logged out, connection open
	c2.OK(4, nil)
	c1.OK(15, nil) // other connections stay logged in
	c3.OK(15, nil)
	c4 := e.dial(t, "c4")
	c4.Err(1, M{"token": tok}, 401) // the revoked token
	c4.OK(1, M{"token": tok3})      // another token still works
	// Log in again on the same connection.
	tok2 := c2.OK(1, M{"id": u.ID, "password": u.Password}).Get("token").String()
	c2.OK(15, nil)
	// LOGOUT of a password login revokes the token it issued.
	c2.OK(3, nil)
	c2.Err(3, nil, 401) // already logged out
	c4.Close()
	c6 := e.dial(t, "c6")
	c6.Err(1, M{"token": tok2}, 401)
	c5 := e.dial(t, "c5")
	c5.Err(3, nil, 401) // never logged in
}

// §3: every request other than LOGIN, REG, PING needs a login (401).
func testNeedLogin(t *testing.T, e *env) {
	c := e.dial(t, "nologin")
	for _, rq := range []struct {
		id int
		f  M
	}{
		{3, nil},
		{5, M{"toid": 1, "msg": "hi", "cid": "c1"}},
		{6, M{"friendid": 1}},
		{7, M{"friendid": 1}},
		{8, M{"friendid": 1}},
		{9, M{"groupname": "g", "groupdesc": "d"}},
		{10, M{"groupid": 1}},
		{11, M{"groupid": 1}},
		{12, M{"groupid": 1}},
		{13, M{"groupid": 1, "msg": "hi", "cid": "c2"}},
		{14, M{"groupid": 1}},
		{15, nil},
		{16, M{"query": "a"}},
		{16, nil},
		{17, M{"query": "a"}},
		{18, M{"friendid": 1}},
		{18, M{"groupid": 1, "limit": 5}},
		{19, M{"acks": []M{{"friendid": 1, "seq": 1}}}},
		{20, M{"name": "somebody"}},
	} {
		c.Err(rq.id, rq.f, 401)
	}
	c.OK(4, nil)
}

// §3 order of checks: shape (400/413) comes before login (401).
func testShapeBeforeLogin(t *testing.T, e *env) {
	c := e.dial(t, "shape")
	c.Err(5, M{}, 400)
	c.Err(5, M{"toid": 1, "msg": "", "cid": "c"}, 400)
	c.Err(5, M{"toid": 1, "msg": strings.Repeat("x", 4097), "cid": "c"}, 413)
	c.Err(13, M{"groupid": 1, "msg": strings.Repeat("x", 4097), "cid": "c"}, 413)
	c.Err(6, M{"friendid": "x"}, 400)
	c.Err(17, M{"query": ""}, 400)
	c.Err(18, M{"friendid": 1, "limit": 0}, 400)
	c.Err(19, M{"acks": []M{}}, 400)
	c.Err(20, M{"name": ""}, 400)
}

// §3: identity always comes from the login, never from a field.
func testIdentityNotFromFields(t *testing.T, e *env) {
	a := e.user(t, "a")
	b := e.user(t, "b")
	v := e.user(t, "victim")
	befriend(t, a, b)
	chat(t, a, b.User.ID, "hi", "c1")
	a.OK(5, M{"toid": b.User.ID, "msg": "spoof", "cid": "c2", "from": v.User.ID, "id": v.User.ID, "fromname": "x"})
	p := b.ExpectPush(201, PushTimeout, strIs("msg", "spoof"))
	if p.Get("from").Int() != a.User.ID || p.Get("fromname").String() != a.User.Name {
		t.Errorf("push of a message with a spoofed from: want from %d, got %s", a.User.ID, p.Raw)
	}
	// SET_NAME with another id renames the caller only.
	newName := randName("ren", 10)
	r := a.OK(20, M{"name": newName, "id": v.User.ID})
	if r.Get("user.id").Int() != a.User.ID {
		t.Errorf("SET_NAME with id field: want user %d renamed, got %s", a.User.ID, r.Raw)
	}
	vl := v.OK(15, M{"id": a.User.ID})
	if len(vl.Get("friends").Array()) != 0 {
		t.Errorf("LIST with an id field returned another user's friends: %s", vl.Raw)
	}
}

// §3: LOGIN with a token never runs bcrypt: with --bcrypt-cost 10 a
// password login costs tens of ms, a token login must not.
func testTokenSkipsBcrypt(t *testing.T, e *env) {
	tgt := e.newTarget(t, "--bcrypt-cost", "10")
	c := dialTo(t, tgt, 0, "reg")
	u := regOn(t, c, randName("bc", 10))
	timed := func(f M) time.Duration {
		x := dialTo(t, tgt, 0, "login")
		defer x.Close()
		start := time.Now()
		x.OK(1, f)
		return time.Since(start)
	}
	var pw, tok []time.Duration
	for range 3 {
		pw = append(pw, timed(M{"id": u.ID, "password": u.Password}))
	}
	lr := dialTo(t, tgt, 0, "tok")
	u.Token = lr.OK(1, M{"id": u.ID, "password": u.Password}).Get("token").String()
	for range 3 {
		tok = append(tok, timed(M{"token": u.Token}))
	}
	slices.Sort(pw)
	slices.Sort(tok)
	t.Logf("password logins %v, token logins %v", pw, tok)
	if tok[1]*4 > pw[1] {
		t.Errorf("median token login %v is not far below the median password login %v: does it run bcrypt?", tok[1], pw[1])
	}
}
