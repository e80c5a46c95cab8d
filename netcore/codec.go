package netcore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
)

// Inbound is the read side of a connection as a Codec sees it: the bytes
// received and not yet consumed. It is only valid during a Codec.Decode call,
// on the connection's loop.
type Inbound interface {
	// Buffered returns the number of bytes available.
	Buffered() int
	// Peek returns the first n bytes without consuming them; n <= 0 means
	// all buffered bytes. It fails when fewer than n bytes are buffered. The
	// slice aliases connection memory: it is valid only until Decode returns.
	Peek(n int) ([]byte, error)
}

// Codec splits an inbound byte stream into frames and encodes outbound
// frames. A Codec is created per connection by Options.NewCodec, so Decode
// may keep state; Decode runs only on the connection's loop. Encode is called
// from whatever goroutine calls Conn.Send and must be safe for concurrent use.
type Codec interface {
	// Decode looks at the buffered input and returns the next frame and the
	// number of bytes it occupies on the wire (header included). consumed ==
	// 0 means no complete frame is buffered yet. frame may alias the input:
	// netcore copies it before consuming. A non-nil error is a protocol
	// violation: netcore reports it to OnFrameError and closes the
	// connection. Decode must detect an oversized frame from its header,
	// before the body arrives.
	Decode(in Inbound) (frame []byte, consumed int, err error)
	// Encode appends the wire form of frame to dst and returns the result.
	Encode(dst, frame []byte) ([]byte, error)
}

// DefaultMaxFrame is the default Options.MaxFrame.
const DefaultMaxFrame = 65536

// lengthFieldCodec is a 4-byte big-endian length (of the body only)
// followed by the body.
type lengthFieldCodec struct {
	max int
}

// NewLengthFieldCodec returns the codec for frames made of a 4-byte
// big-endian body length followed by the body. A length of 0 is
// ErrFrameEmpty, a length above maxFrame is ErrFrameTooLarge; both are
// detected from the header, before the body is awaited. maxFrame bounds
// input only: Encode accepts any non-empty frame the 4-byte field can carry.
// maxFrame <= 0 means DefaultMaxFrame. The codec is stateless and safe for
// concurrent use.
// Any goroutine.
func NewLengthFieldCodec(maxFrame int) Codec {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &lengthFieldCodec{max: maxFrame}
}

func (l *lengthFieldCodec) Decode(in Inbound) ([]byte, int, error) {
	avail := in.Buffered()
	if avail < 4 {
		return nil, 0, nil
	}
	hdr, err := in.Peek(4)
	if err != nil {
		return nil, 0, fmt.Errorf("netcore: peek length field: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr)
	if n == 0 {
		return nil, 0, fmt.Errorf("length field 0: %w", ErrFrameEmpty)
	}
	if uint64(n) > uint64(l.max) {
		return nil, 0, fmt.Errorf("length field %d exceeds max %d: %w", n, l.max, ErrFrameTooLarge)
	}
	total := 4 + int(n)
	if avail < total {
		return nil, 0, nil
	}
	buf, err := in.Peek(total)
	if err != nil {
		return nil, 0, fmt.Errorf("netcore: peek frame body: %w", err)
	}
	return buf[4:], total, nil
}

func (l *lengthFieldCodec) Encode(dst, frame []byte) ([]byte, error) {
	if len(frame) == 0 {
		return dst, fmt.Errorf("encode: %w", ErrFrameEmpty)
	}
	// max bounds what is accepted, not what is sent: a server's answers
	// (a page of history, a long friend list) may be larger than the
	// requests it accepts. Only the 4-byte length field bounds them.
	if uint64(len(frame)) > math.MaxUint32 {
		return dst, fmt.Errorf("encode %d bytes: %w", len(frame), ErrFrameTooLarge)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(frame)))
	return append(dst, frame...), nil
}

// lineCodec splits CRLF-terminated lines.
type lineCodec struct {
	max     int
	scanned int // bytes already known to hold no CRLF (Decode state)
}

var crlf = []byte("\r\n")

// NewLineCodec returns a codec for CRLF-terminated text lines (SMTP, POP3,
// ...). Frames are the lines without their CRLF; an empty line is a valid
// (empty) frame. A line longer than maxLine bytes without a CRLF is
// ErrLineTooLong. Encode appends CRLF and rejects frames containing CRLF
// (ErrBadLine) or longer than maxLine. maxLine <= 0 means 8192. The codec
// keeps scan state: create one per connection (its Encode is safe for
// concurrent use). Any goroutine.
func NewLineCodec(maxLine int) Codec {
	if maxLine <= 0 {
		maxLine = 8192
	}
	return &lineCodec{max: maxLine}
}

func (lc *lineCodec) Decode(in Inbound) ([]byte, int, error) {
	avail := in.Buffered()
	if avail < 2 {
		return nil, 0, nil
	}
	limit := min(avail, lc.max+2)
	buf, err := in.Peek(limit)
	if err != nil {
		return nil, 0, fmt.Errorf("netcore: peek line: %w", err)
	}
	start := max(lc.scanned-1, 0) // a CR may end the scanned part
	if i := bytes.Index(buf[start:], crlf); i >= 0 {
		end := start + i
		lc.scanned = 0
		return buf[:end], end + 2, nil
	}
	lc.scanned = len(buf)
	if len(buf) >= lc.max+2 {
		return nil, 0, fmt.Errorf("no CRLF within %d bytes: %w", lc.max, ErrLineTooLong)
	}
	return nil, 0, nil
}

func (lc *lineCodec) Encode(dst, frame []byte) ([]byte, error) {
	if len(frame) > lc.max {
		return dst, fmt.Errorf("encode %d bytes, max %d: %w", len(frame), lc.max, ErrLineTooLong)
	}
	if bytes.Contains(frame, crlf) {
		return dst, fmt.Errorf("encode: %w", ErrBadLine)
	}
	dst = append(dst, frame...)
	return append(dst, crlf...), nil
}
