package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"clusterchat/chatservice/protocol"
)

// SessionOptions configure a Session. Credentials: Token, or Password with
// Name or ID. When both a token and a password are given the token is tried
// first.
type SessionOptions struct {
	// Addr is the server or balancer address (host:port).
	Addr string
	// Name or ID with Password: the credentials of a password login.
	Name     string
	ID       int64
	Password string
	// Token: log in with this token instead (and on every reconnect).
	Token string
	// OnEvent receives every event, one at a time and in order, on the
	// session's dispatch goroutine. A message counts as shown (and is ACKed)
	// when OnEvent returns. OnEvent must not wait for the Session's other
	// methods (SendChat, Conn, ...); start a goroutine for that.
	OnEvent func(Event)
	// Logger (default: discard).
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the reconnect delay, which doubles
	// after each failed attempt (defaults 200 ms and 10 s, with jitter).
	MinBackoff, MaxBackoff time.Duration
	// GapWait is how long a jump in seq waits for the missing messages to
	// arrive before they are fetched with HISTORY (default 500 ms).
	GapWait time.Duration
	// AckDelay groups the ACKs of shown messages (default 200 ms).
	AckDelay time.Duration
	// PingInterval: PING when nothing was sent for that long (default 30 s).
	PingInterval time.Duration
	// SyncInterval: every so often the session runs LIST and fetches with
	// HISTORY whatever a conversation's lastseq says it missed (a push lost
	// with no later message to reveal the gap). Default 60 s; < 0 turns it
	// off.
	SyncInterval time.Duration
	// RequestTimeout bounds each request the session makes on its own
	// (login, HISTORY, ACK; default 10 s).
	RequestTimeout time.Duration
	// Backlog: at first login, a conversation with more unread messages
	// than this shows only the newest Backlog (default 1000, what the server
	// pushes); older ones are left to explicit HISTORY.
	Backlog int64
	// ConnOptions are passed to Dial.
	ConnOptions []Option
}

// EventKind says what an Event carries.
type EventKind int

// Event kinds.
const (
	// EventConnected: logged in (Login is set; Reconnected is true after a
	// lost connection).
	EventConnected EventKind = iota + 1
	// EventDisconnected: the connection was lost (Err); the session is
	// reconnecting.
	EventDisconnected
	// EventMessage: a chat message, in seq order, each exactly once (Msg,
	// Conv; Own when this user sent it, from this or another session).
	EventMessage
	// EventPush: any other push (Push): FRIEND_REQUEST, FRIEND_ADDED,
	// PRESENCE, GROUP_EVENT, PROFILE, FRIEND_REMOVED, GOAWAY, ERROR.
	EventPush
	// EventError: a problem the session works around (Err), e.g. a failed
	// gap fill or ACK.
	EventError
	// EventClosed: the session ended for good (Err: why; nil after Close).
	EventClosed
)

// Event is what a Session reports to the application.
type Event struct {
	Kind        EventKind
	Msg         Message
	Conv        Conv
	Own         bool
	Push        Push
	Login       *LoginResult
	Reconnected bool
	Err         error
}

// ErrSessionClosed is returned by Session methods after Close, Logout or a
// fatal login failure.
var ErrSessionClosed = errors.New("client: session closed")

// Session keeps one user logged in over a sequence of connections. See the
// package documentation. All methods are safe for concurrent use.
type Session struct {
	opts SessionOptions
	cids *CIDGen
	in   chan input
	stop chan struct{}
	once sync.Once

	mu       sync.Mutex
	conn     *Conn
	connGen  int
	changed  chan struct{} // closed and replaced whenever conn changes
	token    string
	user     protocol.User
	closed   bool
	closeErr error

	smu   sync.Mutex // guards convs (written by the dispatcher only)
	convs map[Conv]*convState

	// dispatcher-only
	ackTimer bool
	running  bool
	runMu    sync.Mutex
}

type convState struct {
	delivered int64             // highest seq shown, with no gap below it
	known     int64             // highest seq known to exist
	held      map[int64]Message // arrived above a gap
	gapTimer  bool
	filling   bool
	ackWant   int64
	ackSent   int64
}

type inputKind int

const (
	inPush inputKind = iota + 1
	inOwn
	inLoggedIn
	inConnLost
	inGapCheck
	inFill
	inFillFailed
	inAckFlush
	inAckDone
	inList
)

type input struct {
	kind        inputKind
	push        Push
	msg         Message
	conv        Conv
	msgs        []Message
	login       *LoginResult
	reconnected bool
	list        *ListResult
	acks        []AckItem
	err         error
	gen         int
	done        chan struct{} // inOwn: closed once handled
}

// NewSession returns a Session; call Login, then Run.
func NewSession(opts SessionOptions) *Session {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 200 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 10 * time.Second
	}
	if opts.GapWait <= 0 {
		opts.GapWait = 500 * time.Millisecond
	}
	if opts.AckDelay <= 0 {
		opts.AckDelay = 200 * time.Millisecond
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 30 * time.Second
	}
	if opts.SyncInterval == 0 {
		opts.SyncInterval = 60 * time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	if opts.Backlog <= 0 {
		opts.Backlog = protocol.MaxOfflinePerConv
	}
	if opts.OnEvent == nil {
		opts.OnEvent = func(Event) {}
	}
	return &Session{
		opts:    opts,
		cids:    NewCIDGen(),
		in:      make(chan input, 1024),
		stop:    make(chan struct{}),
		changed: make(chan struct{}),
		token:   opts.Token,
		convs:   make(map[Conv]*convState),
	}
}

// User returns the logged-in user (zero before the first login).
func (s *Session) User() protocol.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user
}

// Token returns the current token ("" before the first login).
func (s *Session) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// Conn returns the current connection, or nil while disconnected. Use it
// for requests that must not be retried blindly (ADD_FRIEND, ...).
func (s *Session) Conn() *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil || isDone(s.conn) {
		return nil
	}
	return s.conn
}

func isDone(c *Conn) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}

// WaitConn waits for a logged-in connection.
func (s *Session) WaitConn(ctx context.Context) (*Conn, error) {
	for {
		s.mu.Lock()
		c, ch, closed, cerr := s.conn, s.changed, s.closed, s.closeErr
		s.mu.Unlock()
		if closed {
			if cerr != nil {
				return nil, fmt.Errorf("%w: %w", ErrSessionClosed, cerr)
			}
			return nil, ErrSessionClosed
		}
		if c != nil && !isDone(c) {
			return c, nil
		}
		var cdone <-chan struct{}
		if c != nil {
			cdone = c.Done()
		}
		select {
		case <-ch:
		case <-cdone:
			// lost; wait for the replacement
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, fmt.Errorf("client: waiting for a connection: %w", ctx.Err())
			case <-s.stop:
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("client: waiting for a connection: %w", ctx.Err())
		case <-s.stop:
		}
	}
}

// Delivered returns the highest seq of conv shown to the application with
// no gap below it.
func (s *Session) Delivered(conv Conv) int64 {
	s.smu.Lock()
	defer s.smu.Unlock()
	if cs := s.convs[conv]; cs != nil {
		return cs.delivered
	}
	return 0
}

func (s *Session) post(in input) {
	select {
	case s.in <- in:
	case <-s.stop:
	}
}

// Login connects and logs in (token first when there is one, else the
// password). Pushes that follow (offline messages) are held until Run.
func (s *Session) Login(ctx context.Context) (LoginResult, error) {
	c, lr, err := s.connect(ctx)
	if err != nil {
		return LoginResult{}, err
	}
	s.installConn(c, &lr, false)
	return lr, nil
}

// connect dials and logs in once.
func (s *Session) connect(ctx context.Context) (*Conn, LoginResult, error) {
	opts := append([]Option{WithKeepAlive(s.opts.PingInterval), WithLogger(s.opts.Logger)}, s.opts.ConnOptions...)
	c, err := Dial(ctx, s.opts.Addr, opts...)
	if err != nil {
		return nil, LoginResult{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	tok := s.Token()
	var lr LoginResult
	if tok != "" {
		lr, err = c.LoginToken(rctx, tok)
		if IsErrno(err, protocol.ErrUnauthorized) && s.opts.Password != "" {
			s.opts.Logger.Info("token refused, logging in with the password")
			err = s.passwordLogin(rctx, c, &lr)
		}
	} else {
		err = s.passwordLogin(rctx, c, &lr)
	}
	if err != nil {
		c.Close()
		return nil, LoginResult{}, err
	}
	return c, lr, nil
}

func (s *Session) passwordLogin(ctx context.Context, c *Conn, lr *LoginResult) error {
	var err error
	switch {
	case s.opts.Password == "":
		return fmt.Errorf("client: login: no token and no password")
	case s.opts.Name != "":
		*lr, err = c.LoginPassword(ctx, s.opts.Name, s.opts.Password)
	case s.opts.ID != 0:
		*lr, err = c.LoginID(ctx, s.opts.ID, s.opts.Password)
	default:
		return fmt.Errorf("client: login: a password needs a name or an id")
	}
	return err
}

// installConn makes c the current connection and starts pumping its pushes.
func (s *Session) installConn(c *Conn, lr *LoginResult, reconnected bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.conn = c
	s.connGen++
	gen := s.connGen
	s.token = lr.Token
	s.user = lr.User
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.post(input{kind: inLoggedIn, login: lr, reconnected: reconnected, gen: gen})
	go func() {
		for p := range c.Pushes() {
			s.post(input{kind: inPush, push: p, gen: gen})
		}
		s.post(input{kind: inConnLost, err: c.Err(), gen: gen})
	}()
}

// Run dispatches events and keeps the session connected until ctx ends,
// Close or Logout is called, or the credentials are refused. It returns nil
// after Close or Logout.
func (s *Session) Run(ctx context.Context) error {
	s.runMu.Lock()
	if s.running {
		s.runMu.Unlock()
		return errors.New("client: Session.Run called twice")
	}
	s.running = true
	s.runMu.Unlock()
	defer s.shutdown(nil)
	if s.opts.SyncInterval > 0 {
		go s.syncLoop(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			s.shutdown(ctx.Err())
			s.opts.OnEvent(Event{Kind: EventClosed, Err: ctx.Err()})
			return ctx.Err()
		case <-s.stop:
			err := s.closeReason()
			s.opts.OnEvent(Event{Kind: EventClosed, Err: err})
			return err
		case in := <-s.in:
			s.handle(ctx, in)
		}
	}
}

func (s *Session) closeReason() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeErr
}

// Close ends the session and its connection without logging out (the token
// stays valid).
func (s *Session) Close() error {
	s.shutdown(nil)
	return nil
}

// Logout revokes the token (LOGOUT) and ends the session.
func (s *Session) Logout(ctx context.Context) error {
	var err error
	if c := s.Conn(); c != nil {
		err = c.Logout(ctx)
	}
	s.shutdown(nil)
	return err
}

func (s *Session) shutdown(reason error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.closeErr = reason
		c := s.conn
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		close(s.stop)
		if c != nil {
			c.Close()
		}
	})
}

func (s *Session) currentGen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connGen
}

func (s *Session) conv(c Conv) *convState {
	cs := s.convs[c]
	if cs == nil {
		cs = &convState{delivered: -1}
		s.convs[c] = cs
	}
	return cs
}

// handle runs on the dispatch goroutine.
func (s *Session) handle(ctx context.Context, in input) {
	switch in.kind {
	case inLoggedIn:
		s.baseline(in.login.Friends, in.login.Groups)
		s.opts.OnEvent(Event{Kind: EventConnected, Login: in.login, Reconnected: in.reconnected})
		s.scheduleAck() // resend ACKs lost with the old connection
	case inList:
		s.baseline(in.list.Friends, in.list.Groups)
	case inPush:
		switch in.push.MsgID {
		case protocol.PushChat, protocol.PushGroupChat:
			m, err := in.push.Message()
			if err != nil {
				s.opts.OnEvent(Event{Kind: EventError, Err: err})
				return
			}
			s.arrive(m)
		case protocol.PushGoAway:
			s.opts.OnEvent(Event{Kind: EventPush, Push: in.push})
			s.mu.Lock()
			c := s.conn
			same := s.connGen == in.gen
			s.mu.Unlock()
			if same && c != nil {
				go c.Close() // reconnect through the balancer
			}
		default:
			s.opts.OnEvent(Event{Kind: EventPush, Push: in.push})
		}
	case inOwn:
		s.arrive(in.msg)
		close(in.done)
	case inConnLost:
		if in.gen != s.currentGen() {
			return
		}
		err := in.err
		select {
		case <-s.stop:
			return
		default:
		}
		s.opts.OnEvent(Event{Kind: EventDisconnected, Err: err})
		go s.reconnect(ctx, in.gen)
	case inGapCheck:
		s.smu.Lock()
		cs := s.conv(in.conv)
		cs.gapTimer = false
		s.smu.Unlock()
		s.maybeFill(in.conv)
	case inFill:
		s.smu.Lock()
		cs := s.conv(in.conv)
		cs.filling = false
		s.smu.Unlock()
		for _, m := range in.msgs {
			s.arrive(m)
		}
		s.smu.Lock()
		cs = s.conv(in.conv)
		more := cs.known > cs.delivered && len(in.msgs) > 0
		s.smu.Unlock()
		if more {
			s.maybeFill(in.conv)
		} else {
			s.armGap(in.conv)
		}
	case inFillFailed:
		s.smu.Lock()
		s.conv(in.conv).filling = false
		s.smu.Unlock()
		if !errors.Is(in.err, ErrClosed) {
			s.opts.OnEvent(Event{Kind: EventError, Err: in.err})
		}
		s.armGap(in.conv)
	case inAckFlush:
		s.ackTimer = false
		s.flushAcks()
	case inAckDone:
		s.smu.Lock()
		for _, it := range in.acks {
			cv := FriendConv(it.FriendID)
			if it.GroupID != 0 {
				cv = GroupConv(it.GroupID)
			}
			cs := s.conv(cv)
			if in.err != nil {
				if cs.ackSent == it.Seq {
					cs.ackSent = 0 // resend later
				}
			}
		}
		s.smu.Unlock()
		if in.err != nil && !errors.Is(in.err, ErrClosed) {
			s.opts.OnEvent(Event{Kind: EventError, Err: in.err})
		}
	}
}

// baseline sets the starting point of conversations seen for the first
// time: the user's cursor (lastseq − unread), at most Backlog below lastseq.
func (s *Session) baseline(friends []protocol.Friend, groups []protocol.Group) {
	s.smu.Lock()
	defer s.smu.Unlock()
	set := func(cv Conv, last, unread int64) {
		cs := s.conv(cv)
		if cs.delivered < 0 {
			cs.delivered = max(last-unread, last-s.opts.Backlog, 0)
		}
		cs.known = max(cs.known, last)
	}
	for _, f := range friends {
		set(FriendConv(f.ID), f.LastSeq, f.Unread)
	}
	for _, g := range groups {
		set(GroupConv(g.ID), g.LastSeq, g.Unread)
	}
	for cv, cs := range s.convs {
		if cs.known > cs.delivered {
			s.armGapLocked(cv, cs)
		}
	}
}

// arrive orders one message into its conversation and shows what became
// contiguous.
func (s *Session) arrive(m Message) {
	self := s.User().ID
	cv := m.Conv(self)
	s.smu.Lock()
	cs := s.conv(cv)
	if cs.delivered < 0 {
		// First message of a conversation we had no baseline for (a group
		// just joined, a new friend): start here.
		cs.delivered = m.Seq - 1
	}
	if m.Seq <= cs.delivered {
		s.smu.Unlock()
		return // duplicate
	}
	cs.known = max(cs.known, m.Seq)
	if m.Seq > cs.delivered+1 {
		if cs.held == nil {
			cs.held = make(map[int64]Message)
		}
		cs.held[m.Seq] = m
		s.armGapLocked(cv, cs)
		s.smu.Unlock()
		return
	}
	// contiguous: show it and whatever was held right above it
	batch := []Message{m}
	cs.delivered = m.Seq
	for {
		next, ok := cs.held[cs.delivered+1]
		if !ok {
			break
		}
		delete(cs.held, next.Seq)
		batch = append(batch, next)
		cs.delivered = next.Seq
	}
	s.smu.Unlock()
	for _, bm := range batch {
		s.opts.OnEvent(Event{Kind: EventMessage, Msg: bm, Conv: cv, Own: bm.From == self})
	}
	s.smu.Lock()
	cs.ackWant = max(cs.ackWant, cs.delivered)
	s.smu.Unlock()
	s.scheduleAck()
}

func (s *Session) armGap(cv Conv) {
	s.smu.Lock()
	defer s.smu.Unlock()
	cs := s.conv(cv)
	if cs.known > cs.delivered {
		s.armGapLocked(cv, cs)
	}
}

func (s *Session) armGapLocked(cv Conv, cs *convState) {
	if cs.gapTimer || cs.filling {
		return
	}
	cs.gapTimer = true
	time.AfterFunc(s.opts.GapWait, func() { s.post(input{kind: inGapCheck, conv: cv}) })
}

// maybeFill starts a HISTORY request for the lowest gap of cv.
func (s *Session) maybeFill(cv Conv) {
	s.smu.Lock()
	cs := s.conv(cv)
	if cs.filling || cs.known <= cs.delivered {
		s.smu.Unlock()
		return
	}
	before := cs.known + 1
	for seq := range cs.held {
		before = min(before, seq)
	}
	limit := min(before-1-cs.delivered, protocol.MaxHistoryLimit)
	if limit <= 0 {
		s.smu.Unlock()
		return
	}
	cs.filling = true
	s.smu.Unlock()
	q := HistoryQuery{Before: before, Limit: int(limit)}
	if cv.Group {
		q.GroupID = cv.ID
	} else {
		q.FriendID = cv.ID
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
		defer cancel()
		c, err := s.WaitConn(ctx)
		if err == nil {
			var msgs []Message
			msgs, err = c.History(ctx, q)
			if err == nil {
				s.post(input{kind: inFill, conv: cv, msgs: msgs})
				return
			}
		}
		s.post(input{kind: inFillFailed, conv: cv, err: fmt.Errorf("client: fill gap in %s below seq %d: %w", cv, before, err)})
	}()
}

func (s *Session) scheduleAck() {
	if s.ackTimer {
		return
	}
	s.ackTimer = true
	time.AfterFunc(s.opts.AckDelay, func() { s.post(input{kind: inAckFlush}) })
}

func (s *Session) flushAcks() {
	var items []AckItem
	s.smu.Lock()
	for cv, cs := range s.convs {
		if cs.ackWant > cs.ackSent {
			it := AckItem{Seq: cs.ackWant}
			if cv.Group {
				it.GroupID = cv.ID
			} else {
				it.FriendID = cv.ID
			}
			items = append(items, it)
			cs.ackSent = cs.ackWant
		}
	}
	s.smu.Unlock()
	if len(items) == 0 {
		return
	}
	sort.Slice(items, func(i, j int) bool {
		return items[i].GroupID < items[j].GroupID || items[i].GroupID == items[j].GroupID && items[i].FriendID < items[j].FriendID
	})
	c := s.Conn()
	if c == nil {
		// Not connected: forget what was "sent"; the next login resends.
		s.smu.Lock()
		for _, it := range items {
			cv := FriendConv(it.FriendID)
			if it.GroupID != 0 {
				cv = GroupConv(it.GroupID)
			}
			if cs := s.convs[cv]; cs != nil && cs.ackSent == it.Seq {
				cs.ackSent = 0
			}
		}
		s.smu.Unlock()
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
		defer cancel()
		err := c.Ack(ctx, items)
		if err != nil && len(items) > 1 && Errno(err) >= 400 && Errno(err) < 500 {
			// All or nothing: one conversation we left spoils the batch.
			// Retry one by one and drop those refused.
			err = nil
			for _, it := range items {
				if e := c.Ack(ctx, []AckItem{it}); e != nil && !(Errno(e) >= 400 && Errno(e) < 500) {
					err = e
				}
			}
		} else if Errno(err) >= 400 && Errno(err) < 500 {
			err = nil // conversation gone: nothing to ACK
		}
		if err != nil {
			err = fmt.Errorf("client: ack: %w", err)
		}
		s.post(input{kind: inAckDone, acks: items, err: err})
	}()
}

// reconnect dials with backoff until logged in again or the session ends.
func (s *Session) reconnect(ctx context.Context, gen int) {
	delay := s.opts.MinBackoff
	for attempt := 1; ; attempt++ {
		jitter := time.Duration(rand.Int64N(int64(delay)/2 + 1))
		t := time.NewTimer(delay*3/4 + jitter)
		select {
		case <-t.C:
		case <-s.stop:
			t.Stop()
			return
		case <-ctx.Done():
			t.Stop()
			return
		}
		c, lr, err := s.connect(ctx)
		if err == nil {
			s.opts.Logger.Info("reconnected", "attempt", attempt, "addr", c.RemoteAddr().String())
			s.installConn(c, &lr, true)
			return
		}
		var ce *Error
		if errors.As(err, &ce) {
			switch ce.Errno {
			case protocol.ErrUnauthorized, protocol.ErrBadRequest:
				// token revoked or expired, and no usable password
				s.shutdown(fmt.Errorf("client: log in again: %w", err))
				return
			case protocol.ErrRateLimited:
				if ce.RetryAfter > 0 {
					delay = time.Duration(ce.RetryAfter) * time.Millisecond
					continue
				}
			}
		}
		s.opts.Logger.Debug("reconnect failed", "attempt", attempt, "err", err)
		delay = min(delay*2, s.opts.MaxBackoff)
	}
}

// SendChat sends a direct message to friend toid and waits for it to be
// stored. Across lost connections and 503/429 answers it is retried with
// the same cid until ctx ends, so it is stored exactly once. On success the
// message is also reported as an EventMessage (Own) in its seq order,
// usually before SendChat returns. Do not call it from OnEvent.
func (s *Session) SendChat(ctx context.Context, toid int64, msg string) (Message, error) {
	return s.send(ctx, FriendConv(toid), msg)
}

// GroupChat sends a message to group groupid; see SendChat.
func (s *Session) GroupChat(ctx context.Context, groupid int64, msg string) (Message, error) {
	return s.send(ctx, GroupConv(groupid), msg)
}

func (s *Session) send(ctx context.Context, cv Conv, msg string) (Message, error) {
	cid := s.cids.Next()
	delay := s.opts.MinBackoff
	for {
		c, err := s.WaitConn(ctx)
		if err != nil {
			return Message{}, fmt.Errorf("client: send to %s: %w", cv, err)
		}
		var seq, tm int64
		if cv.Group {
			seq, tm, err = c.GroupChat(ctx, cv.ID, msg, cid)
		} else {
			seq, tm, err = c.SendChat(ctx, cv.ID, msg, cid)
		}
		if err == nil {
			u := s.User()
			m := Message{From: u.ID, FromName: u.Name, Msg: msg, Seq: seq, Time: tm, CID: cid}
			if cv.Group {
				m.GroupID = cv.ID
			} else {
				m.ToID = cv.ID
			}
			// Let the dispatcher order (and usually show) it before returning,
			// so that the caller's "sent" comes after the message itself.
			shown := make(chan struct{})
			s.post(input{kind: inOwn, msg: m, done: shown})
			t := time.NewTimer(2 * time.Second) // Run may not be running
			select {
			case <-shown:
			case <-ctx.Done():
			case <-s.stop:
			case <-t.C:
			}
			t.Stop()
			return m, nil
		}
		if ctx.Err() != nil {
			return Message{}, fmt.Errorf("client: send to %s: %w", cv, err)
		}
		var ce *Error
		if errors.As(err, &ce) {
			wait := delay
			switch {
			case ce.Errno == protocol.ErrRateLimited && ce.RetryAfter > 0:
				wait = time.Duration(ce.RetryAfter) * time.Millisecond
			case ce.Errno == protocol.ErrUnavailable, ce.Errno == protocol.ErrRateLimited:
				delay = min(delay*2, s.opts.MaxBackoff)
			default:
				return Message{}, err
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return Message{}, fmt.Errorf("client: send to %s: %w", cv, ctx.Err())
			}
		}
		// connection lost: WaitConn waits for the next one
	}
}

// List runs LIST and learns the cursors of conversations new to the session
// (a friend or group added since login).
func (s *Session) List(ctx context.Context) (ListResult, error) {
	c, err := s.WaitConn(ctx)
	if err != nil {
		return ListResult{}, err
	}
	lr, err := c.List(ctx)
	if err != nil {
		return lr, err
	}
	s.post(input{kind: inList, list: &lr})
	return lr, nil
}

// syncLoop runs LIST every SyncInterval while the session lives.
func (s *Session) syncLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.stop:
			return
		case <-t.C:
		}
		c := s.Conn()
		if c == nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		lr, err := c.List(rctx)
		cancel()
		if err == nil {
			s.post(input{kind: inList, list: &lr})
		}
	}
}
