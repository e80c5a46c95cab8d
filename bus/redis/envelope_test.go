package redis

import (
	"strings"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, node := range []string{"s1", "n", strings.Repeat("x", maxNodeLen), "with\nnewline"} {
		for _, payload := range []string{"", "hello", "\x00\x01\xff", strings.Repeat("p", 1<<16)} {
			b := &Bus{node: node}
			origin, got, ok := parseEnvelope(string(b.envelope([]byte(payload))))
			if !ok || origin != node || got != payload {
				t.Fatalf("round trip of (%q, %d bytes): ok=%v origin=%q payload %d bytes", node, len(payload), ok, origin, len(got))
			}
		}
	}
}

func TestParseEnvelopeRejects(t *testing.T) {
	for _, s := range []string{"", "\x05abc", "\xffshort"} {
		if _, _, ok := parseEnvelope(s); ok {
			t.Errorf("parseEnvelope(%q) accepted", s)
		}
	}
}

func FuzzParseEnvelope(f *testing.F) {
	for _, s := range []string{"", "\x00", "\x02s1payload", "\x05abc", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		origin, payload, ok := parseEnvelope(s)
		if !ok {
			return
		}
		if 1+len(origin)+len(payload) != len(s) || int(s[0]) != len(origin) {
			t.Fatalf("parseEnvelope(%q) = %q, %q", s, origin, payload)
		}
	})
}

func TestUserOf(t *testing.T) {
	b := &Bus{prefix: "user:"}
	for _, tc := range []struct {
		ch string
		id int64
		ok bool
	}{
		{"user:42", 42, true},
		{"user:-1", -1, true},
		{"user:", 0, false},
		{"user:x", 0, false},
		{"other:1", 0, false},
		{"use", 0, false},
		{"user:99999999999999999999", 0, false},
	} {
		id, ok := b.userOf(tc.ch)
		if id != tc.id || ok != tc.ok {
			t.Errorf("userOf(%q) = %d, %v; want %d, %v", tc.ch, id, ok, tc.id, tc.ok)
		}
		if ok && b.channel(id) != tc.ch {
			t.Errorf("channel(%d) = %q", id, b.channel(id))
		}
	}
}
