package e2e

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// M is a request body under construction: encoded with encoding/json (keys
// sorted). A json.RawMessage value is written verbatim, which is how tests
// send 1.0, 1e3, null and other spellings encoding/json would not produce.
type M = map[string]any

// Raw is shorthand for json.RawMessage, a verbatim JSON value in an M.
type Raw = json.RawMessage

// Timeouts used by the client helpers.
const (
	// ReqTimeout bounds the wait for a response.
	ReqTimeout = 10 * time.Second
	// PushTimeout bounds the wait for an expected push.
	PushTimeout = 5 * time.Second
	// QuietPeriod is how long ExpectNoPush watches for a push that must not come.
	QuietPeriod = 300 * time.Millisecond
)

// ErrConnClosed is returned when the server closed the connection (or the
// read side failed) and no matching frame is queued.
var ErrConnClosed = errors.New("e2e: connection closed")

// ErrTimeout is returned when no matching frame arrived in time.
var ErrTimeout = errors.New("e2e: timed out waiting for a frame")

// maxServerFrame caps what the client accepts from the server.
const maxServerFrame = 64 << 20

// Frame is one frame received from the server.
type Frame struct {
	Body  []byte       // the JSON body as received
	JSON  gjson.Result // Body parsed (valid only when Valid)
	Valid bool         // Body is one valid JSON object
	At    time.Time    // when it was read
	N     int64        // arrival index on its connection: 1, 2, 3 …
}

// MsgID returns the frame's msgid (0 when missing).
func (f Frame) MsgID() int { return int(f.JSON.Get("msgid").Int()) }

// Client is a raw protocol client: it writes frames or arbitrary bytes and
// reads frames on a background goroutine into an unbounded queue, from which
// the test takes what it expects (skipping unrelated frames, which stay
// queued). Writing methods may be called from any goroutine; methods that
// fail the test (those taking no error return) only from the test goroutine.
type Client struct {
	tb    testing.TB
	Label string // a name for transcripts ("alice#1")
	Addr  string

	conn  net.Conn
	wmu   sync.Mutex
	start time.Time

	mu        sync.Mutex
	queue     []Frame
	closed    bool
	readErr   error
	changed   chan struct{} // closed and replaced whenever queue or closed changes
	head      []string      // the transcript's first entries
	log       []string      // the transcript's later entries, newest last
	nlog      int           // entries ever logged
	reqid     int64
	nframes   int64
	abandoned bool // closed on purpose without reading the answers

	// User is the account this client logged in as (set by the suite helpers).
	User *User
}

// User is an account created by the suite.
type User struct {
	ID       int64
	Name     string
	Password string
	Token    string
}

// Dial connects to addr and starts reading. The connection is closed in
// tb.Cleanup; when the test failed, the transcript is logged then.
func Dial(tb testing.TB, addr, label string) *Client {
	tb.Helper()
	c, err := DialE(tb, addr, label)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	// Every request gets exactly one response: one left over at the end is
	// a second answer (or an ERROR nobody expected).
	tb.Cleanup(func() {
		if tb.Failed() {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.abandoned {
			return
		}
		for _, f := range c.queue {
			if IsResponse(f) {
				tb.Errorf("%s: response or ERROR that answers no request of the test: %s", c.Label, f.Body)
			}
		}
	})
	return c
}

// DialE is Dial returning the error instead of failing the test; it may be
// called from any goroutine.
func DialE(tb testing.TB, addr, label string) (*Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &Client{tb: tb, Label: label, Addr: addr, conn: conn, start: time.Now(), changed: make(chan struct{})}
	go c.readLoop()
	tb.Cleanup(func() {
		_ = c.conn.Close()
		if tb.Failed() {
			c.mu.Lock()
			tb.Logf("transcript of %s (%s):\n%s", c.Label, c.Addr, c.transcriptLocked(60))
			c.mu.Unlock()
		}
	})
	return c, nil
}

func (c *Client) note(dir string, b []byte) {
	s := string(b)
	if len(s) > 400 {
		s = s[:400] + fmt.Sprintf("…(%d bytes)", len(b))
	}
	c.mu.Lock()
	line := fmt.Sprintf("%8.3fs %s %s", time.Since(c.start).Seconds(), dir, s)
	c.nlog++
	if len(c.head) < 30 {
		c.head = append(c.head, line)
	} else {
		c.log = append(c.log, line)
		if len(c.log) > 400 {
			c.log = append([]string(nil), c.log[len(c.log)-200:]...)
		}
	}
	c.mu.Unlock()
}

func (c *Client) wakeLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Client) readLoop() {
	r := bufio.NewReaderSize(c.conn, 64<<10)
	var hdr [4]byte
	fail := func(err error) {
		c.mu.Lock()
		c.closed = true
		c.readErr = err
		c.wakeLocked()
		c.mu.Unlock()
	}
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			c.note("×", []byte("read: "+err.Error()))
			fail(err)
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 || n > maxServerFrame {
			err := fmt.Errorf("server sent a frame header with length %d", n)
			c.note("×", []byte(err.Error()))
			fail(err)
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			err = fmt.Errorf("server frame of %d bytes cut short: %w", n, err)
			c.note("×", []byte(err.Error()))
			fail(err)
			return
		}
		c.note("←", body)
		f := Frame{Body: body, At: time.Now()}
		f.Valid = gjson.ValidBytes(body) && gjson.ParseBytes(body).IsObject()
		if f.Valid {
			f.JSON = gjson.ParseBytes(body)
		}
		c.mu.Lock()
		c.nframes++
		f.N = c.nframes
		c.queue = append(c.queue, f)
		c.wakeLocked()
		c.mu.Unlock()
	}
}

// WriteRawE writes b as is (no header added). Any goroutine.
func (c *Client) WriteRawE(b []byte) error {
	c.note("→raw", b)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("write to %s: %w", c.Addr, err)
	}
	return nil
}

// WriteRaw writes b as is and fails the test on error.
func (c *Client) WriteRaw(b []byte) {
	c.tb.Helper()
	if err := c.WriteRawE(b); err != nil {
		c.tb.Fatalf("%s: %v", c.Label, err)
	}
}

// FrameBytes returns body with its 4-byte big-endian length header.
func FrameBytes(body []byte) []byte {
	out := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(out, uint32(len(body)))
	copy(out[4:], body)
	return out
}

// SendE writes one frame holding body. Any goroutine.
func (c *Client) SendE(body []byte) error {
	c.note("→", body)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write(FrameBytes(body)); err != nil {
		return fmt.Errorf("write to %s: %w", c.Addr, err)
	}
	return nil
}

// Send writes one frame holding body and fails the test on error.
func (c *Client) Send(body string) {
	c.tb.Helper()
	if err := c.SendE([]byte(body)); err != nil {
		c.tb.Fatalf("%s: %v", c.Label, err)
	}
}

// Encode builds a request body: fields plus msgid, plus reqid when reqid ≥ 0.
func Encode(msgid int, reqid int64, fields M) []byte {
	m := make(M, len(fields)+2)
	for k, v := range fields {
		m[k] = v
	}
	m["msgid"] = msgid
	if reqid >= 0 {
		m["reqid"] = reqid
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("e2e: encode request: %v", err)) // a bug in the test itself
	}
	return b
}

// NextReqID returns a fresh reqid for this client. Any goroutine.
func (c *Client) NextReqID() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqid++
	return c.reqid*7 + 1000 // not 1, 2, 3 …, so that echoing a counter is caught
}

// SendReqE sends request msgid with a fresh reqid and returns the reqid; it
// does not wait. Any goroutine.
func (c *Client) SendReqE(msgid int, fields M) (int64, error) {
	id := c.NextReqID()
	return id, c.SendE(Encode(msgid, id, fields))
}

// TakeE removes and returns the first queued frame that match accepts,
// waiting up to within. Any goroutine.
func (c *Client) TakeE(within time.Duration, match func(Frame) bool) (Frame, error) {
	deadline := time.Now().Add(within)
	for {
		c.mu.Lock()
		for i, f := range c.queue {
			if match(f) {
				c.queue = append(c.queue[:i:i], c.queue[i+1:]...)
				c.mu.Unlock()
				return f, nil
			}
		}
		if c.closed {
			err := c.readErr
			c.mu.Unlock()
			return Frame{}, fmt.Errorf("%w (%v)", ErrConnClosed, err)
		}
		ch := c.changed
		c.mu.Unlock()
		d := time.Until(deadline)
		if d <= 0 {
			return Frame{}, ErrTimeout
		}
		t := time.NewTimer(d)
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

// Peek reports whether a queued frame matches, without removing it.
func (c *Client) Peek(match func(Frame) bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.queue {
		if match(f) {
			return true
		}
	}
	return false
}

// Closed reports whether the read side has ended (server closed the
// connection), and the read error.
func (c *Client) Closed() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed, c.readErr
}

// Close closes the connection.
func (c *Client) Close() { _ = c.conn.Close() }

// Abandon closes the connection with a TCP reset, without waiting for the
// answers to what was sent (which are then not checked).
func (c *Client) Abandon() {
	c.mu.Lock()
	c.abandoned = true
	c.mu.Unlock()
	if tc, ok := c.conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.conn.Close()
}

// CloseWrite half-closes the connection (the server sees EOF).
func (c *Client) CloseWrite() {
	if tc, ok := c.conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// IsResponse reports whether f answers a request: msgid 101–199 or an ERROR (299).
func IsResponse(f Frame) bool {
	id := f.MsgID()
	return (id > 100 && id < 200) || id == 299
}

// CheckFrame fails the test when f breaks a rule every server frame obeys:
// one valid JSON object with an integer msgid, no null anywhere (arrays are
// never null and no field is nullable), errmsg present iff errno ≠ 0,
// retry_after on 429.
func CheckFrame(tb testing.TB, who string, f Frame) {
	tb.Helper()
	if !f.Valid {
		tb.Fatalf("%s: server frame is not one valid JSON object: %q", who, f.Body)
	}
	id := f.JSON.Get("msgid")
	if id.Type != gjson.Number || id.Raw != fmt.Sprint(id.Int()) {
		tb.Fatalf("%s: server frame has no integer msgid: %s", who, f.Body)
	}
	if p := findNull(f.JSON, ""); p != "" {
		tb.Errorf("%s: server frame has null at %q (arrays are never null): %s", who, p, f.Body)
	}
	m := f.MsgID()
	if (m > 100 && m < 200) || m == 299 {
		en := f.JSON.Get("errno")
		if en.Type != gjson.Number || en.Raw != fmt.Sprint(en.Int()) {
			tb.Errorf("%s: response/ERROR without integer errno: %s", who, f.Body)
		}
		em := f.JSON.Get("errmsg")
		if en.Int() != 0 && (em.Type != gjson.String || em.Str == "") {
			tb.Errorf("%s: errno %d without a non-empty errmsg string: %s", who, en.Int(), f.Body)
		}
		if en.Int() == 0 && em.Exists() {
			tb.Errorf("%s: errmsg present although errno is 0: %s", who, f.Body)
		}
		if m == 299 && en.Int() == 0 {
			tb.Errorf("%s: ERROR with errno 0: %s", who, f.Body)
		}
		ra := f.JSON.Get("retry_after")
		if en.Int() == 429 && (ra.Type != gjson.Number || ra.Int() <= 0 || ra.Raw != fmt.Sprint(ra.Int())) {
			tb.Errorf("%s: 429 without a positive integer retry_after: %s", who, f.Body)
		}
	}
}

func findNull(r gjson.Result, path string) string {
	switch {
	case r.Type == gjson.Null && r.Exists():
		if path == "" {
			return "."
		}
		return path
	case r.IsObject() || r.IsArray():
		found := ""
		i := 0
		r.ForEach(func(k, v gjson.Result) bool {
			p := path + "." + k.String()
			if r.IsArray() {
				p = fmt.Sprintf("%s[%d]", path, i)
			}
			i++
			if q := findNull(v, p); q != "" {
				found = q
				return false
			}
			return true
		})
		return found
	}
	return ""
}

// TakeFrame is TakeE failing the test on timeout or close; the frame is checked with CheckFrame.
func (c *Client) TakeFrame(within time.Duration, what string, match func(Frame) bool) Frame {
	c.tb.Helper()
	f, err := c.TakeE(within, match)
	if err != nil {
		c.tb.Fatalf("%s: waiting for %s: %v", c.Label, what, err)
	}
	CheckFrame(c.tb, c.Label, f)
	return f
}

// Take is TakeFrame returning the parsed body.
func (c *Client) Take(within time.Duration, what string, match func(Frame) bool) gjson.Result {
	c.tb.Helper()
	return c.TakeFrame(within, what, match).JSON
}

// ResponseFrame waits for the next response or ERROR (pushes stay queued)
// and checks that it answers request msgid with the given reqid (reqid < 0:
// the reqid must be absent).
func (c *Client) ResponseFrame(msgid int, reqid int64) Frame {
	c.tb.Helper()
	f := c.TakeFrame(ReqTimeout, fmt.Sprintf("response to msgid %d", msgid), IsResponse)
	c.checkResponse(f.JSON, msgid, reqid)
	return f
}

// Response is ResponseFrame returning the parsed body.
func (c *Client) Response(msgid int, reqid int64) gjson.Result {
	c.tb.Helper()
	return c.ResponseFrame(msgid, reqid).JSON
}

func (c *Client) checkResponse(r gjson.Result, msgid int, reqid int64) {
	c.tb.Helper()
	if got := int(r.Get("msgid").Int()); got != msgid+100 {
		c.tb.Fatalf("%s: response to msgid %d has msgid %d (want %d): %s", c.Label, msgid, got, msgid+100, r.Raw)
	}
	rid := r.Get("reqid")
	switch {
	case reqid < 0 && rid.Exists():
		c.tb.Errorf("%s: response has reqid although the request had none: %s", c.Label, r.Raw)
	case reqid >= 0 && (!rid.Exists() || rid.Raw != fmt.Sprint(reqid)):
		c.tb.Errorf("%s: response reqid %s, want %d echoed: %s", c.Label, rid.Raw, reqid, r.Raw)
	}
}

// Req sends request msgid with fields and a fresh reqid, waits for its
// response and checks msgid, reqid and the errno/errmsg shape.
func (c *Client) Req(msgid int, fields M) gjson.Result {
	c.tb.Helper()
	id := c.NextReqID()
	c.Send(string(Encode(msgid, id, fields)))
	return c.Response(msgid, id)
}

// ReqNoID is Req without a reqid; the response must have none.
func (c *Client) ReqNoID(msgid int, fields M) gjson.Result {
	c.tb.Helper()
	c.Send(string(Encode(msgid, -1, fields)))
	return c.Response(msgid, -1)
}

// OK is Req requiring errno 0.
func (c *Client) OK(msgid int, fields M) gjson.Result {
	c.tb.Helper()
	r := c.Req(msgid, fields)
	if r.Get("errno").Int() != 0 {
		c.tb.Fatalf("%s: msgid %d %v: want errno 0, got %s", c.Label, msgid, fields, r.Raw)
	}
	return r
}

// Err is Req requiring the given errno.
func (c *Client) Err(msgid int, fields M, errno int) gjson.Result {
	c.tb.Helper()
	r := c.Req(msgid, fields)
	if int(r.Get("errno").Int()) != errno {
		c.tb.Errorf("%s: msgid %d %v: want errno %d, got %s", c.Label, msgid, fields, errno, r.Raw)
	}
	return r
}

// RawReq sends body as one frame and returns the next response or ERROR
// (checked for the common shape only).
func (c *Client) RawReq(body string) gjson.Result {
	c.tb.Helper()
	c.Send(body)
	return c.Take(ReqTimeout, fmt.Sprintf("response to %q", body), IsResponse)
}

// ExpectPush waits for a push msgid matching all preds (skipping other
// frames, which stay queued) and returns it.
func (c *Client) ExpectPush(msgid int, within time.Duration, preds ...func(gjson.Result) bool) gjson.Result {
	c.tb.Helper()
	return c.Take(within, fmt.Sprintf("push %d", msgid), func(f Frame) bool {
		if f.MsgID() != msgid {
			return false
		}
		for _, p := range preds {
			if !p(f.JSON) {
				return false
			}
		}
		return true
	})
}

// ExpectNoPush watches for within and fails when a push msgid matching all
// preds arrives (or is already queued). Nothing is removed from the queue.
func (c *Client) ExpectNoPush(msgid int, within time.Duration, preds ...func(gjson.Result) bool) {
	c.tb.Helper()
	match := func(f Frame) bool {
		if f.MsgID() != msgid {
			return false
		}
		for _, p := range preds {
			if !p(f.JSON) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(within)
	for {
		c.mu.Lock()
		for _, f := range c.queue {
			if match(f) {
				c.mu.Unlock()
				c.tb.Fatalf("%s: unexpected push: %s", c.Label, f.Body)
			}
		}
		ch := c.changed
		closed := c.closed
		c.mu.Unlock()
		d := time.Until(deadline)
		if d <= 0 || closed {
			return
		}
		t := time.NewTimer(d)
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

// Drain removes every queued frame with msgid (all frames when msgid is 0)
// and returns them in arrival order.
func (c *Client) Drain(msgid int) []gjson.Result {
	c.tb.Helper()
	c.mu.Lock()
	var out []Frame
	keep := c.queue[:0:0]
	for _, f := range c.queue {
		if msgid == 0 || f.MsgID() == msgid {
			out = append(out, f)
		} else {
			keep = append(keep, f)
		}
	}
	c.queue = keep
	c.mu.Unlock()
	res := make([]gjson.Result, 0, len(out))
	for _, f := range out {
		CheckFrame(c.tb, c.Label, f)
		res = append(res, f.JSON)
	}
	return res
}

// Collect takes n pushes msgid matching pred, in arrival order, waiting up
// to within in total.
func (c *Client) Collect(msgid, n int, within time.Duration, pred func(gjson.Result) bool) []gjson.Result {
	c.tb.Helper()
	deadline := time.Now().Add(within)
	out := make([]gjson.Result, 0, n)
	for len(out) < n {
		f, err := c.TakeE(time.Until(deadline), func(f Frame) bool {
			return f.MsgID() == msgid && (pred == nil || pred(f.JSON))
		})
		if err != nil {
			c.tb.Fatalf("%s: collected %d of %d pushes %d: %v", c.Label, len(out), n, msgid, err)
		}
		CheckFrame(c.tb, c.Label, f)
		out = append(out, f.JSON)
	}
	return out
}

// ExpectClosed waits until the server has closed the connection and returns
// the frames still queued (not yet taken).
func (c *Client) ExpectClosed(within time.Duration) []Frame {
	c.tb.Helper()
	deadline := time.Now().Add(within)
	for {
		c.mu.Lock()
		closed, ch := c.closed, c.changed
		if closed {
			q := c.queue
			c.queue = nil
			err := c.readErr
			c.mu.Unlock()
			if err != nil && !errors.Is(err, io.EOF) && !isConnReset(err) {
				c.tb.Errorf("%s: connection ended with a client-side error, not a close: %v", c.Label, err)
			}
			return q
		}
		c.mu.Unlock()
		d := time.Until(deadline)
		if d <= 0 {
			c.tb.Fatalf("%s: server did not close the connection within %v", c.Label, within)
		}
		t := time.NewTimer(d)
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

func isConnReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// Transcript returns the client's frame log: the first 30 entries and the
// last 200 (for reports).
func (c *Client) Transcript() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.transcriptLocked(200)
}

func (c *Client) transcriptLocked(tail int) string {
	lines := append([]string(nil), c.head...)
	rest := c.log
	if len(rest) > tail {
		rest = rest[len(rest)-tail:]
	}
	if skipped := c.nlog - len(c.head) - len(rest); skipped > 0 {
		lines = append(lines, fmt.Sprintf("         … %d entries left out …", skipped))
	}
	return strings.Join(append(lines, rest...), "\n")
}

// ReqE sends request msgid with a fresh reqid and waits up to within for its
// response; it returns an error (instead of failing the test) on a closed
// connection, a timeout or a response that does not answer the request. Any
// goroutine.
func (c *Client) ReqE(msgid int, fields M, within time.Duration) (gjson.Result, error) {
	id, err := c.SendReqE(msgid, fields)
	if err != nil {
		return gjson.Result{}, err
	}
	f, err := c.TakeE(within, IsResponse)
	if err != nil {
		return gjson.Result{}, fmt.Errorf("%s: response to msgid %d: %w", c.Label, msgid, err)
	}
	if !f.Valid {
		return gjson.Result{}, fmt.Errorf("%s: response to msgid %d is not a JSON object: %q", c.Label, msgid, f.Body)
	}
	if f.MsgID() != msgid+100 || f.JSON.Get("reqid").Int() != id {
		return f.JSON, fmt.Errorf("%s: response to msgid %d reqid %d does not match: %s", c.Label, msgid, id, f.Body)
	}
	return f.JSON, nil
}

// DrainE removes every queued frame that is not a response (pushes and
// GOAWAY) and returns them, without checking them. Any goroutine.
func (c *Client) DrainE() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Frame
	keep := c.queue[:0:0]
	for _, f := range c.queue {
		if IsResponse(f) {
			keep = append(keep, f)
		} else {
			out = append(out, f)
		}
	}
	c.queue = keep
	return out
}
