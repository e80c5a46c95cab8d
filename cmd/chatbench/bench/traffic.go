package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"clusterchat/chatservice/protocol"
	"clusterchat/client"
)

// sender is one sending connection and its conversation: a friend (pairs)
// or a group it owns (group).
type sender struct {
	idx        int
	u          *user
	target     int64 // toid or groupid
	group      bool
	recipients []*receiver // every connection that must get each message

	mu    sync.Mutex
	acked bitset // seqs acknowledged with errno 0

	// The in-flight window: a send holds a slot from the moment it is
	// written until its response, its timeout or the connection's end.
	// Each index is either in free or held; slots are guarded by mu.
	slots []sendSlot
	free  chan int
	dead  bool // the connection ended: every send fails as closed (under mu)
}

// sendSlot is one outstanding send.
type sendSlot struct {
	reqid    uint64        // 0: not outstanding
	stamp    time.Duration // latency origin (run clock)
	deadline time.Duration // run clock: --timeout after it was written
}

// initWindow gives s its --inflight slots and attaches it to its
// connection's reader.
func (s *sender) initWindow(inflight int) {
	s.slots = make([]sendSlot, inflight)
	s.free = make(chan int, inflight)
	for k := range inflight {
		s.free <- k
	}
	s.u.lc.snd.Store(s)
}

// reqID is the reqid of message i sent in slot k: slot k of the window
// answers to it, later messages in the same slot do not.
func (s *sender) reqID(i int64, k int) uint64 {
	return leanBase + uint64(i)*uint64(len(s.slots)) + uint64(k)
}

// arm marks slot k outstanding for reqid; false when the connection has
// ended (the slot is then free again and the send counted as closed).
func (s *sender) arm(r *run, k int, reqid uint64, stamp, now time.Duration) bool {
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		r.st.addErrKey("closed")
		s.free <- k
		return false
	}
	s.slots[k] = sendSlot{reqid: reqid, stamp: stamp, deadline: now + r.cfg.Timeout}
	s.mu.Unlock()
	return true
}

// onAck handles the response to one of s's sends (on the reader
// goroutine). An answer to a send that already timed out is dropped, as
// the client library drops an abandoned request's answer.
func (s *sender) onAck(r *run, fi *frameInfo, now time.Duration, shard int) {
	k := int((fi.reqid - leanBase) % uint64(len(s.slots)))
	errno := fi.errno
	if fi.msgid == protocol.PushError && errno == 0 {
		errno = protocol.ErrBadRequest
	}
	s.mu.Lock()
	sl := &s.slots[k]
	if sl.reqid != fi.reqid {
		s.mu.Unlock()
		return
	}
	stamp := sl.stamp
	sl.reqid = 0
	dup := false
	if errno == 0 {
		dup = fi.seq <= 0 || s.acked.set(fi.seq)
	}
	s.mu.Unlock()
	// Counted before the slot is free: once every slot is, the send phase
	// is over and the grace wait compares the deliveries with expected.
	if errno != 0 {
		r.st.addErrKey(strconv.Itoa(errno))
	} else {
		r.st.acked.Add(1)
		r.st.expected.Add(int64(len(s.recipients)))
		storeMax(&r.st.lastAck, int64(now))
		r.ackHist.record(shard, now-stamp)
		if dup {
			r.st.dupAcks.Add(1)
		}
	}
	s.free <- k
}

// expire fails the sends whose --timeout has passed at now.
func (s *sender) expire(r *run, now time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.slots {
		if sl := &s.slots[k]; sl.reqid != 0 && now >= sl.deadline {
			sl.reqid = 0
			r.st.addErrKey("timeout")
			s.free <- k
		}
	}
}

// failAll fails every outstanding send with key (the connection ended:
// "closed"; the run was interrupted: "canceled"). After "closed" every
// later send fails at once.
func (s *sender) failAll(r *run, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if key == "closed" {
		s.dead = true
	}
	for k := range s.slots {
		if sl := &s.slots[k]; sl.reqid != 0 {
			sl.reqid = 0
			r.st.addErrKey(key)
			s.free <- k
		}
	}
}

// drain waits until every send of s has been answered, timed out or
// failed.
func (s *sender) drain(ctx context.Context, r *run) {
	for range len(s.slots) {
		select {
		case <-s.free:
		case <-ctx.Done():
			s.failAll(r, "canceled")
			<-s.free
		}
	}
}

// frameParts are the constant pieces of s's send frames: a frame is
// header, part[0], reqid, part[1], cid, `"}`.
func (s *sender) frameParts(body string) [2][]byte {
	var p [2][]byte
	msgid, key := protocol.OneChat, "toid"
	if s.group {
		msgid, key = protocol.GroupChat, "groupid"
	}
	p[0] = strconv.AppendInt([]byte(`{"msgid":`), int64(msgid), 10)
	p[0] = append(p[0], `,"reqid":`...)
	p[1] = append(append([]byte(`,"`), key...), `":`...)
	p[1] = strconv.AppendInt(p[1], s.target, 10)
	p[1] = append(p[1], `,"msg":`...)
	p[1] = protocol.AppendString(p[1], body)
	p[1] = append(p[1], `,"cid":"`...)
	return p
}

// appendFrame appends the frame of message i, sent in slot k with send
// stamp stamp, to b.
func (s *sender) appendFrame(b []byte, parts *[2][]byte, i int64, k int, stamp time.Duration) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	b = append(b, parts[0]...)
	b = strconv.AppendUint(b, s.reqID(i, k), 10)
	b = append(b, parts[1]...)
	b = appendCID(b, s.idx, i, stamp)
	b = append(b, '"', '}')
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b
}

// traffic runs the pairs or group scenario.
func (r *run) traffic(ctx context.Context, rep *Report) error {
	cfg := r.cfg
	setupStart := r.now()
	var (
		users   []*user
		senders []*sender
		err     error
	)
	newRx := func(i int) *receiver { return &receiver{r: r, idx: i} }
	switch cfg.Scenario {
	case ScenarioPairs:
		users, err = r.setupUsers(ctx, 2*cfg.Pairs, true, newRx)
		if err != nil {
			return err
		}
		defer closeAll(users)
		r.setPhase("friends", nil)
		if err := parallel(ctx, cfg.Pairs, cfg.SetupConc, func(ctx context.Context, p int) error {
			return r.befriend(ctx, users[2*p], users[2*p+1])
		}); err != nil {
			return fmt.Errorf("setup friends: %w", err)
		}
		for p := range cfg.Pairs {
			// Odd pairs send the other way, so that with two servers each
			// has half the senders (and every pair still crosses).
			a, b := users[2*p], users[2*p+1]
			if p%2 == 1 {
				a, b = b, a
			}
			senders = append(senders, &sender{idx: p, u: a, target: b.id, recipients: []*receiver{b.rx}})
		}
	case ScenarioGroup:
		g := cfg.GroupSize
		users, err = r.setupUsers(ctx, g*cfg.Groups, true, newRx)
		if err != nil {
			return err
		}
		defer closeAll(users)
		senders, err = r.setupGroups(ctx, users)
		if err != nil {
			return err
		}
	}
	r.waitQuiet(ctx, 5*time.Second) // setup pushes (FRIEND_ADDED, GROUP_EVENT) drain first
	rep.Users = len(users)
	rep.Senders = len(senders)
	rep.SetupS = roundTo((r.now() - setupStart).Seconds(), 2)
	rep.RatePerSender = cfg.Rate
	rep.OfferedPerS = cfg.Rate * float64(len(senders))
	rep.DurationS = cfg.Duration.Seconds()
	rep.InFlight = cfg.InFlight
	rep.MsgSize = cfg.MsgSize
	if cfg.Scenario == ScenarioGroup {
		rep.GroupSize, rep.Groups = cfg.GroupSize, cfg.Groups
	} else {
		rep.Pairs = cfg.Pairs
	}

	body := strings.Repeat("x", cfg.MsgSize)
	before := r.sampleServers()
	start := r.now() + 20*time.Millisecond
	end := start + cfg.Duration
	r.setPhase("send", nil)
	waitProfiles := r.profileServers(ctx, start-r.now()+cfg.PprofDelay, cfg.Duration)
	for _, s := range senders {
		s.initWindow(cfg.InFlight)
	}
	stopExpire := make(chan struct{})
	expireDone := make(chan struct{})
	go func() {
		defer close(expireDone)
		r.expireLoop(senders, stopExpire)
	}()
	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.sendLoop(ctx, s, body, start, end)
		}()
	}
	wg.Wait()
	close(stopExpire)
	<-expireDone
	sendDone := r.now()
	after := r.sampleServers()
	rep.Servers = r.serverReport(before, after, sendDone-start)
	rep.Profiles = waitProfiles()

	// Grace: wait until every acknowledged message reached every recipient.
	r.setPhase("grace", func() string {
		return fmt.Sprintf("owed %d", r.st.expected.Load()-r.st.unique.Load())
	})
	graceEnd := time.Now().Add(cfg.Grace)
	for r.st.unique.Load() < r.st.expected.Load() && time.Now().Before(graceEnd) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}

	var (
		lost, unacked int64
		gaps          []gap
	)
	for _, s := range senders {
		s.mu.Lock()
		for _, rx := range s.recipients {
			rx.mu.Lock()
			if n := s.acked.andNotCount(rx.got); n > 0 {
				lost += n
				gaps = append(gaps, gap{s: s, u: users[rx.idx], missing: s.acked.andNot(rx.got)})
			}
			unacked += rx.got.andNotCount(s.acked)
			rx.mu.Unlock()
		}
		s.mu.Unlock()
	}
	if len(gaps) > 0 && ctx.Err() == nil {
		r.setPhase("history", nil)
		rep.LostInHistory = r.checkHistory(ctx, gaps)
	}
	st := &r.st
	rep.Sent, rep.Acked = st.sent.Load(), st.acked.Load()
	rep.Errors = st.errMap()
	rep.Expected = st.expected.Load()
	rep.Delivered, rep.DeliveredUnique = st.delivered.Load(), st.unique.Load()
	rep.Lost, rep.Duplicated, rep.OutOfOrder = lost, st.duplicated.Load(), st.outOfOrder.Load()
	rep.DeliveredUnacked = unacked
	rep.DuplicateAcks = st.dupAcks.Load()
	rep.OtherPushes, rep.BadPushes = st.otherPushes.Load(), st.badPushes.Load()
	if w := time.Duration(st.lastAck.Load()) - start; w > 0 {
		rep.AcksPerS = roundTo(float64(rep.Acked)/w.Seconds(), 1)
	}
	if w := time.Duration(st.lastDelivery.Load()) - start; w > 0 {
		rep.DeliveriesPerS = roundTo(float64(rep.Delivered)/w.Seconds(), 1)
	}
	rep.AckLatency = summarize(r.ackHist.merged())
	rep.DeliveryLatency = summarize(r.delHist.merged())
	rep.PacerLag = summarize(r.lagHist.merged())
	if rep.DuplicateAcks > 0 {
		return fmt.Errorf("%w: the server acknowledged %d messages with a seq it had already given", ErrCheckFailed, rep.DuplicateAcks)
	}
	return nil
}

// setupGroups creates cfg.Groups groups (user g·G owns group g) and joins
// the other members; it returns one sender per group (its owner).
func (r *run) setupGroups(ctx context.Context, users []*user) ([]*sender, error) {
	g := r.cfg.GroupSize
	senders := make([]*sender, r.cfg.Groups)
	r.setPhase("groups", nil)
	if err := parallel(ctx, r.cfg.Groups, r.cfg.SetupConc, func(ctx context.Context, k int) error {
		owner := users[k*g]
		rctx, cancel := r.reqCtx(ctx)
		defer cancel()
		gi, err := owner.conn.CreateGroup(rctx, fmt.Sprintf("%s group %d", r.prefix, k), "chatbench")
		if err != nil {
			return fmt.Errorf("%s CREATE_GROUP: %w", owner.name, err)
		}
		s := &sender{idx: k, u: owner, target: gi.ID, group: true}
		for m := 1; m < g; m++ {
			s.recipients = append(s.recipients, users[k*g+m].rx)
		}
		senders[k] = s
		return nil
	}); err != nil {
		return nil, fmt.Errorf("setup groups: %w", err)
	}
	var joined atomic.Int64
	joins := r.cfg.Groups * (g - 1)
	r.setPhase("join", func() string { return fmt.Sprintf("%d/%d", joined.Load(), joins) })
	if err := parallel(ctx, joins, r.cfg.SetupConc, func(ctx context.Context, j int) error {
		k, m := j/(g-1), j%(g-1)+1
		u := users[k*g+m]
		rctx, cancel := r.reqCtx(ctx)
		defer cancel()
		if _, err := u.conn.JoinGroup(rctx, senders[k].target); err != nil {
			return fmt.Errorf("%s JOIN_GROUP %d: %w", u.name, senders[k].target, err)
		}
		joined.Add(1)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("setup groups: %w", err)
	}
	return senders, nil
}

// waitQuiet waits (at most max) until no push arrived for 200 ms.
func (r *run) waitQuiet(ctx context.Context, max time.Duration) {
	deadline := time.Now().Add(max)
	last, since := r.st.otherPushes.Load(), time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		if n := r.st.otherPushes.Load(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= 200*time.Millisecond {
			return
		}
	}
}

// sendLoop sends s's messages on schedule from start until end: message i
// is due at start + i/rate (start offset by a random fraction of the
// interval so that senders do not fire together); a late loop catches up
// at once. At most --inflight sends are outstanding; when the window is
// full the loop waits, and the wait counts in the latency of the messages
// that fall due meanwhile, which is measured from their due time (so a slow
// server shows as latency, not as a lower rate; no coordinated omission).
// Only the timer's own lateness after a sleep is left out (it is reported,
// with any other lateness, as the pacer lag). With rate 0 messages go as
// fast as the window allows.
//
// The loop writes its frames itself. Messages that are due together
// (a late pacer, or rate 0 with room in the window) go out in one write;
// everything queued is written before the loop waits.
func (r *run) sendLoop(ctx context.Context, s *sender, body string, start, end time.Duration) {
	rate := r.cfg.Rate
	var interval float64
	if rate > 0 {
		interval = float64(time.Second) / rate
		start += time.Duration(rand.Float64() * interval)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	sleep := func(d time.Duration) bool {
		if d <= 20*time.Millisecond {
			// Short: a plain sleep (no channel, no select); an
			// interruption is seen at most 20 ms late.
			time.Sleep(d)
			return ctx.Err() == nil
		}
		timer.Reset(d)
		select {
		case <-timer.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if d := start - r.now(); d > 0 && !sleep(d) {
		return
	}
	parts := s.frameParts(body)
	var batch []byte
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := s.u.lc.writeFrames(batch); err != nil {
			// The reader then ends too and fails the outstanding sends;
			// the connection keeps err as its cause.
			s.u.lc.abort(err)
		}
		batch = batch[:0]
	}
	defer s.drain(ctx, r)
	defer flush()
	for i := int64(0); ; i++ {
		var sched, stamp time.Duration
		if rate > 0 {
			sched = start + time.Duration(float64(i)*interval)
			if sched >= end {
				return
			}
			// The message is sent, and its latency counts, from its due
			// time; when the pacer had to sleep until then, from its
			// wake-up, so that the timer's own lateness is not charged to
			// the server. A pacer that is late because the window was full
			// (a slow server) does not sleep: the wait counts.
			stamp = sched
			if d := sched - r.now(); d > 0 {
				flush()
				if !sleep(d) {
					return
				}
				stamp = r.now()
			}
			r.lagHist.record(s.idx, r.now()-sched)
		} else if r.now() >= end {
			return
		}
		var k int
		select {
		case k = <-s.free:
		default:
			flush()
			select {
			case k = <-s.free:
			case <-ctx.Done():
				return
			}
		}
		r.st.sent.Add(1)
		now := r.now()
		if rate <= 0 {
			// Unpaced, a message is due when a slot is free: its latency
			// counts from then, not from the wait for the slot (with one
			// in flight, the previous message's round trip).
			stamp = now
		}
		if !s.arm(r, k, s.reqID(i, k), stamp, now) {
			continue
		}
		batch = s.appendFrame(batch, &parts, i, k, stamp)
		if len(batch) >= 16<<10 {
			flush()
		}
	}
}

// expireLoop fails the sends that reached --timeout, until stop is closed.
func (r *run) expireLoop(senders []*sender, stop <-chan struct{}) {
	tick := min(r.cfg.Timeout/4, 50*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := r.now()
		for _, s := range senders {
			s.expire(r, now)
		}
	}
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// sleepCtx sleeps for d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// gap is what one recipient (u) is missing of one sender's acknowledged
// messages.
type gap struct {
	s       *sender
	u       *user
	missing []int64 // ascending
}

// checkHistory looks the missing messages up with HISTORY on each
// recipient's own connection, as a client filling a gap would, and returns
// how many were found: a lost push of a stored message is recoverable, a
// message missing from HISTORY too is a lost message.
func (r *run) checkHistory(ctx context.Context, gaps []gap) int64 {
	var found atomic.Int64
	_ = parallel(ctx, len(gaps), r.cfg.SetupConc, func(ctx context.Context, i int) error {
		g := gaps[i]
		q := client.HistoryQuery{FriendID: g.s.u.id, Limit: protocol.MaxHistoryLimit}
		if g.s.group {
			q = client.HistoryQuery{GroupID: g.s.target, Limit: protocol.MaxHistoryLimit}
		}
		// Page down from the highest missing seq; each page covers
		// [lowest returned seq, before).
		j := len(g.missing) - 1
		for j >= 0 {
			q.Before = g.missing[j] + 1
			rctx, cancel := r.reqCtx(ctx)
			msgs, err := g.u.conn.History(rctx, q)
			cancel()
			if err != nil {
				r.logf("warning: HISTORY for %s: %v", g.u.name, err)
				return nil
			}
			have := make(map[int64]bool, len(msgs))
			lo := int64(0)
			for k, m := range msgs {
				have[m.Seq] = true
				if k == 0 || m.Seq < lo {
					lo = m.Seq
				}
			}
			if len(msgs) < q.Limit {
				lo = 0 // the page reached the conversation's start
			}
			for ; j >= 0 && g.missing[j] >= lo; j-- {
				if have[g.missing[j]] {
					found.Add(1)
				}
			}
		}
		return nil
	})
	return found.Load()
}
