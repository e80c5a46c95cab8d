package chatservice

import (
	"context"
	"errors"
	"time"

	"clusterchat/chatservice/protocol"
	"clusterchat/model"
)

// messageFrame renders a message as its push (201 or 202); with msgid 0
// it renders the HISTORY shape, which is the push without msgid.
func messageFrame(m model.Message, push bool) []byte {
	var w *frameWriter
	if push {
		if m.Conv.IsGroup() {
			w = newFrame(protocol.PushGroupChat)
		} else {
			w = newFrame(protocol.PushChat)
		}
		w.b = append(w.b, ',')
	} else {
		w = &frameWriter{b: append(make([]byte, 0, 128), '{')}
	}
	start := len(w.b)
	if m.Conv.IsGroup() {
		w.Int("groupid", m.Conv.Group)
	}
	w.Int("from", m.From).Str("fromname", m.FromName)
	if !m.Conv.IsGroup() {
		w.Int("toid", m.Conv.Peer(m.From))
	}
	w.Str("msg", m.Body).Int("seq", m.Seq).Int("time", m.Time).Str("cid", m.CID)
	// key() writes a leading comma; the first field of the object has none.
	w.b = append(w.b[:start], w.b[start+1:]...)
	return w.Bytes()
}

func (s *Service) handleOneChat(c *call) *apiError {
	toid := c.req.id("toid")
	msg := c.req.msgText()
	cid := c.req.cid()
	if c.req.err != nil {
		return c.req.err
	}
	me := c.sess.userID.Load()
	if me == 0 {
		return errNotLoggedIn
	}
	if toid == me {
		return errf(protocol.ErrBadRequest, "toid names yourself")
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	// My name and, on a sole server, the friend check from the registry
	// in one look-up. With several servers the store checks the
	// friendship inside the storing transaction (FriendsOnly).
	name, known, friend := s.reg.nameAndFriend(me, toid)
	if s.cfg.SoleServer && !friend {
		if aerr := s.requireFriend(ctx, me, toid); aerr != nil {
			return aerr
		}
	}
	if !known {
		var aerr *apiError
		if name, aerr = s.myName(ctx, me); aerr != nil {
			return aerr
		}
	}
	return s.sendMessage(ctx, c, model.Direct(me, toid), me, name, msg, cid)
}

func (s *Service) handleGroupChat(c *call) *apiError {
	gid, me, aerr := s.groupCall(c)
	msg := c.req.msgText()
	cid := c.req.cid()
	if c.req.err != nil {
		return c.req.err
	}
	if aerr != nil {
		return aerr
	}
	// Membership (403) and existence (404) are checked by the store inside
	// the storing transaction; the members are read afterwards, only to
	// know whom to push to.
	ctx, cancel := s.storeCtx()
	defer cancel()
	name, aerr := s.myName(ctx, me)
	if aerr != nil {
		return aerr
	}
	return s.sendMessage(ctx, c, model.GroupConv(gid), me, name, msg, cid)
}

// requireFriend answers 404 when other does not exist and 403 when it is
// not a friend of me, on a sole server after the registry's cache (which
// every friend change clears, as they all happen in this process) has
// missed; a friendship found is cached. With several servers on one store
// a friendship can end on another server at any moment, so the store
// checks it in the transaction that stores the message instead
// (model.NewMessage.FriendsOnly) and notFriend names the refusal.
func (s *Service) requireFriend(ctx context.Context, me, other int64) *apiError {
	ok, err := s.store.AreFriends(ctx, me, other)
	if err != nil {
		return s.storeErr(err, "friend")
	}
	if ok {
		s.reg.cacheFriend(me, other)
		return nil
	}
	return s.notFriend(ctx, other)
}

// notFriend is the error of a direct message to other, who is not a
// friend: 404 when other does not exist, else 403.
func (s *Service) notFriend(ctx context.Context, other int64) *apiError {
	if _, err := s.store.UserByID(ctx, other); err != nil {
		return s.storeErr(err, "user")
	}
	return errf(protocol.ErrForbidden, "user %d is not your friend", other)
}

// sendMessage stores a message of me (whose name is name) durably, before
// the response, answers seq and time, then pushes it to every recipient
// session and the sender's other sessions.
//
// The recipients are the peer and me for a direct conversation, the
// members of a group who joined before the message (read after it is
// stored).
//
// ctx bounds the store calls (the caller's storeCtx).
func (s *Service) sendMessage(ctx context.Context, c *call, conv model.Conv, me int64, name, body, cid string) *apiError {
	// Pushes of one conversation leave this server in seq order: the
	// conversation's lock is held from storing to publishing, so a later
	// seq cannot overtake an earlier one (PROTOCOL.md §6).
	defer s.convLocks.unlock(conv, s.convLocks.lock(conv))
	start := time.Now()
	m, dup, err := s.store.StoreMessage(ctx, model.NewMessage{
		Conv: conv, From: me, FromName: name, Body: body, CID: cid, Time: start.UnixMilli(),
		FriendsOnly: !conv.IsGroup() && !s.cfg.SoleServer,
	})
	s.metrics.storeLatency.Observe(time.Since(start).Seconds())
	if errors.Is(err, model.ErrForbidden) && !conv.IsGroup() {
		return s.notFriend(ctx, conv.Peer(me))
	} else if errors.Is(err, model.ErrForbidden) {
		return errf(protocol.ErrForbidden, "not a member of this group")
	} else if errors.Is(err, model.ErrNotFound) {
		return errf(protocol.ErrNotFound, "no such group")
	} else if err != nil {
		return s.storeErr(err, "message")
	}
	if !dup {
		s.metrics.messages.Inc()
	}
	c.resp.Int("seq", m.Seq).Int("time", m.Time)
	c.respondNow()
	var users []int64
	if conv.IsGroup() {
		users, err = s.members.recipients(ctx, s.store, conv.Group, m.Seq)
	} else {
		c.req.peers = [2]int64{conv.Peer(me), me}
		users = c.req.peers[:]
	}
	if err != nil {
		// Stored and acknowledged: the recipients find it by the offline
		// push or HISTORY.
		s.log.Warn("cannot read recipients; message stored but not pushed", "conv", conv, "seq", m.Seq, "err", err)
		return nil
	}
	s.push(users, messageFrame(m, true), c.sess)
	return nil
}

func (s *Service) handleHistory(c *call) *apiError {
	hasF, hasG := c.req.has("friendid"), c.req.has("groupid")
	if hasF == hasG {
		return errf(protocol.ErrBadRequest, "name exactly one of friendid or groupid")
	}
	var fid, gid int64
	if hasF {
		fid = c.req.id("friendid")
	} else {
		gid = c.req.id("groupid")
	}
	before := c.req.optID("before")
	limit := int64(protocol.DefaultHistoryLimit)
	if c.req.has("limit") {
		v := c.req.get("limit")
		n, ok := parseJSONInt(v)
		if !ok || n < 1 || n > protocol.MaxHistoryLimit {
			c.req.fail(protocol.ErrBadRequest, "limit must be an integer from 1 to 100")
		}
		limit = n
	}
	if c.req.err != nil {
		return c.req.err
	}
	me := c.sess.userID.Load()
	if me == 0 {
		return errNotLoggedIn
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	var conv model.Conv
	var floor int64
	if hasF {
		if fid == me {
			return errf(protocol.ErrBadRequest, "friendid names yourself")
		}
		if aerr := s.requireFriend(ctx, me, fid); aerr != nil {
			return aerr
		}
		conv = model.Direct(me, fid)
	} else {
		m, aerr := s.membership(ctx, gid, me)
		if aerr != nil {
			return aerr
		}
		conv, floor = model.GroupConv(gid), m.JoinedSeq
	}
	msgs, err := s.store.Messages(ctx, conv, floor, before, int(limit))
	if err != nil {
		return s.storeErr(err, "history")
	}
	a := make([]byte, 0, 64+len(msgs)*160)
	a = append(a, '[')
	for i, m := range msgs {
		if i > 0 {
			a = append(a, ',')
		}
		a = append(a, messageFrame(m, false)...)
	}
	c.resp.Raw("messages", append(a, ']'))
	return nil
}

func (s *Service) handleAck(c *call) *apiError {
	arr := c.req.get("acks")
	if !arr.Exists() || !arr.IsArray() {
		return errf(protocol.ErrBadRequest, "acks must be an array")
	}
	entries := arr.Array()
	if len(entries) == 0 {
		return errf(protocol.ErrBadRequest, "acks is empty")
	}
	type ackReq struct {
		friend, group, seq int64
	}
	reqs := make([]ackReq, 0, len(entries))
	for _, e := range entries {
		if !e.IsObject() {
			return errf(protocol.ErrBadRequest, "each ack must be an object")
		}
		hasF, hasG := e.Get("friendid").Exists(), e.Get("groupid").Exists()
		if hasF == hasG {
			return errf(protocol.ErrBadRequest, "each ack names exactly one of friendid or groupid")
		}
		sub := &request{root: e}
		var a ackReq
		if hasF {
			a.friend = sub.id("friendid")
		} else {
			a.group = sub.id("groupid")
		}
		a.seq = sub.id("seq")
		if sub.err != nil {
			return sub.err
		}
		reqs = append(reqs, a)
	}
	me := c.sess.userID.Load()
	if me == 0 {
		return errNotLoggedIn
	}
	for _, a := range reqs {
		if a.friend == me {
			return errf(protocol.ErrBadRequest, "friendid names yourself")
		}
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	// Existence (404) of every target before permission (403).
	for _, a := range reqs {
		if a.friend != 0 {
			if _, err := s.store.UserByID(ctx, a.friend); err != nil {
				return s.storeErr(err, "user")
			}
		} else if _, err := s.store.GroupByID(ctx, a.group); err != nil {
			return s.groupErr(err)
		}
	}
	acks := make([]model.Ack, 0, len(reqs))
	for _, a := range reqs {
		if a.friend != 0 {
			if ok, err := s.store.AreFriends(ctx, me, a.friend); err != nil {
				return s.storeErr(err, "friend")
			} else if !ok {
				return errf(protocol.ErrForbidden, "user %d is not your friend", a.friend)
			}
			acks = append(acks, model.Ack{Conv: model.Direct(me, a.friend), Seq: a.seq})
		} else {
			if _, aerr := s.membership(ctx, a.group, me); aerr != nil {
				return aerr
			}
			acks = append(acks, model.Ack{Conv: model.GroupConv(a.group), Seq: a.seq})
		}
	}
	if err := s.store.AckMessages(ctx, me, acks); err != nil {
		return s.storeErr(err, "ack")
	}
	return nil
}

// offlinePushTimeout bounds how long one offline push may wait for a slow
// reader.
const offlinePushTimeout = 2 * time.Minute

// offlineConv is a conversation with messages above the user's cursor:
// the offline push sends those after seq after.
type offlineConv struct {
	conv  model.Conv
	after int64
}

// offlineConvs picks, from a user's friends and groups, the conversations
// with messages above the user's cursor.
func offlineConvs(uid int64, friends []model.Friend, groups []model.Membership) []offlineConv {
	var todo []offlineConv
	for _, f := range friends {
		if f.LastSeq > f.Cursor {
			todo = append(todo, offlineConv{model.Direct(uid, f.User.ID), f.Cursor})
		}
	}
	for _, g := range groups {
		if after := max(g.Cursor, g.JoinedSeq); g.LastSeq > after {
			todo = append(todo, offlineConv{model.GroupConv(g.Group.ID), after})
		}
	}
	return todo
}

// pushOffline pushes every message above the user's cursor in each of its
// conversations, ascending, at most MaxOfflinePerConv per conversation.
// todo names those conversations when the caller has just read the user's
// friends and groups (LOGIN's lists, read after the session was
// registered, so that a message stored later is pushed live); with
// known false pushOffline reads them.
//
// The caller has closed the session's push gate before the messages are
// read, so that live pushes do not overtake them; pushOffline opens it
// when done, whatever happened.
func (s *Service) pushOffline(sess *session, uid int64, todo []offlineConv, known bool) {
	sent := make(map[model.Conv]int64)
	defer func() {
		if n := sess.gate.open(sess.conn, sent); n > 0 {
			s.log.Warn("live pushes dropped during a long offline push", "user", uid, "dropped", n)
		}
	}()
	ctx, cancel := s.storeCtx()
	defer cancel()
	if !known {
		friends, err := s.store.Friends(ctx, uid)
		if err != nil {
			s.log.Warn("offline push: cannot list friends", "user", uid, "err", err)
			return
		}
		groups, err := s.store.UserGroups(ctx, uid)
		if err != nil {
			s.log.Warn("offline push: cannot list groups", "user", uid, "err", err)
			return
		}
		todo = offlineConvs(uid, friends, groups)
	}
	if len(todo) == 0 {
		return
	}
	// A backlog can be far larger than the high-water mark: pace it by the
	// connection's unsent output, so that a slow reader is waited for
	// rather than closed.
	paceCtx, paceCancel := context.WithTimeout(s.ctx, offlinePushTimeout)
	defer paceCancel()
	chunk, limit := max(s.cfg.HighWater/8, 4096), max(s.cfg.HighWater/4, 4096)
	for _, p := range todo {
		msgs, err := s.store.Messages(ctx, p.conv, p.after, 0, protocol.MaxOfflinePerConv)
		if err != nil {
			s.log.Warn("offline push: cannot read messages", "user", uid, "err", err)
			return
		}
		bytes := 0
		for _, m := range msgs {
			f := messageFrame(m, true)
			if err := sess.conn.Send(f); err != nil {
				return
			}
			sent[p.conv] = m.Seq
			s.metrics.pushes.Inc()
			if bytes += len(f); bytes >= chunk {
				bytes = 0
				if err := sess.conn.WaitUnsent(paceCtx, limit); err != nil {
					s.log.Info("offline push stopped", "user", uid, "err", err)
					return
				}
			}
		}
	}
}
