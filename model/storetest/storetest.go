// Package storetest is the one test suite of model.Store: model/sqlite and
// model/mysql both run it, so that the chat service sees the same behaviour
// from either.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"clusterchat/model"
)

// Run runs the suite. open returns a new, empty store for one subtest and
// registers its Close with t.Cleanup; Run may close it earlier itself.
func Run(t *testing.T, open func(t *testing.T) model.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s model.Store)
	}{
		{"Users", testUsers},
		{"Rename", testRename},
		{"FindUsers", testFindUsers},
		{"Tokens", testTokens},
		{"LoginFailures", testLoginFailures},
		{"ConcurrentLoginFailures", testConcurrentLoginFailures},
		{"FriendRequests", testFriendRequests},
		{"DeleteFriend", testDeleteFriend},
		{"CrossRequestsAtOnce", testCrossRequestsAtOnce},
		{"DirectConversationOutlivesFriendship", testDirectPersists},
		{"Groups", testGroups},
		{"QuitGroup", testQuitGroup},
		{"DeleteGroup", testDeleteGroup},
		{"FindGroups", testFindGroups},
		{"Messages", testMessages},
		{"Dedupe", testDedupe},
		{"GroupMessages", testGroupMessages},
		{"JoinedSeq", testJoinedSeq},
		{"ConcurrentSeq", testConcurrentSeq},
		{"BatchIsolatesBadItems", testBatchIsolation},
		{"BatchRetriesAndSeqs", testBatchRetries},
		{"FriendsOnly", testFriendsOnly},
		{"Ack", testAck},
		{"ConcurrentAcks", testConcurrentAcks},
		{"Canceled", testCanceled},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// MustUsers creates a user of each name in s (test helper for the stores'
// own tests and benchmarks).
func MustUsers(t testing.TB, s model.Store, names ...string) []model.User {
	t.Helper()
	us := make([]model.User, len(names))
	for i, n := range names {
		us[i] = mustUser(t, s, n)
	}
	return us
}

func mustUser(t testing.TB, s model.Store, name string) model.User {
	t.Helper()
	u, err := s.CreateUser(ctxT(t), name, []byte("hash-of-"+name))
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", name, err)
	}
	return u
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func mustFriends(t *testing.T, s model.Store, a, b int64) {
	t.Helper()
	ctx := ctxT(t)
	st, err := s.RequestFriend(ctx, a, b)
	noErr(t, "RequestFriend", err)
	if st != model.FriendRequested {
		t.Fatalf("RequestFriend = %v, want requested", st)
	}
	noErr(t, "AcceptFriend", s.AcceptFriend(ctx, b, a))
}

func send(t *testing.T, s model.Store, conv model.Conv, from model.User, body, cid string) model.Message {
	t.Helper()
	m, dup, err := s.StoreMessage(ctxT(t), model.NewMessage{
		Conv: conv, From: from.ID, FromName: from.Name, Body: body, CID: cid, Time: time.Now().UnixMilli(),
	})
	if err != nil {
		t.Fatalf("StoreMessage(%v, %q): %v", conv, cid, err)
	}
	if dup {
		t.Fatalf("StoreMessage(%v, %q): dup on a new cid", conv, cid)
	}
	return m
}

func seqs(ms []model.Message) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func eqInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func span(from, to int64) []int64 {
	out := []int64{}
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func testUsers(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	alice := mustUser(t, s, "Alice")
	if alice.ID <= 0 || alice.Name != "Alice" || string(alice.PassHash) != "hash-of-Alice" || alice.Created.IsZero() {
		t.Fatalf("CreateUser = %+v", alice)
	}
	for _, name := range []string{"Alice", "alice", "ALICE"} {
		_, err := s.CreateUser(ctx, name, []byte("x"))
		wantErr(t, "CreateUser "+name, err, model.ErrNameTaken)
	}
	// Case-insensitivity is strings.ToLower's, beyond ASCII.
	mustUser(t, s, "Ünal")
	_, err := s.CreateUser(ctx, "üNAL", []byte("x"))
	wantErr(t, "CreateUser üNAL", err, model.ErrNameTaken)
	for _, bad := range []string{"", "bad\xffname"} {
		if _, err := s.CreateUser(ctx, bad, nil); err == nil || errors.Is(err, model.ErrNameTaken) {
			t.Errorf("CreateUser(%q): %v, want a plain error", bad, err)
		}
	}
	// Trailing spaces and other near-misses are other names.
	mustUser(t, s, "Alice ")
	mustUser(t, s, "Alic")

	got, err := s.UserByID(ctx, alice.ID)
	noErr(t, "UserByID", err)
	if got.ID != alice.ID || got.Name != "Alice" || string(got.PassHash) != "hash-of-Alice" || !got.Created.Equal(alice.Created) {
		t.Fatalf("UserByID = %+v, want %+v", got, alice)
	}
	for _, name := range []string{"Alice", "alice", "aLiCe"} {
		got, err := s.UserByName(ctx, name)
		noErr(t, "UserByName "+name, err)
		if got.ID != alice.ID || got.Name != "Alice" {
			t.Fatalf("UserByName(%q) = %+v", name, got)
		}
	}
	_, err = s.UserByID(ctx, alice.ID+1000)
	wantErr(t, "UserByID absent", err, model.ErrNotFound)
	_, err = s.UserByName(ctx, "nobody")
	wantErr(t, "UserByName absent", err, model.ErrNotFound)
	_, err = s.UserByName(ctx, "ali%")
	wantErr(t, "UserByName pattern", err, model.ErrNotFound)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testRename(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	bob := mustUser(t, s, "bob")
	carol := mustUser(t, s, "carol")

	u, err := s.SetUserName(ctx, bob.ID, "Bob") // a change of case only
	noErr(t, "SetUserName case", err)
	if u.Name != "Bob" || u.ID != bob.ID {
		t.Fatalf("SetUserName = %+v", u)
	}
	u, err = s.SetUserName(ctx, bob.ID, "Bob") // to its own name
	noErr(t, "SetUserName same", err)
	if u.Name != "Bob" {
		t.Fatalf("SetUserName same = %+v", u)
	}
	_, err = s.SetUserName(ctx, bob.ID, "CAROL")
	wantErr(t, "SetUserName taken", err, model.ErrNameTaken)
	if u, _ := s.UserByID(ctx, bob.ID); u.Name != "Bob" {
		t.Fatalf("failed rename changed the name to %q", u.Name)
	}

	_, err = s.SetUserName(ctx, bob.ID, "robert")
	noErr(t, "SetUserName robert", err)
	// The old name is free at once.
	newBob := mustUser(t, s, "BOB")
	if got, err := s.UserByName(ctx, "bob"); err != nil || got.ID != newBob.ID {
		t.Fatalf("UserByName(bob) = %+v, %v; want the new account %d", got, err, newBob.ID)
	}
	if got, err := s.UserByName(ctx, "Robert"); err != nil || got.ID != bob.ID {
		t.Fatalf("UserByName(Robert) = %+v, %v", got, err)
	}
	_, err = s.SetUserName(ctx, carol.ID+1000, "ghost")
	wantErr(t, "SetUserName absent", err, model.ErrNotFound)
}

func testFindUsers(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	var ids []int64
	for _, n := range []string{"Anna", "annabel", "ANNIKA", "bert", "an_x", "an%y", "Åsa"} {
		ids = append(ids, mustUser(t, s, n).ID)
	}
	names := func(us []model.User) string {
		var out []string
		for _, u := range us {
			out = append(out, u.Name)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		prefix  string
		exclude int64
		limit   int
		want    string
	}{
		{"ann", 0, 50, "Anna,annabel,ANNIKA"},
		{"ANN", ids[0], 50, "annabel,ANNIKA"},
		{"an", 0, 2, "Anna,annabel"},
		{"an_", 0, 50, "an_x"},
		{"an%", 0, 50, "an%y"},
		{"åS", 0, 50, "Åsa"},
		{"x", 0, 50, ""},
		{"", ids[3], 3, "Anna,annabel,ANNIKA"},
		{"anna", 0, 0, ""},
	} {
		us, err := s.FindUsers(ctx, tc.prefix, tc.exclude, tc.limit)
		noErr(t, "FindUsers", err)
		if us == nil {
			t.Fatalf("FindUsers(%q) = nil, want a slice", tc.prefix)
		}
		if got := names(us); got != tc.want {
			t.Errorf("FindUsers(%q, %d, %d) = %q, want %q", tc.prefix, tc.exclude, tc.limit, got, tc.want)
		}
		for i := 1; i < len(us); i++ {
			if us[i-1].ID >= us[i].ID {
				t.Errorf("FindUsers(%q) not ascending by id", tc.prefix)
			}
		}
	}
}

func testTokens(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	u := mustUser(t, s, "tok")
	now := time.Now()
	h1, h2 := []byte("hash-one-0123456789abcdef"), []byte("hash-two-0123456789abcdef")
	noErr(t, "CreateToken", s.CreateToken(ctx, u.ID, h1, now.Add(time.Hour)))
	noErr(t, "CreateToken 2", s.CreateToken(ctx, u.ID, h2, now.Add(2*time.Hour)))
	err := s.CreateToken(ctx, u.ID, h1, now.Add(time.Hour))
	if err == nil {
		t.Fatalf("CreateToken with an existing hash succeeded")
	}
	err = s.CreateToken(ctx, u.ID+1000, []byte("hash-three"), now.Add(time.Hour))
	wantErr(t, "CreateToken no user", err, model.ErrNotFound)

	id, err := s.TokenUser(ctx, h1, now)
	noErr(t, "TokenUser", err)
	if id != u.ID {
		t.Fatalf("TokenUser = %d, want %d", id, u.ID)
	}
	_, err = s.TokenUser(ctx, h1, now.Add(time.Hour)) // expired at the instant
	wantErr(t, "TokenUser at expiry", err, model.ErrNotFound)
	_, err = s.TokenUser(ctx, h1, now.Add(2*time.Hour))
	wantErr(t, "TokenUser after expiry", err, model.ErrNotFound)
	_, err = s.TokenUser(ctx, []byte("unknown"), now)
	wantErr(t, "TokenUser unknown", err, model.ErrNotFound)

	noErr(t, "DeleteToken", s.DeleteToken(ctx, h1))
	_, err = s.TokenUser(ctx, h1, now)
	wantErr(t, "TokenUser deleted", err, model.ErrNotFound)
	noErr(t, "DeleteToken absent", s.DeleteToken(ctx, h1))
	if id, err := s.TokenUser(ctx, h2, now); err != nil || id != u.ID {
		t.Fatalf("other token: %d, %v", id, err)
	}
}

func userIDs(us []model.User) []int64 {
	out := []int64{}
	for _, u := range us {
		out = append(out, u.ID)
	}
	return out
}

func friendIDs(fs []model.Friend) []int64 {
	out := []int64{}
	for _, f := range fs {
		out = append(out, f.User.ID)
	}
	return out
}

func testFriendRequests(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	a, b, c, d := mustUser(t, s, "a"), mustUser(t, s, "b"), mustUser(t, s, "c"), mustUser(t, s, "d")

	st, err := s.RequestFriend(ctx, a.ID, b.ID)
	noErr(t, "RequestFriend a->b", err)
	if st != model.FriendRequested {
		t.Fatalf("RequestFriend a->b = %v", st)
	}
	_, err = s.RequestFriend(ctx, a.ID, b.ID)
	wantErr(t, "RequestFriend again", err, model.ErrConflict)
	if ok, err := s.AreFriends(ctx, a.ID, b.ID); err != nil || ok {
		t.Fatalf("AreFriends after request = %v, %v", ok, err)
	}
	_, err = s.RequestFriend(ctx, a.ID, a.ID+1000)
	wantErr(t, "RequestFriend to nobody", err, model.ErrNotFound)

	// c and d ask a; requests list them, ascending.
	for _, u := range []model.User{d, c} {
		if _, err := s.RequestFriend(ctx, u.ID, a.ID); err != nil {
			t.Fatalf("RequestFriend %s->a: %v", u.Name, err)
		}
	}
	reqs, err := s.FriendRequests(ctx, a.ID)
	noErr(t, "FriendRequests", err)
	if got := userIDs(reqs); !eqInts(got, []int64{c.ID, d.ID}) || reqs[0].Name != "c" {
		t.Fatalf("FriendRequests(a) = %v, want [%d %d]", got, c.ID, d.ID)
	}
	if reqs, _ := s.FriendRequests(ctx, b.ID); !eqInts(userIDs(reqs), []int64{a.ID}) {
		t.Fatalf("FriendRequests(b) = %v", userIDs(reqs))
	}

	// A cross request makes friends at once.
	st, err = s.RequestFriend(ctx, b.ID, a.ID)
	noErr(t, "RequestFriend b->a", err)
	if st != model.FriendAccepted {
		t.Fatalf("cross RequestFriend = %v, want accepted", st)
	}
	for _, p := range [][2]int64{{a.ID, b.ID}, {b.ID, a.ID}} {
		if ok, err := s.AreFriends(ctx, p[0], p[1]); err != nil || !ok {
			t.Fatalf("AreFriends(%d, %d) = %v, %v", p[0], p[1], ok, err)
		}
	}
	_, err = s.RequestFriend(ctx, a.ID, b.ID)
	wantErr(t, "RequestFriend friends", err, model.ErrConflict)
	wantErr(t, "AcceptFriend friends", s.AcceptFriend(ctx, a.ID, b.ID), model.ErrConflict)
	if reqs, _ := s.FriendRequests(ctx, b.ID); len(reqs) != 0 {
		t.Fatalf("FriendRequests(b) after accept = %v", userIDs(reqs))
	}

	// Accept: only the asked may accept.
	wantErr(t, "AcceptFriend by asker", s.AcceptFriend(ctx, c.ID, a.ID), model.ErrNotFound)
	wantErr(t, "AcceptFriend no request", s.AcceptFriend(ctx, b.ID, c.ID), model.ErrNotFound)
	noErr(t, "AcceptFriend", s.AcceptFriend(ctx, a.ID, c.ID))
	noErr(t, "AcceptFriend d", s.AcceptFriend(ctx, a.ID, d.ID))

	fs, err := s.Friends(ctx, a.ID)
	noErr(t, "Friends", err)
	if got := friendIDs(fs); !eqInts(got, []int64{b.ID, c.ID, d.ID}) {
		t.Fatalf("Friends(a) = %v", got)
	}
	if fs[0].User.Name != "b" || fs[0].LastSeq != 0 || fs[0].Cursor != 0 {
		t.Fatalf("Friends(a)[0] = %+v", fs[0])
	}
	if fs, _ := s.Friends(ctx, c.ID); !eqInts(friendIDs(fs), []int64{a.ID}) {
		t.Fatalf("Friends(c) = %v", friendIDs(fs))
	}
	if fs, err := s.Friends(ctx, a.ID+1000); err != nil || fs == nil || len(fs) != 0 {
		t.Fatalf("Friends(nobody) = %v, %v; want []", fs, err)
	}
}

// testCrossRequestsAtOnce: two users asking each other at the same moment
// end up friends; one was told "requested", the other "accepted".
func testCrossRequestsAtOnce(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	const pairs = 20
	type outcome struct {
		st  model.FriendStatus
		err error
	}
	users := make([][2]model.User, pairs)
	out := make([][2]outcome, pairs)
	for i := range users {
		users[i] = [2]model.User{mustUser(t, s, fmt.Sprint("x", i)), mustUser(t, s, fmt.Sprint("y", i))}
	}
	var wg sync.WaitGroup
	for i := range users {
		for d := 0; d < 2; d++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := s.RequestFriend(ctx, users[i][d].ID, users[i][1-d].ID)
				out[i][d] = outcome{st, err}
			}()
		}
	}
	wg.Wait()
	for i, o := range out {
		noErr(t, "RequestFriend", o[0].err)
		noErr(t, "RequestFriend", o[1].err)
		if o[0].st+o[1].st != model.FriendRequested+model.FriendAccepted || o[0].st == o[1].st {
			t.Errorf("pair %d: outcomes %v and %v, want one requested and one accepted", i, o[0].st, o[1].st)
		}
		if ok, err := s.AreFriends(ctx, users[i][0].ID, users[i][1].ID); err != nil || !ok {
			t.Errorf("pair %d: not friends: %v", i, err)
		}
	}
}

func testDeleteFriend(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	a, b, c := mustUser(t, s, "a"), mustUser(t, s, "b"), mustUser(t, s, "c")
	_, err := s.DeleteFriend(ctx, a.ID, b.ID)
	wantErr(t, "DeleteFriend nothing", err, model.ErrNotFound)

	// Withdraw (by the asker) and decline (by the asked).
	for _, remover := range []int64{a.ID, b.ID} {
		if _, err := s.RequestFriend(ctx, a.ID, b.ID); err != nil {
			t.Fatalf("RequestFriend: %v", err)
		}
		other := a.ID + b.ID - remover
		r, err := s.DeleteFriend(ctx, remover, other)
		noErr(t, "DeleteFriend request", err)
		if r != model.RemovedRequest {
			t.Fatalf("DeleteFriend request = %v", r)
		}
		if reqs, _ := s.FriendRequests(ctx, b.ID); len(reqs) != 0 {
			t.Fatalf("request still there: %v", userIDs(reqs))
		}
	}

	// End a friendship, either way.
	for _, remover := range []int64{a.ID, c.ID} {
		mustFriends(t, s, a.ID, c.ID)
		other := a.ID + c.ID - remover
		r, err := s.DeleteFriend(ctx, remover, other)
		noErr(t, "DeleteFriend", err)
		if r != model.RemovedFriendship {
			t.Fatalf("DeleteFriend = %v", r)
		}
		if ok, _ := s.AreFriends(ctx, a.ID, c.ID); ok {
			t.Fatalf("still friends")
		}
		_, err = s.DeleteFriend(ctx, remover, other)
		wantErr(t, "DeleteFriend twice", err, model.ErrNotFound)
	}
	if fs, _ := s.Friends(ctx, a.ID); len(fs) != 0 {
		t.Fatalf("Friends after delete = %v", friendIDs(fs))
	}
}

func testDirectPersists(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	a, b := mustUser(t, s, "a"), mustUser(t, s, "b")
	mustFriends(t, s, a.ID, b.ID)
	conv := model.Direct(b.ID, a.ID)
	for i := 1; i <= 3; i++ {
		m := send(t, s, conv, a, fmt.Sprint("hi ", i), fmt.Sprint("a", i))
		if m.Seq != int64(i) {
			t.Fatalf("seq = %d, want %d", m.Seq, i)
		}
	}
	noErr(t, "Ack", s.AckMessages(ctx, b.ID, []model.Ack{{Conv: conv, Seq: 2}}))
	fs, _ := s.Friends(ctx, b.ID)
	if len(fs) != 1 || fs[0].LastSeq != 3 || fs[0].Cursor != 2 {
		t.Fatalf("Friends(b) = %+v, want last 3 cursor 2", fs)
	}

	if _, err := s.DeleteFriend(ctx, b.ID, a.ID); err != nil {
		t.Fatalf("DeleteFriend: %v", err)
	}
	mustFriends(t, s, b.ID, a.ID)
	m := send(t, s, conv, b, "again", "b1")
	if m.Seq != 4 {
		t.Fatalf("seq after refriend = %d, want 4", m.Seq)
	}
	ms, err := s.Messages(ctx, conv, 0, 0, 100)
	noErr(t, "Messages", err)
	if !eqInts(seqs(ms), span(1, 4)) {
		t.Fatalf("history = %v", seqs(ms))
	}
	fa, _ := s.Friends(ctx, a.ID)
	fb, _ := s.Friends(ctx, b.ID)
	if len(fa) != 1 || fa[0].LastSeq != 4 || fa[0].Cursor != 3 {
		t.Fatalf("Friends(a) = %+v, want last 4 cursor 3", fa)
	}
	if len(fb) != 1 || fb[0].LastSeq != 4 || fb[0].Cursor != 4 {
		t.Fatalf("Friends(b) = %+v, want last 4 cursor 4", fb)
	}
}

func testGroups(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	o, m1, m2 := mustUser(t, s, "owner"), mustUser(t, s, "m1"), mustUser(t, s, "m2")
	g, err := s.CreateGroup(ctx, o.ID, "Go Fans", "about Go")
	noErr(t, "CreateGroup", err)
	if g.ID <= 0 || g.Name != "Go Fans" || g.Desc != "about Go" || g.OwnerID != o.ID || g.Created.IsZero() {
		t.Fatalf("CreateGroup = %+v", g)
	}
	got, err := s.GroupByID(ctx, g.ID)
	noErr(t, "GroupByID", err)
	if got.ID != g.ID || got.Name != g.Name || got.Desc != g.Desc || got.OwnerID != o.ID || !got.Created.Equal(g.Created) {
		t.Fatalf("GroupByID = %+v, want %+v", got, g)
	}
	_, err = s.GroupByID(ctx, g.ID+1000)
	wantErr(t, "GroupByID absent", err, model.ErrNotFound)
	_, err = s.CreateGroup(ctx, o.ID+1000, "x", "")
	wantErr(t, "CreateGroup no owner", err, model.ErrNotFound)
	g2, err := s.CreateGroup(ctx, m2.ID, "Go Fans", "") // names need not be unique
	noErr(t, "CreateGroup same name", err)

	mo, err := s.Membership(ctx, g.ID, o.ID)
	noErr(t, "Membership owner", err)
	if mo.Role != model.RoleOwner || mo.JoinedSeq != 0 || mo.LastSeq != 0 || mo.Cursor != 0 || mo.Group.ID != g.ID {
		t.Fatalf("Membership(owner) = %+v", mo)
	}
	_, err = s.Membership(ctx, g.ID, m1.ID)
	wantErr(t, "Membership non-member", err, model.ErrForbidden)
	_, err = s.Membership(ctx, g.ID+1000, m1.ID)
	wantErr(t, "Membership no group", err, model.ErrNotFound)

	j, err := s.JoinGroup(ctx, g.ID, m1.ID)
	noErr(t, "JoinGroup", err)
	if j.Role != model.RoleMember || j.Group.ID != g.ID || j.Group.Name != "Go Fans" || j.JoinedSeq != 0 {
		t.Fatalf("JoinGroup = %+v", j)
	}
	_, err = s.JoinGroup(ctx, g.ID, m1.ID)
	wantErr(t, "JoinGroup twice", err, model.ErrConflict)
	_, err = s.JoinGroup(ctx, g.ID, o.ID)
	wantErr(t, "JoinGroup owner", err, model.ErrConflict)
	_, err = s.JoinGroup(ctx, g.ID+1000, m1.ID)
	wantErr(t, "JoinGroup no group", err, model.ErrNotFound)
	_, err = s.JoinGroup(ctx, g2.ID, m1.ID)
	noErr(t, "JoinGroup g2", err)

	members, err := s.GroupMembers(ctx, g.ID)
	noErr(t, "GroupMembers", err)
	if len(members) != 2 || members[0].User.ID != o.ID || members[0].Role != model.RoleOwner ||
		members[1].User.ID != m1.ID || members[1].Role != model.RoleMember || members[1].User.Name != "m1" {
		t.Fatalf("GroupMembers = %+v", members)
	}
	_, err = s.GroupMembers(ctx, g.ID+1000)
	wantErr(t, "GroupMembers no group", err, model.ErrNotFound)
	checkRecipients(t, s, g.ID, members)
	_, err = s.GroupRecipients(ctx, g.ID+1000)
	wantErr(t, "GroupRecipients no group", err, model.ErrNotFound)

	ug, err := s.UserGroups(ctx, m1.ID)
	noErr(t, "UserGroups", err)
	if len(ug) != 2 || ug[0].Group.ID != g.ID || ug[1].Group.ID != g2.ID || ug[0].Role != model.RoleMember {
		t.Fatalf("UserGroups(m1) = %+v", ug)
	}
	ug, err = s.UserGroups(ctx, m2.ID)
	noErr(t, "UserGroups m2", err)
	if len(ug) != 1 || ug[0].Group.ID != g2.ID || ug[0].Role != model.RoleOwner {
		t.Fatalf("UserGroups(m2) = %+v", ug)
	}
	if ug, err := s.UserGroups(ctx, o.ID+1000); err != nil || ug == nil || len(ug) != 0 {
		t.Fatalf("UserGroups(nobody) = %v, %v; want []", ug, err)
	}
}

func testQuitGroup(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	o, m1, m2, x := mustUser(t, s, "o"), mustUser(t, s, "m1"), mustUser(t, s, "m2"), mustUser(t, s, "x")
	g, err := s.CreateGroup(ctx, o.ID, "g", "")
	noErr(t, "CreateGroup", err)
	for _, u := range []model.User{m1, m2} {
		if _, err := s.JoinGroup(ctx, g.ID, u.ID); err != nil {
			t.Fatalf("JoinGroup: %v", err)
		}
	}
	_, err = s.QuitGroup(ctx, g.ID, x.ID)
	wantErr(t, "QuitGroup non-member", err, model.ErrForbidden)
	_, err = s.QuitGroup(ctx, g.ID+1000, x.ID)
	wantErr(t, "QuitGroup no group", err, model.ErrNotFound)

	// The owner quits: the earliest joined remaining member owns it.
	r, err := s.QuitGroup(ctx, g.ID, o.ID)
	noErr(t, "QuitGroup owner", err)
	if r.Deleted || r.NewOwner != m1.ID || !eqInts(r.Remaining, []int64{m1.ID, m2.ID}) {
		t.Fatalf("QuitGroup(owner) = %+v", r)
	}
	if gg, _ := s.GroupByID(ctx, g.ID); gg.OwnerID != m1.ID {
		t.Fatalf("owner = %d, want %d", gg.OwnerID, m1.ID)
	}
	if ms, _ := s.Membership(ctx, g.ID, m1.ID); ms.Role != model.RoleOwner {
		t.Fatalf("m1's role = %q", ms.Role)
	}
	// The old owner may come back, as a member, last in join order.
	_, err = s.JoinGroup(ctx, g.ID, o.ID)
	noErr(t, "JoinGroup again", err)
	mem, _ := s.GroupMembers(ctx, g.ID)
	if len(mem) != 3 || mem[0].User.ID != m1.ID || mem[2].User.ID != o.ID || mem[2].Role != model.RoleMember {
		t.Fatalf("GroupMembers = %+v", mem)
	}
	checkRecipients(t, s, g.ID, mem)
	// A member quits: no owner change.
	r, err = s.QuitGroup(ctx, g.ID, m2.ID)
	noErr(t, "QuitGroup member", err)
	if r.Deleted || r.NewOwner != 0 || !eqInts(r.Remaining, []int64{m1.ID, o.ID}) {
		t.Fatalf("QuitGroup(member) = %+v", r)
	}
	mem, err = s.GroupMembers(ctx, g.ID)
	noErr(t, "GroupMembers after a quit", err)
	checkRecipients(t, s, g.ID, mem)
	_, err = s.QuitGroup(ctx, g.ID, m2.ID)
	wantErr(t, "QuitGroup twice", err, model.ErrForbidden)
	if r, err := s.QuitGroup(ctx, g.ID, m1.ID); err != nil || r.NewOwner != o.ID {
		t.Fatalf("QuitGroup(m1) = %+v, %v", r, err)
	}
	send(t, s, model.GroupConv(g.ID), o, "last words", "c1")
	// The last member's quit deletes the group.
	r, err = s.QuitGroup(ctx, g.ID, o.ID)
	noErr(t, "QuitGroup last", err)
	if !r.Deleted || len(r.Remaining) != 0 || r.NewOwner != 0 {
		t.Fatalf("QuitGroup(last) = %+v", r)
	}
	checkGone(t, s, g.ID, o)
}

// checkRecipients checks that GroupRecipients lists the members of
// GroupMembers (in any order) with their joined seqs.
func checkRecipients(t *testing.T, s model.Store, groupID int64, members []model.Member) {
	t.Helper()
	rs, err := s.GroupRecipients(ctxT(t), groupID)
	noErr(t, "GroupRecipients", err)
	want := make(map[model.Recipient]bool, len(members))
	for _, m := range members {
		want[model.Recipient{UserID: m.User.ID, JoinedSeq: m.JoinedSeq}] = true
	}
	got := make(map[model.Recipient]bool, len(rs))
	for _, r := range rs {
		got[r] = true
	}
	if len(rs) != len(members) || !maps.Equal(got, want) {
		t.Fatalf("GroupRecipients(%d) = %+v; want the members %+v", groupID, rs, members)
	}
}

// checkGone checks that every method reports group groupID as not found.
func checkGone(t *testing.T, s model.Store, groupID int64, u model.User) {
	t.Helper()
	ctx := ctxT(t)
	conv := model.GroupConv(groupID)
	_, err := s.GroupByID(ctx, groupID)
	wantErr(t, "GroupByID gone", err, model.ErrNotFound)
	_, err = s.JoinGroup(ctx, groupID, u.ID)
	wantErr(t, "JoinGroup gone", err, model.ErrNotFound)
	_, err = s.QuitGroup(ctx, groupID, u.ID)
	wantErr(t, "QuitGroup gone", err, model.ErrNotFound)
	_, err = s.DeleteGroup(ctx, groupID, u.ID)
	wantErr(t, "DeleteGroup gone", err, model.ErrNotFound)
	_, err = s.Membership(ctx, groupID, u.ID)
	wantErr(t, "Membership gone", err, model.ErrNotFound)
	_, err = s.GroupMembers(ctx, groupID)
	wantErr(t, "GroupMembers gone", err, model.ErrNotFound)
	_, err = s.GroupRecipients(ctx, groupID)
	wantErr(t, "GroupRecipients gone", err, model.ErrNotFound)
	_, _, err = s.StoreMessage(ctx, model.NewMessage{Conv: conv, From: u.ID, FromName: u.Name, Body: "x", CID: "after-gone"})
	wantErr(t, "StoreMessage gone", err, model.ErrNotFound)
	_, err = s.Messages(ctx, conv, 0, 0, 10)
	wantErr(t, "Messages gone", err, model.ErrNotFound)
	_, err = s.LastSeq(ctx, conv)
	wantErr(t, "LastSeq gone", err, model.ErrNotFound)
	_, err = s.Cursor(ctx, u.ID, conv)
	wantErr(t, "Cursor gone", err, model.ErrNotFound)
	err = s.AckMessages(ctx, u.ID, []model.Ack{{Conv: conv, Seq: 1}})
	wantErr(t, "AckMessages gone", err, model.ErrNotFound)
	ug, err := s.UserGroups(ctx, u.ID)
	noErr(t, "UserGroups", err)
	for _, m := range ug {
		if m.Group.ID == groupID {
			t.Fatalf("UserGroups lists the deleted group")
		}
	}
	fg, err := s.FindGroups(ctx, "", 1000)
	noErr(t, "FindGroups", err)
	for _, g := range fg {
		if g.Group.ID == groupID {
			t.Fatalf("FindGroups lists the deleted group")
		}
	}
}

func testDeleteGroup(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	o, m1, m2 := mustUser(t, s, "o"), mustUser(t, s, "m1"), mustUser(t, s, "m2")
	g, err := s.CreateGroup(ctx, o.ID, "g", "")
	noErr(t, "CreateGroup", err)
	for _, u := range []model.User{m2, m1} {
		if _, err := s.JoinGroup(ctx, g.ID, u.ID); err != nil {
			t.Fatalf("JoinGroup: %v", err)
		}
	}
	send(t, s, model.GroupConv(g.ID), m1, "hello", "m1-1")
	_, err = s.DeleteGroup(ctx, g.ID, m1.ID)
	wantErr(t, "DeleteGroup by member", err, model.ErrForbidden)
	_, err = s.DeleteGroup(ctx, g.ID, m1.ID+1000)
	wantErr(t, "DeleteGroup by stranger", err, model.ErrForbidden)
	members, err := s.DeleteGroup(ctx, g.ID, o.ID)
	noErr(t, "DeleteGroup", err)
	if !eqInts(members, []int64{o.ID, m2.ID, m1.ID}) {
		t.Fatalf("DeleteGroup = %v", members)
	}
	checkGone(t, s, g.ID, m1)
	// The sender's cid of the deleted group's message is not in the way.
	g2, err := s.CreateGroup(ctx, m1.ID, "g2", "")
	noErr(t, "CreateGroup", err)
	if m := send(t, s, model.GroupConv(g2.ID), m1, "hello", "m1-1"); m.Seq != 1 {
		t.Fatalf("seq = %d", m.Seq)
	}
}

func testFindGroups(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	o, m := mustUser(t, s, "o"), mustUser(t, s, "m")
	var ids []int64
	for _, n := range []string{"Golang", "go_pher", "GOPHERS", "Rust", "Über"} {
		g, err := s.CreateGroup(ctx, o.ID, n, "d "+n)
		noErr(t, "CreateGroup", err)
		ids = append(ids, g.ID)
	}
	_, err := s.JoinGroup(ctx, ids[2], m.ID)
	noErr(t, "JoinGroup", err)
	for _, tc := range []struct {
		prefix string
		limit  int
		want   []int64
	}{
		{"go", 50, ids[:3]},
		{"GO", 2, ids[:2]},
		{"go_", 50, ids[1:2]},
		{"gop", 50, ids[2:3]},
		{"", 50, ids},
		{"über", 50, ids[4:]},
		{"z", 50, nil},
		{"go", 0, nil},
	} {
		gs, err := s.FindGroups(ctx, tc.prefix, tc.limit)
		noErr(t, "FindGroups", err)
		if gs == nil {
			t.Fatalf("FindGroups(%q) = nil", tc.prefix)
		}
		var got []int64
		for _, g := range gs {
			got = append(got, g.Group.ID)
		}
		if !eqInts(got, tc.want) {
			t.Errorf("FindGroups(%q, %d) = %v, want %v", tc.prefix, tc.limit, got, tc.want)
		}
	}
	gs, _ := s.FindGroups(ctx, "gophers", 50)
	if len(gs) != 1 || gs[0].Members != 2 || gs[0].Group.Name != "GOPHERS" || gs[0].Group.Desc != "d GOPHERS" || gs[0].Group.OwnerID != o.ID {
		t.Fatalf("FindGroups(gophers) = %+v", gs)
	}
}

func testMessages(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	a, b, c := mustUser(t, s, "a"), mustUser(t, s, "b"), mustUser(t, s, "c")
	conv := model.Direct(a.ID, b.ID)
	if n, err := s.LastSeq(ctx, conv); err != nil || n != 0 {
		t.Fatalf("LastSeq empty = %d, %v", n, err)
	}
	if ms, err := s.Messages(ctx, conv, 0, 0, 10); err != nil || ms == nil || len(ms) != 0 {
		t.Fatalf("Messages empty = %v, %v", ms, err)
	}
	if n, err := s.Cursor(ctx, a.ID, conv); err != nil || n != 0 {
		t.Fatalf("Cursor empty = %d, %v", n, err)
	}
	m := send(t, s, conv, a, "héllo 🌍", "cid-1")
	if m.Seq != 1 || m.From != a.ID || m.FromName != "a" || m.Body != "héllo 🌍" || m.CID != "cid-1" || m.Conv != conv || m.Time == 0 {
		t.Fatalf("StoreMessage = %+v", m)
	}
	for i := 2; i <= 30; i++ {
		from := a
		if i%2 == 0 {
			from = b
		}
		if got := send(t, s, conv, from, fmt.Sprint("m", i), fmt.Sprint("cid-", i)); got.Seq != int64(i) {
			t.Fatalf("seq = %d, want %d", got.Seq, i)
		}
	}
	if n, _ := s.LastSeq(ctx, conv); n != 30 {
		t.Fatalf("LastSeq = %d", n)
	}
	// Sending moves the sender's cursor only.
	if n, _ := s.Cursor(ctx, a.ID, conv); n != 29 {
		t.Fatalf("Cursor(a) = %d, want 29", n)
	}
	if n, _ := s.Cursor(ctx, b.ID, conv); n != 30 {
		t.Fatalf("Cursor(b) = %d, want 30", n)
	}
	if n, _ := s.Cursor(ctx, c.ID, conv); n != 0 {
		t.Fatalf("Cursor(c) = %d, want 0", n)
	}

	for _, tc := range []struct {
		after, before int64
		limit         int
		want          []int64
	}{
		{0, 0, 100, span(1, 30)},
		{0, 0, 5, span(26, 30)},    // the newest
		{0, 26, 5, span(21, 25)},   // paging back
		{0, 3, 5, span(1, 2)},      // the start
		{10, 0, 100, span(11, 30)}, // above a cursor
		{10, 15, 100, span(11, 14)},
		{10, 11, 100, nil},
		{30, 0, 10, nil},
		{0, 0, 0, nil},
	} {
		ms, err := s.Messages(ctx, conv, tc.after, tc.before, tc.limit)
		noErr(t, "Messages", err)
		if got := seqs(ms); !eqInts(got, tc.want) {
			t.Errorf("Messages(%d, %d, %d) = %v, want %v", tc.after, tc.before, tc.limit, got, tc.want)
		}
	}
	ms, _ := s.Messages(ctx, conv, 0, 2, 1)
	if len(ms) != 1 || ms[0] != m {
		t.Fatalf("Messages()[0] = %+v, want %+v", ms, m)
	}
	// Another conversation is separate.
	conv2 := model.Direct(c.ID, a.ID)
	if got := send(t, s, conv2, c, "x", "c-1"); got.Seq != 1 || got.Conv != conv2 {
		t.Fatalf("other conversation: %+v", got)
	}
	// Only the two users of a direct conversation send in it.
	_, _, err := s.StoreMessage(ctx, model.NewMessage{Conv: conv, From: c.ID, FromName: "c", Body: "x", CID: "c-2"})
	wantErr(t, "StoreMessage outsider", err, model.ErrForbidden)
	// Bad input is an error, not a crash.
	for _, nm := range []model.NewMessage{
		{Conv: model.Conv{}, From: a.ID, Body: "x", CID: "z"},
		{Conv: model.Conv{A: b.ID, B: a.ID}, From: a.ID, Body: "x", CID: "z"},
		{Conv: conv, From: a.ID, Body: "x", CID: ""},
		{Conv: conv, From: 0, Body: "x", CID: "z"},
		{Conv: conv, From: a.ID, Body: "bad \xff utf-8", CID: "z"},
		{Conv: conv, From: a.ID, FromName: "\xc3", Body: "x", CID: "z"},
		{Conv: conv, From: a.ID, Body: "x", CID: strings.Repeat("c", 256)},
	} {
		if _, _, err := s.StoreMessage(ctx, nm); err == nil {
			t.Errorf("StoreMessage(%+v) succeeded", nm)
		}
	}
	if n, _ := s.LastSeq(ctx, conv); n != 30 {
		t.Fatalf("LastSeq after refusals = %d", n)
	}
}

func testDedupe(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	a, b, c := mustUser(t, s, "a"), mustUser(t, s, "b"), mustUser(t, s, "c")
	conv := model.Direct(a.ID, b.ID)
	orig := send(t, s, conv, a, "hello", "same")
	send(t, s, conv, b, "reply", "other")

	retry := model.NewMessage{Conv: conv, From: a.ID, FromName: "renamed", Body: "hello", CID: "same", Time: orig.Time + 5000}
	got, dup, err := s.StoreMessage(ctx, retry)
	noErr(t, "retry", err)
	if !dup || got != orig {
		t.Fatalf("retry = %+v dup %v, want the original %+v", got, dup, orig)
	}
	if n, _ := s.LastSeq(ctx, conv); n != 2 {
		t.Fatalf("LastSeq after retry = %d", n)
	}
	// Same cid, another body or conversation.
	_, _, err = s.StoreMessage(ctx, model.NewMessage{Conv: conv, From: a.ID, FromName: "a", Body: "hello!", CID: "same"})
	wantErr(t, "other body", err, model.ErrCIDConflict)
	_, _, err = s.StoreMessage(ctx, model.NewMessage{Conv: model.Direct(a.ID, c.ID), From: a.ID, FromName: "a", Body: "hello", CID: "same"})
	wantErr(t, "other conversation", err, model.ErrCIDConflict)
	g, err := s.CreateGroup(ctx, a.ID, "g", "")
	noErr(t, "CreateGroup", err)
	_, _, err = s.StoreMessage(ctx, model.NewMessage{Conv: model.GroupConv(g.ID), From: a.ID, FromName: "a", Body: "hello", CID: "same"})
	wantErr(t, "group conversation", err, model.ErrCIDConflict)
	// The cid belongs to its sender: another may use it.
	if m := send(t, s, conv, b, "hello", "same"); m.Seq != 3 {
		t.Fatalf("b's cid 'same': seq %d", m.Seq)
	}
	// Concurrent retries of one new message store it once.
	var wg sync.WaitGroup
	res := make([]model.Message, 10)
	dups := make([]bool, 10)
	errs := make([]error, 10)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], dups[i], errs[i] = s.StoreMessage(ctx, model.NewMessage{Conv: conv, From: c.ID, FromName: "c", Body: "once", CID: "burst"})
		}()
	}
	wg.Wait()
	// c is not in conv: every attempt is refused, nothing stored.
	for i := range errs {
		wantErr(t, "burst by outsider", errs[i], model.ErrForbidden)
	}
	nDup := 0
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], dups[i], errs[i] = s.StoreMessage(ctx, model.NewMessage{Conv: conv, From: a.ID, FromName: "a", Body: "once", CID: "burst"})
		}()
	}
	wg.Wait()
	for i := range res {
		noErr(t, "burst", errs[i])
		if dups[i] {
			nDup++
		}
		if res[i].Seq != 4 {
			t.Fatalf("burst %d: seq %d, want 4", i, res[i].Seq)
		}
	}
	if nDup != len(res)-1 {
		t.Fatalf("burst: %d dups, want %d", nDup, len(res)-1)
	}
	if n, _ := s.LastSeq(ctx, conv); n != 4 {
		t.Fatalf("LastSeq after burst = %d", n)
	}
}

func testGroupMessages(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	o, m, x := mustUser(t, s, "o"), mustUser(t, s, "m"), mustUser(t, s, "x")
	g, err := s.CreateGroup(ctx, o.ID, "g", "")
	noErr(t, "CreateGroup", err)
	conv := model.GroupConv(g.ID)
	_, err = s.JoinGroup(ctx, g.ID, m.ID)
	noErr(t, "JoinGroup", err)
	if msg := send(t, s, conv, o, "one", "o1"); msg.Seq != 1 || msg.Conv != conv {
		t.Fatalf("group send = %+v", msg)
	}
	if msg := send(t, s, conv, m, "two", "m1"); msg.Seq != 2 {
		t.Fatalf("group send = %+v", msg)
	}
	_, _, err = s.StoreMessage(ctx, model.NewMessage{Conv: conv, From: x.ID, FromName: "x", Body: "no", CID: "x1"})
	wantErr(t, "non-member", err, model.ErrForbidden)
	_, _, err = s.StoreMessage(ctx, model.NewMessage{Conv: model.GroupConv(g.ID + 1000), From: o.ID, FromName: "o", Body: "no", CID: "o2"})
	wantErr(t, "no group", err, model.ErrNotFound)
	ms, err := s.Messages(ctx, conv, 0, 0, 10)
	noErr(t, "Messages", err)
	if !eqInts(seqs(ms), []int64{1, 2}) || ms[0].From != o.ID || ms[1].Body != "two" || ms[1].FromName != "m" {
		t.Fatalf("Messages = %+v", ms)
	}
	mo, _ := s.Membership(ctx, g.ID, o.ID)
	mm, _ := s.Membership(ctx, g.ID, m.ID)
	if mo.Cursor != 1 || mo.LastSeq != 2 || mm.Cursor != 2 {
		t.Fatalf("cursors: owner %+v, member %+v", mo, mm)
	}
	if n, _ := s.Cursor(ctx, o.ID, conv); n != 1 {
		t.Fatalf("Cursor(o) = %d", n)
	}
	if n, err := s.Cursor(ctx, x.ID, conv); err != nil || n != 0 {
		t.Fatalf("Cursor(non-member) = %d, %v", n, err)
	}
	// A member who quit may no longer send.
	_, err = s.QuitGroup(ctx, g.ID, m.ID)
	noErr(t, "QuitGroup", err)
	_, _, err = s.StoreMessage(ctx, model.NewMessage{Conv: conv, From: m.ID, FromName: "m", Body: "late", CID: "m2"})
	wantErr(t, "after quit", err, model.ErrForbidden)
	// But its retry of a stored message still answers with the original.
	got, dup, err := s.StoreMessage(ctx, model.NewMessage{Conv: conv, From: m.ID, FromName: "m", Body: "two", CID: "m1"})
	if err != nil || !dup || got.Seq != 2 {
		t.Fatalf("retry after quit = %+v, %v, %v", got, dup, err)
	}
}

func testJoinedSeq(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	o, m := mustUser(t, s, "o"), mustUser(t, s, "m")
	g, err := s.CreateGroup(ctx, o.ID, "g", "")
	noErr(t, "CreateGroup", err)
	conv := model.GroupConv(g.ID)
	for i := 1; i <= 5; i++ {
		send(t, s, conv, o, fmt.Sprint(i), fmt.Sprint("o", i))
	}
	j, err := s.JoinGroup(ctx, g.ID, m.ID)
	noErr(t, "JoinGroup", err)
	if j.JoinedSeq != 5 || j.Cursor != 5 || j.LastSeq != 5 {
		t.Fatalf("JoinGroup = %+v, want joined/cursor/last 5", j)
	}
	send(t, s, conv, o, "6", "o6")
	ms, err := s.Membership(ctx, g.ID, m.ID)
	noErr(t, "Membership", err)
	if ms.JoinedSeq != 5 || ms.Cursor != 5 || ms.LastSeq != 6 {
		t.Fatalf("Membership = %+v", ms)
	}
	mem, _ := s.GroupMembers(ctx, g.ID)
	if len(mem) != 2 || mem[1].JoinedSeq != 5 || mem[0].JoinedSeq != 0 {
		t.Fatalf("GroupMembers = %+v", mem)
	}
	// The service reads history above max(cursor, joined_seq).
	after := max(ms.Cursor, ms.JoinedSeq)
	got, _ := s.Messages(ctx, conv, after, 0, 100)
	if !eqInts(seqs(got), []int64{6}) {
		t.Fatalf("messages after joining = %v", seqs(got))
	}
	// Quit and join again: joined_seq starts over at the last seq.
	_, err = s.QuitGroup(ctx, g.ID, m.ID)
	noErr(t, "QuitGroup", err)
	send(t, s, conv, o, "7", "o7")
	j, err = s.JoinGroup(ctx, g.ID, m.ID)
	noErr(t, "JoinGroup again", err)
	if j.JoinedSeq != 7 || j.Cursor != 7 {
		t.Fatalf("JoinGroup again = %+v", j)
	}
	ug, _ := s.UserGroups(ctx, m.ID)
	if len(ug) != 1 || ug[0].JoinedSeq != 7 || ug[0].Cursor != 7 || ug[0].LastSeq != 7 {
		t.Fatalf("UserGroups = %+v", ug)
	}
}

// testConcurrentSeq: 8 goroutines × 100 sends into one conversation give
// seq 1..800 with no gap and no reuse, and each sender's own messages keep
// their order.
func testConcurrentSeq(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	const senders, each = 8, 100
	o := mustUser(t, s, "o")
	g, err := s.CreateGroup(ctx, o.ID, "busy", "")
	noErr(t, "CreateGroup", err)
	conv := model.GroupConv(g.ID)
	users := make([]model.User, senders)
	for i := range users {
		users[i] = mustUser(t, s, fmt.Sprint("u", i))
		if _, err := s.JoinGroup(ctx, g.ID, users[i].ID); err != nil {
			t.Fatalf("JoinGroup: %v", err)
		}
	}
	var wg sync.WaitGroup
	got := make([][]int64, senders)
	errs := make(chan error, senders)
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := users[i]
			for k := 0; k < each; k++ {
				m, dup, err := s.StoreMessage(ctx, model.NewMessage{Conv: conv, From: u.ID, FromName: u.Name,
					Body: fmt.Sprintf("%d/%d", i, k), CID: fmt.Sprint("c", k), Time: time.Now().UnixMilli()})
				if err != nil || dup {
					errs <- fmt.Errorf("sender %d message %d: dup %v: %w", i, k, dup, err)
					return
				}
				got[i] = append(got[i], m.Seq)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var all []int64
	for i, ss := range got {
		if !sort.SliceIsSorted(ss, func(a, b int) bool { return ss[a] < ss[b] }) {
			t.Fatalf("sender %d's seqs out of order: %v", i, ss)
		}
		all = append(all, ss...)
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	if !eqInts(all, span(1, senders*each)) {
		t.Fatalf("seqs are not 1..%d: %d values, first %v", senders*each, len(all), all[:min(10, len(all))])
	}
	ms, err := s.Messages(ctx, conv, 0, 0, senders*each+10)
	noErr(t, "Messages", err)
	if !eqInts(seqs(ms), span(1, senders*each)) {
		t.Fatalf("stored seqs are not 1..%d", senders*each)
	}
	for _, m := range ms {
		var i, k int
		if _, err := fmt.Sscanf(m.Body, "%d/%d", &i, &k); err != nil || users[i].ID != m.From || got[i][k] != m.Seq {
			t.Fatalf("message %+v does not match what its sender was told", m)
		}
	}
	if n, _ := s.LastSeq(ctx, conv); n != senders*each {
		t.Fatalf("LastSeq = %d", n)
	}
	for i, u := range users {
		if n, _ := s.Cursor(ctx, u.ID, conv); n != got[i][each-1] {
			t.Fatalf("cursor of sender %d = %d, want its last seq %d", i, n, got[i][each-1])
		}
	}
}

// testBatchIsolation sends good and bad messages at once: each bad one gets
// its own error and the good ones are stored.
func testBatchIsolation(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	a, b, x := mustUser(t, s, "a"), mustUser(t, s, "b"), mustUser(t, s, "x")
	g, err := s.CreateGroup(ctx, a.ID, "g", "")
	noErr(t, "CreateGroup", err)
	direct := model.Direct(a.ID, b.ID)
	send(t, s, direct, a, "taken", "taken")
	var cases []storeCase
	for i := 0; i < 20; i++ {
		cases = append(cases,
			storeCase{model.NewMessage{Conv: direct, From: b.ID, FromName: "b", Body: "ok", CID: fmt.Sprint("b", i)}, nil},
			storeCase{model.NewMessage{Conv: model.GroupConv(g.ID), From: x.ID, FromName: "x", Body: "no", CID: fmt.Sprint("x", i)}, model.ErrForbidden},
			storeCase{model.NewMessage{Conv: model.GroupConv(g.ID + 1000), From: a.ID, FromName: "a", Body: "no", CID: fmt.Sprint("a", i)}, model.ErrNotFound},
			storeCase{model.NewMessage{Conv: direct, From: a.ID, FromName: "a", Body: "other", CID: "taken"}, model.ErrCIDConflict},
			storeCase{model.NewMessage{Conv: model.GroupConv(g.ID), From: a.ID, FromName: "a", Body: "ok", CID: fmt.Sprint("g", i)}, nil},
			storeCase{model.NewMessage{Conv: model.Direct(a.ID, x.ID+1000), From: x.ID + 1000, FromName: "ghost", Body: "no", CID: fmt.Sprint("n", i)}, model.ErrNotFound},
		)
	}
	storeConcurrently(t, s, cases)
	if n, _ := s.LastSeq(ctx, direct); n != 21 {
		t.Fatalf("LastSeq(direct) = %d, want 21", n)
	}
	if n, _ := s.LastSeq(ctx, model.GroupConv(g.ID)); n != 20 {
		t.Fatalf("LastSeq(group) = %d, want 20", n)
	}
}

func testAck(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	a, b := mustUser(t, s, "a"), mustUser(t, s, "b")
	g, err := s.CreateGroup(ctx, a.ID, "g", "")
	noErr(t, "CreateGroup", err)
	_, err = s.JoinGroup(ctx, g.ID, b.ID)
	noErr(t, "JoinGroup", err)
	direct, group := model.Direct(a.ID, b.ID), model.GroupConv(g.ID)
	for i := 1; i <= 5; i++ {
		send(t, s, direct, a, "d", fmt.Sprint("d", i))
		send(t, s, group, a, "g", fmt.Sprint("g", i))
	}
	cursors := func() (int64, int64) {
		d, err := s.Cursor(ctx, b.ID, direct)
		noErr(t, "Cursor", err)
		gr, err := s.Cursor(ctx, b.ID, group)
		noErr(t, "Cursor", err)
		return d, gr
	}
	noErr(t, "Ack", s.AckMessages(ctx, b.ID, []model.Ack{{Conv: direct, Seq: 3}, {Conv: group, Seq: 2}}))
	if d, gr := cursors(); d != 3 || gr != 2 {
		t.Fatalf("cursors = %d, %d; want 3, 2", d, gr)
	}
	// Never backwards; two entries for one conversation: the larger counts.
	noErr(t, "Ack", s.AckMessages(ctx, b.ID, []model.Ack{{Conv: direct, Seq: 1}, {Conv: group, Seq: 4}, {Conv: group, Seq: 3}}))
	if d, gr := cursors(); d != 3 || gr != 4 {
		t.Fatalf("cursors = %d, %d; want 3, 4", d, gr)
	}
	// All or nothing.
	err = s.AckMessages(ctx, b.ID, []model.Ack{{Conv: direct, Seq: 5}, {Conv: group, Seq: 6}})
	wantErr(t, "Ack beyond", err, model.ErrSeqBeyond)
	if !strings.Contains(err.Error(), fmt.Sprint(g.ID)) {
		t.Errorf("ErrSeqBeyond does not name the conversation: %v", err)
	}
	if d, gr := cursors(); d != 3 || gr != 4 {
		t.Fatalf("cursors after a refused ack = %d, %d; want 3, 4", d, gr)
	}
	err = s.AckMessages(ctx, b.ID, []model.Ack{{Conv: model.Direct(b.ID, b.ID+1000), Seq: 1}})
	wantErr(t, "Ack empty conversation", err, model.ErrSeqBeyond)
	noErr(t, "Ack none", s.AckMessages(ctx, b.ID, nil))
	noErr(t, "Ack to the end", s.AckMessages(ctx, b.ID, []model.Ack{{Conv: direct, Seq: 5}, {Conv: group, Seq: 5}}))
	if d, gr := cursors(); d != 5 || gr != 5 {
		t.Fatalf("cursors = %d, %d; want 5, 5", d, gr)
	}
	fs, _ := s.Friends(ctx, b.ID) // not friends: not listed, whatever the cursor
	if len(fs) != 0 {
		t.Fatalf("Friends = %+v", fs)
	}
	ug, _ := s.UserGroups(ctx, b.ID)
	if len(ug) != 1 || ug[0].Cursor != 5 || ug[0].LastSeq != 5 {
		t.Fatalf("UserGroups = %+v", ug)
	}
}

// testConcurrentAcks runs acks (good and refused) and sends at once: each
// ack call is all or nothing by itself.
func testConcurrentAcks(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	a := mustUser(t, s, "a")
	const n = 16
	peers := make([]model.User, n)
	convs := make([]model.Conv, n)
	for i := range peers {
		peers[i] = mustUser(t, s, fmt.Sprint("p", i))
		convs[i] = model.Direct(a.ID, peers[i].ID)
		for k := 1; k <= 3; k++ {
			send(t, s, convs[i], peers[i], "x", fmt.Sprint("m", k))
		}
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range peers {
		wg.Add(2)
		go func() { // a acks conversation i, and i+1 beyond its end when i is odd
			defer wg.Done()
			acks := []model.Ack{{Conv: convs[i], Seq: 2}}
			if i%2 == 1 {
				acks = append(acks, model.Ack{Conv: convs[(i+1)%n], Seq: 99})
			}
			errs[i] = s.AckMessages(ctx, a.ID, acks)
		}()
		go func() {
			defer wg.Done()
			_, _, err := s.StoreMessage(ctx, model.NewMessage{Conv: convs[i], From: peers[i].ID, FromName: "p", Body: "y", CID: "m4"})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i := range peers {
		cur, err := s.Cursor(ctx, a.ID, convs[i])
		noErr(t, "Cursor", err)
		if i%2 == 1 {
			wantErr(t, fmt.Sprint("ack ", i), errs[i], model.ErrSeqBeyond)
			if cur != 0 {
				t.Errorf("refused ack %d moved the cursor to %d", i, cur)
			}
		} else {
			noErr(t, fmt.Sprint("ack ", i), errs[i])
			if cur != 2 {
				t.Errorf("cursor %d = %d, want 2", i, cur)
			}
		}
		if n, _ := s.LastSeq(ctx, convs[i]); n != 4 {
			t.Errorf("LastSeq %d = %d, want 4", i, n)
		}
	}
}

func testCanceled(t *testing.T, s model.Store) {
	a, b := mustUser(t, s, "a"), mustUser(t, s, "b")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	_, _, err := s.StoreMessage(ctx, model.NewMessage{Conv: model.Direct(a.ID, b.ID), From: a.ID, FromName: "a", Body: "x", CID: "x"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("StoreMessage with a canceled context: %v", err)
	}
	if _, err := s.UserByID(ctx, a.ID); err == nil {
		t.Fatalf("UserByID with a canceled context succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("canceled calls took %v", d)
	}
	// The store still works.
	send(t, s, model.Direct(a.ID, b.ID), a, "x", "y")
}

func testClosed(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	a, b := mustUser(t, s, "a"), mustUser(t, s, "b")
	send(t, s, model.Direct(a.ID, b.ID), a, "x", "x")
	noErr(t, "Close", s.Close())
	noErr(t, "Close again", s.Close())
	_, _, err := s.StoreMessage(ctx, model.NewMessage{Conv: model.Direct(a.ID, b.ID), From: a.ID, FromName: "a", Body: "x", CID: "y"})
	wantErr(t, "StoreMessage after Close", err, model.ErrClosed)
	_, err = s.UserByID(ctx, a.ID)
	wantErr(t, "UserByID after Close", err, model.ErrClosed)
	_, err = s.CreateUser(ctx, "c", nil)
	wantErr(t, "CreateUser after Close", err, model.ErrClosed)
	err = s.RecordLoginFailure(ctx, a.ID, time.Now(), time.Minute)
	wantErr(t, "RecordLoginFailure after Close", err, model.ErrClosed)
	_, err = s.LoginFailures(ctx, a.ID, time.Time{})
	wantErr(t, "LoginFailures after Close", err, model.ErrClosed)
}

// msTimes returns the times as Unix milliseconds, for comparison.
func msTimes(ts []time.Time) []int64 {
	out := make([]int64, len(ts))
	for i, t := range ts {
		out[i] = t.UnixMilli()
	}
	return out
}

func wantFailures(t *testing.T, s model.Store, userID int64, since time.Time, want ...int64) {
	t.Helper()
	got, err := s.LoginFailures(ctxT(t), userID, since)
	noErr(t, "LoginFailures", err)
	if want == nil {
		want = []int64{}
	}
	if g := msTimes(got); !eqInts(g, want) {
		t.Fatalf("LoginFailures(%d, since %d ms) = %v, want %v", userID, since.UnixMilli(), g, want)
	}
}

func testLoginFailures(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	a, b := mustUser(t, s, "a"), mustUser(t, s, "b")
	const t0 = 1_700_000_000_000 // Unix ms
	at := func(ms int64) time.Time { return time.UnixMilli(t0 + ms) }
	epoch := time.UnixMilli(0)
	wantFailures(t, s, a.ID, epoch)

	record := func(u model.User, when time.Time) {
		t.Helper()
		noErr(t, "RecordLoginFailure", s.RecordLoginFailure(ctx, u.ID, when, time.Minute))
	}
	record(a, at(0))
	record(a, at(1))
	record(a, at(30_000).Add(999*time.Microsecond)) // kept to the millisecond
	record(b, at(5))
	wantFailures(t, s, a.ID, epoch, t0, t0+1, t0+30_000)
	wantFailures(t, s, a.ID, at(0), t0+1, t0+30_000) // strictly after since
	wantFailures(t, s, a.ID, at(0).Add(500*time.Microsecond), t0+1, t0+30_000)
	wantFailures(t, s, a.ID, at(30_000))
	wantFailures(t, s, b.ID, epoch, t0+5)
	got, err := s.LoginFailures(ctx, a.ID, epoch)
	noErr(t, "LoginFailures", err)
	if !got[0].Equal(at(0)) {
		t.Fatalf("LoginFailures[0] = %v, want %v", got[0], at(0))
	}

	// Recording at t0+60.001s forgets what is older than t0+0.001s.
	record(a, at(60_001))
	wantFailures(t, s, a.ID, epoch, t0+1, t0+30_000, t0+60_001)
	// A failure recorded late (another server's clock) still comes in order.
	record(a, at(45_000))
	wantFailures(t, s, a.ID, epoch, t0+1, t0+30_000, t0+45_000, t0+60_001)
	// A larger jump forgets all but the newest; b keeps its own.
	noErr(t, "RecordLoginFailure", s.RecordLoginFailure(ctx, a.ID, at(200_000), 10*time.Second))
	wantFailures(t, s, a.ID, epoch, t0+200_000)
	wantFailures(t, s, b.ID, epoch, t0+5)
	// Two failures in the same millisecond both count.
	record(a, at(200_000))
	wantFailures(t, s, a.ID, epoch, t0+200_000, t0+200_000)

	err = s.RecordLoginFailure(ctx, a.ID+b.ID+100, at(0), time.Minute)
	wantErr(t, "RecordLoginFailure of a missing user", err, model.ErrNotFound)
	if err := s.RecordLoginFailure(ctx, 0, at(0), time.Minute); err == nil {
		t.Fatal("RecordLoginFailure of user 0 succeeded")
	}
	if err := s.RecordLoginFailure(ctx, a.ID, at(0), -time.Second); err == nil {
		t.Fatal("RecordLoginFailure with a negative window succeeded")
	}
	wantFailures(t, s, a.ID+b.ID+100, epoch)
}

// testConcurrentLoginFailures: failures recorded at once (connections of
// one account on several servers) are all counted.
func testConcurrentLoginFailures(t *testing.T, s model.Store) {
	LoginFailuresShared(t, s, s)
}

// LoginFailuresShared checks that two stores on one database (two servers
// of a cluster) count one account's failed logins together: concurrent
// failures recorded through either are all seen through both, and a purge
// through one forgets the other's old failures. Both stores must be empty.
func LoginFailuresShared(t *testing.T, s1, s2 model.Store) {
	ctx := ctxT(t)
	u := mustUser(t, s1, "shared")
	base := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := s1
			if i%2 == 1 {
				s = s2
			}
			errs <- s.RecordLoginFailure(ctx, u.ID, base.Add(time.Duration(i)*time.Millisecond), time.Minute)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		noErr(t, "RecordLoginFailure", err)
	}
	want := span(base.UnixMilli(), base.UnixMilli()+19)
	for i, s := range []model.Store{s1, s2} {
		got, err := s.LoginFailures(ctx, u.ID, base.Add(-time.Minute))
		noErr(t, "LoginFailures", err)
		if g := msTimes(got); !eqInts(g, want) {
			t.Fatalf("store %d: LoginFailures = %v, want %v", i+1, g, want)
		}
	}
	// A failure a minute later through s2 forgets those older than the
	// window, whichever store recorded them.
	later := base.Add(time.Minute + 10*time.Millisecond)
	noErr(t, "RecordLoginFailure", s2.RecordLoginFailure(ctx, u.ID, later, time.Minute))
	wantFailures(t, s1, u.ID, time.UnixMilli(0), append(span(base.UnixMilli()+10, base.UnixMilli()+19), later.UnixMilli())...)
}

// testBatchRetries: concurrent senders in a few conversations, each
// message sent twice at once (a retry racing the original, often in one
// batch) and some cids reused for another body. Every conversation's seqs
// are 1..n with no gap, every stored message is returned as stored, a
// retry returns the original, and each sender's cursor is at its last
// message.
func testBatchRetries(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	users := make([]model.User, 6)
	for i := range users {
		users[i] = mustUser(t, s, fmt.Sprint("u", i))
	}
	g, err := s.CreateGroup(ctx, users[0].ID, "g", "")
	noErr(t, "CreateGroup", err)
	for _, u := range users[1:] {
		_, err := s.JoinGroup(ctx, g.ID, u.ID)
		noErr(t, "JoinGroup", err)
	}
	convs := []model.Conv{model.Direct(users[0].ID, users[1].ID), model.Direct(users[2].ID, users[3].ID), model.GroupConv(g.ID)}
	senders := [][]model.User{{users[0], users[1]}, {users[2], users[3]}, users}
	type sent struct {
		m   model.Message
		dup bool
		err error
	}
	var mu sync.Mutex
	var got []sent
	var wg sync.WaitGroup
	for ci, conv := range convs {
		for _, u := range senders[ci] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < 15; k++ {
					cid := fmt.Sprint(ci, "-", k)
					body := fmt.Sprint("body ", cid)
					var inner sync.WaitGroup
					for copy := 0; copy < 3; copy++ {
						inner.Add(1)
						go func() {
							defer inner.Done()
							b := body
							if copy == 2 && k%5 == 0 {
								b = "another body" // the same cid for another message
							}
							m, dup, err := s.StoreMessage(ctx, model.NewMessage{Conv: conv, From: u.ID, FromName: u.Name, Body: b, CID: cid, Time: int64(1000 + k)})
							mu.Lock()
							got = append(got, sent{m, dup, err})
							mu.Unlock()
						}()
					}
					inner.Wait()
				}
			}()
		}
	}
	wg.Wait()
	stored := map[string]model.Message{} // by sender/cid
	for _, r := range got {
		if r.err != nil {
			if !errors.Is(r.err, model.ErrCIDConflict) {
				t.Fatalf("StoreMessage: %v", r.err)
			}
			continue
		}
		id := fmt.Sprint(r.m.From, "/", r.m.CID)
		if prev, ok := stored[id]; ok && prev != r.m {
			t.Fatalf("two results for %s: %+v and %+v", id, prev, r.m)
		}
		stored[id] = r.m
	}
	for ci, conv := range convs {
		ms, err := s.Messages(ctx, conv, 0, 0, 1000)
		noErr(t, "Messages", err)
		want := 15 * len(senders[ci])
		if !eqInts(seqs(ms), span(1, int64(want))) {
			t.Fatalf("%v: seqs %v, want 1..%d", conv, seqs(ms), want)
		}
		last := map[int64]int64{}
		for _, m := range ms {
			if r, ok := stored[fmt.Sprint(m.From, "/", m.CID)]; !ok || r != m {
				t.Fatalf("%v: stored %+v, answered %+v (found %v)", conv, m, r, ok)
			}
			if m.Body != "body "+m.CID && m.Body != "another body" { // whichever came first
				t.Fatalf("%v: a body never sent was stored: %+v", conv, m)
			}
			last[m.From] = m.Seq
		}
		for _, u := range senders[ci] {
			cur, err := s.Cursor(ctx, u.ID, conv)
			noErr(t, "Cursor", err)
			if cur != last[u.ID] {
				t.Fatalf("%v: cursor of %d = %d, want %d", conv, u.ID, cur, last[u.ID])
			}
		}
		if n, _ := s.LastSeq(ctx, conv); n != int64(want) {
			t.Fatalf("%v: LastSeq %d, want %d", conv, n, want)
		}
	}
	if len(stored) != 15*(2+2+6) {
		t.Fatalf("%d distinct messages answered, want %d", len(stored), 15*10)
	}
}

// testFriendsOnly: a FriendsOnly direct message is stored only between
// friends, checked in the storing transaction, each message of a batch on
// its own; a refused message leaves no conversation behind.
func testFriendsOnly(t *testing.T, s model.Store) {
	ctx := ctxT(t)
	a, b, c, d := mustUser(t, s, "a"), mustUser(t, s, "b"), mustUser(t, s, "c"), mustUser(t, s, "d")
	mustFriends(t, s, a.ID, b.ID)
	_, err := s.RequestFriend(ctx, a.ID, d.ID) // pending: not friends yet
	noErr(t, "RequestFriend", err)
	friends, strangers, pending := model.Direct(a.ID, b.ID), model.Direct(a.ID, c.ID), model.Direct(a.ID, d.ID)
	var cases []storeCase
	for i := range 10 {
		cases = append(cases,
			storeCase{model.NewMessage{Conv: friends, From: a.ID, FromName: "a", Body: "ok", CID: fmt.Sprint("f", i), FriendsOnly: true}, nil},
			storeCase{model.NewMessage{Conv: strangers, From: a.ID, FromName: "a", Body: "no", CID: fmt.Sprint("s", i), FriendsOnly: true}, model.ErrForbidden},
			storeCase{model.NewMessage{Conv: pending, From: d.ID, FromName: "d", Body: "no", CID: fmt.Sprint("p", i), FriendsOnly: true}, model.ErrForbidden},
		)
	}
	storeConcurrently(t, s, cases)
	if n, _ := s.LastSeq(ctx, friends); n != 10 {
		t.Fatalf("LastSeq(friends) = %d, want 10", n)
	}
	for _, conv := range []model.Conv{strangers, pending} {
		if n, err := s.LastSeq(ctx, conv); n != 0 || err != nil {
			t.Fatalf("LastSeq(%v) = %d, %v; want 0: nothing stored", conv, n, err)
		}
		if ms, err := s.Messages(ctx, conv, 0, 0, 10); len(ms) != 0 || err != nil {
			t.Fatalf("Messages(%v) = %d messages, %v; want none", conv, len(ms), err)
		}
	}
	// Without FriendsOnly the store does not ask (the caller checked).
	send(t, s, strangers, a, "unchecked", "u1")

	// A friendship that ends refuses the next message, also a retry of one
	// stored before.
	_, err = s.DeleteFriend(ctx, b.ID, a.ID)
	noErr(t, "DeleteFriend", err)
	for _, cid := range []string{"after", "f0"} {
		_, _, err = s.StoreMessage(ctx, model.NewMessage{Conv: friends, From: a.ID, FromName: "a", Body: "ok", CID: cid, FriendsOnly: true})
		wantErr(t, "StoreMessage after DeleteFriend, cid "+cid, err, model.ErrForbidden)
	}
	if n, _ := s.LastSeq(ctx, friends); n != 10 {
		t.Fatalf("LastSeq(friends) after DeleteFriend = %d, want 10", n)
	}
	// Friends again: the conversation goes on.
	mustFriends(t, s, b.ID, a.ID)
	m, _, err := s.StoreMessage(ctx, model.NewMessage{Conv: friends, From: b.ID, FromName: "b", Body: "back", CID: "back", FriendsOnly: true})
	noErr(t, "StoreMessage friends again", err)
	if m.Seq != 11 {
		t.Fatalf("seq friends again = %d, want 11", m.Seq)
	}
}

// storeCase is a StoreMessage call and the error it should give (nil:
// stored).
type storeCase struct {
	m    model.NewMessage
	want error
}

// storeConcurrently makes every call of cases at once (so that batches mix
// them) and checks each outcome.
func storeConcurrently(t *testing.T, s model.Store, cases []storeCase) {
	t.Helper()
	ctx := ctxT(t)
	errs := make([]error, len(cases))
	var wg sync.WaitGroup
	for i := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = s.StoreMessage(ctx, cases[i].m)
		}()
	}
	wg.Wait()
	for i, c := range cases {
		if c.want == nil && errs[i] != nil {
			t.Errorf("case %d (%s): %v", i, c.m.CID, errs[i])
		}
		if c.want != nil && !errors.Is(errs[i], c.want) {
			t.Errorf("case %d (%s): %v, want %v", i, c.m.CID, errs[i], c.want)
		}
	}
}
