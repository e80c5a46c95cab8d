package shell

import (
	"fmt"
	"strconv"

	"clusterchat/chatservice/protocol"
	"clusterchat/client"
)

// onEvent renders one session event; it runs on the session's dispatch
// goroutine. Messages count as shown (and are ACKed) when it returns.
func (sh *shell) onEvent(ev client.Event) {
	switch ev.Kind {
	case client.EventMessage:
		sh.showMessage(ev)
	case client.EventPush:
		sh.showPush(ev.Push)
	case client.EventConnected:
		if !ev.Reconnected {
			return // the welcome screen shows the login
		}
		sh.mu.Lock()
		sh.me = ev.Login.User
		sh.setLists(ev.Login.Friends, ev.Login.Groups, ev.Login.Requests)
		sh.mu.Unlock()
		if sh.plain {
			sh.printf("CONNECTED id=%d name=%s reconnected=true", ev.Login.User.ID, quote(ev.Login.User.Name))
		} else {
			sh.printf("%s-- reconnected%s", sh.pal.green, sh.pal.reset)
		}
	case client.EventDisconnected:
		if sh.plain {
			sh.printf("DISCONNECTED err=%s", quote(errText(ev.Err)))
		} else {
			sh.printf("%s-- connection lost (%s); reconnecting…%s", sh.pal.yellow, Sanitize(errText(ev.Err)), sh.pal.reset)
		}
	case client.EventError:
		if sh.plain {
			sh.printf("WARN text=%s", quote(errText(ev.Err)))
		} else {
			sh.printf("%s-- %s%s", sh.pal.yellow, Sanitize(errText(ev.Err)), sh.pal.reset)
		}
	case client.EventClosed:
		if ev.Err == nil {
			return
		}
		if sh.plain {
			sh.printf("CLOSED err=%s", quote(errText(ev.Err)))
		} else {
			sh.printf("%s-- session ended: %s (press Enter)%s", sh.pal.red, errWords(ev.Err), sh.pal.reset)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// convTitle names a conversation for people: "bob (2)" or "#golang (7)".
func (sh *shell) convTitle(cv client.Conv) string {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.convTitleLocked(cv)
}

func (sh *shell) convTitleLocked(cv client.Conv) string {
	id := strconv.FormatInt(cv.ID, 10)
	if cv.Group {
		if g := sh.groups[cv.ID]; g != nil {
			return sh.pal.magenta + "#" + Sanitize(g.Name) + sh.pal.reset + "(" + id + ")"
		}
		return sh.pal.magenta + "#group" + sh.pal.reset + "(" + id + ")"
	}
	if f := sh.friends[cv.ID]; f != nil {
		return sh.pal.bold + Sanitize(f.Name) + sh.pal.reset + "(" + id + ")"
	}
	return "user(" + id + ")"
}

// humanMessage formats one message line for people.
func (sh *shell) humanMessage(m client.Message, cv client.Conv, own bool) string {
	p := sh.pal
	ts := p.dim + "[" + humanTime(m.Time, sh.cfg.Now()) + "]" + p.reset
	from := p.bold + Sanitize(m.FromName) + p.reset + "(" + strconv.FormatInt(m.From, 10) + ")"
	if own {
		from = p.blue + "you" + p.reset
	}
	text := Sanitize(m.Msg)
	if cv.Group {
		return fmt.Sprintf("%s %s %s: %s\n", ts, sh.convTitle(cv), from, text)
	}
	if own {
		return fmt.Sprintf("%s %s → %s: %s\n", ts, from, sh.convTitle(cv), text)
	}
	return fmt.Sprintf("%s %s: %s\n", ts, from, text)
}

func (sh *shell) showMessage(ev client.Event) {
	m := ev.Msg
	// Shown means read (the session ACKs it): nothing left unread up to here.
	sh.mu.Lock()
	if ev.Conv.Group {
		if g := sh.groups[ev.Conv.ID]; g != nil {
			g.LastSeq, g.Unread = max(g.LastSeq, m.Seq), max(g.LastSeq, m.Seq)-m.Seq
		}
	} else if f := sh.friends[ev.Conv.ID]; f != nil {
		f.LastSeq, f.Unread = max(f.LastSeq, m.Seq), max(f.LastSeq, m.Seq)-m.Seq
	}
	sh.mu.Unlock()
	if sh.plain {
		sh.printf("MSG conv=%s seq=%d from=%d name=%s own=%t time=%s text=%s",
			ev.Conv, m.Seq, m.From, quote(m.FromName), ev.Own, plainTime(m.Time), quote(m.Msg))
		return
	}
	sh.ui.Print(sh.humanMessage(m, ev.Conv, ev.Own))
}

func (sh *shell) showPush(p client.Push) {
	pal := sh.pal
	user := func(path string) protocol.User {
		return protocol.User{ID: p.Get(path + ".id").Int(), Name: p.Get(path + ".name").String()}
	}
	switch p.MsgID {
	case protocol.PushFriendRequest:
		u := user("user")
		sh.mu.Lock()
		sh.requests[u.ID] = u
		sh.mu.Unlock()
		if sh.plain {
			sh.printf("FRIEND_REQUEST id=%d name=%s", u.ID, quote(u.Name))
		} else {
			sh.printf("%s-- %s(%d) wants to be your friend: accept:%d or delfriend:%d%s", pal.yellow, sh.name(u.Name), u.ID, u.ID, u.ID, pal.reset)
		}
	case protocol.PushFriendAdded:
		u := user("friend")
		online := p.Get("friend.online").Bool()
		sh.mu.Lock()
		delete(sh.requests, u.ID)
		if f := sh.friends[u.ID]; f != nil {
			f.Name, f.Online = u.Name, online
		} else {
			sh.friends[u.ID] = &protocol.Friend{ID: u.ID, Name: u.Name, Online: online}
		}
		sh.mu.Unlock()
		if sh.plain {
			sh.printf("FRIEND_ADDED id=%d name=%s online=%t", u.ID, quote(u.Name), online)
		} else {
			sh.printf("%s-- you and %s(%d) are now friends: chat:%d:hello%s", pal.green, sh.name(u.Name), u.ID, u.ID, pal.reset)
		}
	case protocol.PushFriendRemoved:
		id := p.Get("id").Int()
		sh.mu.Lock()
		title := sh.convTitleLocked(client.FriendConv(id))
		delete(sh.friends, id)
		delete(sh.requests, id)
		sh.mu.Unlock()
		if sh.plain {
			sh.printf("FRIEND_REMOVED id=%d", id)
		} else {
			sh.printf("%s-- %s is no longer a friend (or the request was withdrawn)%s", pal.yellow, title, pal.reset)
		}
	case protocol.PushPresence:
		id, online := p.Get("id").Int(), p.Get("online").Bool()
		sh.mu.Lock()
		if f := sh.friends[id]; f != nil {
			f.Online = online
		}
		title := sh.convTitleLocked(client.FriendConv(id))
		sh.mu.Unlock()
		if sh.plain {
			sh.printf("PRESENCE id=%d online=%t", id, online)
		} else if online {
			sh.printf("%s-- %s is online%s", pal.dim, title, pal.reset)
		} else {
			sh.printf("%s-- %s is offline%s", pal.dim, title, pal.reset)
		}
	case protocol.PushGroupEvent:
		gid, event, u := p.Get("groupid").Int(), p.Get("event").String(), user("user")
		sh.mu.Lock()
		title := sh.convTitleLocked(client.GroupConv(gid))
		switch {
		case event == protocol.EventDeleted:
			delete(sh.groups, gid)
		case event == protocol.EventQuit && u.ID == sh.me.ID:
			delete(sh.groups, gid) // quit from another session
		case event == protocol.EventOwner && u.ID == sh.me.ID:
			if g := sh.groups[gid]; g != nil {
				g.Role = "owner"
			}
		}
		sh.mu.Unlock()
		if sh.plain {
			sh.printf("GROUP_EVENT group=%d event=%s id=%d name=%s", gid, token(event), u.ID, quote(u.Name))
			return
		}
		var what string
		switch event {
		case protocol.EventJoin:
			what = "joined"
		case protocol.EventQuit:
			what = "left"
		case protocol.EventOwner:
			what = "is now the owner"
		case protocol.EventDeleted:
			what = "deleted the group"
		default:
			what = Sanitize(event)
		}
		sh.printf("%s-- %s: %s(%d) %s%s", pal.dim, title, sh.name(u.Name), u.ID, what, pal.reset)
	case protocol.PushProfile:
		u := user("user")
		sh.mu.Lock()
		old := sh.convTitleLocked(client.FriendConv(u.ID))
		self := u.ID == sh.me.ID
		if self {
			sh.me.Name = u.Name
		}
		if f := sh.friends[u.ID]; f != nil {
			f.Name = u.Name
		}
		sh.mu.Unlock()
		if self {
			sh.ui.SetPrompt(sh.prompt())
		}
		if sh.plain {
			sh.printf("PROFILE id=%d name=%s", u.ID, quote(u.Name))
		} else if self {
			sh.printf("%s-- you are now %s%s", pal.dim, sh.name(u.Name), pal.reset)
		} else {
			sh.printf("%s-- %s is now called %s%s", pal.dim, old, sh.name(u.Name), pal.reset)
		}
	case protocol.PushGoAway:
		reason := p.Get("reason").String()
		if sh.plain {
			sh.printf("GOAWAY reason=%s", quote(reason))
		} else {
			sh.printf("%s-- the server is going away (%s); reconnecting…%s", pal.yellow, Sanitize(reason), pal.reset)
		}
	case protocol.PushError:
		errno, text := p.Get("errno").Int(), p.Get("errmsg").String()
		if sh.plain {
			sh.printf("SERVER_ERROR errno=%d text=%s", errno, quote(text))
		} else {
			sh.printf("%s-- the server reports an error: %s: %s%s", pal.red, protocol.ErrnoText(int(errno)), Sanitize(text), pal.reset)
		}
	default:
		if sh.plain {
			sh.printf("WARN text=%s", quote(fmt.Sprintf("unknown push %d", p.MsgID)))
		}
	}
}

// token returns s when it is a plain word (letters, digits, '_', '-'),
// otherwise s quoted, so a plain-mode line stays parseable.
func token(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return quote(s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}
