package netcore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

// memInbound is an Inbound over a byte slice.
type memInbound struct{ b []byte }

func (m *memInbound) Buffered() int { return len(m.b) }
func (m *memInbound) Peek(n int) ([]byte, error) {
	if n <= 0 {
		n = len(m.b)
	}
	if n > len(m.b) {
		return nil, io.ErrShortBuffer
	}
	return m.b[:n], nil
}
func (m *memInbound) discard(n int) { m.b = m.b[n:] }

// decodeAllMem decodes every complete frame, like the loop does.
func decodeAllMem(c Codec, in *memInbound) ([][]byte, error) {
	var out [][]byte
	for {
		f, n, err := c.Decode(in)
		if err != nil {
			return out, err
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, append([]byte(nil), f...))
		in.discard(n)
	}
}

func TestLengthFieldCodec(t *testing.T) {
	c := NewLengthFieldCodec(8)
	for _, tc := range []struct {
		name    string
		in      []byte
		want    []string
		wantErr error
		rest    int
	}{
		{"empty input", nil, nil, nil, 0},
		{"partial header", []byte{0, 0}, nil, nil, 2},
		{"partial body", []byte{0, 0, 0, 3, 'a'}, nil, nil, 5},
		{"two frames", []byte{0, 0, 0, 1, 'a', 0, 0, 0, 2, 'b', 'c'}, []string{"a", "bc"}, nil, 0},
		{"max", append([]byte{0, 0, 0, 8}, "12345678"...), []string{"12345678"}, nil, 0},
		{"zero", []byte{0, 0, 0, 0}, nil, ErrFrameEmpty, 4},
		{"max+1 header only", []byte{0, 0, 0, 9}, nil, ErrFrameTooLarge, 4},
		{"huge", []byte{0xFF, 0xFF, 0xFF, 0xFF}, nil, ErrFrameTooLarge, 4},
		{"frame then bad", []byte{0, 0, 0, 1, 'a', 0, 0, 0, 0}, []string{"a"}, ErrFrameEmpty, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &memInbound{b: tc.in}
			frames, err := decodeAllMem(c, in)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if len(frames) != len(tc.want) {
				t.Fatalf("frames %q, want %q", frames, tc.want)
			}
			for i := range frames {
				if string(frames[i]) != tc.want[i] {
					t.Fatalf("frame %d %q, want %q", i, frames[i], tc.want[i])
				}
			}
			if in.Buffered() != tc.rest {
				t.Fatalf("left %d bytes, want %d", in.Buffered(), tc.rest)
			}
		})
	}
	if _, err := c.Encode(nil, nil); !errors.Is(err, ErrFrameEmpty) {
		t.Fatalf("encode empty: %v", err)
	}
	// The max bounds what is accepted; what is sent may be larger.
	if b, err := c.Encode(nil, make([]byte, 9)); err != nil || len(b) != 13 {
		t.Fatalf("encode 9 bytes past the max: %d bytes, %v", len(b), err)
	}
	b, err := c.Encode([]byte("x"), []byte("hi"))
	if err != nil || !bytes.Equal(b, []byte{'x', 0, 0, 0, 2, 'h', 'i'}) {
		t.Fatalf("encode: %q %v", b, err)
	}
}

// TestBadLengthAllocatesNoBody: rejecting a header allocates no body.
func TestBadLengthAllocatesNoBody(t *testing.T) {
	c := NewLengthFieldCodec(1024)
	hdr := binary.BigEndian.AppendUint32(nil, 1<<30)
	in := &memInbound{}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		in.b = hdr
		if _, _, err := c.Decode(in); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	// Only the wrapped error is allocated, never the 1 GiB body.
	if perOp := (after.TotalAlloc - before.TotalAlloc) / 100; perOp > 512 {
		t.Fatalf("%d bytes allocated per rejected header", perOp)
	}
	waiting := binary.BigEndian.AppendUint32(nil, 1000)
	allocs := testing.AllocsPerRun(100, func() {
		in.b = waiting
		if _, n, err := c.Decode(in); n != 0 || err != nil {
			t.Fatal(n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations waiting for a body", allocs)
	}
}

func TestLineCodec(t *testing.T) {
	for _, tc := range []struct {
		name    string
		chunks  []string
		want    []string
		wantErr error
	}{
		{"one", []string{"HELO x\r\n"}, []string{"HELO x"}, nil},
		{"empty line", []string{"\r\n"}, []string{""}, nil},
		{"split CRLF", []string{"abc\r", "\ndef\r\n"}, []string{"abc", "def"}, nil},
		{"bare LF kept", []string{"a\nb\r\n"}, []string{"a\nb"}, nil},
		{"exactly max", []string{"12345678\r\n"}, []string{"12345678"}, nil},
		{"too long", []string{"123456789\r\n"}, nil, ErrLineTooLong},
		{"too long split", []string{"12345", "6789", "0"}, nil, ErrLineTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewLineCodec(8)
			in := &memInbound{}
			var frames [][]byte
			var err error
			for _, ch := range tc.chunks {
				in.b = append(in.b, ch...)
				var fs [][]byte
				fs, err = decodeAllMem(c, in)
				frames = append(frames, fs...)
				if err != nil {
					break
				}
			}
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if len(frames) != len(tc.want) {
				t.Fatalf("frames %q, want %q", frames, tc.want)
			}
			for i := range frames {
				if string(frames[i]) != tc.want[i] {
					t.Fatalf("frame %d %q, want %q", i, frames[i], tc.want[i])
				}
			}
		})
	}
	c := NewLineCodec(8)
	if _, err := c.Encode(nil, []byte("a\r\nb")); !errors.Is(err, ErrBadLine) {
		t.Fatal(err)
	}
	if b, err := c.Encode(nil, []byte("250 ok")); err != nil || string(b) != "250 ok\r\n" {
		t.Fatalf("%q %v", b, err)
	}
}

// FuzzLengthFieldDecode feeds the decoder arbitrary input split in two
// parts (as two reads) and checks it against a straightforward parser.
// Plain `go test` replays the seed corpus in testdata/fuzz.
func FuzzLengthFieldDecode(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 'a'}, uint16(2))
	f.Add([]byte{0, 0, 0, 0}, uint16(0))
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3}, uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		const maxFrame = 64
		c := NewLengthFieldCodec(maxFrame)
		cut := int(split) % (len(data) + 1)
		in := &memInbound{b: append([]byte(nil), data[:cut]...)}
		got, err1 := decodeAllMem(c, in)
		var err2 error
		if err1 == nil {
			in.b = append(in.b, data[cut:]...)
			var more [][]byte
			more, err2 = decodeAllMem(c, in)
			got = append(got, more...)
		}
		// Reference.
		var want [][]byte
		var wantErr error
		rest := data
		for len(rest) >= 4 {
			n := binary.BigEndian.Uint32(rest)
			if n == 0 {
				wantErr = ErrFrameEmpty
				break
			}
			if n > maxFrame {
				wantErr = ErrFrameTooLarge
				break
			}
			if len(rest) < 4+int(n) {
				break
			}
			want = append(want, rest[4:4+n])
			rest = rest[4+n:]
		}
		err := err1
		if err == nil {
			err = err2
		}
		if wantErr == nil && err != nil || wantErr != nil && !errors.Is(err, wantErr) {
			t.Fatalf("err %v, want %v", err, wantErr)
		}
		if len(got) != len(want) {
			t.Fatalf("%d frames, want %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("frame %d differs", i)
			}
		}
	})
}

// FuzzLineDecode checks the line codec never panics, never returns a frame
// containing CRLF or longer than the max, and accounts for every byte.
func FuzzLineDecode(f *testing.F) {
	f.Add([]byte("HELO a\r\nMAIL FROM:<a@b>\r\n"), uint16(3))
	f.Add([]byte("\r\n\r\n"), uint16(1))
	f.Add([]byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), uint16(7))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		const maxLine = 16
		c := NewLineCodec(maxLine)
		cut := int(split) % (len(data) + 1)
		in := &memInbound{b: append([]byte(nil), data[:cut]...)}
		frames, err := decodeAllMem(c, in)
		if err == nil {
			in.b = append(in.b, data[cut:]...)
			var more [][]byte
			more, err = decodeAllMem(c, in)
			frames = append(frames, more...)
		}
		consumed := 0
		for _, fr := range frames {
			if bytes.Contains(fr, crlf) || len(fr) > maxLine {
				t.Fatalf("bad frame %q", fr)
			}
			consumed += len(fr) + 2
		}
		if !bytes.HasPrefix(data[consumed:], in.b) && err == nil {
			t.Fatalf("bytes lost")
		}
		if err == nil && len(in.b) > maxLine+1 {
			t.Fatalf("%d bytes pending without error", len(in.b))
		}
	})
}

func BenchmarkLengthFieldDecode(b *testing.B) {
	c := NewLengthFieldCodec(DefaultMaxFrame)
	var stream []byte
	for range 64 {
		stream = binary.BigEndian.AppendUint32(stream, 64)
		stream = append(stream, make([]byte, 64)...)
	}
	in := &memInbound{}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		in.b = stream
		for {
			_, n, err := c.Decode(in)
			if err != nil || n == 0 {
				break
			}
			in.discard(n)
		}
	}
}
