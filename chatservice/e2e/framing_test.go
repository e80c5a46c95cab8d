package e2e

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"
)

// §1: a frame split at every byte boundary is reassembled.
func testSplitEveryByte(t *testing.T, e *env) {
	c := e.dial(t, "split")
	fr := FrameBytes(Encode(4, 77, M{"pad": "xyz"}))
	for k := 1; k < len(fr); k++ {
		c.WriteRaw(fr[:k])
		time.Sleep(2 * time.Millisecond) // let the first part arrive on its own
		c.WriteRaw(fr[k:])
		if r := c.Response(4, 77); r.Get("errno").Int() != 0 {
			t.Fatalf("split at %d: %s", k, r.Raw)
		}
	}
	// One byte per write.
	for i := range fr {
		c.WriteRaw(fr[i : i+1])
		time.Sleep(time.Millisecond)
	}
	if r := c.Response(4, 77); r.Get("errno").Int() != 0 {
		t.Fatalf("byte by byte: %s", r.Raw)
	}
	// The header split from a body that follows later.
	c.WriteRaw(fr[:4])
	time.Sleep(50 * time.Millisecond)
	c.WriteRaw(fr[4:])
	c.Response(4, 77)
}

// §1: several frames in one write, and a frame plus part of the next.
func testManyFramesOneWrite(t *testing.T, e *env) {
	c := e.dial(t, "many")
	var buf []byte
	for i := range 10 {
		buf = append(buf, FrameBytes(Encode(4, int64(500+i), nil))...)
	}
	c.WriteRaw(buf)
	for i := range 10 {
		if r := c.Response(4, int64(500+i)); r.Get("errno").Int() != 0 {
			t.Fatalf("frame %d: %s", i, r.Raw)
		}
	}
	a := FrameBytes(Encode(4, 601, nil))
	b := FrameBytes(Encode(4, 602, nil))
	both := append(append([]byte{}, a...), b...)
	cut := len(a) + 3
	c.WriteRaw(both[:cut])
	c.Response(4, 601)
	time.Sleep(20 * time.Millisecond)
	c.WriteRaw(both[cut:])
	c.Response(4, 602)
}

// expectErrorThenClose waits for push ERROR with errno, then for the close.
func expectErrorThenClose(t *testing.T, c *Client, errno int64) {
	t.Helper()
	r := c.Take(5*time.Second, fmt.Sprintf("ERROR %d", errno), func(f Frame) bool { return f.MsgID() == 299 })
	if r.Get("errno").Int() != errno {
		t.Errorf("ERROR: want errno %d, got %s", errno, r.Raw)
	}
	rest := c.ExpectClosed(5 * time.Second)
	for _, f := range rest {
		t.Errorf("frame after the ERROR before close: %s", f.Body)
	}
}

// §1: N = 0 → ERROR 400 and close.
func testZeroLength(t *testing.T, e *env) {
	c := e.dial(t, "zero")
	c.WriteRaw([]byte{0, 0, 0, 0})
	expectErrorThenClose(t, c, 400)

	// Also after a good frame, with more bytes following the bad header.
	c2 := e.dial(t, "zero2")
	c2.OK(4, nil)
	c2.WriteRaw(append([]byte{0, 0, 0, 0}, FrameBytes(Encode(4, 5, nil))...))
	expectErrorThenClose(t, c2, 400)
}

// §1: N > max_frame → ERROR 413 and close at once, without waiting for the body.
func testTooLargeHeader(t *testing.T, e *env) {
	for _, n := range []uint32{65537, 1 << 31, 0xFFFFFFFF} {
		c := e.dial(t, fmt.Sprintf("big%d", n))
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], n)
		c.WriteRaw(hdr[:])
		c.WriteRaw([]byte(`{"msgid":4,`)) // part of a body; the server must not wait for the rest
		expectErrorThenClose(t, c, 413)
	}
	// Exactly max_frame (65536) is allowed.
	c := e.dial(t, "max")
	pad := strings.Repeat("a", 65536-len(`{"msgid":4,"reqid":9,"pad":""}`))
	body := `{"msgid":4,"reqid":9,"pad":"` + pad + `"}`
	if len(body) != 65536 {
		t.Fatalf("test bug: body %d bytes", len(body))
	}
	c.Send(body)
	if r := c.Response(4, 9); r.Get("errno").Int() != 0 {
		t.Fatalf("frame of exactly 65536 bytes: %s", r.Raw)
	}
}

// badBodies are frame bodies that are not one valid request object; each
// must get ERROR 400 and leave the connection open. The second value is the
// reqid the ERROR must echo (-1: none).
var badBodies = []struct {
	name  string
	body  string
	reqid int64
}{
	{"not_json", `hello`, -1},
	{"array", `[{"msgid":4}]`, -1},
	{"string", `"msgid"`, -1},
	{"number", `4`, -1},
	{"truncated", `{"msgid":4,"reqid":5`, -1},
	{"trailing_bytes", `{"msgid":4} x`, -1},
	{"two_objects", `{"msgid":4}{"msgid":4}`, -1},
	{"invalid_utf8", "{\"msgid\":4,\"x\":\"\xff\xfe\"}", -1},
	{"invalid_utf8_key", "{\"msgid\":4,\"\xc3\x28\":1}", -1},
	{"missing_msgid", `{"reqid":11}`, 11},
	{"msgid_fraction", `{"msgid":1.5,"reqid":12}`, 12},
	{"msgid_float_integral", `{"msgid":4.0,"reqid":13}`, 13},
	{"msgid_exponent", `{"msgid":4e0,"reqid":14}`, 14},
	{"msgid_string", `{"msgid":"4","reqid":15}`, 15},
	{"msgid_null", `{"msgid":null,"reqid":16}`, 16},
	{"msgid_150", `{"msgid":150,"reqid":17}`, 17},
	{"msgid_0", `{"msgid":0}`, -1},
	{"msgid_negative", `{"msgid":-4}`, -1},
	{"msgid_101", `{"msgid":101}`, -1},
	{"msgid_201", `{"msgid":201}`, -1},
	{"msgid_150_string_reqid", `{"msgid":150,"reqid":"18"}`, -1},
	{"msgid_150_negative_reqid", `{"msgid":150,"reqid":-18}`, -1},
}

// §1: bad frames get ERROR 400 (with reqid when readable) and the connection stays open.
func testBadFramesStayOpen(t *testing.T, e *env) {
	c := e.dial(t, "bad")
	for i, b := range badBodies {
		if i%15 == 14 { // stay below the 20-bad-frames limit
			c = e.dial(t, "bad2")
		}
		r := c.RawReq(b.body)
		if r.Get("msgid").Int() != 299 || r.Get("errno").Int() != 400 {
			t.Errorf("%s %q: want ERROR 299 errno 400, got %s", b.name, b.body, r.Raw)
		}
		rid := r.Get("reqid")
		if b.reqid >= 0 && rid.Raw != fmt.Sprint(b.reqid) {
			t.Errorf("%s %q: ERROR should echo reqid %d: %s", b.name, b.body, b.reqid, r.Raw)
		}
		if b.reqid < 0 && rid.Exists() {
			t.Errorf("%s %q: ERROR has a reqid that the frame did not have: %s", b.name, b.body, r.Raw)
		}
		if r := c.Req(4, nil); r.Get("errno").Int() != 0 {
			t.Fatalf("after %s: PING failed: %s", b.name, r.Raw)
		}
	}
}

// §3 text rules: a lone surrogate escape is invalid (400); a valid pair is fine.
func testLoneSurrogate(t *testing.T, e *env) {
	c := e.dial(t, "surrogate")
	for _, name := range []string{`a\ud800b`, `\udc00xyz`, `ab\ud83d`} {
		r := c.RawReq(`{"msgid":2,"reqid":3,"name":"` + name + `","password":"password123"}`)
		if r.Get("errno").Int() != 400 || (r.Get("msgid").Int() != 102 && r.Get("msgid").Int() != 299) {
			t.Errorf("REG name %s: want errno 400 (response 102 or ERROR 299), got %s", name, r.Raw)
		}
	}
	a := e.user(t, "a")
	b := e.user(t, "b")
	befriend(t, a, b)
	r := a.RawReq(fmt.Sprintf(`{"msgid":5,"reqid":4,"toid":%d,"msg":"x\udfffy","cid":"c1"}`, b.User.ID))
	if r.Get("errno").Int() != 400 {
		t.Errorf("ONE_CHAT msg with lone surrogate: want 400, got %s", r.Raw)
	}
	r = a.RawReq(fmt.Sprintf(`{"msgid":5,"reqid":4,"toid":%d,"msg":"x\ud83d\ude00y","cid":"c2"}`, b.User.ID))
	if r.Get("errno").Int() != 0 {
		t.Fatalf("ONE_CHAT msg with a valid surrogate pair: want 0, got %s", r.Raw)
	}
	p := b.ExpectPush(201, PushTimeout)
	if p.Get("msg").String() != "x😀y" {
		t.Errorf("surrogate pair: want msg %q, got %s", "x😀y", p.Raw)
	}
}

// §1: more than 20 bad frames within 60 s: the 21st gets its ERROR, then the close.
func testTwentyFirstBadFrame(t *testing.T, e *env) {
	c := e.dial(t, "bad21")
	for i := range 20 {
		r := c.RawReq(`nope`)
		if r.Get("msgid").Int() != 299 || r.Get("errno").Int() != 400 {
			t.Fatalf("bad frame %d: want ERROR 400, got %s", i+1, r.Raw)
		}
		if i%5 == 0 {
			c.OK(4, nil) // good frames do not reset the count
		}
	}
	if r := c.Req(4, nil); r.Get("errno").Int() != 0 {
		t.Fatalf("after 20 bad frames the connection must still work: %s", r.Raw)
	}
	c.Send(`nope`)
	expectErrorThenClose(t, c, 400)
}

// §1: a duplicate key: the first occurrence counts.
func testDuplicateKeys(t *testing.T, e *env) {
	c := e.dial(t, "dup")
	r := c.RawReq(`{"msgid":4,"msgid":99,"reqid":5,"reqid":6}`)
	if r.Get("msgid").Int() != 104 || r.Get("reqid").Int() != 5 || r.Get("errno").Int() != 0 {
		t.Errorf("duplicate msgid/reqid: want PING response 104 with reqid 5, got %s", r.Raw)
	}
	r = c.RawReq(`{"msgid":99,"msgid":4,"reqid":7}`)
	if r.Get("msgid").Int() != 199 || r.Get("errno").Int() != 400 {
		t.Errorf("duplicate msgid 99 first: want response 199 errno 400, got %s", r.Raw)
	}
	name := randName("dup", 10)
	r = c.RawReq(`{"msgid":2,"reqid":8,"name":"` + name + `","name":"other` + name + `","password":"password123","password":"x"}`)
	if r.Get("errno").Int() != 0 || r.Get("user.name").String() != name {
		t.Fatalf("REG with duplicate name/password: want user %q, got %s", name, r.Raw)
	}
	id := r.Get("user.id").Int()
	r = c.RawReq(fmt.Sprintf(`{"msgid":1,"reqid":9,"id":%d,"password":"password123"}`, id))
	if r.Get("errno").Int() != 0 {
		t.Errorf("LOGIN with the first password of the duplicate-key REG: %s", r.Raw)
	}
}

// §2: reqid is echoed unchanged, and absent when absent.
func testReqIDEcho(t *testing.T, e *env) {
	c := e.dial(t, "reqid")
	for _, id := range []string{"0", "1", "9007199254740991", "123456789012"} {
		r := c.RawReq(`{"msgid":4,"reqid":` + id + `}`)
		if r.Get("reqid").Raw != id || r.Get("errno").Int() != 0 {
			t.Errorf("reqid %s: want echoed, got %s", id, r.Raw)
		}
	}
	r := c.ReqNoID(4, nil)
	if r.Get("errno").Int() != 0 {
		t.Errorf("PING without reqid: %s", r.Raw)
	}
	// Error responses echo it too.
	c.Err(15, nil, 401)
	r = c.RawReq(`{"msgid":15}`)
	if r.Get("reqid").Exists() || r.Get("errno").Int() != 401 {
		t.Errorf("LIST before login without reqid: %s", r.Raw)
	}
}

// §2: a reqid of another type or range makes the request a bad request
// (400, without reqid).
func testInvalidReqID(t *testing.T, e *env) {
	c := e.dial(t, "badreqid")
	for _, id := range []string{`-1`, `9007199254740992`, `1.5`, `2.0`, `1e2`, `"7"`, `null`, `true`, `{}`, `[1]`} {
		r := c.RawReq(`{"msgid":4,"reqid":` + id + `}`)
		if r.Get("errno").Int() != 400 || r.Get("reqid").Exists() {
			t.Errorf("reqid %s: want errno 400 without reqid, got %s", id, r.Raw)
		}
		if m := r.Get("msgid").Int(); m != 104 {
			t.Errorf("reqid %s: want the response msgid 104 (a bad request, not a bad frame), got %s", id, r.Raw)
		}
	}
	c.OK(4, nil)
}

// §2: an undefined request msgid → response msgid+100 with 400, also before login.
func testUnknownMsgID(t *testing.T, e *env) {
	c := e.dial(t, "unknown")
	for _, id := range []int{50, 21, 99} {
		r := c.Err(id, nil, 400)
		_ = r
	}
	u := e.reg(t)
	loginOn(t, c, u)
	c.Err(50, M{"x": 1}, 400)
	c.Err(99, nil, 400)
	c.OK(15, nil)
}

// §2: unknown fields are ignored.
func testUnknownFieldsIgnored(t *testing.T, e *env) {
	c := e.dial(t, "extra")
	r := c.OK(4, M{"foo": "bar", "nested": M{"a": []int{1, 2}}, "n": Raw(`1.5`), "z": Raw(`null`)})
	requireKeys(t, "PING response", r, "time:int")
}

// §3: PING answers with the server clock, before login too.
func testPing(t *testing.T, e *env) {
	c := e.dial(t, "ping")
	r := c.OK(4, nil)
	requireKeys(t, "PING response", r, "time:int")
	if d := time.Since(time.UnixMilli(r.Get("time").Int())); d > time.Minute || d < -time.Minute {
		t.Errorf("PING time %d is %v away from now (want Unix milliseconds)", r.Get("time").Int(), d)
	}
}

// Abrupt closes (RST, mid-frame, with requests in flight) do not hurt the
// server: it keeps serving (a crash would also show in its log).
func testAbruptClose(t *testing.T, e *env) {
	u := e.reg(t)
	for i := range 20 {
		c := e.dial(t, fmt.Sprintf("abrupt%d", i))
		var buf []byte
		buf = append(buf, FrameBytes(Encode(1, 1, M{"id": u.ID, "password": u.Password}))...)
		for k := range 30 {
			buf = append(buf, FrameBytes(Encode(15, int64(k+2), nil))...)
		}
		switch i % 4 {
		case 0: // requests in flight, then RST
		case 1: // a frame cut in the middle
			buf = append(buf, FrameBytes(Encode(4, 99, M{"pad": strings.Repeat("x", 500)}))[:200]...)
		case 2: // a header only
			buf = append(buf, 0, 0, 1, 0)
		case 3: // a bad frame last
			buf = append(buf, FrameBytes([]byte("{"))...)
		}
		c.WriteRaw(buf)
		c.Abandon() // close with RST
	}
	c := e.login(t, u, "after")
	c.OK(15, nil)
	c.OK(4, nil)
}

// A half-closed client (FIN after its requests) still gets every response.
func testHalfClose(t *testing.T, e *env) {
	c := e.dial(t, "half")
	var buf []byte
	for k := range 5 {
		buf = append(buf, FrameBytes(Encode(4, int64(k+1), nil))...)
	}
	c.WriteRaw(buf)
	c.CloseWrite()
	for k := range 5 {
		f, err := c.TakeE(ReqTimeout, IsResponse)
		if err != nil {
			t.Fatalf("after a half-close, response %d of 5: %v (every request gets exactly one response)", k+1, err)
		}
		if f.MsgID() != 104 || f.JSON.Get("reqid").Int() != int64(k+1) {
			t.Errorf("response %d: %s", k+1, f.Body)
		}
	}
	c.ExpectClosed(5 * time.Second)
}

// Deeply nested JSON in an ignored field is still one valid object: the
// server answers (and does not crash); truncated nesting is a bad frame.
func testDeepNesting(t *testing.T, e *env) {
	c := e.dial(t, "deep")
	const depth = 30000
	body := `{"msgid":4,"reqid":8,"x":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
	r := c.RawReq(body)
	if r.Get("msgid").Int() != 104 || r.Get("errno").Int() != 0 {
		t.Errorf("PING with %d nested arrays in an unknown field: %.200s", depth, r.Raw)
	}
	r = c.RawReq(`{"msgid":4,"reqid":9,"x":` + strings.Repeat("[", depth) + `}`)
	if r.Get("msgid").Int() != 299 || r.Get("errno").Int() != 400 {
		t.Errorf("unbalanced nesting: want ERROR 400, got %.200s", r.Raw)
	}
	c.OK(4, nil)
}
