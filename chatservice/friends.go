package chatservice

import (
	"context"
	"errors"

	"clusterchat/chatservice/protocol"
	"clusterchat/model"
)

// userLists is what LOGIN and LIST answer: friends, groups, requests.
type userLists struct {
	friends, groups, requests []byte
	friendIDs                 []int64
	offline                   []offlineConv // for LOGIN's offline push
}

func (l *userLists) write(w *frameWriter) {
	w.Raw("friends", l.friends).Raw("groups", l.groups).Raw("requests", l.requests)
}

func (s *Service) lists(ctx context.Context, uid int64) (*userLists, *apiError) {
	friends, err := s.store.Friends(ctx, uid)
	if err != nil {
		return nil, s.storeErr(err, "friends")
	}
	groups, err := s.store.UserGroups(ctx, uid)
	if err != nil {
		return nil, s.storeErr(err, "groups")
	}
	requests, err := s.store.FriendRequests(ctx, uid)
	if err != nil {
		return nil, s.storeErr(err, "requests")
	}
	l := &userLists{friendIDs: make([]int64, len(friends))}
	for i, f := range friends {
		l.friendIDs[i] = f.User.ID
	}
	on := s.online(ctx, l.friendIDs)
	fa := newArray()
	for i, f := range friends {
		fa.Obj().Int("id", f.User.ID).Str("name", f.User.Name).Bool("online", on[i]).
			Int("unread", unread(f.LastSeq, f.Cursor)).Int("lastseq", f.LastSeq).End()
	}
	ga := newArray()
	for _, g := range groups {
		ga.Obj().Int("id", g.Group.ID).Str("name", g.Group.Name).Str("desc", g.Group.Desc).Str("role", g.Role).
			Int("unread", unread(g.LastSeq, max(g.Cursor, g.JoinedSeq))).Int("lastseq", g.LastSeq).End()
	}
	ra := newArray()
	for _, u := range requests {
		ra.Obj().Int("id", u.ID).Str("name", u.Name).End()
	}
	l.friends, l.groups, l.requests = fa.Bytes(), ga.Bytes(), ra.Bytes()
	l.offline = offlineConvs(uid, friends, groups)
	return l, nil
}

func unread(last, cursor int64) int64 {
	if last > cursor {
		return last - cursor
	}
	return 0
}

func (s *Service) handleList(c *call) *apiError {
	uid := c.sess.userID.Load()
	if uid == 0 {
		return errNotLoggedIn
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	l, err := s.lists(ctx, uid)
	if err != nil {
		return err
	}
	l.write(c.resp)
	return nil
}

// otherUser reads a user-id field that must name someone else, checks the
// login and that the user exists. It returns the caller's id too.
func (s *Service) otherUser(c *call, ctx context.Context, field string) (me int64, other model.User, aerr *apiError) {
	id := c.req.id(field)
	if c.req.err != nil {
		return 0, other, c.req.err
	}
	me = c.sess.userID.Load()
	if me == 0 {
		return 0, other, errNotLoggedIn
	}
	if id == me {
		return 0, other, errf(protocol.ErrBadRequest, "%s names yourself", field)
	}
	other, err := s.store.UserByID(ctx, id)
	if err != nil {
		return 0, other, s.storeErr(err, "user")
	}
	return me, other, nil
}

// friendTarget reads "friendid" for ADD_FRIEND and ACCEPT_FRIEND: the
// caller, its current name (for the pushes), and the other user.
func (s *Service) friendTarget(c *call, ctx context.Context) (me int64, myName string, other model.User, aerr *apiError) {
	if me, other, aerr = s.otherUser(c, ctx, "friendid"); aerr != nil {
		return 0, "", other, aerr
	}
	if myName, aerr = s.myName(ctx, me); aerr != nil {
		return 0, "", other, aerr
	}
	return me, myName, other, nil
}

// myName returns the caller's current name.
func (s *Service) myName(ctx context.Context, uid int64) (string, *apiError) {
	if n, ok := s.reg.name(uid); ok {
		return n, nil
	}
	u, err := s.store.UserByID(ctx, uid)
	if err != nil {
		return "", s.storeErr(err, "user")
	}
	return u.Name, nil
}

func (s *Service) handleAddFriend(c *call) *apiError {
	ctx, cancel := s.storeCtx()
	defer cancel()
	me, myName, other, aerr := s.friendTarget(c, ctx)
	if aerr != nil {
		return aerr
	}
	st, err := s.store.RequestFriend(ctx, me, other.ID)
	if errors.Is(err, model.ErrConflict) {
		return errf(protocol.ErrConflict, "already friends or already requested")
	} else if err != nil {
		return s.storeErr(err, "user")
	}
	if st == model.FriendAccepted {
		c.resp.Str("status", protocol.StatusFriends)
		c.after = func() { s.pushFriendAdded(c.sess, me, myName, other) }
		return nil
	}
	c.resp.Str("status", protocol.StatusRequested)
	frame := newFrame(203).Raw("user", userJSON(me, myName)).Bytes()
	c.after = func() { s.push([]int64{other.ID}, frame, nil) }
	return nil
}

// pushFriendAdded tells both users (every session but the requesting one)
// that they are friends now; each gets the other as "friend".
func (s *Service) pushFriendAdded(sess *session, me int64, myName string, other model.User) {
	on := s.online(s.ctx, []int64{me, other.ID})
	toOther := newFrame(204).Raw("friend", onlineUserJSON(me, myName, on[0])).Bytes()
	toMe := newFrame(204).Raw("friend", onlineUserJSON(other.ID, other.Name, on[1])).Bytes()
	s.push([]int64{other.ID}, toOther, nil)
	s.push([]int64{me}, toMe, sess)
}

func onlineUserJSON(id int64, name string, online bool) []byte {
	b := userJSON(id, name)
	b = b[:len(b)-1]
	b = append(b, `,"online":`...)
	if online {
		b = append(b, "true}"...)
	} else {
		b = append(b, "false}"...)
	}
	return b
}

func (s *Service) handleAcceptFriend(c *call) *apiError {
	ctx, cancel := s.storeCtx()
	defer cancel()
	me, myName, other, aerr := s.friendTarget(c, ctx)
	if aerr != nil {
		return aerr
	}
	if err := s.store.AcceptFriend(ctx, me, other.ID); errors.Is(err, model.ErrNotFound) {
		return errf(protocol.ErrNotFound, "no pending request from user %d", other.ID)
	} else if errors.Is(err, model.ErrConflict) {
		return errf(protocol.ErrConflict, "already friends")
	} else if err != nil {
		return s.storeErr(err, "friend request")
	}
	c.after = func() { s.pushFriendAdded(c.sess, me, myName, other) }
	return nil
}

func (s *Service) handleDelFriend(c *call) *apiError {
	ctx, cancel := s.storeCtx()
	defer cancel()
	me, other, aerr := s.otherUser(c, ctx, "friendid")
	if aerr != nil {
		return aerr
	}
	if _, err := s.store.DeleteFriend(ctx, me, other.ID); errors.Is(err, model.ErrNotFound) {
		return errf(protocol.ErrNotFound, "neither a friend nor a pending request")
	} else if err != nil {
		return s.storeErr(err, "friend")
	}
	s.reg.dropFriends(me)
	s.reg.dropFriends(other.ID)
	toOther := newFrame(208).Int("id", me).Bytes()
	toMe := newFrame(208).Int("id", other.ID).Bytes()
	c.after = func() {
		s.push([]int64{other.ID}, toOther, nil)
		s.push([]int64{me}, toMe, c.sess)
	}
	return nil
}

func (s *Service) handleFindUsers(c *call) *apiError {
	q := c.req.str("query")
	if c.req.err != nil {
		return c.req.err
	}
	me := c.sess.userID.Load()
	if me == 0 {
		return errNotLoggedIn
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	users, err := s.store.FindUsers(ctx, q, me, protocol.MaxFindResults)
	if err != nil {
		return s.storeErr(err, "users")
	}
	ids := make([]int64, len(users))
	for i, u := range users {
		ids[i] = u.ID
	}
	on := s.online(ctx, ids)
	a := newArray()
	for i, u := range users {
		a.Obj().Int("id", u.ID).Str("name", u.Name).Bool("online", on[i]).End()
	}
	c.resp.Raw("users", a.Bytes())
	return nil
}
