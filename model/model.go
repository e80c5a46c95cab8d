// Package model holds the chat domain types and the Store interface that the
// chat service talks to. Implementations live in model/sqlite (the embedded
// default) and model/mysql (the cluster); both pass the suite in model/storetest.
//
// The store is the truth: every message is stored before it is acknowledged,
// each conversation's seq is allocated in the same transaction that stores the
// message, and offline delivery is "every message above the user's cursor".
package model

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Implementations wrap them (fmt.Errorf("...: %w", ErrX)) so
// that callers test with errors.Is. Any other error means the store is
// unavailable or broken and maps to errno 503.
var (
	// ErrNotFound: no such user, group, token or pending request.
	ErrNotFound = errors.New("model: not found")
	// ErrNameTaken: a user name clashes (case-insensitively) with another user's.
	ErrNameTaken = errors.New("model: name taken")
	// ErrConflict: the state forbids the change (already friends, already
	// requested, already a member, ...).
	ErrConflict = errors.New("model: conflict")
	// ErrForbidden: the user may not do this (not a member, not the owner).
	ErrForbidden = errors.New("model: forbidden")
	// ErrCIDConflict: the sender already used this cid for another conversation
	// or another body.
	ErrCIDConflict = errors.New("model: cid already used for another message")
	// ErrSeqBeyond: an ACK names a seq beyond the conversation's last seq.
	ErrSeqBeyond = errors.New("model: seq beyond the conversation's last")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("model: store closed")
)

// Role of a group member.
const (
	RoleOwner  = "owner"
	RoleMember = "member"
)

// User is an account.
type User struct {
	ID       int64
	Name     string
	PassHash []byte // bcrypt hash; never logged, never sent
	Created  time.Time
}

// Conv names a conversation: a group when Group != 0, otherwise the direct
// conversation of users A and B with A < B. Use Direct and GroupConv to build
// one; the zero Conv is invalid.
type Conv struct {
	Group int64
	A, B  int64
}

// Direct returns the conversation of two users, in either order.
func Direct(u1, u2 int64) Conv {
	if u1 > u2 {
		u1, u2 = u2, u1
	}
	return Conv{A: u1, B: u2}
}

// GroupConv returns the conversation of a group.
func GroupConv(groupID int64) Conv { return Conv{Group: groupID} }

// IsGroup reports whether c is a group conversation.
func (c Conv) IsGroup() bool { return c.Group != 0 }

// Peer returns the other user of a direct conversation.
func (c Conv) Peer(me int64) int64 {
	if c.A == me {
		return c.B
	}
	return c.A
}

// Message is one stored message.
type Message struct {
	Conv     Conv
	Seq      int64
	From     int64
	FromName string // the sender's name when it sent
	Body     string
	CID      string
	Time     int64 // Unix milliseconds, assigned by the store
}

// NewMessage is a message to store. Time is set by the caller (Unix ms) and
// kept unless the cid is a retry, in which case the original is returned.
type NewMessage struct {
	Conv     Conv
	From     int64
	FromName string
	Body     string
	CID      string
	Time     int64
	// FriendsOnly: a direct message is stored only while its two users
	// are friends (ErrForbidden otherwise), checked inside the storing
	// transaction. Several servers on one store set it, as a friendship
	// may end on another server at any moment.
	FriendsOnly bool
}

// FriendStatus is the outcome of RequestFriend.
type FriendStatus int

// Outcomes of RequestFriend.
const (
	// FriendRequested: a pending request from the sender now exists.
	FriendRequested FriendStatus = iota + 1
	// FriendAccepted: the target had already asked, both are friends now.
	FriendAccepted
)

// Removed is what DeleteFriend removed.
type Removed int

// What DeleteFriend removed.
const (
	RemovedFriendship Removed = iota + 1
	RemovedRequest
)

// Friend is a friend of a user, with the state of their conversation.
type Friend struct {
	User    User
	LastSeq int64 // the conversation's last seq, 0 when empty
	Cursor  int64 // the user's cursor in it
}

// Group is a chat group.
type Group struct {
	ID      int64
	Name    string
	Desc    string
	OwnerID int64
	Created time.Time
}

// Membership is a user's view of one of its groups.
type Membership struct {
	Group     Group
	Role      string
	JoinedSeq int64 // the group's last seq when the user joined
	LastSeq   int64
	Cursor    int64
}

// Member is a member of a group, in join order.
type Member struct {
	User      User
	Role      string
	JoinedSeq int64
}

// Recipient is a member of a group as a group message's push needs it: who,
// and from which seq on it sees the group's messages.
type Recipient struct {
	UserID    int64
	JoinedSeq int64
}

// GroupSummary is a FIND_GROUPS result.
type GroupSummary struct {
	Group   Group
	Members int
}

// QuitResult is what QuitGroup did.
type QuitResult struct {
	// Remaining members after the quit, in join order (empty when deleted).
	Remaining []int64
	// NewOwner is the new owner when the owner quit and others remain, else 0.
	NewOwner int64
	// Deleted is true when the last member quit and the group is gone.
	Deleted bool
}

// Ack moves a user's cursor in one conversation.
type Ack struct {
	Conv Conv
	Seq  int64
}

// Store is the chat's persistent state. All methods are safe for concurrent
// use and honour ctx for cancellation. Names are compared case-insensitively
// with strings.ToLower, and stored exactly as given.
type Store interface {
	// CreateUser adds an account. ErrNameTaken on a clash.
	CreateUser(ctx context.Context, name string, passHash []byte) (User, error)
	// UserByID returns a user. ErrNotFound when absent.
	UserByID(ctx context.Context, id int64) (User, error)
	// UserByName looks a user up by name, case-insensitively. ErrNotFound.
	UserByName(ctx context.Context, name string) (User, error)
	// SetUserName renames a user. ErrNameTaken when another user has it,
	// ErrNotFound when the user is gone.
	SetUserName(ctx context.Context, id int64, name string) (User, error)
	// FindUsers returns users whose lower-cased name starts with
	// strings.ToLower(prefix), ascending by id, leaving out excludeID, at most limit.
	FindUsers(ctx context.Context, prefix string, excludeID int64, limit int) ([]User, error)

	// CreateToken stores a login token (its hash only) valid until expires.
	CreateToken(ctx context.Context, userID int64, tokenHash []byte, expires time.Time) error
	// TokenUser returns the user of a token that exists and has not expired
	// at now. ErrNotFound otherwise.
	TokenUser(ctx context.Context, tokenHash []byte, now time.Time) (int64, error)
	// DeleteToken revokes a token. Deleting an absent token is not an error.
	DeleteToken(ctx context.Context, tokenHash []byte) error

	// RecordLoginFailure notes a failed password login of userID at t and
	// forgets failures older than t-window. Times are kept to the
	// millisecond; every store sharing the database sees the failure (the
	// throttle of PROTOCOL.md §3 is cluster-wide). ErrNotFound when the
	// user does not exist.
	RecordLoginFailure(ctx context.Context, userID int64, at time.Time, window time.Duration) error
	// LoginFailures returns the times of userID's failed password logins
	// after since (strictly), ascending, to the millisecond.
	LoginFailures(ctx context.Context, userID int64, since time.Time) ([]time.Time, error)

	// RequestFriend records a request from -> to in one transaction: if to had
	// already asked from, both become friends (FriendAccepted); otherwise a
	// pending request is created (FriendRequested). ErrConflict when already
	// friends or when from already asked to. ErrNotFound when to does not exist.
	RequestFriend(ctx context.Context, from, to int64) (FriendStatus, error)
	// AcceptFriend accepts the pending request from -> me. ErrConflict when
	// already friends, ErrNotFound when there is no such request.
	AcceptFriend(ctx context.Context, me, from int64) error
	// DeleteFriend ends the friendship of me and other, or removes a pending
	// request in either direction. ErrNotFound when there is neither. The
	// conversation, its messages and both cursors are kept.
	DeleteFriend(ctx context.Context, me, other int64) (Removed, error)
	// AreFriends reports whether a and b are friends.
	AreFriends(ctx context.Context, a, b int64) (bool, error)
	// Friends lists a user's friends ascending by id, with conversation state.
	Friends(ctx context.Context, userID int64) ([]Friend, error)
	// FriendRequests lists the users with a pending request to userID,
	// ascending by id.
	FriendRequests(ctx context.Context, userID int64) ([]User, error)

	// CreateGroup creates a group whose owner is its first member.
	CreateGroup(ctx context.Context, ownerID int64, name, desc string) (Group, error)
	// GroupByID returns a group. ErrNotFound when absent or deleted.
	GroupByID(ctx context.Context, groupID int64) (Group, error)
	// JoinGroup adds a member whose joined_seq and cursor start at the group's
	// last seq. ErrNotFound (no group), ErrConflict (already a member).
	JoinGroup(ctx context.Context, groupID, userID int64) (Membership, error)
	// QuitGroup removes a member; ownership passes to the earliest joined
	// remaining member; the last member's quit deletes the group.
	// ErrNotFound (no group), ErrForbidden (not a member).
	QuitGroup(ctx context.Context, groupID, userID int64) (QuitResult, error)
	// DeleteGroup deletes a group and returns its members (ids, join order).
	// ErrNotFound (no group), ErrForbidden (not the owner).
	DeleteGroup(ctx context.Context, groupID, userID int64) ([]int64, error)
	// Membership returns userID's membership of a group. ErrNotFound (no
	// group), ErrForbidden (not a member).
	Membership(ctx context.Context, groupID, userID int64) (Membership, error)
	// GroupMembers lists the members in join order. ErrNotFound (no group).
	GroupMembers(ctx context.Context, groupID int64) ([]Member, error)
	// GroupRecipients lists the members' ids and joined seqs, in no
	// particular order: GroupMembers without names, roles or join order,
	// for pushing a group message. ErrNotFound (no group).
	GroupRecipients(ctx context.Context, groupID int64) ([]Recipient, error)
	// UserGroups lists the groups of a user ascending by group id.
	UserGroups(ctx context.Context, userID int64) ([]Membership, error)
	// FindGroups returns groups whose lower-cased name starts with
	// strings.ToLower(prefix), ascending by id, at most limit.
	FindGroups(ctx context.Context, prefix string, limit int) ([]GroupSummary, error)

	// StoreMessage stores a message under the conversation's next seq and
	// moves the sender's cursor to it, in one transaction; it returns after
	// commit. Concurrent calls are batched into one transaction. A retry (same
	// sender and cid, same conversation and body) stores nothing and returns
	// the original message with dup = true; the same cid with another
	// conversation or body gives ErrCIDConflict. For a group, ErrForbidden
	// when the sender is not a member and ErrNotFound when the group is gone;
	// for a direct message with FriendsOnly, ErrForbidden when its users are
	// not friends (checked inside the transaction).
	StoreMessage(ctx context.Context, m NewMessage) (msg Message, dup bool, err error)
	// Messages returns the newest limit messages of conv with
	// after < seq < before (before <= 0: no upper bound), in ascending seq.
	Messages(ctx context.Context, conv Conv, after, before int64, limit int) ([]Message, error)
	// LastSeq returns the conversation's last seq (0 when it has none).
	LastSeq(ctx context.Context, conv Conv) (int64, error)
	// Cursor returns the user's cursor in conv (0 when never moved).
	Cursor(ctx context.Context, userID int64, conv Conv) (int64, error)
	// AckMessages moves the user's cursor in each conversation to
	// max(cursor, seq), all or nothing: ErrSeqBeyond (wrapped, naming the
	// conversation) when a seq is beyond that conversation's last seq.
	// Membership is checked by the caller.
	AckMessages(ctx context.Context, userID int64, acks []Ack) error

	// Ping checks that the store answers.
	Ping(ctx context.Context) error
	// Close flushes pending writes and releases resources.
	Close() error
}
