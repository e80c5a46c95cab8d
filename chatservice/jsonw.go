package chatservice

import (
	"strconv"
	"sync"

	"clusterchat/chatservice/protocol"
)

// frameWriter builds one JSON object frame without reflection. The chat's
// hot paths (responses to ONE_CHAT, pushes) are written with it; rarely used
// shapes too, so that every frame is built the same way.
type frameWriter struct {
	b []byte
}

// frameCap is the initial capacity of a frame: a CHAT push of a 64-byte
// message with a 24-byte cid is about 190 bytes.
const frameCap = 256

// newFrame starts an object with its msgid.
func newFrame(msgid int) *frameWriter {
	w := &frameWriter{b: make([]byte, 0, frameCap)}
	w.start(msgid)
	return w
}

func (w *frameWriter) start(msgid int) {
	w.b = append(w.b[:0], `{"msgid":`...)
	w.b = strconv.AppendInt(w.b, int64(msgid), 10)
}

// maxPooledFrame bounds the buffers kept by a framePool: a large response
// (HISTORY, LIST) is left to the collector.
const maxPooledFrame = 8 << 10

// framePool recycles the writers of responses, which are dead once sent
// (Send copies the frame).
type framePool struct{ p sync.Pool }

// get starts a frame like newFrame, on a recycled writer.
func (fp *framePool) get(msgid int) *frameWriter {
	w, _ := fp.p.Get().(*frameWriter)
	if w == nil {
		w = &frameWriter{b: make([]byte, 0, frameCap)}
	}
	w.start(msgid)
	return w
}

// put recycles w; neither w nor a slice of its Bytes may be used after.
func (fp *framePool) put(w *frameWriter) {
	if w != nil && cap(w.b) <= maxPooledFrame {
		fp.p.Put(w)
	}
}

func (w *frameWriter) key(k string) {
	w.b = append(w.b, ',', '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
}

// Int adds an integer field.
func (w *frameWriter) Int(k string, v int64) *frameWriter {
	w.key(k)
	w.b = strconv.AppendInt(w.b, v, 10)
	return w
}

// Str adds a string field.
func (w *frameWriter) Str(k, v string) *frameWriter {
	w.key(k)
	w.b = protocol.AppendString(w.b, v)
	return w
}

// Bool adds a boolean field.
func (w *frameWriter) Bool(k string, v bool) *frameWriter {
	w.key(k)
	w.b = strconv.AppendBool(w.b, v)
	return w
}

// Raw adds a field whose value is already JSON.
func (w *frameWriter) Raw(k string, v []byte) *frameWriter {
	w.key(k)
	w.b = append(w.b, v...)
	return w
}

// Bytes closes the object and returns it.
func (w *frameWriter) Bytes() []byte {
	return append(w.b, '}')
}

// jsonArray builds a JSON array of objects written with objWriter.
type jsonArray struct {
	b []byte
	n int
}

func newArray() *jsonArray { return &jsonArray{b: append(make([]byte, 0, 256), '[')} }

// Obj starts the next object of the array.
func (a *jsonArray) Obj() *objWriter {
	if a.n > 0 {
		a.b = append(a.b, ',')
	}
	a.n++
	a.b = append(a.b, '{')
	return &objWriter{a: a, first: true}
}

// Bytes closes the array and returns it. An empty array is "[]", never null.
func (a *jsonArray) Bytes() []byte { return append(a.b, ']') }

// objWriter writes the fields of one object inside a jsonArray.
type objWriter struct {
	a     *jsonArray
	first bool
}

func (o *objWriter) key(k string) {
	if !o.first {
		o.a.b = append(o.a.b, ',')
	}
	o.first = false
	o.a.b = append(o.a.b, '"')
	o.a.b = append(o.a.b, k...)
	o.a.b = append(o.a.b, '"', ':')
}

func (o *objWriter) Int(k string, v int64) *objWriter {
	o.key(k)
	o.a.b = strconv.AppendInt(o.a.b, v, 10)
	return o
}

func (o *objWriter) Str(k, v string) *objWriter {
	o.key(k)
	o.a.b = protocol.AppendString(o.a.b, v)
	return o
}

func (o *objWriter) Bool(k string, v bool) *objWriter {
	o.key(k)
	o.a.b = strconv.AppendBool(o.a.b, v)
	return o
}

// End closes the object.
func (o *objWriter) End() { o.a.b = append(o.a.b, '}') }

// userJSON renders {"id":..,"name":..}.
func userJSON(id int64, name string) []byte {
	b := append(make([]byte, 0, 48), `{"id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"name":`...)
	b = protocol.AppendString(b, name)
	return append(b, '}')
}
