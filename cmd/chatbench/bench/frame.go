package bench

import (
	"bytes"

	"github.com/tidwall/gjson"
)

// frameInfo is what chatbench's reader takes from an incoming frame: the
// fields that route it (msgid, reqid) and those of a chat push or a send's
// response (errno, seq, cid). The first occurrence of a key counts, as in
// the client library.
type frameInfo struct {
	msgid    int
	reqid    uint64
	hasReqID bool
	errno    int
	seq      int64
	cid      []byte // the cid string's contents (escapes undone); aliases the frame or is a copy
}

// scanFrame fills fi from a frame body. The server (and chatbench's fake)
// write compact JSON objects whose top-level values chatbench needs are
// integers and escape-free strings, so scanFrame walks the top-level
// members once without building anything: strings are skipped with
// IndexByte, numbers parsed in place. Whatever that walk does not
// understand (nested values, escaped keys or cids, non-integer numbers,
// malformed JSON) goes to gjson: slowScanFrame, which also validates. It
// reports false when the body is not a JSON object with a msgid.
func scanFrame(b []byte, fi *frameInfo) bool {
	*fi = frameInfo{}
	if fastScanFrame(b, fi) {
		return true
	}
	*fi = frameInfo{}
	return slowScanFrame(b, fi)
}

// Bits of frameInfo fields already seen (first occurrence counts).
const (
	seenMsgID = 1 << iota
	seenReqID
	seenErrno
	seenSeq
	seenCID
)

func fastScanFrame(b []byte, fi *frameInfo) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return false // no msgid
	}
	var seen uint8
	for {
		// key
		if i >= len(b) || b[i] != '"' {
			return false
		}
		ke := keyEnd(b, i+1)
		if ke < 0 {
			return false
		}
		key := b[i+1 : ke]
		i = skipWS(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return false
		}
		// value; the keys chatbench reads must have their expected type
		// (else gjson's reading decides)
		c := b[i]
		switch string(key) {
		case "msgid", "reqid", "errno", "seq":
			if c != '-' && (c < '0' || c > '9') {
				return false
			}
		case "cid":
			if c != '"' {
				return false
			}
		}
		var ve int
		switch {
		case c == '"':
			ve = strEnd(b, i+1)
			if ve < 0 {
				return false
			}
			if string(key) == "cid" && seen&seenCID == 0 {
				seen |= seenCID
				v := b[i+1 : ve]
				if bytes.IndexByte(v, '\\') >= 0 {
					return false
				}
				fi.cid = v
			}
			ve++
		case c == '-' || (c >= '0' && c <= '9'):
			ve = i + 1
			for ve < len(b) && isNumByte(b[ve]) {
				ve++
			}
			var bit uint8
			switch string(key) {
			case "msgid":
				bit = seenMsgID
			case "reqid":
				bit = seenReqID
			case "errno":
				bit = seenErrno
			case "seq":
				bit = seenSeq
			}
			if bit != 0 && seen&bit == 0 {
				seen |= bit
				n, ok := parseUint(b[i:ve])
				if !ok {
					return false // negative, fractional or huge: let gjson decide
				}
				switch bit {
				case seenMsgID:
					fi.msgid = int(n)
				case seenReqID:
					fi.reqid, fi.hasReqID = uint64(n), true
				case seenErrno:
					fi.errno = int(n)
				case seenSeq:
					fi.seq = n
				}
			}
		case c == 't':
			ve = lit(b, i, "true")
		case c == 'f':
			ve = lit(b, i, "false")
		case c == 'n':
			ve = lit(b, i, "null")
		default:
			return false // object, array or garbage
		}
		if ve < 0 {
			return false
		}
		i = skipWS(b, ve)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			if skipWS(b, i+1) != len(b) {
				return false
			}
			break
		}
		if b[i] != ',' {
			return false
		}
		i = skipWS(b, i+1)
	}
	return seen&seenMsgID != 0 && fi.msgid > 0
}

// keyEnd returns the index of the quote that ends the key starting at
// b[i], or -1 (also for a key with escapes). Keys are short: a plain loop
// beats IndexByte's call.
func keyEnd(b []byte, i int) int {
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			return i
		case '\\':
			return -1
		}
	}
	return -1
}

// strEnd returns the index of the quote that ends the string whose
// contents start at b[i], or -1.
func strEnd(b []byte, i int) int {
	for {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return -1
		}
		q += i
		// An odd run of backslashes before it escapes the quote.
		bs := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			bs++
		}
		if bs%2 == 0 {
			return q
		}
		i = q + 1
	}
}

func lit(b []byte, i int, s string) int {
	if len(b)-i >= len(s) && string(b[i:i+len(s)]) == s {
		return i + len(s)
	}
	return -1
}

func isNumByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// slowScanFrame is scanFrame's general path: validating gjson.
func slowScanFrame(b []byte, fi *frameInfo) bool {
	if len(b) == 0 || !gjson.ValidBytes(b) {
		return false
	}
	root := gjson.ParseBytes(b)
	if !root.IsObject() {
		return false
	}
	var seen uint8
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "msgid":
			if seen&seenMsgID == 0 && v.Type == gjson.Number {
				fi.msgid = int(v.Int())
			}
			seen |= seenMsgID
		case "reqid":
			if seen&seenReqID == 0 && v.Type == gjson.Number {
				fi.reqid, fi.hasReqID = v.Uint(), true
			}
			seen |= seenReqID
		case "errno":
			if seen&seenErrno == 0 {
				fi.errno = int(v.Int())
			}
			seen |= seenErrno
		case "seq":
			if seen&seenSeq == 0 && v.Type == gjson.Number {
				fi.seq = v.Int()
			}
			seen |= seenSeq
		case "cid":
			if seen&seenCID == 0 && v.Type == gjson.String {
				fi.cid = []byte(v.Str)
			}
			seen |= seenCID
		}
		return true
	})
	return seen&seenMsgID != 0 && fi.msgid > 0
}
