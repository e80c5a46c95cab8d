package mysql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"clusterchat/internal/testenv"
	"clusterchat/model"
	"clusterchat/model/mysql"
	"clusterchat/model/storetest"

	_ "github.com/go-sql-driver/mysql"
)

// server is the private MariaDB of this test binary, started by TestMain.
var server *testenv.MariaDB

// dbSeq numbers the databases that the tests create.
var dbSeq atomic.Int64

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mysqlstore-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	server, err = testenv.StartMariaDB(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start mariadb:", err)
		return 1
	}
	defer func() {
		if err := server.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop mariadb:", err)
		}
	}()
	return m.Run()
}

// newDB creates a fresh database and returns its DSN.
func newDB(t testing.TB) string {
	t.Helper()
	_, dsn := newNamedDB(t)
	return dsn
}

// newNamedDB creates a fresh database and returns its name and DSN.
func newNamedDB(t testing.TB) (name, dsn string) {
	t.Helper()
	name = fmt.Sprintf("t%d", dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := server.CreateDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	return name, server.DSN(name)
}

// directSender creates users a and b in s and returns a and a maker of
// a's messages to b with a given cid.
func directSender(t *testing.T, s model.Store) (model.User, func(cid string) model.NewMessage) {
	t.Helper()
	us := storetest.MustUsers(t, s, "a", "b")
	a, b := us[0], us[1]
	return a, func(cid string) model.NewMessage {
		return model.NewMessage{Conv: model.Direct(a.ID, b.ID), From: a.ID, FromName: "a", Body: "x", CID: cid}
	}
}

func open(t testing.TB, dsn string, opts mysql.Options) *mysql.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := mysql.Open(ctx, dsn, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", dsn, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestStore runs the store suite with the default single writer and with
// two, whose queues split the conversations (route) and whose
// transactions run side by side.
func TestStore(t *testing.T) {
	for _, writers := range []int{0, 2} { // 0: the default
		t.Run(fmt.Sprintf("writers=%d", writers), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) model.Store {
				return open(t, newDB(t), mysql.Options{Writers: writers})
			})
		})
	}
}

func TestOpenRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	for _, dsn := range []string{
		"",
		"mysql://root@tcp(127.0.0.1:1)/x",
		server.DSN(""),
		server.DSN("x") + "&interpolateParams=true",
	} {
		if s, err := mysql.Open(ctx, dsn, mysql.Options{}); err == nil {
			_ = s.Close()
			t.Errorf("Open(%q) succeeded", dsn)
		}
	}
	// A database that does not exist.
	if s, err := mysql.Open(ctx, server.DSN("no_such_db"), mysql.Options{}); err == nil {
		_ = s.Close()
		t.Errorf("Open of a missing database succeeded")
	}
}

// TestReopen: two stores on one database (two servers) migrate once and see
// each other's writes; a reopened store finds everything.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	dsn := newDB(t)
	s1 := open(t, dsn, mysql.Options{})
	s2 := open(t, dsn, mysql.Options{})
	a, err := s1.CreateUser(ctx, "a", []byte("h"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s2.CreateUser(ctx, "b", []byte("h"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.CreateUser(ctx, "A", nil); !errors.Is(err, model.ErrNameTaken) {
		t.Fatalf("CreateUser A on the other store: %v", err)
	}
	conv := model.Direct(a.ID, b.ID)
	for i := 1; i <= 10; i++ {
		s := s1
		if i%2 == 0 {
			s = s2
		}
		m, _, err := s.StoreMessage(ctx, model.NewMessage{Conv: conv, From: a.ID, FromName: "a", Body: "x", CID: fmt.Sprint(i)})
		if err != nil || m.Seq != int64(i) {
			t.Fatalf("message %d: seq %d, %v", i, m.Seq, err)
		}
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s3 := open(t, dsn, mysql.Options{})
	ms, err := s3.Messages(ctx, conv, 0, 0, 100)
	if err != nil || len(ms) != 10 {
		t.Fatalf("after reopen: %d messages, %v", len(ms), err)
	}
}

// TestConcurrentOpen: servers starting at once on a fresh database migrate
// it once (under the migration lock) and all open.
func TestConcurrentOpen(t *testing.T) {
	dsn := newDB(t)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := mysql.Open(ctx, dsn, mysql.Options{})
			if err == nil {
				err = s.Close()
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestTwoServersOneConversation: two stores (two servers) sending into one
// conversation at once still give seq 1..N with no gap.
func TestTwoServersOneConversation(t *testing.T) {
	ctx := context.Background()
	dsn := newDB(t)
	stores := []*mysql.Store{open(t, dsn, mysql.Options{}), open(t, dsn, mysql.Options{})}
	o, err := stores[0].CreateUser(ctx, "o", nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := stores[0].CreateGroup(ctx, o.ID, "g", "")
	if err != nil {
		t.Fatal(err)
	}
	conv := model.GroupConv(g.ID)
	const per = 100
	errs := make(chan error, 2*4)
	seen := make(chan int64, 2*4*per)
	for si, s := range stores {
		for w := 0; w < 4; w++ {
			go func() {
				for k := 0; k < per; k++ {
					m, _, err := s.StoreMessage(ctx, model.NewMessage{Conv: conv, From: o.ID, FromName: "o",
						Body: "x", CID: fmt.Sprintf("%d-%d-%d", si, w, k)})
					if err != nil {
						errs <- err
						return
					}
					seen <- m.Seq
				}
				errs <- nil
			}()
		}
	}
	for i := 0; i < 2*4; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(seen)
	got := make(map[int64]bool)
	for s := range seen {
		if got[s] {
			t.Fatalf("seq %d given twice", s)
		}
		got[s] = true
	}
	for s := int64(1); s <= 2*4*per; s++ {
		if !got[s] {
			t.Fatalf("seq %d missing", s)
		}
	}
}

// TestTwoServersRetry: the same message sent through two stores at once
// (a client retrying through another server) is stored once; both answers
// carry its seq.
func TestTwoServersRetry(t *testing.T) {
	ctx := context.Background()
	dsn := newDB(t)
	stores := []*mysql.Store{open(t, dsn, mysql.Options{}), open(t, dsn, mysql.Options{})}
	a, err := stores[0].CreateUser(ctx, "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := stores[0].CreateUser(ctx, "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	conv := model.Direct(a.ID, b.ID)
	for k := 0; k < 50; k++ {
		type result struct {
			m   model.Message
			dup bool
			err error
		}
		res := make(chan result, 2)
		for _, s := range stores {
			go func() {
				m, dup, err := s.StoreMessage(ctx, model.NewMessage{Conv: conv, From: a.ID, FromName: "a", Body: "x", CID: fmt.Sprint(k)})
				res <- result{m, dup, err}
			}()
		}
		r1, r2 := <-res, <-res
		if r1.err != nil || r2.err != nil {
			t.Fatalf("message %d: %v, %v", k, r1.err, r2.err)
		}
		if r1.m.Seq != int64(k+1) || r2.m.Seq != r1.m.Seq || r1.dup == r2.dup {
			t.Fatalf("message %d: seq %d dup %v, seq %d dup %v", k, r1.m.Seq, r1.dup, r2.m.Seq, r2.dup)
		}
	}
}

// TestDatabaseDown: with MariaDB stopped, calls fail fast (within their
// ctx, with an error that is not a model sentinel); after the restart the
// same store works again without being reopened.
func TestDatabaseDown(t *testing.T) {
	ctx := context.Background()
	s := open(t, newDB(t), mysql.Options{})
	a, msg := directSender(t, s)
	if _, _, err := s.StoreMessage(ctx, msg("before")); err != nil {
		t.Fatal(err)
	}

	if err := server.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_ = server.Restart(ctx)
		}
	})
	for i := 0; i < 3; i++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start := time.Now()
		_, _, err := s.StoreMessage(cctx, msg(fmt.Sprint("down-", i)))
		took := time.Since(start)
		cancel()
		if err == nil {
			t.Fatalf("StoreMessage with the database down succeeded")
		}
		for _, sentinel := range []error{model.ErrNotFound, model.ErrForbidden, model.ErrConflict, model.ErrCIDConflict, model.ErrClosed} {
			if errors.Is(err, sentinel) {
				t.Fatalf("StoreMessage with the database down: %v, a sentinel", err)
			}
		}
		if took > 5500*time.Millisecond {
			t.Fatalf("StoreMessage took %v with the database down", took)
		}
		t.Logf("database down: StoreMessage failed after %v: %v", took, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := s.UserByID(cctx, a.ID); err == nil {
		t.Fatalf("UserByID with the database down succeeded")
	}
	if err := s.Ping(cctx); err == nil {
		t.Fatalf("Ping with the database down succeeded")
	}
	cancel()

	rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer rcancel()
	if err := server.Restart(rctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	// The pool reconnects by itself: poll until a send succeeds.
	deadline := time.Now().Add(30 * time.Second)
	var (
		m   model.Message
		err error
	)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, _, err = s.StoreMessage(cctx, msg("after"))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("StoreMessage after restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if m.Seq != 2 {
		// Nothing of the failed sends was stored.
		t.Fatalf("seq after restart = %d, want 2", m.Seq)
	}
	if _, err := s.UserByID(ctx, a.ID); err != nil {
		t.Fatalf("UserByID after restart: %v", err)
	}
}

// TestLoginFailuresShared: two stores on one database (two servers) count an
// account's failed logins together, so the login throttle is cluster-wide.
func TestLoginFailuresShared(t *testing.T) {
	dsn := newDB(t)
	storetest.LoginFailuresShared(t, open(t, dsn, mysql.Options{}), open(t, dsn, mysql.Options{}))
}

// TestConnsKilled: when the server kills the store's connections (a
// restart, a DBA's KILL), the next StoreMessage still succeeds: the pool
// finds its connections dead before it uses them and dials new ones.
func TestConnsKilled(t *testing.T) {
	ctx := context.Background()
	name, dsn := newNamedDB(t)
	s := open(t, dsn, mysql.Options{Writers: 1})
	_, msg := directSender(t, s)
	if _, _, err := s.StoreMessage(ctx, msg("before")); err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	rows, err := admin.QueryContext(ctx, "SELECT id FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()", name)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if len(ids) == 0 {
		t.Fatalf("no connection of the store found")
	}
	for _, id := range ids {
		if _, err := admin.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil {
			t.Fatalf("KILL %d: %v", id, err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, dup, err := s.StoreMessage(cctx, msg("after"))
	if err != nil {
		t.Fatalf("StoreMessage after its connections were killed: %v", err)
	}
	if m.Seq != 2 || dup {
		t.Fatalf("StoreMessage after kill: seq %d dup %v, want seq 2", m.Seq, dup)
	}
}
