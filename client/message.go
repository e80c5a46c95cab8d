package client

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/tidwall/gjson"
)

// Conv names a conversation from one user's point of view: a group, or the
// direct conversation with a friend.
type Conv struct {
	Group bool  // true: ID is a group id; false: ID is the friend's user id
	ID    int64 // the friend's or the group's id
}

// FriendConv is the direct conversation with friend id.
func FriendConv(id int64) Conv { return Conv{ID: id} }

// GroupConv is the conversation of group id.
func GroupConv(id int64) Conv { return Conv{Group: true, ID: id} }

// String returns "friend:ID" or "group:ID".
func (c Conv) String() string {
	if c.Group {
		return "group:" + strconv.FormatInt(c.ID, 10)
	}
	return "friend:" + strconv.FormatInt(c.ID, 10)
}

// Message is a chat message: a CHAT (201) or GROUP_CHAT (202) push, or an
// entry of a HISTORY response.
type Message struct {
	GroupID  int64  // the group, 0 for a direct message
	From     int64  // the sender's id
	FromName string // the sender's name when it sent
	ToID     int64  // the recipient of a direct message, 0 for a group message
	Msg      string
	Seq      int64 // position in the conversation: 1, 2, 3 ...
	Time     int64 // Unix milliseconds, assigned by the server
	CID      string
}

// Conv returns the conversation the message belongs to, seen by user self.
func (m *Message) Conv(self int64) Conv {
	if m.GroupID != 0 {
		return GroupConv(m.GroupID)
	}
	if m.From == self {
		return FriendConv(m.ToID)
	}
	return FriendConv(m.From)
}

// ParseMessage decodes a CHAT or GROUP_CHAT push body or a HISTORY entry.
// The returned strings are copies: raw may be reused afterwards.
func ParseMessage(raw []byte) (Message, error) {
	if len(raw) == 0 {
		return Message{}, fmt.Errorf("client: parse message: %w: empty", ErrBadFrame)
	}
	return messageFrom(gjson.Parse(string(raw)))
}

// Message decodes a CHAT or GROUP_CHAT push.
func (p *Push) Message() (Message, error) {
	if len(p.Raw) == 0 {
		return Message{}, fmt.Errorf("client: parse message: %w: empty", ErrBadFrame)
	}
	// Raw is owned by the Push and never modified, so strings may alias it.
	return messageFrom(gjson.Parse(bytesString(p.Raw)))
}

func messageFrom(r gjson.Result) (Message, error) {
	var m Message
	r.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "groupid":
			m.GroupID = v.Int()
		case "from":
			m.From = v.Int()
		case "fromname":
			m.FromName = v.Str
		case "toid":
			m.ToID = v.Int()
		case "msg":
			m.Msg = v.Str
		case "seq":
			m.Seq = v.Int()
		case "time":
			m.Time = v.Int()
		case "cid":
			m.CID = v.Str
		}
		return true
	})
	if m.Seq <= 0 || m.From <= 0 || (m.GroupID == 0 && m.ToID == 0) {
		return m, fmt.Errorf("client: parse message: %w: missing seq, from, groupid or toid", ErrBadFrame)
	}
	return m, nil
}

// CIDGen makes client message ids (cid) that are unique for a sender: a
// random 64-bit prefix chosen at creation and a counter. Safe for
// concurrent use.
type CIDGen struct {
	prefix string
	n      atomic.Uint64
}

// NewCIDGen returns a generator with a fresh random prefix.
func NewCIDGen() *CIDGen {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return &CIDGen{prefix: hex.EncodeToString(b[:]) + "-"}
}

// Next returns the next cid, e.g. "9f2c0a7e5b1d4e33-42".
func (g *CIDGen) Next() string {
	return g.prefix + strconv.FormatUint(g.n.Add(1), 10)
}
