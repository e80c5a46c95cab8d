package chatservice

import (
	"bytes"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"clusterchat/chatservice/protocol"
)

// request is one parsed request frame. Everything in it comes from the
// network: fields are read through the typed accessors below, which
// validate as they read.
type request struct {
	msgid        int
	reqid        int64
	hasReqID     bool
	badReqID     bool // reqid present but of another type or range
	shuttingDown bool // arrived while Shutdown drains: answered 503
	root         gjson.Result
	err          *apiError // the first field error met while reading fields

	// The top-level fields, indexed by parseFrame in one pass so that each
	// read does not scan the object again: the first maxIndexed distinct
	// keys with their raw values; past that (overflow) a key not indexed
	// is looked up in root.
	indexed  bool
	overflow bool
	nfields  int
	fields   [maxIndexed]field

	call  call     // the handling of this request (conn.go)
	peers [2]int64 // room for a direct message's recipients
}

// maxIndexed is the number of top-level fields parseFrame indexes: every
// request of the protocol but ACK has at most 6 (ACK: 3).
const maxIndexed = 6

// field is one indexed top-level field: its (unescaped) key and raw value.
type field struct {
	key, raw string
}

// get returns the top-level field name, as root.Get(name) does (the first
// occurrence of a repeated key).
func (r *request) get(name string) gjson.Result {
	if !r.indexed {
		return r.root.Get(name)
	}
	for i := range r.nfields {
		if f := &r.fields[i]; f.key == name {
			return gjson.Parse(f.raw)
		}
	}
	if r.overflow {
		return r.root.Get(name)
	}
	return gjson.Result{}
}

// index records the top-level fields of root.
func (r *request) index() {
	r.indexed = true
	r.root.ForEach(func(k, v gjson.Result) bool {
		for i := range r.nfields {
			if r.fields[i].key == k.Str {
				return true // a repeated key: the first one counts
			}
		}
		if r.nfields == maxIndexed {
			r.overflow = true
			return false
		}
		r.fields[r.nfields] = field{key: k.Str, raw: v.Raw}
		r.nfields++
		return true
	})
}

// frameError is a frame that is not a request at all: it gets push ERROR.
type frameError struct {
	errmsg   string
	reqid    int64
	hasReqID bool
}

// parseFrame checks that frame is exactly one JSON object with a valid
// msgid. It does not look at other fields.
func parseFrame(frame []byte) (*request, *frameError) {
	if !utf8.Valid(frame) {
		return nil, &frameError{errmsg: "frame is not valid UTF-8"}
	}
	trimmed := bytes.TrimLeft(frame, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' || !gjson.ValidBytes(frame) {
		return nil, &frameError{errmsg: "frame is not one JSON object"}
	}
	root := gjson.ParseBytes(frame)
	req := &request{root: root}
	req.index()
	if r := req.get("reqid"); r.Exists() {
		if v, ok := parseJSONInt(r); ok && v >= 0 && v <= protocol.MaxReqID {
			req.reqid, req.hasReqID = v, true
		} else {
			req.badReqID = true
		}
	}
	m := req.get("msgid")
	if !m.Exists() {
		return nil, req.frameErr("msgid is missing")
	}
	id, ok := parseJSONInt(m)
	if !ok {
		return nil, req.frameErr("msgid is not an integer")
	}
	if id < 1 || id > 99 {
		return nil, req.frameErr("msgid is not a request (1-99)")
	}
	req.msgid = int(id)
	return req, nil
}

func (r *request) frameErr(msg string) *frameError {
	return &frameError{errmsg: msg, reqid: r.reqid, hasReqID: r.hasReqID}
}

// parseJSONInt accepts a JSON number written as an integer (no fraction,
// no exponent) that fits in int64.
func parseJSONInt(r gjson.Result) (int64, bool) {
	if r.Type != gjson.Number {
		return 0, false
	}
	raw := r.Raw
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if (c < '0' || c > '9') && !(i == 0 && c == '-') {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	return v, err == nil
}

// fail records the first field error.
func (r *request) fail(errno int, msg string) {
	if r.err == nil {
		r.err = &apiError{errno: errno, msg: msg}
	}
}

// has reports whether the field is present (null counts as present).
func (r *request) has(name string) bool { return r.get(name).Exists() }

// id reads a required positive integer field.
func (r *request) id(name string) int64 {
	v := r.get(name)
	if !v.Exists() {
		r.fail(protocol.ErrBadRequest, name+" is missing")
		return 0
	}
	return r.positive(name, v)
}

func (r *request) positive(name string, v gjson.Result) int64 {
	n, ok := parseJSONInt(v)
	if !ok {
		r.fail(protocol.ErrBadRequest, name+" must be an integer")
		return 0
	}
	if n <= 0 {
		r.fail(protocol.ErrBadRequest, name+" must be positive")
		return 0
	}
	return n
}

// optID reads an optional positive integer field (0 when absent).
func (r *request) optID(name string) int64 {
	v := r.get(name)
	if !v.Exists() {
		return 0
	}
	return r.positive(name, v)
}

// str reads a required, non-empty string field.
func (r *request) str(name string) string {
	v := r.get(name)
	if !v.Exists() {
		r.fail(protocol.ErrBadRequest, name+" is missing")
		return ""
	}
	return r.strValue(name, v, false)
}

// badCredential stands for a LOGIN credential that breaks the text rules:
// it matches no account, name or token (valid text never holds U+FFFD
// from a lone surrogate, and this marker holds a NUL, which no valid name,
// and no password or token from this server, contains).
const badCredential = "\x00bad credential"

// credential reads a required LOGIN string. A credential that breaks the
// text rules (a lone surrogate) is not a bad request but a wrong
// credential (PROTOCOL.md §3): it reads as badCredential.
func (r *request) credential(name string) string {
	v := r.get(name)
	if v.Type == gjson.String && hasLoneSurrogate(v.Raw) {
		return badCredential
	}
	return r.str(name)
}

// optStr reads an optional string field; empty is allowed.
func (r *request) optStr(name, def string) string {
	v := r.get(name)
	if !v.Exists() {
		return def
	}
	return r.strValue(name, v, true)
}

func (r *request) strValue(name string, v gjson.Result, emptyOK bool) string {
	if v.Type != gjson.String {
		r.fail(protocol.ErrBadRequest, name+" must be a string")
		return ""
	}
	if hasLoneSurrogate(v.Raw) {
		r.fail(protocol.ErrBadRequest, name+" holds a lone surrogate")
		return ""
	}
	s := v.Str
	if s == "" && !emptyOK {
		r.fail(protocol.ErrBadRequest, name+" is empty")
	}
	return s
}

// hasLoneSurrogate reports whether a raw JSON string token holds a \uD800–
// \uDFFF escape that is not part of a high+low pair.
func hasLoneSurrogate(raw string) bool {
	for i := 0; i+5 < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		if raw[i+1] != 'u' {
			i++ // skip the escaped character
			continue
		}
		u, ok := hex4(raw[i+2:])
		if !ok {
			return true
		}
		switch {
		case u >= 0xDC00 && u <= 0xDFFF:
			return true
		case u >= 0xD800 && u <= 0xDBFF:
			if i+11 >= len(raw) || raw[i+6] != '\\' || raw[i+7] != 'u' {
				return true
			}
			lo, ok := hex4(raw[i+8:])
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11
		default:
			i += 5
		}
	}
	return false
}

func hex4(s string) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var v rune
	for i := 0; i < 4; i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// Text rules of PROTOCOL.md §3.

// validName reports whether s is a valid user (max 32) or group (max 64)
// name: 1–max code points, no Cc or Cf, no white space at either end.
func validName(s string, max int) bool {
	n := utf8.RuneCountInString(s)
	if n < 1 || n > max {
		return false
	}
	for _, c := range s {
		if unicode.Is(unicode.Cc, c) || unicode.Is(unicode.Cf, c) {
			return false
		}
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	return !unicode.IsSpace(first) && !unicode.IsSpace(last)
}

// validDesc: 0–256 code points, no Cc.
func validDesc(s string) bool {
	if utf8.RuneCountInString(s) > protocol.MaxGroupDesc {
		return false
	}
	for _, c := range s {
		if unicode.Is(unicode.Cc, c) {
			return false
		}
	}
	return true
}

func validPassword(p string) bool {
	return len(p) >= protocol.MinPassword && len(p) <= protocol.MaxPassword
}

// userName reads and checks a user name field.
func (r *request) userName(field string) string {
	s := r.str(field)
	if r.err == nil && !validName(s, protocol.MaxUserName) {
		r.fail(protocol.ErrBadRequest, field+" must be 1-32 characters, without control characters or surrounding spaces")
	}
	return s
}

// msgText reads and checks a message body: 1–4096 bytes (longer: 413).
func (r *request) msgText() string {
	s := r.str("msg")
	if r.err == nil && len(s) > protocol.MaxMsgBytes {
		r.fail(protocol.ErrTooLarge, "msg is longer than 4096 bytes")
	}
	return s
}

// cid reads and checks a client message id: 1–64 bytes.
func (r *request) cid() string {
	s := r.str("cid")
	if r.err == nil && len(s) > protocol.MaxCID {
		r.fail(protocol.ErrBadRequest, "cid is longer than 64 bytes")
	}
	return s
}
