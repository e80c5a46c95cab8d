package client

import (
	"strconv"
	"sync"

	"clusterchat/chatservice/protocol"
)

// frameBuf builds one outgoing frame: a 4-byte length header followed by a
// JSON object. Fields are appended in order; keys are package constants that
// need no escaping.
type frameBuf struct {
	b     []byte
	reqid uint64
}

var framePool = sync.Pool{New: func() any { return &frameBuf{b: make([]byte, 0, 256)} }}

// getFrame returns a pooled frame buffer holding the header placeholder and
// `{"msgid":M,"reqid":R`.
func getFrame(msgid int, reqid uint64) *frameBuf {
	f := framePool.Get().(*frameBuf)
	f.reqid = reqid
	f.b = append(f.b[:0], 0, 0, 0, 0)
	f.b = append(f.b, `{"msgid":`...)
	f.b = strconv.AppendInt(f.b, int64(msgid), 10)
	f.b = append(f.b, `,"reqid":`...)
	f.b = strconv.AppendUint(f.b, reqid, 10)
	return f
}

func putFrame(f *frameBuf) {
	if cap(f.b) > 64<<10 {
		return // do not keep huge buffers alive
	}
	framePool.Put(f)
}

func (f *frameBuf) key(k string) {
	f.b = append(f.b, ',', '"')
	f.b = append(f.b, k...)
	f.b = append(f.b, '"', ':')
}

func (f *frameBuf) int(k string, v int64) {
	f.key(k)
	f.b = strconv.AppendInt(f.b, v, 10)
}

func (f *frameBuf) str(k, v string) {
	f.key(k)
	f.b = protocol.AppendString(f.b, v)
}

// rawObject splices the members of an encoded JSON object (which must start
// with '{') into the frame.
func (f *frameBuf) rawObject(obj []byte) {
	// skip '{' and whitespace; an empty object adds nothing.
	i := 1
	for i < len(obj) && isSpace(obj[i]) {
		i++
	}
	if i < len(obj) && obj[i] == '}' {
		return
	}
	f.b = append(f.b, ',')
	f.b = append(f.b, obj[i:len(obj)-1]...)
}

// finish closes the object and fills in the length header; it returns the
// body length.
func (f *frameBuf) finish() int {
	f.b = append(f.b, '}')
	n := len(f.b) - 4
	f.b[0] = byte(n >> 24)
	f.b[1] = byte(n >> 16)
	f.b[2] = byte(n >> 8)
	f.b[3] = byte(n)
	return n
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }
