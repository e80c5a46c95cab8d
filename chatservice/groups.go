package chatservice

import (
	"context"
	"errors"

	"clusterchat/chatservice/protocol"
	"clusterchat/model"
)

func groupJSON(g model.Group, role string) []byte {
	a := newArray()
	a.Obj().Int("id", g.ID).Str("name", g.Name).Str("desc", g.Desc).Str("role", role).End()
	b := a.Bytes()
	return b[1 : len(b)-1]
}

func groupEvent(gid int64, event string, uid int64, name string) []byte {
	return newFrame(206).Int("groupid", gid).Str("event", event).Raw("user", userJSON(uid, name)).Bytes()
}

// groupCall reads "groupid", checks the login, and returns the caller.
func (s *Service) groupCall(c *call) (gid, me int64, aerr *apiError) {
	gid = c.req.id("groupid")
	if c.req.err != nil {
		return 0, 0, c.req.err
	}
	me = c.sess.userID.Load()
	if me == 0 {
		return 0, 0, errNotLoggedIn
	}
	return gid, me, nil
}

func (s *Service) groupErr(err error) *apiError {
	switch {
	case errors.Is(err, model.ErrNotFound):
		return errf(protocol.ErrNotFound, "no such group")
	case errors.Is(err, model.ErrForbidden):
		return errf(protocol.ErrForbidden, "not a member of this group")
	case errors.Is(err, model.ErrConflict):
		return errf(protocol.ErrConflict, "already a member of this group")
	}
	return s.storeErr(err, "group")
}

func (s *Service) handleCreateGroup(c *call) *apiError {
	name := c.req.str("groupname")
	if c.req.err == nil && !validName(name, protocol.MaxGroupName) {
		c.req.fail(protocol.ErrBadRequest, "groupname must be 1-64 characters, without control characters or surrounding spaces")
	}
	desc := c.req.optStr("groupdesc", "")
	if c.req.err == nil && !validDesc(desc) {
		c.req.fail(protocol.ErrBadRequest, "groupdesc must be at most 256 characters, without control characters")
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
	g, err := s.store.CreateGroup(ctx, me, name, desc)
	if err != nil {
		return s.storeErr(err, "group")
	}
	c.resp.Raw("group", groupJSON(g, model.RoleOwner))
	return nil
}

// changeGroup runs a change of the caller's membership of a group (JOIN,
// QUIT, DELETE): it reads "groupid", checks the login, and runs change
// under the group's lock, which also orders the group's messages. So
// group events leave in the order of the changes ("owner" right after its
// "quit"); change sends them before the response, so that a requester who
// has its answer knows the others have been told. The cached member list
// is dropped afterwards.
func (s *Service) changeGroup(c *call, change func(ctx context.Context, gid, me int64, myName string) *apiError) *apiError {
	gid, me, aerr := s.groupCall(c)
	if aerr != nil {
		return aerr
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	myName, aerr := s.myName(ctx, me)
	if aerr != nil {
		return aerr
	}
	conv := model.GroupConv(gid)
	defer s.convLocks.unlock(conv, s.convLocks.lock(conv))
	defer s.members.drop(gid)
	return change(ctx, gid, me, myName)
}

func (s *Service) handleJoinGroup(c *call) *apiError {
	return s.changeGroup(c, func(ctx context.Context, gid, me int64, myName string) *apiError {
		m, err := s.store.JoinGroup(ctx, gid, me)
		if err != nil {
			return s.groupErr(err)
		}
		members, err := s.store.GroupMembers(ctx, gid)
		if err != nil {
			return s.groupErr(err)
		}
		c.resp.Raw("group", groupJSON(m.Group, m.Role))
		s.push(memberIDs(members), groupEvent(gid, protocol.EventJoin, me, myName), c.sess)
		return nil
	})
}

func memberIDs(ms []model.Member) []int64 {
	ids := make([]int64, len(ms))
	for i, m := range ms {
		ids[i] = m.User.ID
	}
	return ids
}

func (s *Service) handleQuitGroup(c *call) *apiError {
	return s.changeGroup(c, func(ctx context.Context, gid, me int64, myName string) *apiError {
		res, err := s.store.QuitGroup(ctx, gid, me)
		if err != nil {
			return s.groupErr(err)
		}
		// The leaver's other sessions hear of it too.
		targets := append([]int64{me}, res.Remaining...)
		s.push(targets, groupEvent(gid, protocol.EventQuit, me, myName), c.sess)
		if res.NewOwner != 0 {
			u, err := s.store.UserByID(ctx, res.NewOwner)
			if err != nil {
				s.log.Warn("group owner event: cannot read new owner", "group", gid, "err", err)
				return nil
			}
			s.push(targets, groupEvent(gid, protocol.EventOwner, u.ID, u.Name), c.sess)
		}
		return nil
	})
}

func (s *Service) handleDeleteGroup(c *call) *apiError {
	return s.changeGroup(c, func(ctx context.Context, gid, me int64, myName string) *apiError {
		members, err := s.store.DeleteGroup(ctx, gid, me)
		if errors.Is(err, model.ErrForbidden) {
			return errf(protocol.ErrForbidden, "only the owner may delete the group")
		} else if err != nil {
			return s.groupErr(err)
		}
		s.push(members, groupEvent(gid, protocol.EventDeleted, me, myName), c.sess)
		return nil
	})
}

func (s *Service) handleGroupMembers(c *call) *apiError {
	gid, me, aerr := s.groupCall(c)
	if aerr != nil {
		return aerr
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	if _, err := s.store.Membership(ctx, gid, me); err != nil {
		return s.groupErr(err)
	}
	members, err := s.store.GroupMembers(ctx, gid)
	if err != nil {
		return s.groupErr(err)
	}
	on := s.online(ctx, memberIDs(members))
	a := newArray()
	for i, m := range members {
		a.Obj().Int("id", m.User.ID).Str("name", m.User.Name).Str("role", m.Role).Bool("online", on[i]).End()
	}
	c.resp.Raw("members", a.Bytes())
	return nil
}

func (s *Service) handleFindGroups(c *call) *apiError {
	q := c.req.optStr("query", "")
	if c.req.err != nil {
		return c.req.err
	}
	if !c.sess.loggedIn() {
		return errNotLoggedIn
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	groups, err := s.store.FindGroups(ctx, q, protocol.MaxFindResults)
	if err != nil {
		return s.storeErr(err, "groups")
	}
	a := newArray()
	for _, g := range groups {
		a.Obj().Int("id", g.Group.ID).Str("name", g.Group.Name).Str("desc", g.Group.Desc).Int("members", int64(g.Members)).End()
	}
	c.resp.Raw("groups", a.Bytes())
	return nil
}

// membership returns the caller's membership, as an apiError when the
// group is gone (404) or the caller is not a member (403).
func (s *Service) membership(ctx context.Context, gid, me int64) (model.Membership, *apiError) {
	m, err := s.store.Membership(ctx, gid, me)
	if err != nil {
		return m, s.groupErr(err)
	}
	return m, nil
}
