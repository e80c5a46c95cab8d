//go:build cgo

// The walbuf shim is the cgo driver's (mattn/go-sqlite3); a build without
// cgo uses modernc.org/sqlite and has no shim to test.

package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sync/errgroup"

	"clusterchat/model"
	"clusterchat/model/sqlite"
	"clusterchat/model/storetest"
)

// TestWALWritesCoalesced: with the cgo driver the writer's WAL frames reach
// the file in one write per transaction (walbuf), not two per frame, and
// the file stays an ordinary SQLite database: a plain connection without
// the shim reads every message. The bodies make a batch's frames larger
// than one write of the unix VFS (128 KiB), which the shim must split.
func TestWALWritesCoalesced(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "chat.db")
	s := openOpts(t, path, sqlite.Options{CheckpointInterval: -1})
	us := storetest.MustUsers(t, s, "a", "b")
	a, b := us[0], us[1]
	w0, f0 := sqlite.WALCounters()
	const n = 200
	var g errgroup.Group
	for i := range n {
		g.Go(func() error {
			_, _, err := s.StoreMessage(ctx, model.NewMessage{Conv: model.Direct(a.ID, b.ID), From: a.ID, FromName: "a", Body: fmt.Sprint(i, strings.Repeat("x", 2000)), CID: fmt.Sprint("c", i)})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	w1, f1 := sqlite.WALCounters()
	writes, flushes := w1-w0, f1-f0
	batches := s.Stats().Batches
	t.Logf("%d messages in %d batches: %d WAL writes, %d reached the file", n, batches, writes, flushes)
	if writes == 0 || flushes == 0 {
		t.Fatalf("the writer's WAL writes did not go through the shim (%d writes, %d flushes)", writes, flushes)
	}
	// Each transaction writes at least two frames (a header and a page
	// each); without the shim every write reaches the file.
	if flushes*4 > writes {
		t.Fatalf("%d WAL writes reached the file as %d writes: not coalesced", writes, flushes)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	db := sqlite.OpenDB(path)
	defer db.Close()
	var count int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM messages").Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != n {
		t.Fatalf("a plain connection reads %d messages, want %d", count, n)
	}
	var check string
	if err := db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q, %v", check, err)
	}
}

// TestWALCommitInFile: when COMMIT returns, the WAL file holds the whole
// transaction, also when SQLite rewrites frame headers in place at the
// commit (a transaction that spilled pages to the WAL and changed them
// again: walRewriteChecksums), and when a one-frame commit is the first
// write after a read from the WAL; exclusive locking mode keeps the
// wal-index in heap memory, so no barrier flushes behind the commit. A copy
// of the files taken right after each commit, as a crash would leave them,
// must recover it.
func TestWALCommitInFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "x.db")
	db, err := sqlite.OpenWALBufDB(path, "_locking_mode=EXCLUSIVE&_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := conn.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// copied opens a copy of the database and its WAL as they are now.
	copied := func() *sql.DB {
		t.Helper()
		copyDir := t.TempDir()
		for _, suffix := range []string{"", "-wal"} {
			b, err := os.ReadFile(path + suffix)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(copyDir, "x.db"+suffix), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cp := sqlite.OpenDB(filepath.Join(copyDir, "x.db"))
		t.Cleanup(func() { _ = cp.Close() })
		var check string
		if err := cp.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
			t.Fatalf("integrity_check of the copy: %q, %v", check, err)
		}
		return cp
	}
	exec("PRAGMA wal_autocheckpoint = 0") // the frames stay in the WAL
	exec("PRAGMA cache_size = 10")        // pages spill to the WAL mid-transaction
	exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
	const rows = 400
	exec("BEGIN")
	for i := range rows {
		exec("INSERT INTO t VALUES (?, randomblob(600))", i)
	}
	exec("UPDATE t SET v = randomblob(600)") // changes the spilled pages again
	exec("COMMIT")
	var n int
	if err := copied().QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != rows {
		t.Fatalf("the copy taken after COMMIT recovers %d rows, want %d", n, rows)
	}

	// A scan reads pages back from the WAL (the cache holds 10); the next
	// commit is one frame, its header the first write after a read.
	var total int
	if err := conn.QueryRowContext(ctx, "SELECT SUM(length(v)) FROM t").Scan(&total); err != nil {
		t.Fatal(err)
	}
	exec("UPDATE t SET v = x'0102030405' WHERE id = 0")
	var size int
	if err := copied().QueryRowContext(ctx, "SELECT length(v) FROM t WHERE id = 0").Scan(&size); err != nil {
		t.Fatal(err)
	}
	if size != 5 {
		t.Fatalf("the copy taken after the one-frame commit has the old row (%d bytes), want the new (5)", size)
	}
}
