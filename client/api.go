package client

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/tidwall/gjson"

	"clusterchat/chatservice/protocol"
)

// Typed helpers for every request of the protocol. Each is safe for
// concurrent use; on errno ≠ 0 they return an *Error.

// LoginResult is the answer to LOGIN.
type LoginResult struct {
	Token    string
	User     protocol.User
	Friends  []protocol.Friend
	Groups   []protocol.Group
	Requests []protocol.User // pending friend requests to this user
}

// ListResult is the answer to LIST.
type ListResult struct {
	Friends  []protocol.Friend
	Groups   []protocol.Group
	Requests []protocol.User
}

// HistoryQuery selects HISTORY: exactly one of FriendID and GroupID; Before
// (0: newest) and Limit (0: the server's default, 20) are optional.
type HistoryQuery struct {
	FriendID int64
	GroupID  int64
	Before   int64
	Limit    int
}

// AckItem moves the cursor of one conversation (exactly one of FriendID and
// GroupID) to Seq.
type AckItem struct {
	FriendID int64
	GroupID  int64
	Seq      int64
}

func decodeField(r *Response, field string, v any) error {
	res := r.Get(field)
	if !res.Exists() {
		return fmt.Errorf("client: %s response has no %q: %w", protocol.Name(r.MsgID), field, ErrBadFrame)
	}
	if err := json.Unmarshal([]byte(res.Raw), v); err != nil {
		return fmt.Errorf("client: decode %q of %s: %w", field, protocol.Name(r.MsgID), err)
	}
	return nil
}

func (c *Conn) login(ctx context.Context, f *frameBuf) (LoginResult, error) {
	r, err := c.roundTrip(ctx, protocol.Login, f)
	if err != nil {
		return LoginResult{}, err
	}
	var lr struct {
		Token    string            `json:"token"`
		User     protocol.User     `json:"user"`
		Friends  []protocol.Friend `json:"friends"`
		Groups   []protocol.Group  `json:"groups"`
		Requests []protocol.User   `json:"requests"`
	}
	if err := json.Unmarshal(r.Raw, &lr); err != nil {
		return LoginResult{}, fmt.Errorf("client: decode LOGIN response: %w", err)
	}
	return LoginResult(lr), nil
}

// Register creates an account (REG). It does not log in.
func (c *Conn) Register(ctx context.Context, name, password string) (protocol.User, error) {
	f := c.begin(protocol.Reg)
	f.str("name", name)
	f.str("password", password)
	r, err := c.roundTrip(ctx, protocol.Reg, f)
	if err != nil {
		return protocol.User{}, err
	}
	var u protocol.User
	return u, decodeField(&r, "user", &u)
}

// LoginPassword logs in by user name and password.
func (c *Conn) LoginPassword(ctx context.Context, name, password string) (LoginResult, error) {
	f := c.begin(protocol.Login)
	f.str("name", name)
	f.str("password", password)
	return c.login(ctx, f)
}

// LoginID logs in by user id and password.
func (c *Conn) LoginID(ctx context.Context, id int64, password string) (LoginResult, error) {
	f := c.begin(protocol.Login)
	f.int("id", id)
	f.str("password", password)
	return c.login(ctx, f)
}

// LoginToken logs in with a token from an earlier login.
func (c *Conn) LoginToken(ctx context.Context, token string) (LoginResult, error) {
	f := c.begin(protocol.Login)
	f.str("token", token)
	return c.login(ctx, f)
}

// Logout revokes this connection's token; the connection stays open.
func (c *Conn) Logout(ctx context.Context) error {
	_, err := c.roundTrip(ctx, protocol.Logout, c.begin(protocol.Logout))
	return err
}

// Ping sends PING and returns the server's clock (Unix milliseconds).
func (c *Conn) Ping(ctx context.Context) (int64, error) {
	r, err := c.roundTrip(ctx, protocol.Ping, c.begin(protocol.Ping))
	if err != nil {
		return 0, err
	}
	return r.Get("time").Int(), nil
}

func seqTime(r *Response) (int64, int64) {
	var seq, t int64
	gjson.Parse(bytesString(r.Raw)).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "seq":
			seq = v.Int()
		case "time":
			t = v.Int()
		}
		return true
	})
	return seq, t
}

// SendChat sends a direct message to friend toid (ONE_CHAT) and returns the
// message's seq and time. Resending with the same cid is safe: the server
// stores the message once and returns the original seq and time.
func (c *Conn) SendChat(ctx context.Context, toid int64, msg, cid string) (seq, time int64, err error) {
	f := c.begin(protocol.OneChat)
	f.int("toid", toid)
	f.str("msg", msg)
	f.str("cid", cid)
	r, err := c.roundTrip(ctx, protocol.OneChat, f)
	if err != nil {
		return 0, 0, err
	}
	seq, time = seqTime(&r)
	return seq, time, nil
}

// GroupChat sends a message to group groupid (GROUP_CHAT); see SendChat.
func (c *Conn) GroupChat(ctx context.Context, groupid int64, msg, cid string) (seq, time int64, err error) {
	f := c.begin(protocol.GroupChat)
	f.int("groupid", groupid)
	f.str("msg", msg)
	f.str("cid", cid)
	r, err := c.roundTrip(ctx, protocol.GroupChat, f)
	if err != nil {
		return 0, 0, err
	}
	seq, time = seqTime(&r)
	return seq, time, nil
}

func (c *Conn) idOnly(ctx context.Context, msgid int, key string, id int64) (Response, error) {
	f := c.begin(msgid)
	f.int(key, id)
	return c.roundTrip(ctx, msgid, f)
}

// AddFriend asks user friendid to be friends and returns the status:
// protocol.StatusRequested, or protocol.StatusFriends when friendid had
// already asked.
func (c *Conn) AddFriend(ctx context.Context, friendid int64) (string, error) {
	r, err := c.idOnly(ctx, protocol.AddFriend, "friendid", friendid)
	if err != nil {
		return "", err
	}
	return r.Get("status").String(), nil
}

// AcceptFriend accepts the pending request of friendid.
func (c *Conn) AcceptFriend(ctx context.Context, friendid int64) error {
	_, err := c.idOnly(ctx, protocol.AcceptFriend, "friendid", friendid)
	return err
}

// DelFriend ends a friendship or removes a pending request either way.
func (c *Conn) DelFriend(ctx context.Context, friendid int64) error {
	_, err := c.idOnly(ctx, protocol.DelFriend, "friendid", friendid)
	return err
}

// CreateGroup creates a group owned by the caller.
func (c *Conn) CreateGroup(ctx context.Context, name, desc string) (protocol.GroupInfo, error) {
	f := c.begin(protocol.CreateGroup)
	f.str("groupname", name)
	f.str("groupdesc", desc)
	r, err := c.roundTrip(ctx, protocol.CreateGroup, f)
	if err != nil {
		return protocol.GroupInfo{}, err
	}
	var g protocol.GroupInfo
	return g, decodeField(&r, "group", &g)
}

// JoinGroup joins group groupid.
func (c *Conn) JoinGroup(ctx context.Context, groupid int64) (protocol.GroupInfo, error) {
	r, err := c.idOnly(ctx, protocol.JoinGroup, "groupid", groupid)
	if err != nil {
		return protocol.GroupInfo{}, err
	}
	var g protocol.GroupInfo
	return g, decodeField(&r, "group", &g)
}

// QuitGroup leaves group groupid.
func (c *Conn) QuitGroup(ctx context.Context, groupid int64) error {
	_, err := c.idOnly(ctx, protocol.QuitGroup, "groupid", groupid)
	return err
}

// DeleteGroup deletes group groupid (owner only).
func (c *Conn) DeleteGroup(ctx context.Context, groupid int64) error {
	_, err := c.idOnly(ctx, protocol.DeleteGroup, "groupid", groupid)
	return err
}

// GroupMembers lists the members of group groupid.
func (c *Conn) GroupMembers(ctx context.Context, groupid int64) ([]protocol.GroupMember, error) {
	r, err := c.idOnly(ctx, protocol.GroupMembers, "groupid", groupid)
	if err != nil {
		return nil, err
	}
	var m []protocol.GroupMember
	return m, decodeField(&r, "members", &m)
}

// List returns the caller's friends, groups and pending requests.
func (c *Conn) List(ctx context.Context) (ListResult, error) {
	r, err := c.roundTrip(ctx, protocol.List, c.begin(protocol.List))
	if err != nil {
		return ListResult{}, err
	}
	var lr struct {
		Friends  []protocol.Friend `json:"friends"`
		Groups   []protocol.Group  `json:"groups"`
		Requests []protocol.User   `json:"requests"`
	}
	if err := json.Unmarshal(r.Raw, &lr); err != nil {
		return ListResult{}, fmt.Errorf("client: decode LIST response: %w", err)
	}
	return ListResult(lr), nil
}

// FindGroups finds groups whose name starts with query (case-insensitive;
// empty: all), at most 50, ascending by id.
func (c *Conn) FindGroups(ctx context.Context, query string) ([]protocol.FoundGroup, error) {
	f := c.begin(protocol.FindGroups)
	f.str("query", query)
	r, err := c.roundTrip(ctx, protocol.FindGroups, f)
	if err != nil {
		return nil, err
	}
	var g []protocol.FoundGroup
	return g, decodeField(&r, "groups", &g)
}

// FindUsers finds other users whose name starts with query (not empty).
func (c *Conn) FindUsers(ctx context.Context, query string) ([]protocol.OnlineUser, error) {
	f := c.begin(protocol.FindUsers)
	f.str("query", query)
	r, err := c.roundTrip(ctx, protocol.FindUsers, f)
	if err != nil {
		return nil, err
	}
	var u []protocol.OnlineUser
	return u, decodeField(&r, "users", &u)
}

// History returns up to q.Limit messages of one conversation with seq below
// q.Before (all when 0), ascending by seq.
func (c *Conn) History(ctx context.Context, q HistoryQuery) ([]Message, error) {
	f := c.begin(protocol.History)
	if q.FriendID != 0 {
		f.int("friendid", q.FriendID)
	}
	if q.GroupID != 0 {
		f.int("groupid", q.GroupID)
	}
	if q.Before != 0 {
		f.int("before", q.Before)
	}
	if q.Limit != 0 {
		f.int("limit", int64(q.Limit))
	}
	r, err := c.roundTrip(ctx, protocol.History, f)
	if err != nil {
		return nil, err
	}
	arr := r.Get("messages")
	if !arr.IsArray() {
		return nil, fmt.Errorf("client: HISTORY response has no \"messages\" array: %w", ErrBadFrame)
	}
	msgs := make([]Message, 0, len(arr.Array()))
	var perr error
	arr.ForEach(func(_, v gjson.Result) bool {
		m, err := messageFrom(v)
		if err != nil {
			perr = err
			return false
		}
		msgs = append(msgs, m)
		return true
	})
	return msgs, perr
}

// Ack moves the caller's cursors (ACK). items must not be empty.
func (c *Conn) Ack(ctx context.Context, items []AckItem) error {
	f := c.begin(protocol.AckMsgs)
	f.key("acks")
	f.b = append(f.b, '[')
	for i, it := range items {
		if i > 0 {
			f.b = append(f.b, ',')
		}
		f.b = append(f.b, '{')
		if it.GroupID != 0 {
			f.b = append(f.b, `"groupid":`...)
			f.b = appendInt(f.b, it.GroupID)
		} else {
			f.b = append(f.b, `"friendid":`...)
			f.b = appendInt(f.b, it.FriendID)
		}
		f.b = append(f.b, `,"seq":`...)
		f.b = appendInt(f.b, it.Seq)
		f.b = append(f.b, '}')
	}
	f.b = append(f.b, ']')
	_, err := c.roundTrip(ctx, protocol.AckMsgs, f)
	return err
}

// SetName renames the caller and returns the updated user.
func (c *Conn) SetName(ctx context.Context, name string) (protocol.User, error) {
	f := c.begin(protocol.SetName)
	f.str("name", name)
	r, err := c.roundTrip(ctx, protocol.SetName, f)
	if err != nil {
		return protocol.User{}, err
	}
	var u protocol.User
	return u, decodeField(&r, "user", &u)
}
