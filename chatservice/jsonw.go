package chatservice

import (
	"strconv"
	"unicode/utf8"
)

// frameWriter builds one JSON object frame without reflection. The chat's
// hot paths (responses to ONE_CHAT, pushes) are written with it; rarely used
// shapes too, so that every frame is built the same way.
type frameWriter struct {
	b     []byte
	first bool
}

// newFrame starts an object with its msgid.
func newFrame(msgid int) *frameWriter {
	w := &frameWriter{b: make([]byte, 0, 128)}
	w.b = append(w.b, `{"msgid":`...)
	w.b = strconv.AppendInt(w.b, int64(msgid), 10)
	return w
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
	w.b = appendJSONString(w.b, v)
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
	o.a.b = appendJSONString(o.a.b, v)
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
	b = appendJSONString(b, name)
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 (which the
// server never stores: input is validated) becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript consumers.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
