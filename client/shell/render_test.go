package shell

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"clusterchat/chatservice/protocol"
	"clusterchat/client"
)

// recUI records what the shell prints.
type recUI struct {
	mu  sync.Mutex
	out strings.Builder
}

func (u *recUI) ReadLine() (string, error)           { return "", nil }
func (u *recUI) ReadPassword(string) (string, error) { return "", nil }
func (u *recUI) SetPrompt(string)                    {}
func (u *recUI) Print(s string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.out.WriteString(s)
}
func (u *recUI) String() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.out.String()
}

func testShell(plain, color bool) (*shell, *recUI) {
	u := &recUI{}
	sh := &shell{
		cfg:   Config{Now: func() time.Time { return time.UnixMilli(1_700_000_000_000) }},
		ui:    u,
		pal:   newPalette(color),
		plain: plain,
		me:    protocol.User{ID: 1, Name: "me"},
		friends: map[int64]*protocol.Friend{
			2: {ID: 2, Name: "bob\x1b[31m", Online: true},
		},
		groups:   map[int64]*protocol.Group{7: {ID: 7, Name: "go\u202e", Role: "member"}},
		requests: map[int64]protocol.User{},
	}
	return sh, u
}

const evil = "\x1b[2J\x1b]0;title\x07\r\n\u202e\u200b\x9b31m"

func pushOf(body string) client.Push {
	return client.Push{MsgID: int(gjsonInt(body, "msgid")), Raw: []byte(body)}
}

func gjsonInt(body, key string) int64 {
	p := client.Push{Raw: []byte(body)}
	return p.Get(key).Int()
}

// rendered events: every received string in every event kind.
func feedAll(sh *shell) {
	esc := fmt.Sprintf("%q", evil) // JSON-compatible escapes for these runes
	sh.onEvent(client.Event{Kind: client.EventMessage, Conv: client.FriendConv(2),
		Msg: client.Message{From: 2, FromName: "bob" + evil, ToID: 1, Msg: "hi" + evil, Seq: 1, Time: 1_700_000_000_000}})
	sh.onEvent(client.Event{Kind: client.EventMessage, Conv: client.GroupConv(7),
		Msg: client.Message{GroupID: 7, From: 3, FromName: evil, Msg: evil, Seq: 4, Time: 1_600_000_000_000}})
	for _, body := range []string{
		`{"msgid":203,"user":{"id":5,"name":` + esc + `}}`,
		`{"msgid":204,"friend":{"id":5,"name":` + esc + `,"online":true}}`,
		`{"msgid":205,"id":2,"online":false}`,
		`{"msgid":206,"groupid":7,"event":"join","user":{"id":5,"name":` + esc + `}}`,
		`{"msgid":206,"groupid":7,"event":` + esc + `,"user":{"id":5,"name":"x"}}`,
		`{"msgid":207,"user":{"id":2,"name":` + esc + `}}`,
		`{"msgid":208,"id":5}`,
		`{"msgid":290,"reason":` + esc + `}`,
		`{"msgid":299,"errno":400,"errmsg":` + esc + `}`,
	} {
		sh.onEvent(client.Event{Kind: client.EventPush, Push: pushOf(body)})
	}
	sh.onEvent(client.Event{Kind: client.EventDisconnected, Err: fmt.Errorf("read: %s", evil)})
	sh.fail("chat", &client.Error{Errno: 403, Msg: evil})
}

// stripPalette removes the shell's own colour codes.
func stripPalette(s string) string {
	p := newPalette(true)
	for _, c := range []string{p.reset, p.dim, p.bold, p.red, p.green, p.yellow, p.blue, p.magenta, p.cyan} {
		s = strings.ReplaceAll(s, c, "")
	}
	return s
}

func checkNoControls(t *testing.T, out string) {
	t.Helper()
	for i, r := range out {
		if r == '\n' {
			continue
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u202e' || r == '\u200b' {
			t.Fatalf("output keeps control %U at %d: %q", r, i, out)
		}
	}
}

func TestRenderNeutralizesEscapes(t *testing.T) {
	for _, mode := range []struct {
		name         string
		plain, color bool
	}{{"plain", true, false}, {"terminal", false, false}, {"terminal-color", false, true}} {
		t.Run(mode.name, func(t *testing.T) {
			sh, u := testShell(mode.plain, mode.color)
			feedAll(sh)
			out := u.String()
			if !mode.color && strings.Contains(out, "\x1b") {
				t.Fatalf("ESC without colour: %q", out)
			}
			checkNoControls(t, stripPalette(out))
			if !strings.Contains(out, `\x1b[2J`) {
				t.Fatalf("escape not shown escaped: %q", out)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != 13 {
				t.Fatalf("%d lines, want 13 (one per event): %q", len(lines), out)
			}
		})
	}
}

func TestRenderPlainFormat(t *testing.T) {
	sh, u := testShell(true, false)
	sh.onEvent(client.Event{Kind: client.EventMessage, Conv: client.FriendConv(2), Own: false,
		Msg: client.Message{From: 2, FromName: "bob", ToID: 1, Msg: "hello \"you\"", Seq: 3, Time: 1_700_000_000_123}})
	sh.onEvent(client.Event{Kind: client.EventPush, Push: pushOf(`{"msgid":205,"id":2,"online":true}`)})
	sh.onEvent(client.Event{Kind: client.EventPush, Push: pushOf(`{"msgid":206,"groupid":7,"event":"owner","user":{"id":1,"name":"me"}}`)})
	want := `MSG conv=friend:2 seq=3 from=2 name="bob" own=false time=2023-11-14T22:13:20.123Z text="hello \"you\""
PRESENCE id=2 online=true
GROUP_EVENT group=7 event=owner id=1 name="me"
`
	if got := u.String(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if sh.groups[7].Role != "owner" {
		t.Fatal("owner event did not update the role")
	}
	if !sh.friends[2].Online {
		t.Fatal("presence not applied")
	}
}

func TestRenderHuman(t *testing.T) {
	sh, u := testShell(false, false)
	sh.onEvent(client.Event{Kind: client.EventMessage, Conv: client.FriendConv(2), Own: true,
		Msg: client.Message{From: 1, FromName: "me", ToID: 2, Msg: "yo", Seq: 3, Time: 1_700_000_000_000}})
	sh.onEvent(client.Event{Kind: client.EventMessage, Conv: client.GroupConv(7),
		Msg: client.Message{GroupID: 7, From: 3, FromName: "carol", Msg: "hey", Seq: 1, Time: 1_600_000_000_000}})
	out := u.String()
	ts := time.UnixMilli(1_700_000_000_000).Format("15:04:05")
	if !strings.Contains(out, "["+ts+"] you → bob\\x1b[31m(2): yo\n") {
		t.Fatalf("own message: %q", out)
	}
	if !strings.Contains(out, "] #go\\u202e(7) carol(3): hey\n") || !strings.Contains(out, time.UnixMilli(1_600_000_000_000).Format("2006-01-02")) {
		t.Fatalf("group message: %q", out)
	}
}

func TestErrWords(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&client.Error{Errno: 409, Msg: "already friends"}, "conflict: already friends"},
		{&client.Error{Errno: 404}, "no such user or group"},
		{&client.Error{Errno: 404, Msg: "no such group"}, "no such group"},
		{&client.Error{Errno: 409, Msg: "conflict"}, "conflict"},
		{&client.Error{Errno: 429, Msg: "slow", RetryAfter: 1500}, "too many requests, slow down: slow (try again in 1.5 s)"},
		{fmt.Errorf("x: %w", client.ErrClosed), "connection lost (reconnecting)"},
	}
	for _, tt := range tests {
		if got := errWords(tt.err); got != tt.want {
			t.Errorf("errWords(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestComplete(t *testing.T) {
	sh, u := testShell(false, false)
	sh.sess = &client.Session{} // logged in
	sh.friends[12] = &protocol.Friend{ID: 12, Name: "x"}
	tests := []struct {
		line, want string
		ok         bool
	}{
		{"gro", "groupchat:", true},
		{"chat:", "chat:", false}, // 2 and 12: ambiguous, candidates printed
		{"chat:1", "chat:12:", true},
		{"groupchat:", "groupchat:7:", true},
		{"qu", "quit", true}, // quit, quitgroup: their common prefix
		{"quit", "", false},  // ambiguous: candidates printed
		{"nick:a", "", false},
		{"zzz", "", false},
	}
	for _, tt := range tests {
		got, pos, ok := sh.complete(tt.line, len(tt.line), '\t')
		if ok != tt.ok || ok && (got != tt.want || pos != len(tt.want)) {
			t.Errorf("complete(%q) = %q, %d, %v; want %q, %v", tt.line, got, pos, ok, tt.want, tt.ok)
		}
	}
	if !strings.Contains(u.String(), "chat:12:") || !strings.Contains(u.String(), "quitgroup:") {
		t.Errorf("candidates not listed: %q", u.String())
	}
	if _, _, ok := sh.complete("gro", 3, 'x'); ok {
		t.Error("completion on a key other than tab")
	}
}

func TestHistoryDropsPasswords(t *testing.T) {
	h := &history{max: 3}
	for _, l := range []string{"help", "login:bob:secret", "REGISTER:x:y", "chat:2:a", "chat:2:a", "showme", "updatelist"} {
		h.Add(l)
	}
	var got []string
	for i := 0; i < h.Len(); i++ {
		got = append(got, h.At(i))
	}
	if strings.Join(got, ",") != "updatelist,showme,chat:2:a" {
		t.Fatalf("history %v", got)
	}
}

func TestShownClearsUnread(t *testing.T) {
	sh, _ := testShell(false, false)
	sh.friends[2].LastSeq, sh.friends[2].Unread = 5, 3
	sh.onEvent(client.Event{Kind: client.EventMessage, Conv: client.FriendConv(2),
		Msg: client.Message{From: 2, FromName: "bob", ToID: 1, Msg: "x", Seq: 4, Time: 1}})
	if f := sh.friends[2]; f.Unread != 1 || f.LastSeq != 5 {
		t.Fatalf("after seq 4 of 5: %+v", f)
	}
	sh.onEvent(client.Event{Kind: client.EventMessage, Conv: client.FriendConv(2),
		Msg: client.Message{From: 2, FromName: "bob", ToID: 1, Msg: "x", Seq: 6, Time: 1}})
	if f := sh.friends[2]; f.Unread != 0 || f.LastSeq != 6 {
		t.Fatalf("after seq 6: %+v", f)
	}
}
