package chatservice

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tidwall/gjson"

	"clusterchat/chatservice/protocol"
	"clusterchat/netcore"
)

// Bad-frame limit of PROTOCOL.md §1: more than 20 within 60 s closes.
const (
	maxBadFrames   = 20
	badFrameSpan   = 60 * time.Second
	closeFlushWait = 2 * time.Second
)

// call is one request being handled. It lives in its request (one
// allocation for both).
type call struct {
	ctx   context.Context
	sess  *session
	req   *request
	resp  *frameWriter // the response, msgid/reqid/errno already written; recycled after handle
	after func()       // runs on the queue after the response was sent
	sent  bool         // the response went out early (respondNow)
}

// respondNow sends the successful response before the handler returns, so
// that work done afterwards (pushes) does not delay it.
func (c *call) respondNow() {
	_ = c.sess.conn.Send(c.resp.Bytes())
	c.sent = true
}

// handler answers one request type. It reads its fields from c.req, adds
// the response's fields to c.resp, or returns an error.
type handler func(c *call) *apiError

func (s *Service) onConnect(c *netcore.Conn) {
	sess := &session{
		conn:    c,
		queue:   s.exec.NewQueue(),
		limiter: newTokenBucket(s.limit, s.monoNow()),
	}
	c.SetValue(sess)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("connection up", "conn", c.ID(), "remote", c.RemoteAddr().String())
	}
}

func (s *Service) onDisconnect(c *netcore.Conn, reason netcore.CloseReason, err error) {
	sess, _ := c.Value().(*session)
	if sess == nil {
		return
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("connection down", "conn", c.ID(), "reason", reason.String(), "err", err)
	}
	s.metrics.closes.WithLabelValues(reason.String()).Inc()
	// After every request already queued for this connection.
	if err := sess.queue.Submit(func() { s.endSession(sess) }); err != nil {
		go s.endSession(sess)
	}
}

var goAwayFrame = newFrame(protocol.PushGoAway).Str("reason", "server shutting down; reconnect and log in with your token").Bytes()

// onShutdown tells a connection that the server is going away.
func (s *Service) onShutdown(c *netcore.Conn) { _ = c.Send(goAwayFrame) }

func (s *Service) onHighWater(c *netcore.Conn, buffered int) {
	s.log.Warn("closing slow reader at high-water mark", "conn", c.ID(), "remote", c.RemoteAddr().String(), "buffered", buffered)
}

// onFrameError answers a frame header that breaks the framing rules
// (length 0 or above max_frame); netcore then closes the connection
// without reading the body.
func (s *Service) onFrameError(c *netcore.Conn, err error) {
	errno, msg := protocol.ErrBadRequest, "frame length is 0"
	if errors.Is(err, netcore.ErrFrameTooLarge) {
		errno, msg = protocol.ErrTooLarge, "frame is larger than max_frame"
	}
	s.metrics.errors.WithLabelValues(itoa(errno)).Inc()
	_ = c.Send(errorPush(errno, msg, 0, false))
}

// onMessage runs on the event loop for each frame: only the checks that
// must happen on arrival, then the request goes to the connection's queue.
func (s *Service) onMessage(c *netcore.Conn, frame []byte) {
	sess, _ := c.Value().(*session)
	if sess == nil {
		return
	}
	req, ferr := parseFrame(frame)
	var task func()
	if ferr != nil {
		if sess.badFrames == nil {
			sess.badFrames = &badFrameWindow{}
		}
		closeAfter := sess.badFrames.add(time.Now(), maxBadFrames, badFrameSpan)
		task = func() { s.badFrame(sess, ferr, closeAfter) }
	} else {
		ok, retry := true, int64(0)
		if !s.limit.off() {
			ok, retry = sess.limiter.take(s.limit, s.monoNow())
		}
		// A request that arrives while Shutdown drains is answered 503 in
		// its turn. Every request counts until it is answered, the 503s
		// too, so that Shutdown waits for their responses as well (the
		// count is raised before the flag is read, see Shutdown).
		s.inFlight.Add(1)
		req.shuttingDown = s.draining.Load()
		task = func() {
			defer s.inFlight.Add(-1)
			s.handle(sess, req, !ok, retry)
		}
	}
	if err := sess.queue.Submit(task); err != nil {
		if ferr == nil {
			s.inFlight.Add(-1)
		}
		if errors.Is(err, netcore.ErrExecutorClosed) {
			return // the service has shut down; the connection is closing
		}
		s.log.Warn("closing connection: request queue full", "conn", c.ID(), "remote", c.RemoteAddr().String())
		c.ForceClose(netcore.ReasonOverload)
	}
}

func (s *Service) badFrame(sess *session, ferr *frameError, closeAfter bool) {
	s.metrics.errors.WithLabelValues(itoa(protocol.ErrBadRequest)).Inc()
	_ = sess.conn.Send(errorPush(protocol.ErrBadRequest, ferr.errmsg, ferr.reqid, ferr.hasReqID))
	if closeAfter {
		s.log.Info("closing connection: too many bad frames", "conn", sess.conn.ID(), "remote", sess.conn.RemoteAddr().String())
		sess.conn.Shutdown(closeFlushWait)
	}
}

// handle runs one request on the connection's queue and sends its response.
func (s *Service) handle(sess *session, req *request, limited bool, retryAfter int64) {
	if sess.conn.Context().Err() != nil {
		return // the connection is gone; nobody to answer
	}
	start := time.Now()
	respID := req.msgid + protocol.Response
	c := &req.call
	*c = call{ctx: s.ctx, sess: sess, req: req}
	var err *apiError
	switch h := s.handlers[req.msgid]; {
	case req.shuttingDown:
		err = errf(protocol.ErrUnavailable, "server shutting down; reconnect and retry")
	case limited:
		err = &apiError{errno: protocol.ErrRateLimited, msg: "rate limit exceeded", retryAfter: retryAfter}
	case req.badReqID:
		err = errf(protocol.ErrBadRequest, "reqid must be an integer between 0 and 2^53-1")
	case h == nil:
		err = errf(protocol.ErrBadRequest, "unknown msgid %d", req.msgid)
	default:
		c.resp = s.respHeader(respID, req, protocol.OK)
		err = h(c)
	}
	if err != nil {
		s.frames.put(c.resp)
		c.resp = s.respHeader(respID, req, err.errno).Str("errmsg", err.msg)
		if err.errno == protocol.ErrRateLimited {
			c.resp.Int("retry_after", err.retryAfter)
		}
		s.metrics.errors.WithLabelValues(itoa(err.errno)).Inc()
	}
	if !c.sent || err != nil {
		_ = sess.conn.Send(c.resp.Bytes())
	}
	s.frames.put(c.resp)
	c.resp = nil
	s.metrics.observeRequest(req.msgid, time.Since(start))
	if err == nil && c.after != nil {
		c.after()
	}
}

func (s *Service) respHeader(msgid int, req *request, errno int) *frameWriter {
	w := s.frames.get(msgid)
	if req.hasReqID && !req.badReqID {
		w.Int("reqid", req.reqid)
	}
	return w.Int("errno", int64(errno))
}

func errorPush(errno int, msg string, reqid int64, hasReqID bool) []byte {
	w := newFrame(protocol.PushError)
	if hasReqID {
		w.Int("reqid", reqid)
	}
	return w.Int("errno", int64(errno)).Str("errmsg", msg).Bytes()
}

// onBusMessage delivers a push published by another server to the local
// sessions of userID.
func (s *Service) onBusMessage(userID int64, payload []byte) {
	if bytes.HasPrefix(payload, profilePrefix) {
		if u := gjson.GetBytes(payload, "user"); u.Get("id").Int() == userID {
			s.reg.setName(userID, u.Get("name").String())
		}
	}
	frame := append([]byte(nil), payload...)
	if n := s.reg.send(userID, frame, nil); n > 0 {
		s.metrics.pushes.Add(float64(n))
	}
}

var (
	profilePrefix = []byte(`{"msgid":207,`)
)

// onBusResync re-runs the offline push for every local session after the
// bus came back, so that nothing published during the outage stays missing.
func (s *Service) onBusResync() {
	ids := s.reg.userIDs()
	s.log.Info("bus resynchronised: re-sending unacknowledged messages", "users", len(ids))
	for _, id := range ids {
		for _, sess := range s.reg.sessionsOf(id) {
			sess := sess
			_ = sess.queue.Submit(func() {
				if uid := sess.userID.Load(); uid != 0 {
					sess.gate.close()
					s.pushOffline(sess, uid, nil, false)
				}
			})
		}
	}
}
