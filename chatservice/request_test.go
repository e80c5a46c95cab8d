package chatservice

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clusterchat/model/sqlite"
)

func TestParseFrame(t *testing.T) {
	tests := []struct {
		name      string
		frame     string
		wantErr   bool
		wantMsgID int
		reqid     int64
		hasReqID  bool
		badReqID  bool
	}{
		{name: "ping", frame: `{"msgid":4}`, wantMsgID: 4},
		{name: "with reqid", frame: `{"msgid":4,"reqid":7}`, wantMsgID: 4, reqid: 7, hasReqID: true},
		{name: "max reqid", frame: `{"msgid":4,"reqid":9007199254740991}`, wantMsgID: 4, reqid: 9007199254740991, hasReqID: true},
		{name: "reqid too large", frame: `{"msgid":4,"reqid":9007199254740992}`, wantMsgID: 4, badReqID: true},
		{name: "reqid string", frame: `{"msgid":4,"reqid":"7"}`, wantMsgID: 4, badReqID: true},
		{name: "reqid negative", frame: `{"msgid":4,"reqid":-1}`, wantMsgID: 4, badReqID: true},
		{name: "reqid fraction", frame: `{"msgid":4,"reqid":1.5}`, wantMsgID: 4, badReqID: true},
		{name: "leading space", frame: ` {"msgid":4}`, wantMsgID: 4},
		{name: "first key counts", frame: `{"msgid":4,"msgid":5}`, wantMsgID: 4},
		{name: "undefined request", frame: `{"msgid":50}`, wantMsgID: 50},
		{name: "array", frame: `[{"msgid":4}]`, wantErr: true},
		{name: "truncated", frame: `{"msgid":4`, wantErr: true},
		{name: "trailing bytes", frame: `{"msgid":4}x`, wantErr: true},
		{name: "two objects", frame: `{"msgid":4}{"msgid":4}`, wantErr: true},
		{name: "invalid utf8", frame: "{\"msgid\":4,\"x\":\"\xff\"}", wantErr: true},
		{name: "no msgid", frame: `{"reqid":1}`, wantErr: true, reqid: 1, hasReqID: true},
		{name: "msgid fraction", frame: `{"msgid":1.5}`, wantErr: true},
		{name: "msgid exponent", frame: `{"msgid":1e1}`, wantErr: true},
		{name: "msgid string", frame: `{"msgid":"4"}`, wantErr: true},
		{name: "msgid zero", frame: `{"msgid":0}`, wantErr: true},
		{name: "msgid response", frame: `{"msgid":150,"reqid":3}`, wantErr: true, reqid: 3, hasReqID: true},
		{name: "number", frame: `42`, wantErr: true},
		{name: "empty object", frame: `{}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, ferr := parseFrame([]byte(tc.frame))
			if tc.wantErr {
				if ferr == nil {
					t.Fatalf("parseFrame(%q) = msgid %d, want a frame error", tc.frame, req.msgid)
				}
				if ferr.hasReqID != tc.hasReqID || ferr.reqid != tc.reqid {
					t.Fatalf("frame error reqid = %d/%v, want %d/%v", ferr.reqid, ferr.hasReqID, tc.reqid, tc.hasReqID)
				}
				return
			}
			if ferr != nil {
				t.Fatalf("parseFrame(%q): %s", tc.frame, ferr.errmsg)
			}
			if req.msgid != tc.wantMsgID || req.reqid != tc.reqid || req.hasReqID != tc.hasReqID || req.badReqID != tc.badReqID {
				t.Fatalf("parseFrame(%q) = %+v", tc.frame, req)
			}
		})
	}
}

func TestFieldRules(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		read  func(r *request)
		errno int // 0: no error
	}{
		{"id ok", `{"msgid":5,"toid":3}`, func(r *request) { r.id("toid") }, 0},
		{"id missing", `{"msgid":5}`, func(r *request) { r.id("toid") }, 400},
		{"id null", `{"msgid":5,"toid":null}`, func(r *request) { r.id("toid") }, 400},
		{"id zero", `{"msgid":5,"toid":0}`, func(r *request) { r.id("toid") }, 400},
		{"id negative", `{"msgid":5,"toid":-2}`, func(r *request) { r.id("toid") }, 400},
		{"id float", `{"msgid":5,"toid":1.0}`, func(r *request) { r.id("toid") }, 400},
		{"id exponent", `{"msgid":5,"toid":1e3}`, func(r *request) { r.id("toid") }, 400},
		{"id string", `{"msgid":5,"toid":"3"}`, func(r *request) { r.id("toid") }, 400},
		{"str empty", `{"msgid":5,"msg":""}`, func(r *request) { r.msgText() }, 400},
		{"str number", `{"msgid":5,"msg":3}`, func(r *request) { r.msgText() }, 400},
		{"msg 4096", `{"msgid":5,"msg":"` + strings.Repeat("a", 4096) + `"}`, func(r *request) { r.msgText() }, 0},
		{"msg 4097", `{"msgid":5,"msg":"` + strings.Repeat("a", 4097) + `"}`, func(r *request) { r.msgText() }, 413},
		{"lone surrogate", `{"msgid":5,"msg":"a\ud800b"}`, func(r *request) { r.msgText() }, 400},
		{"lone low surrogate", `{"msgid":5,"msg":"\udc00"}`, func(r *request) { r.msgText() }, 400},
		{"surrogate pair", `{"msgid":5,"msg":"\ud83d\ude00"}`, func(r *request) { r.msgText() }, 0},
		{"escaped backslash u", `{"msgid":5,"msg":"\\ud800"}`, func(r *request) { r.msgText() }, 0},
		{"cid 64", `{"msgid":5,"cid":"` + strings.Repeat("c", 64) + `"}`, func(r *request) { r.cid() }, 0},
		{"cid 65", `{"msgid":5,"cid":"` + strings.Repeat("c", 65) + `"}`, func(r *request) { r.cid() }, 400},
		{"name ok", `{"msgid":2,"name":"Ünïcødé"}`, func(r *request) { r.userName("name") }, 0},
		{"name 32 runes", `{"msgid":2,"name":"` + strings.Repeat("é", 32) + `"}`, func(r *request) { r.userName("name") }, 0},
		{"name 33 runes", `{"msgid":2,"name":"` + strings.Repeat("é", 33) + `"}`, func(r *request) { r.userName("name") }, 400},
		{"name leading space", `{"msgid":2,"name":" bob"}`, func(r *request) { r.userName("name") }, 400},
		{"name trailing nbsp", `{"msgid":2,"name":"bob\u00a0"}`, func(r *request) { r.userName("name") }, 400},
		{"name inner space", `{"msgid":2,"name":"bo b"}`, func(r *request) { r.userName("name") }, 0},
		{"name control", `{"msgid":2,"name":"bo\u0007b"}`, func(r *request) { r.userName("name") }, 400},
		{"name format char", `{"msgid":2,"name":"bo\u200bb"}`, func(r *request) { r.userName("name") }, 400},
		{"optStr null", `{"msgid":9,"groupdesc":null}`, func(r *request) { r.optStr("groupdesc", "") }, 400},
		{"optStr empty", `{"msgid":9,"groupdesc":""}`, func(r *request) { r.optStr("groupdesc", "") }, 0},
		{"optID null", `{"msgid":18,"before":null}`, func(r *request) { r.optID("before") }, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, ferr := parseFrame([]byte(tc.frame))
			if ferr != nil {
				t.Fatalf("parseFrame: %s", ferr.errmsg)
			}
			tc.read(req)
			got := 0
			if req.err != nil {
				got = req.err.errno
			}
			if got != tc.errno {
				t.Fatalf("errno = %d (%v), want %d", got, req.err, tc.errno)
			}
		})
	}
}

func TestFrameWriterIsValidJSON(t *testing.T) {
	nasty := "quote\" backslash\\ nl\n tab\t bell\x07 nul\x00 ls\u2028 emoji😀 invalid\xff"
	a := newArray()
	a.Obj().Int("id", 1).Str("name", nasty).Bool("online", true).End()
	a.Obj().End()
	frame := newFrame(215).Int("errno", 0).Str("s", nasty).Raw("list", a.Bytes()).Raw("empty", newArray().Bytes()).Bytes()
	var got struct {
		MsgID int              `json:"msgid"`
		S     string           `json:"s"`
		List  []map[string]any `json:"list"`
		Empty []any            `json:"empty"`
	}
	if err := json.Unmarshal(frame, &got); err != nil {
		t.Fatalf("invalid JSON %s: %v", frame, err)
	}
	want := strings.ToValidUTF8(nasty, "\ufffd")
	if got.MsgID != 215 || got.S != want || len(got.List) != 2 || got.List[0]["name"] != want || got.Empty == nil {
		t.Fatalf("round trip: %+v from %s", got, frame)
	}
}

func TestMessageFrameShapes(t *testing.T) {
	m := messageFrame(testMessage(false), true)
	h := messageFrame(testMessage(false), false)
	g := messageFrame(testMessage(true), true)
	for _, f := range [][]byte{m, h, g} {
		if !json.Valid(f) {
			t.Fatalf("invalid JSON: %s", f)
		}
	}
	if want := `{"msgid":201,"from":1,"fromname":"ann","toid":2,"msg":"hi","seq":3,"time":1000,"cid":"c1"}`; string(m) != want {
		t.Fatalf("chat push = %s, want %s", m, want)
	}
	if want := `{"from":1,"fromname":"ann","toid":2,"msg":"hi","seq":3,"time":1000,"cid":"c1"}`; string(h) != want {
		t.Fatalf("history entry = %s, want %s", h, want)
	}
	if want := `{"msgid":202,"groupid":9,"from":1,"fromname":"ann","msg":"hi","seq":3,"time":1000,"cid":"c1"}`; string(g) != want {
		t.Fatalf("group push = %s, want %s", g, want)
	}
}

func TestTokenBucket(t *testing.T) {
	now := int64(1000 * time.Second)
	l := newRateLimit(10, 20)
	b := newTokenBucket(l, now)
	for i := 0; i < 20; i++ {
		if ok, _ := b.take(l, now); !ok {
			t.Fatalf("request %d refused within the burst", i+1)
		}
	}
	ok, retry := b.take(l, now)
	if ok || retry != 100 {
		t.Fatalf("21st request: ok=%v retry=%d, want refused with retry 100 ms", ok, retry)
	}
	if ok, _ := b.take(l, now+int64(100*time.Millisecond)); !ok {
		t.Fatal("a token should have come back after 100 ms")
	}
	offl := newRateLimit(-1, -1)
	off := newTokenBucket(offl, now)
	for i := 0; i < 1000; i++ {
		if ok, _ := off.take(offl, now); !ok {
			t.Fatal("a disabled limit refused a request")
		}
	}
}

func TestBadFrameWindow(t *testing.T) {
	var w badFrameWindow
	now := time.Unix(1000, 0)
	for i := 0; i < 20; i++ {
		if w.add(now.Add(time.Duration(i)*time.Second), 20, time.Minute) {
			t.Fatalf("bad frame %d closed the connection", i+1)
		}
	}
	if !w.add(now.Add(30*time.Second), 20, time.Minute) {
		t.Fatal("the 21st bad frame within 60 s did not close")
	}
	var w2 badFrameWindow
	for i := 0; i < 40; i++ {
		if w2.add(now.Add(time.Duration(i)*4*time.Second), 20, time.Minute) {
			t.Fatalf("bad frames spread over 4 s each closed at %d", i+1)
		}
	}
}

// TestLoginThrottle runs the throttle on a real store, and two throttles on
// one store stand for two servers of a cluster sharing their failures.
func TestLoginThrottle(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "chat.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	var users [2]int64
	for i := range users {
		u, err := st.CreateUser(ctx, fmt.Sprint("u", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		users[i] = u.ID
	}
	seven, eight := users[0], users[1]
	th1 := newLoginThrottle(st, 10, time.Minute)
	th2 := newLoginThrottle(st, 10, time.Minute) // another server
	// check begins an attempt and ends it at once without a failure; it
	// reports whether the attempt was allowed.
	check := func(th *loginThrottle, user int64, at time.Time) (bool, int64) {
		t.Helper()
		a, retry, err := th.begin(ctx, user, at)
		if err != nil {
			t.Fatal(err)
		}
		if a != nil {
			a.release()
		}
		return a != nil, retry
	}
	now := time.Unix(1000, 0)
	for i := 0; i < 10; i++ {
		th := []*loginThrottle{th1, th2}[i%2]
		at := now.Add(time.Duration(i) * time.Second)
		a, _, err := th.begin(ctx, seven, at)
		if err != nil || a == nil {
			t.Fatalf("attempt %d refused: %v", i+1, err)
		}
		if err := a.fail(ctx, at); err != nil {
			t.Fatal(err)
		}
	}
	for _, th := range []*loginThrottle{th1, th2} {
		ok, retry := check(th, seven, now.Add(10*time.Second+250*time.Millisecond))
		if ok || retry != 49_750 {
			t.Fatalf("11th attempt: ok=%v retry=%d, want refused with 49750 ms", ok, retry)
		}
	}
	if ok, retry := check(th1, seven, now.Add(60*time.Second-500*time.Microsecond)); ok || retry != 1 {
		t.Fatalf("half a millisecond before the window passes: ok=%v retry=%d, want refused with 1 ms", ok, retry)
	}
	if ok, _ := check(th1, eight, now); !ok {
		t.Fatal("another account was throttled")
	}
	if ok, _ := check(th2, seven, now.Add(60*time.Second)); !ok {
		t.Fatal("the oldest failure left the window but the account is still throttled")
	}
	if n := len(th1.accounts) + len(th2.accounts); n != 0 {
		t.Fatalf("%d accounts still tracked with no attempt in flight", n)
	}

	// Attempts in flight count as failures: beside 10 of eight's attempts
	// in flight, an 11th is refused at once, and stays refused while 9 in
	// flight and 1 failure could still make 10.
	var inFlight []*loginAttempt
	for i := range 10 {
		a, _, err := th1.begin(ctx, eight, now)
		if err != nil || a == nil {
			t.Fatalf("attempt %d in flight refused: %v", i+1, err)
		}
		inFlight = append(inFlight, a)
	}
	if ok, retry := check(th1, eight, now); ok || retry != 60_000 {
		t.Fatalf("an 11th attempt beside 10 in flight: ok=%v retry=%d; want refused with the whole window, 60000 ms", ok, retry)
	}
	if ok, _ := check(th2, eight, now); !ok {
		t.Fatal("another server refused: it cannot see this server's attempts in flight")
	}
	if err := inFlight[0].fail(ctx, now); err != nil {
		t.Fatal(err)
	}
	if err := inFlight[0].fail(ctx, now); err == nil {
		t.Fatal("a second failure of one attempt recorded without an error")
	}
	if ok, retry := check(th1, eight, now.Add(time.Second)); ok || retry != 59_000 {
		t.Fatalf("9 in flight and 1 failure a second ago: ok=%v retry=%d; want refused with 59000 ms", ok, retry)
	}
	inFlight[1].release() // a right password
	a, _, err := th1.begin(ctx, eight, now.Add(time.Second))
	if err != nil || a == nil {
		t.Fatalf("8 in flight and 1 failure: refused (%v)", err)
	}
	a.release()
	for _, a := range inFlight[2:] {
		a.release()
	}
	if n := len(th1.accounts) + len(th2.accounts); n != 0 {
		t.Fatalf("%d accounts still tracked after every attempt was over", n)
	}

	// A failure counts from when it is known: a hash that waited 40 s
	// records its failure at the end of the wait, not at the check.
	slow, _, err := th1.begin(ctx, eight, now.Add(2*time.Second))
	if err != nil || slow == nil {
		t.Fatalf("slow attempt refused: %v", err)
	}
	if err := slow.fail(ctx, now.Add(40*time.Second)); err != nil {
		t.Fatal(err)
	}
	if f, err := st.LoginFailures(ctx, eight, now.Add(39*time.Second)); err != nil || len(f) != 1 || !f[0].Equal(now.Add(40*time.Second)) {
		t.Fatalf("failures of eight after 39 s: %v, %v; want the one at 40 s", f, err)
	}

	// A store error fails closed.
	pending, _, err := th2.begin(ctx, eight, now)
	if err != nil || pending == nil {
		t.Fatalf("attempt before the store closes refused: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if a, _, err := th1.begin(ctx, seven, now); err == nil || a != nil {
		t.Fatalf("begin on a closed store: %v, %v; want an error", a, err)
	}
	if err := pending.fail(ctx, now); err == nil {
		t.Fatal("fail on a closed store: no error")
	}
}

func TestCredentialWithLoneSurrogateIsWrongNotBad(t *testing.T) {
	req, ferr := parseFrame([]byte(`{"msgid":1,"name":"\ud800","password":"secret123","token":7}`))
	if ferr != nil {
		t.Fatal(ferr.errmsg)
	}
	if got := req.credential("name"); got != badCredential || req.err != nil {
		t.Fatalf("credential(name) = %q, %v; want the bad-credential marker and no error", got, req.err)
	}
	if got := req.credential("password"); got != "secret123" || req.err != nil {
		t.Fatalf("credential(password) = %q, %v", got, req.err)
	}
	if req.credential("token"); req.err == nil || req.err.errno != 400 {
		t.Fatalf("a token that is not a string must be a bad request, got %v", req.err)
	}
	if validName(badCredential, 32) {
		t.Fatal("the bad-credential marker must never be a valid name")
	}
}

// The field index of parseFrame answers every read as gjson's Get on the
// whole object does: first occurrence of a repeated key, escaped keys,
// more fields than it indexes, values of every type.
func TestRequestFieldIndex(t *testing.T) {
	frames := []string{
		`{"msgid":5,"reqid":1,"toid":2,"msg":"hi \"there\"","cid":"c"}`,
		`{"msgid":5,"toid":2,"toid":3,"msg":"a","msg":"b"}`,
		`{"msgid":5,"to\u0069d":7,"m\u0073g":"x\u00e9"}`,
		`{"msgid":19,"acks":[{"friendid":2,"seq":1}],"x":{"a":[1,2]},"n":null,"t":true,"f":false,"d":-1.5e3}`,
		`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"msgid":4,"reqid":9,"toid":10,"a":11}`,
		`{"msgid":4}`,
	}
	names := []string{"msgid", "reqid", "toid", "msg", "cid", "acks", "x", "n", "t", "f", "d", "a", "h", "absent", ""}
	for _, fr := range frames {
		req, ferr := parseFrame([]byte(fr))
		if ferr != nil {
			t.Fatalf("%s: %s", fr, ferr.errmsg)
		}
		for _, name := range names {
			got, want := req.get(name), req.root.Get(name)
			if got.Exists() != want.Exists() || got.Type != want.Type || got.Raw != want.Raw || got.Str != want.Str || got.Num != want.Num {
				t.Errorf("%s: get(%q) = %+v, want %+v", fr, name, got, want)
			}
		}
	}
}
