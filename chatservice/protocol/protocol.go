// Package protocol holds the ClusterChat wire protocol, version 1: message
// ids, errno values, limits and the JSON shapes of users, friends and groups.
// It is shared by the server (chatservice), the client library, chatclient
// and chatbench. See docs/protocol.md.
//
// A frame is a 4-byte big-endian body length followed by one JSON object.
package protocol

// MsgID is a frame's msgid: requests 1–99, responses 101–199, pushes 201–299.
type MsgID = int

// Requests. The response to request X has msgid X + Response.
const (
	Login        MsgID = 1
	Reg          MsgID = 2
	Logout       MsgID = 3
	Ping         MsgID = 4
	OneChat      MsgID = 5
	AddFriend    MsgID = 6
	AcceptFriend MsgID = 7
	DelFriend    MsgID = 8
	CreateGroup  MsgID = 9
	JoinGroup    MsgID = 10
	QuitGroup    MsgID = 11
	DeleteGroup  MsgID = 12
	GroupChat    MsgID = 13
	GroupMembers MsgID = 14
	List         MsgID = 15
	FindGroups   MsgID = 16
	FindUsers    MsgID = 17
	History      MsgID = 18
	AckMsgs      MsgID = 19
	SetName      MsgID = 20
)

// Response is added to a request's msgid to form its response's msgid.
const Response = 100

// Pushes (server → client).
const (
	PushChat          MsgID = 201
	PushGroupChat     MsgID = 202
	PushFriendRequest MsgID = 203
	PushFriendAdded   MsgID = 204
	PushPresence      MsgID = 205
	PushGroupEvent    MsgID = 206
	PushProfile       MsgID = 207
	PushFriendRemoved MsgID = 208
	PushGoAway        MsgID = 290
	PushError         MsgID = 299
)

// Errno values (HTTP-like).
const (
	OK              = 0
	ErrBadRequest   = 400
	ErrUnauthorized = 401
	ErrForbidden    = 403
	ErrNotFound     = 404
	ErrConflict     = 409
	ErrTooLarge     = 413
	ErrRateLimited  = 429
	ErrUnavailable  = 503
)

// Group events (push 206 "event").
const (
	EventJoin    = "join"
	EventQuit    = "quit"
	EventOwner   = "owner"
	EventDeleted = "deleted"
)

// Friend request outcomes (ADD_FRIEND "status").
const (
	StatusRequested = "requested"
	StatusFriends   = "friends"
)

// Limits of the text rules and defaults of the server settings.
const (
	DefaultMaxFrame     = 65536
	MaxUserName         = 32 // code points
	MaxGroupName        = 64 // code points
	MaxGroupDesc        = 256
	MaxMsgBytes         = 4096
	MinPassword         = 8
	MaxPassword         = 72
	MaxCID              = 64
	DefaultHistoryLimit = 20
	MaxHistoryLimit     = 100
	MaxFindResults      = 50
	MaxOfflinePerConv   = 1000
	MaxReqID            = 1<<53 - 1
)

// Name returns a readable name for a msgid ("LOGIN", "LOGIN_ACK", "CHAT"…),
// or "" when unknown.
func Name(id MsgID) string {
	if id > Response && id < 200 {
		if n := names[id-Response]; n != "" {
			return n + "_ACK"
		}
		return ""
	}
	return names[id]
}

var names = map[MsgID]string{
	Login: "LOGIN", Reg: "REG", Logout: "LOGOUT", Ping: "PING", OneChat: "ONE_CHAT",
	AddFriend: "ADD_FRIEND", AcceptFriend: "ACCEPT_FRIEND", DelFriend: "DEL_FRIEND",
	CreateGroup: "CREATE_GROUP", JoinGroup: "JOIN_GROUP", QuitGroup: "QUIT_GROUP",
	DeleteGroup: "DELETE_GROUP", GroupChat: "GROUP_CHAT", GroupMembers: "GROUP_MEMBERS",
	List: "LIST", FindGroups: "FIND_GROUPS", FindUsers: "FIND_USERS", History: "HISTORY",
	AckMsgs: "ACK", SetName: "SET_NAME",
	PushChat: "CHAT", PushGroupChat: "GROUP_CHAT_PUSH", PushFriendRequest: "FRIEND_REQUEST",
	PushFriendAdded: "FRIEND_ADDED", PushPresence: "PRESENCE", PushGroupEvent: "GROUP_EVENT",
	PushProfile: "PROFILE", PushFriendRemoved: "FRIEND_REMOVED", PushGoAway: "GOAWAY",
	PushError: "ERROR",
}

// ErrnoText returns a short English description of an errno.
func ErrnoText(errno int) string {
	switch errno {
	case OK:
		return "ok"
	case ErrBadRequest:
		return "bad request"
	case ErrUnauthorized:
		return "not logged in or wrong credentials"
	case ErrForbidden:
		return "not allowed"
	case ErrNotFound:
		return "no such user or group"
	case ErrConflict:
		return "conflict"
	case ErrTooLarge:
		return "too large"
	case ErrRateLimited:
		return "too many requests, slow down"
	case ErrUnavailable:
		return "server temporarily unavailable, retry"
	}
	return "error"
}

// User is {"id", "name"}.
type User struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// OnlineUser is {"id", "name", "online"} (FIND_USERS, FRIEND_ADDED).
type OnlineUser struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Online bool   `json:"online"`
}

// Friend is an entry of "friends" in LOGIN and LIST.
type Friend struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Online  bool   `json:"online"`
	Unread  int64  `json:"unread"`
	LastSeq int64  `json:"lastseq"`
}

// Group is an entry of "groups" in LOGIN and LIST.
type Group struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Desc    string `json:"desc"`
	Role    string `json:"role"`
	Unread  int64  `json:"unread"`
	LastSeq int64  `json:"lastseq"`
}

// GroupInfo is "group" in CREATE_GROUP and JOIN_GROUP responses.
type GroupInfo struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Desc string `json:"desc"`
	Role string `json:"role"`
}

// GroupMember is an entry of GROUP_MEMBERS "members".
type GroupMember struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Role   string `json:"role"`
	Online bool   `json:"online"`
}

// FoundGroup is an entry of FIND_GROUPS "groups"; Members is a count.
type FoundGroup struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Desc    string `json:"desc"`
	Members int    `json:"members"`
}

// ChatMsg is push 201 and a friend HISTORY entry (MsgID is omitted in HISTORY).
type ChatMsg struct {
	MsgID    MsgID  `json:"msgid,omitempty"`
	From     int64  `json:"from"`
	FromName string `json:"fromname"`
	ToID     int64  `json:"toid"`
	Msg      string `json:"msg"`
	Seq      int64  `json:"seq"`
	Time     int64  `json:"time"`
	CID      string `json:"cid"`
}

// GroupMsg is push 202 and a group HISTORY entry (MsgID omitted in HISTORY).
type GroupMsg struct {
	MsgID    MsgID  `json:"msgid,omitempty"`
	GroupID  int64  `json:"groupid"`
	From     int64  `json:"from"`
	FromName string `json:"fromname"`
	Msg      string `json:"msg"`
	Seq      int64  `json:"seq"`
	Time     int64  `json:"time"`
	CID      string `json:"cid"`
}
