package shell

import (
	"context"
	"fmt"
	"strings"
	"time"

	"clusterchat/chatservice/protocol"
	"clusterchat/client"
)

// requestTimeout bounds one command's request, including a short wait for
// a reconnect.
const requestTimeout = 15 * time.Second

// exec runs one command after login. It returns errQuit or errLoggedOut to
// leave the command loop.
func (sh *shell) exec(ctx context.Context, sess *client.Session, sq *sender, cmd Command) error {
	switch cmd.Name {
	case "help":
		sh.help(true)
		return nil
	case "quit":
		return errQuit
	case "login", "register":
		sh.fail(cmd.Name, fmt.Errorf("already logged in as %s (logout first)", Sanitize(sess.User().Name)))
		return nil
	case "showme":
		sh.showLists()
		return nil
	case "chat", "groupchat":
		sq.send(cmd)
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if cmd.Name == "updatelist" {
		lr, err := sess.List(rctx)
		if err != nil {
			sh.fail(cmd.Name, err)
			return nil
		}
		sh.mu.Lock()
		sh.setLists(lr.Friends, lr.Groups, lr.Requests)
		sh.mu.Unlock()
		sh.showLists()
		return nil
	}
	if cmd.Name == "logout" {
		if err := sess.Logout(rctx); err != nil {
			sh.fail(cmd.Name, err)
		} else {
			sh.ok("logout", "", "logged out")
		}
		return errLoggedOut
	}
	c, err := sess.WaitConn(rctx)
	if err != nil {
		sh.fail(cmd.Name, err)
		return nil
	}
	if err := sh.request(rctx, sess, c, cmd); err != nil {
		sh.fail(cmd.Name, err)
	}
	return nil
}

func (sh *shell) request(ctx context.Context, sess *client.Session, c *client.Conn, cmd Command) error {
	p := sh.pal
	switch cmd.Name {
	case "addfriend":
		st, err := c.AddFriend(ctx, cmd.ID)
		if err != nil {
			return err
		}
		if st == protocol.StatusFriends {
			sh.ok(cmd.Name, "status=friends", fmt.Sprintf("%s✓ you and %d are now friends%s", p.green, cmd.ID, p.reset))
			sh.refresh(ctx, sess)
		} else {
			sh.ok(cmd.Name, "status="+st, fmt.Sprintf("✓ friend request sent to %d", cmd.ID))
		}
	case "accept":
		if err := c.AcceptFriend(ctx, cmd.ID); err != nil {
			return err
		}
		sh.mu.Lock()
		delete(sh.requests, cmd.ID)
		sh.mu.Unlock()
		sh.ok(cmd.Name, fmt.Sprintf("id=%d", cmd.ID), fmt.Sprintf("%s✓ you and %d are now friends%s", p.green, cmd.ID, p.reset))
		sh.refresh(ctx, sess)
	case "delfriend":
		if err := c.DelFriend(ctx, cmd.ID); err != nil {
			return err
		}
		sh.mu.Lock()
		delete(sh.friends, cmd.ID)
		delete(sh.requests, cmd.ID)
		sh.mu.Unlock()
		sh.ok(cmd.Name, fmt.Sprintf("id=%d", cmd.ID), fmt.Sprintf("✓ %d removed", cmd.ID))
	case "creategroup":
		g, err := c.CreateGroup(ctx, cmd.Text, cmd.Desc)
		if err != nil {
			return err
		}
		sh.addGroup(g)
		sh.ok(cmd.Name, fmt.Sprintf("id=%d name=%s", g.ID, quote(g.Name)),
			fmt.Sprintf("✓ group %s created with id %d", sh.name(g.Name), g.ID))
	case "joingroup":
		g, err := c.JoinGroup(ctx, cmd.ID)
		if err != nil {
			return err
		}
		sh.addGroup(g)
		sh.ok(cmd.Name, fmt.Sprintf("id=%d name=%s", g.ID, quote(g.Name)),
			fmt.Sprintf("✓ joined group %d %s", g.ID, sh.name(g.Name)))
	case "quitgroup":
		if err := c.QuitGroup(ctx, cmd.ID); err != nil {
			return err
		}
		sh.dropGroup(cmd.ID)
		sh.ok(cmd.Name, fmt.Sprintf("id=%d", cmd.ID), fmt.Sprintf("✓ left group %d", cmd.ID))
	case "deletegroup":
		if err := c.DeleteGroup(ctx, cmd.ID); err != nil {
			return err
		}
		sh.dropGroup(cmd.ID)
		sh.ok(cmd.Name, fmt.Sprintf("id=%d", cmd.ID), fmt.Sprintf("✓ group %d deleted", cmd.ID))
	case "list":
		ms, err := c.GroupMembers(ctx, cmd.ID)
		if err != nil {
			return err
		}
		var b strings.Builder
		if !sh.plain {
			fmt.Fprintf(&b, "Members of group %d:\n", cmd.ID)
		}
		for _, m := range ms {
			if sh.plain {
				fmt.Fprintf(&b, "MEMBER id=%d name=%s role=%s online=%t\n", m.ID, quote(m.Name), m.Role, m.Online)
				continue
			}
			state := p.dim + "offline" + p.reset
			if m.Online {
				state = p.green + "online" + p.reset
			}
			fmt.Fprintf(&b, "  %-6d %s  %s  %s\n", m.ID, sh.name(m.Name), m.Role, state)
		}
		if sh.plain {
			fmt.Fprintf(&b, "OK list count=%d\n", len(ms))
		}
		sh.ui.Print(b.String())
	case "findusers":
		us, err := c.FindUsers(ctx, cmd.Text)
		if err != nil {
			return err
		}
		var b strings.Builder
		for _, u := range us {
			if sh.plain {
				fmt.Fprintf(&b, "USER id=%d name=%s online=%t\n", u.ID, quote(u.Name), u.Online)
				continue
			}
			state := p.dim + "offline" + p.reset
			if u.Online {
				state = p.green + "online" + p.reset
			}
			fmt.Fprintf(&b, "  %-6d %s  %s\n", u.ID, sh.name(u.Name), state)
		}
		if sh.plain {
			fmt.Fprintf(&b, "OK findusers count=%d\n", len(us))
		} else if len(us) == 0 {
			b.WriteString("no such users\n")
		}
		sh.ui.Print(b.String())
	case "findgroups":
		gs, err := c.FindGroups(ctx, cmd.Text)
		if err != nil {
			return err
		}
		var b strings.Builder
		for _, g := range gs {
			if sh.plain {
				fmt.Fprintf(&b, "FOUNDGROUP id=%d name=%s desc=%s members=%d\n", g.ID, quote(g.Name), quote(g.Desc), g.Members)
				continue
			}
			fmt.Fprintf(&b, "  %-6d %s  %s  (%d members)\n", g.ID, sh.name(g.Name), Sanitize(g.Desc), g.Members)
		}
		if sh.plain {
			fmt.Fprintf(&b, "OK findgroups count=%d\n", len(gs))
		} else if len(gs) == 0 {
			b.WriteString("no such groups\n")
		}
		sh.ui.Print(b.String())
	case "history", "ghistory":
		return sh.history(ctx, c, cmd)
	case "nick":
		u, err := c.SetName(ctx, cmd.Text)
		if err != nil {
			return err
		}
		sh.mu.Lock()
		sh.me = u
		sh.mu.Unlock()
		sh.ui.SetPrompt(sh.prompt())
		sh.ok(cmd.Name, "name="+quote(u.Name), "✓ you are now "+sh.name(u.Name))
	default:
		return fmt.Errorf("command %s is not available here", cmd.Name)
	}
	return nil
}

// history pages back with HISTORY until n messages (or the start).
func (sh *shell) history(ctx context.Context, c *client.Conn, cmd Command) error {
	n := cmd.N
	if n == 0 {
		n = protocol.DefaultHistoryLimit
	}
	cv := client.FriendConv(cmd.ID)
	if cmd.Name == "ghistory" {
		cv = client.GroupConv(cmd.ID)
	}
	var all []client.Message
	before := int64(0)
	for len(all) < n {
		q := client.HistoryQuery{Before: before, Limit: min(n-len(all), protocol.MaxHistoryLimit)}
		if cv.Group {
			q.GroupID = cv.ID
		} else {
			q.FriendID = cv.ID
		}
		ms, err := c.History(ctx, q)
		if err != nil {
			return err
		}
		all = append(ms, all...)
		if len(ms) < q.Limit || len(ms) == 0 || ms[0].Seq <= 1 {
			break
		}
		before = ms[0].Seq
	}
	var b strings.Builder
	if !sh.plain {
		fmt.Fprintf(&b, "%s--- history of %s (%d messages) ---%s\n", sh.pal.dim, sh.convTitle(cv), len(all), sh.pal.reset)
	}
	for _, m := range all {
		if sh.plain {
			fmt.Fprintf(&b, "HISTORY conv=%s seq=%d from=%d name=%s time=%s text=%s\n",
				cv, m.Seq, m.From, quote(m.FromName), plainTime(m.Time), quote(m.Msg))
			continue
		}
		b.WriteString(sh.humanMessage(m, cv, m.From == sh.meID()))
	}
	if sh.plain {
		fmt.Fprintf(&b, "OK %s count=%d\n", cmd.Name, len(all))
	} else {
		fmt.Fprintf(&b, "%s---%s\n", sh.pal.dim, sh.pal.reset)
	}
	sh.ui.Print(b.String())
	return nil
}

func (sh *shell) meID() int64 {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.me.ID
}

func (sh *shell) refresh(ctx context.Context, sess *client.Session) {
	lr, err := sess.List(ctx)
	if err != nil {
		return
	}
	sh.mu.Lock()
	sh.setLists(lr.Friends, lr.Groups, lr.Requests)
	sh.mu.Unlock()
}

func (sh *shell) addGroup(g protocol.GroupInfo) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.groups[g.ID] = &protocol.Group{ID: g.ID, Name: g.Name, Desc: g.Desc, Role: g.Role}
}

func (sh *shell) dropGroup(id int64) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	delete(sh.groups, id)
}

func (sh *shell) showLists() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var b strings.Builder
	if sh.plain {
		sh.writeListsPlain(&b)
		b.WriteString("OK list\n")
	} else {
		fmt.Fprintf(&b, "You: id %d, %s\n", sh.me.ID, sh.name(sh.me.Name))
		sh.writeListsHuman(&b, strings.Repeat("-", 60))
	}
	sh.ui.Print(b.String())
}
