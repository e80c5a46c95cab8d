package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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
	if sqlite.DriverName() != "mattn" {
		t.Skip("the walbuf shim is the cgo driver's; this build uses " + sqlite.DriverName())
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "chat.db")
	s := openOpts(t, path, sqlite.Options{CheckpointInterval: -1})
	us := storetest.MustUsers(t, s, "a", "b")
	a, b := us[0], us[1]
	w0, f0 := sqlite.WALCounters()
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := s.StoreMessage(ctx, model.NewMessage{Conv: model.Direct(a.ID, b.ID), From: a.ID, FromName: "a", Body: fmt.Sprint(i, strings.Repeat("x", 2000)), CID: fmt.Sprint("c", i)})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
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
