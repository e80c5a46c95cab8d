package shell

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		line    string
		want    Command
		wantErr string // substring; "" means success
	}{
		{line: "help", want: Command{Name: "help"}},
		{line: "  HELP  ", want: Command{Name: "help"}},
		{line: "chat:2:hello", want: Command{Name: "chat", ID: 2, Text: "hello"}},
		{line: "chat: 2 :a:b: c ", want: Command{Name: "chat", ID: 2, Text: "a:b: c"}},
		{line: "chat:2", wantErr: "usage: chat:friendid:message"},
		{line: "chat:2:", wantErr: "empty message"},
		{line: "chat:x:hi", wantErr: `"x" is not an id`},
		{line: "chat:-1:hi", wantErr: "not an id"},
		{line: "chat:0:hi", wantErr: "not an id"},
		{line: "groupchat:7:hi all", want: Command{Name: "groupchat", ID: 7, Text: "hi all"}},
		{line: "addfriend:3", want: Command{Name: "addfriend", ID: 3}},
		{line: "addfriend", wantErr: "usage: addfriend:userid"},
		{line: "addfriend:", wantErr: "not an id"},
		{line: "accept:3", want: Command{Name: "accept", ID: 3}},
		{line: "delfriend:3", want: Command{Name: "delfriend", ID: 3}},
		{line: "creategroup:go:gophers: all", want: Command{Name: "creategroup", Text: "go", Desc: "gophers: all"}},
		{line: "creategroup:go", want: Command{Name: "creategroup", Text: "go"}},
		{line: "creategroup::x", wantErr: "usage"},
		{line: "joingroup:12", want: Command{Name: "joingroup", ID: 12}},
		{line: "quitgroup:12", want: Command{Name: "quitgroup", ID: 12}},
		{line: "deletegroup:12", want: Command{Name: "deletegroup", ID: 12}},
		{line: "list:12", want: Command{Name: "list", ID: 12}},
		{line: "history:2", want: Command{Name: "history", ID: 2}},
		{line: "history:2:50", want: Command{Name: "history", ID: 2, N: 50}},
		{line: "history:2:0", wantErr: "not a count"},
		{line: "history:2:abc", wantErr: "not a count"},
		{line: "ghistory:5:3", want: Command{Name: "ghistory", ID: 5, N: 3}},
		{line: "findusers:al", want: Command{Name: "findusers", Text: "al"}},
		{line: "findusers:", wantErr: "usage"},
		{line: "findgroups", want: Command{Name: "findgroups"}},
		{line: "findgroups:go", want: Command{Name: "findgroups", Text: "go"}},
		{line: "nick:Alice", want: Command{Name: "nick", Text: "Alice"}},
		{line: "showme", want: Command{Name: "showme"}},
		{line: "updatelist", want: Command{Name: "updatelist"}},
		{line: "showme:x", wantErr: "takes no arguments"},
		{line: "logout", want: Command{Name: "logout"}},
		{line: "quit", want: Command{Name: "quit"}},
		{line: "login:alice:secret:pw", want: Command{Name: "login", Text: "alice", Desc: "secret:pw"}},
		{line: "login:42:password", want: Command{Name: "login", ID: 42, Text: "42", Desc: "password"}},
		{line: "login:alice", wantErr: "usage"},
		{line: "register:bob:password1", want: Command{Name: "register", Text: "bob", Desc: "password1"}},
		{line: "frobnicate:1", wantErr: "unknown command"},
		{line: "hello there", wantErr: "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := Parse(tt.line)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want containing %q", tt.line, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.line, err)
			}
			if got != tt.want {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.line, got, tt.want)
			}
		})
	}
	if _, err := Parse("   "); !errors.Is(err, ErrEmpty) {
		t.Fatalf("blank line: %v", err)
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"hello", "hello"},
		{"héllo 世界 😀", "héllo 世界 😀"},
		{"\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"a\nb\r\tc", `a\nb\r\tc`},
		{"bell\a", `bell\a`},
		{"\x1b]0;title\x07", `\x1b]0;title\a`},
		{"rtl\u202egnp.exe", `rtl\u202egnp.exe`},
		{"zero\u200bwidth", `zero\u200bwidth`},
		{"c1\u009b31m", `c1\u009b31m`},
		{"bad\xffutf8", `bad\xffutf8`},
		{`back\slash`, `back\\slash`},
		{"del\x7f", `del\x7f`},
		{"line\u2028sep", `line\u2028sep`},
	}
	for _, tt := range tests {
		got := Sanitize(tt.in)
		if got != tt.want {
			t.Errorf("Sanitize(%q) = %q, want %q", tt.in, got, tt.want)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Errorf("Sanitize(%q) kept control %U", tt.in, r)
			}
		}
	}
}

func TestPlainQuote(t *testing.T) {
	for _, s := range []string{"\x1b[2J", "a\nb", "\u202e", "q\"uote", "bad\xff"} {
		q := quote(s)
		if strings.ContainsAny(q, "\x1b\n\r") || strings.ContainsRune(q, '\u202e') {
			t.Errorf("quote(%q) = %q keeps a control character", s, q)
		}
	}
	if token("join") != "join" || token("a b") != `"a b"` || token("") != `""` {
		t.Error("token")
	}
}
