package client

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/tidwall/gjson"

	"clusterchat/chatservice/protocol"
)

// Sentinel errors.
var (
	// ErrClosed: the connection is closed (by Close, by the peer or after an
	// I/O error; Conn.Err says which). Pending requests fail with an error
	// that wraps ErrClosed.
	ErrClosed = errors.New("client: connection closed")
	// ErrFrameTooLarge: a frame is larger than the configured maximum.
	ErrFrameTooLarge = errors.New("client: frame too large")
	// ErrBadFrame: the peer sent something that is not a valid frame.
	ErrBadFrame = errors.New("client: bad frame")
	// ErrBadFields: the fields passed to Do cannot be encoded as a JSON object.
	ErrBadFields = errors.New("client: fields are not a JSON object")
)

// Error is a response or ERROR push with a non-zero errno. Match it with
// errors.As or IsErrno.
type Error struct {
	// MsgID is the msgid of the frame that carried the error (a response
	// msgid, or 299 for an ERROR push).
	MsgID int
	// Errno is the HTTP-like code (400, 401, 403, 404, 409, 413, 429, 503).
	Errno int
	// Msg is the server's errmsg.
	Msg string
	// RetryAfter is the server's retry_after in milliseconds (429 only).
	RetryAfter int64
}

// Error implements error: "chat: 409 conflict: name taken".
func (e *Error) Error() string {
	if e.Msg == "" {
		return fmt.Sprintf("chat: %d %s", e.Errno, protocol.ErrnoText(e.Errno))
	}
	return fmt.Sprintf("chat: %d %s: %s", e.Errno, protocol.ErrnoText(e.Errno), e.Msg)
}

// IsErrno reports whether err is (or wraps) an *Error with the given errno.
func IsErrno(err error, errno int) bool {
	var e *Error
	return errors.As(err, &e) && e.Errno == errno
}

// Errno returns the errno of an *Error in err's chain, 0 when there is none.
func Errno(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Errno
	}
	return 0
}

// Response is the server's answer to one request.
type Response struct {
	MsgID      int    // request msgid + 100 (or 299 when an ERROR answered a bad frame)
	ReqID      uint64 // the reqid the client chose
	Errno      int    // 0 on success
	ErrMsg     string // the reason when Errno != 0
	RetryAfter int64  // milliseconds, with 429
	Raw        []byte // the whole frame body (JSON object); owned by the Response
}

// Get returns a field of the response by gjson path, e.g. r.Get("seq").Int().
func (r *Response) Get(path string) gjson.Result { return gjson.GetBytes(r.Raw, path) }

// Err returns the response's error as an *Error, or nil when Errno is 0.
func (r *Response) Err() error {
	if r.Errno == 0 {
		return nil
	}
	return &Error{MsgID: r.MsgID, Errno: r.Errno, Msg: r.ErrMsg, RetryAfter: r.RetryAfter}
}

// Push is a frame the server sent on its own (msgid 201–299), or any frame
// that matched no pending request.
type Push struct {
	MsgID int
	Raw   []byte // the whole frame body; owned by the Push
}

// Get returns a field of the push by gjson path, e.g. p.Get("msg").String().
func (p *Push) Get(path string) gjson.Result { return gjson.GetBytes(p.Raw, path) }

// Name returns the push's protocol name ("CHAT", "GOAWAY", ...).
func (p *Push) Name() string { return protocol.Name(p.MsgID) }

// header is what the reader extracts from every incoming frame.
type header struct {
	msgid      int
	reqid      uint64
	hasReqID   bool
	errno      int
	errmsg     string
	retryAfter int64
}

// parseHeader reads the top-level fields msgid, reqid, errno, errmsg and
// retry_after in one pass (first occurrence of a key counts). body must not
// be modified afterwards: errmsg may point into it.
func parseHeader(body []byte) (header, error) {
	var h header
	if len(body) == 0 || !gjson.ValidBytes(body) {
		return h, fmt.Errorf("%w: invalid JSON", ErrBadFrame)
	}
	root := gjson.Parse(bytesString(body))
	if !root.IsObject() {
		return h, fmt.Errorf("%w: not a JSON object", ErrBadFrame)
	}
	var seen uint8
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "msgid":
			if seen&1 == 0 && v.Type == gjson.Number {
				h.msgid = int(v.Int())
			}
			seen |= 1
		case "reqid":
			if seen&2 == 0 && v.Type == gjson.Number {
				h.reqid, h.hasReqID = v.Uint(), true
			}
			seen |= 2
		case "errno":
			if seen&4 == 0 {
				h.errno = int(v.Int())
			}
			seen |= 4
		case "errmsg":
			if seen&8 == 0 {
				h.errmsg = v.Str
			}
			seen |= 8
		case "retry_after":
			if seen&16 == 0 {
				h.retryAfter = v.Int()
			}
			seen |= 16
		}
		return true
	})
	if seen&1 == 0 || h.msgid <= 0 {
		return h, fmt.Errorf("%w: no msgid", ErrBadFrame)
	}
	return h, nil
}

// bytesString views b as a string without copying. b must never be modified
// afterwards (frame bodies are owned by their Response or Push and are not).
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
