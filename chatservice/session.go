package chatservice

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"clusterchat/netcore"
)

// transport is what a session needs of its connection; *netcore.Conn has
// it (tests substitute their own).
type transport interface {
	ID() uint64
	Send(frame []byte) error
	Context() context.Context
	RemoteAddr() net.Addr
	Shutdown(timeout time.Duration)
	WaitUnsent(ctx context.Context, limit int) error
}

// session is the chat state of one connection. Tens of thousands may be
// held idle, so it is kept small: state few connections need (a bad-frame
// window, held pushes) is allocated on first use.
//
// Fields are owned by one side each: limiter and badFrames by the
// connection's event loop (arrival checks); tokenHash by the connection's
// executor queue, where its requests run one after another. userID is
// atomic because pushes from other goroutines read it.
type session struct {
	conn  transport
	queue *netcore.Queue

	// loop-owned
	limiter   tokenBucket
	badFrames *badFrameWindow // nil until the first bad frame

	// queue-owned
	tokenHash [32]byte // of the token this session logged in with or was issued

	gate pushGate // holds live pushes while the offline push runs

	userID atomic.Int64 // 0 while logged out
}

func (s *session) loggedIn() bool { return s.userID.Load() != 0 }

// registry maps user ids to their sessions on this server.
type registry struct {
	mu    sync.RWMutex
	users map[int64]*localUser
}

// localUser is a user with at least one session on this server.
type localUser struct {
	name     string // current name, kept fresh by SET_NAME and PROFILE pushes
	sessions []*session
	// friends caches "is a friend" answers of the store for ONE_CHAT (only
	// positive ones); any friend change of the user clears it.
	friends map[int64]struct{}
}

func newRegistry() *registry { return &registry{users: make(map[int64]*localUser)} }

// add registers a logged-in session and reports whether it is the user's
// first on this server.
func (r *registry) add(userID int64, name string, s *session) (first bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.users[userID]
	if u == nil {
		u = &localUser{}
		r.users[userID] = u
		first = true
	}
	u.name = name
	u.sessions = append(u.sessions, s)
	return first
}

// remove unregisters a session and reports whether it was the user's last
// on this server.
func (r *registry) remove(userID int64, s *session) (last bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.users[userID]
	if u == nil {
		return false
	}
	for i, x := range u.sessions {
		if x == s {
			u.sessions = append(u.sessions[:i], u.sessions[i+1:]...)
			break
		}
	}
	if len(u.sessions) == 0 {
		delete(r.users, userID)
		return true
	}
	return false
}

// name returns the cached name of a local user.
func (r *registry) name(userID int64) (string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if u := r.users[userID]; u != nil {
		return u.name, true
	}
	return "", false
}

// setName updates the cached name of a local user.
func (r *registry) setName(userID int64, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if u := r.users[userID]; u != nil {
		u.name = name
	}
}

// online reports whether the user has a session here.
func (r *registry) online(userID int64) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.users[userID] != nil
}

// count returns the number of local users and sessions.
func (r *registry) count() (users, sessions int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, u := range r.users {
		sessions += len(u.sessions)
	}
	return len(r.users), sessions
}

// send writes frame to every local session of userID except skip, and
// returns how many sessions it reached.
func (r *registry) send(userID int64, frame []byte, skip *session) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	u := r.users[userID]
	if u == nil {
		return 0
	}
	n := 0
	for _, s := range u.sessions {
		if s != skip && s.gate.deliver(s.conn, frame) {
			n++
		}
	}
	return n
}

// sendAll is send for each user of users, under one read lock, and returns
// how many sessions it reached in all.
func (r *registry) sendAll(users []int64, frame []byte, skip *session) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, id := range users {
		u := r.users[id]
		if u == nil {
			continue
		}
		for _, s := range u.sessions {
			if s != skip && s.gate.deliver(s.conn, frame) {
				n++
			}
		}
	}
	return n
}

// userIDs returns the ids of all local users.
func (r *registry) userIDs() []int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ids := make([]int64, 0, len(r.users))
	for id := range r.users {
		ids = append(ids, id)
	}
	return ids
}

// sessionsOf returns a copy of the user's local sessions.
func (r *registry) sessionsOf(userID int64) []*session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	u := r.users[userID]
	if u == nil {
		return nil
	}
	return append([]*session(nil), u.sessions...)
}

// nameAndFriend returns the cached name of local user me (known false when
// me has no session here) and whether other is a cached friend of me, under
// one read lock.
func (r *registry) nameAndFriend(me, other int64) (name string, known, friend bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	u := r.users[me]
	if u == nil {
		return "", false, false
	}
	_, friend = u.friends[other]
	return u.name, true, friend
}

// cacheFriend remembers that other is a friend of local user me.
func (r *registry) cacheFriend(me, other int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if u := r.users[me]; u != nil {
		if u.friends == nil {
			u.friends = make(map[int64]struct{})
		}
		u.friends[other] = struct{}{}
	}
}

// dropFriends forgets the cached friends of a local user.
func (r *registry) dropFriends(userID int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if u := r.users[userID]; u != nil {
		u.friends = nil
	}
}
