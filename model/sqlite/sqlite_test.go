package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"clusterchat/model"
	"clusterchat/model/sqlite"
	"clusterchat/model/storetest"
)

func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	return openOpts(t, path, sqlite.Options{})
}

func openOpts(t testing.TB, path string, opts sqlite.Options) *sqlite.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := sqlite.Open(ctx, path, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) model.Store {
		return open(t, filepath.Join(t.TempDir(), "chat.db"))
	})
}

func TestOpenRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	for _, p := range []string{"", ":memory:", "file:x.db", "a?b.db"} {
		if s, err := sqlite.Open(ctx, p, sqlite.Options{}); err == nil {
			_ = s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
	if _, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "x.db"), sqlite.Options{Synchronous: "OFF"}); err == nil {
		t.Errorf("Open with synchronous OFF succeeded")
	}
	if _, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "no", "such", "dir.db"), sqlite.Options{}); err == nil {
		t.Errorf("Open in a missing directory succeeded")
	}
}

// TestReopen: everything acknowledged is there after Close and Open, and
// opening an up-to-date file runs no migration again.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "chat.db")
	s := open(t, path)
	a, err := s.CreateUser(ctx, "a", []byte("h"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateUser(ctx, "b", []byte("h"))
	if err != nil {
		t.Fatal(err)
	}
	conv := model.Direct(a.ID, b.ID)
	var wg sync.WaitGroup
	acked := make(chan model.Message, 200)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 50; k++ {
				m, _, err := s.StoreMessage(ctx, model.NewMessage{Conv: conv, From: a.ID, FromName: "a",
					Body: "x", CID: fmt.Sprint(i, "-", k), Time: 1})
				if err != nil {
					t.Error(err)
					return
				}
				acked <- m
			}
		}()
	}
	wg.Wait()
	close(acked)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := open(t, path)
	ms, err := s2.Messages(ctx, conv, 0, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 200 {
		t.Fatalf("%d messages after reopen, want 200", len(ms))
	}
	for m := range acked {
		if got := ms[m.Seq-1]; got != m {
			t.Fatalf("after reopen: %+v, want %+v", got, m)
		}
	}
	if u, err := s2.UserByName(ctx, "A"); err != nil || u.ID != a.ID {
		t.Fatalf("UserByName after reopen: %+v, %v", u, err)
	}
	if m := mustSend(t, s2, conv, b, "after"); m.Seq != 201 {
		t.Fatalf("seq after reopen = %d", m.Seq)
	}
}

// TestNewerSchema: a file migrated by a newer program is refused, not
// damaged.
func TestNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "chat.db")
	if err := open(t, path).Close(); err != nil {
		t.Fatal(err)
	}
	db := sqlite.OpenDB(path)
	if _, err := db.ExecContext(ctx, "INSERT INTO schema_version (version, applied) VALUES (99, 0)"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err == nil {
		_ = s.Close()
		t.Fatal("Open of a newer schema succeeded")
	}
	if !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

func mustSend(t *testing.T, s model.Store, conv model.Conv, u model.User, cid string) model.Message {
	t.Helper()
	m, _, err := s.StoreMessage(context.Background(), model.NewMessage{Conv: conv, From: u.ID, FromName: u.Name, Body: cid, CID: cid})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMigrateFromVersion1: a file of schema version 1 (before login_failures)
// keeps its data and gets the new table when opened.
func TestMigrateFromVersion1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "chat.db")
	s := open(t, path)
	a, err := s.CreateUser(ctx, "a", []byte("h"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := sqlite.OpenDB(path)
	for _, q := range []string{"DROP TABLE login_failures", "DELETE FROM schema_version WHERE version > 1"} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, path)
	if u, err := s2.UserByID(ctx, a.ID); err != nil || u.Name != "a" {
		t.Fatalf("UserByID after the upgrade: %+v, %v", u, err)
	}
	now := time.Now()
	if err := s2.RecordLoginFailure(ctx, a.ID, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if fs, err := s2.LoginFailures(ctx, a.ID, now.Add(-time.Minute)); err != nil || len(fs) != 1 {
		t.Fatalf("LoginFailures after the upgrade: %v, %v", fs, err)
	}
}

// TestTwoStoresOneFile: a second writer of the file (here another Store;
// in general another process) changes conversations behind the first
// store's conversation cache, which must notice (data_version) and keep
// seqs gapless.
func TestTwoStoresOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "chat.db")
	s1 := open(t, path)
	s2 := open(t, path)
	us := storetest.MustUsers(t, s1, "a", "b")
	a, b := us[0], us[1]
	g, err := s1.CreateGroup(ctx, a.ID, "g", "")
	if err != nil {
		t.Fatal(err)
	}
	conv := model.Direct(a.ID, b.ID)
	for i := 1; i <= 12; i++ {
		s := s1
		if i%3 == 0 {
			s = s2
		}
		if m := mustSend(t, s, conv, a, fmt.Sprint("d", i)); m.Seq != int64(i) {
			t.Fatalf("direct message %d got seq %d", i, m.Seq)
		}
		if m := mustSend(t, s, model.GroupConv(g.ID), a, fmt.Sprint("g", i)); m.Seq != int64(i) {
			t.Fatalf("group message %d got seq %d", i, m.Seq)
		}
	}
	// The group deleted through the other store is gone for this one too.
	if _, err := s2.DeleteGroup(ctx, g.ID, a.ID); err != nil {
		t.Fatal(err)
	}
	_, _, err = s1.StoreMessage(ctx, model.NewMessage{Conv: model.GroupConv(g.ID), From: a.ID, FromName: "a", Body: "x", CID: "after"})
	if !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("StoreMessage to a group deleted by the other store: %v", err)
	}
}

// TestCheckpointer: the background checkpointer copies committed pages into
// the database file while the store is open (the writer alone would wait
// for 32,768 pages of WAL), and Close stops it.
func TestCheckpointer(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "chat.db")
	s := openOpts(t, path, sqlite.Options{CheckpointInterval: 10 * time.Millisecond})
	a, b := createPair(t, s)
	size := func() int64 { return fileSize(t, path) }
	// Let the checkpointer catch up with the schema, then grow the data.
	time.Sleep(50 * time.Millisecond)
	before := size()
	for i := 0; i < 100; i++ { // fewer WAL pages than the writer would checkpoint at
		if _, _, err := s.StoreMessage(ctx, model.NewMessage{Conv: model.Direct(a.ID, b.ID), From: a.ID, FromName: "a",
			Body: strings.Repeat("x", 500), CID: fmt.Sprint("m", i)}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for size() <= before {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes: no checkpoint while open", before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.CheckpointStats(); st.Background == 0 || st.BackgroundSeconds <= 0 || st.WALFrames == 0 || st.Errors != 0 {
		t.Fatalf("after the checkpointer copied pages: %+v; want background checkpoints with their time and the WAL's size, no errors", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s2 := open(t, path)
	if n, err := s2.LastSeq(ctx, model.Direct(a.ID, b.ID)); err != nil || n != 100 {
		t.Fatalf("after reopen: last seq %d, %v", n, err)
	}
}

// After a burst the WAL file is cut back to WALSizeLimit once SQLite starts
// it over, instead of keeping the burst's size.
func TestWALSizeLimit(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "chat.db")
	const limit = 64 << 10
	s := openOpts(t, path, sqlite.Options{CheckpointInterval: 10 * time.Millisecond, WALSizeLimit: limit})
	a, b := createPair(t, s)
	walSize := func() int64 { return fileSize(t, path+"-wal") }
	send := func(i int) {
		t.Helper()
		if _, _, err := s.StoreMessage(ctx, model.NewMessage{Conv: model.Direct(a.ID, b.ID), From: a.ID, FromName: "a",
			Body: strings.Repeat("x", 2000), CID: fmt.Sprint("m", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 300; i++ { // a commit each: ~2,000 pages, past the limit and short of the writer's own checkpoint
		send(i)
	}
	if n := walSize(); n <= limit {
		t.Fatalf("WAL is %d bytes after the burst: the test needs it past the %d-byte limit", n, limit)
	}
	// The checkpointer copies the WAL back; the next write starts it over
	// and cuts the file.
	deadline := time.Now().Add(10 * time.Second)
	for i := 300; walSize() > limit; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("WAL still %d bytes (limit %d) after the checkpoints", walSize(), limit)
		}
		time.Sleep(20 * time.Millisecond)
		send(i)
	}
}

// createPair creates users "a" and "b".
func createPair(t *testing.T, s *sqlite.Store) (a, b model.User) {
	t.Helper()
	ctx := context.Background()
	a, err := s.CreateUser(ctx, "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err = s.CreateUser(ctx, "b", nil); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// fileSize is the size of the file at path.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestWALBounds: the writer's backstop checkpoint and the WAL's size limit
// stay above the start-over size, so that a large WALRestartFrames is not
// pre-empted by the backstop (which would start the WAL over inside
// COMMITs); a small one keeps the default backstop.
func TestWALBounds(t *testing.T) {
	for _, c := range []struct {
		restart   int
		limit     int64
		backstop  int
		wantLimit int64
	}{
		{restart: 16384, backstop: 32768, wantLimit: 32768 * 4120},
		{restart: 512, backstop: 32768, wantLimit: 32768 * 4120},
		{restart: 40000, backstop: 80000, wantLimit: 80000 * 4120},
		{restart: 40000, limit: 1 << 20, backstop: 80000, wantLimit: 1 << 20},
		{restart: 16384, limit: -1, backstop: 32768, wantLimit: -1},
	} {
		backstop, limit := sqlite.WALBounds(c.restart, c.limit)
		if backstop != c.backstop || limit != c.wantLimit {
			t.Errorf("WALBounds(%d, %d) = %d pages, %d bytes; want %d, %d", c.restart, c.limit, backstop, limit, c.backstop, c.wantLimit)
		}
		if c.limit == 0 && limit < int64(c.restart)*4120 {
			t.Errorf("WALBounds(%d, 0): limit %d below the start-over size", c.restart, limit)
		}
	}
}

// TestWALStartsOverUnderLoad: under a steady stream of commits the WAL
// still starts over once it holds WALRestartFrames frames (the writer
// completes the checkpoint between batches), instead of growing to the
// writer's backstop checkpoint (32,768 pages, 128 MiB): 20,000 messages of
// 2 KB write ~65 MiB of WAL, which the file reached without the change.
func TestWALStartsOverUnderLoad(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "chat.db")
	s := openOpts(t, path, sqlite.Options{CheckpointInterval: 10 * time.Millisecond, WALRestartFrames: 512, WALSizeLimit: -1})
	names := make([]string, 33)
	for i := range names {
		names[i] = fmt.Sprint("u", i)
	}
	us := storetest.MustUsers(t, s, names...)
	const total = 20000
	deadline := time.Now().Add(60 * time.Second)
	var g errgroup.Group
	var sent atomic.Int64
	for i := 1; i < len(us); i++ { // 32 senders, each in its own conversation with u0
		g.Go(func() error {
			for k := 0; sent.Add(1) <= total; k++ {
				if time.Now().After(deadline) {
					return fmt.Errorf("%d messages not stored in 60 s", total)
				}
				m := model.NewMessage{Conv: model.Direct(us[i].ID, us[0].ID), From: us[i].ID, FromName: names[i],
					Body: strings.Repeat("x", 2000), CID: fmt.Sprint(k)}
				if _, _, err := s.StoreMessage(ctx, m); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	size := fileSize(t, path+"-wal")
	t.Logf("%d messages; the WAL file's largest size %d KiB", total, size>>10)
	if size > 40<<20 {
		t.Fatalf("the WAL grew to %d MiB under load: it did not start over", size>>20)
	}
	st := s.CheckpointStats()
	t.Logf("checkpoints: %+v", st)
	if st.Restarts == 0 || st.RestartSeconds <= 0 || st.Background == 0 || st.Errors != 0 {
		t.Fatalf("checkpoint counters %+v: want the writer's checkpoints (the WAL started over) and the checkpointer's, with their time, and no errors", st)
	}
}
