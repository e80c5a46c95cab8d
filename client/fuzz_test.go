package client

import (
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// FuzzParseHeader: any body is either rejected with an error or yields a
// positive msgid; it never panics.
func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{
		`{"msgid":104,"reqid":1,"errno":0,"time":5}`,
		`{"msgid":299,"errno":400,"errmsg":"bad \u0000 frame"}`,
		`{"msgid":101,"msgid":"x","reqid":-1}`,
		`{"msgid":1e3}`, `[1,2]`, `{"msgid":`, `{}`, `null`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := parseHeader(body)
		if err == nil && h.msgid <= 0 {
			t.Fatalf("accepted msgid %d from %q", h.msgid, body)
		}
		if len(body) > 0 {
			p := Push{Raw: body}
			_, _ = p.Message()
		}
	})
}

// FuzzReader feeds arbitrary bytes, in two writes split at an arbitrary
// point, to a Conn's reader: it must end the connection or deliver pushes,
// never panic or hang.
func FuzzReader(f *testing.F) {
	fr := func(b string) []byte {
		h := make([]byte, 4, 4+len(b))
		binary.BigEndian.PutUint32(h, uint32(len(b)))
		return append(h, b...)
	}
	f.Add(append(fr(`{"msgid":205,"id":1,"online":true}`), fr(`{"msgid":104,"reqid":1,"errno":0}`)...), 3)
	f.Add([]byte{0, 0, 0, 0}, 2)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, 1)
	f.Add(fr(`{"msgid":201,"from":1}`), 9)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		a, b := net.Pipe()
		c := NewConn(a, WithMaxFrame(1<<16))
		go func() {
			if split < 0 || split > len(data) {
				split = len(data) / 2
			}
			_, _ = b.Write(data[:split])
			_, _ = b.Write(data[split:])
			b.Close()
		}()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case _, ok := <-c.Pushes():
				if !ok {
					if c.Err() == nil {
						t.Fatal("pushes closed without an error")
					}
					c.Close()
					return
				}
			case <-timeout:
				t.Fatal("reader hung")
			}
		}
	})
}
