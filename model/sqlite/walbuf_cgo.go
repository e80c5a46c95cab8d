//go:build cgo

package sqlite

/*
int walbufRegister(void);
void walbufCounters(long long *writes, long long *flushes);
*/
import "C"

import (
	"fmt"
	"sync"
)

// The writer's connection opens the file through "walbuf" (walbuf.c), a
// VFS shim over SQLite's default unix VFS that passes every call through
// except the writes to the WAL file, which it collects while they are
// contiguous and writes with one pwrite(2).
//
// Why: SQLite writes each WAL frame with two pwrite(2) calls, its 24-byte
// header and its page, and a message in its own conversation dirties about
// two pages (its conversation's leaf and its sender's (sender, cid) index
// leaf), so the writer made ~4 pwrites per message for the WAL alone; with
// the checkpoint's, the server made 7.9 pwrite(2) calls per message at
// 10,000 msg/s (perf stat, syscalls:sys_enter_pwrite64), each a trip
// through ext4's buffered write path that cost as much for 24 bytes as for
// a page. With the shim a transaction's frames are one write.
//
// What keeps it safe: the buffer is written out
//   - at the commit frame (its header's database-size field is not zero),
//     right after its page, so the commit's write error is the write's,
//     before SQLite publishes the frames in the wal-index;
//   - before any other operation on the WAL (read, sync, truncate, size,
//     file control, close), and before the database file's shared-memory
//     lock, barrier and unmap calls and its syncs, so no reader (another
//     connection, the checkpointer) can learn of a frame that is not in
//     the file;
//   - when it would pass 4 MiB (a large transaction spilling pages).
// A process killed before the commit's write loses only an uncommitted
// transaction, as it would have without the shim: SQLite answers the
// commit after the write. A WAL whose database file was not opened
// through the shim is not buffered.
//
// Registration is process-wide (SQLite's VFS list is), done once.

var registerWALBuf = sync.OnceValue(func() error {
	if rc := C.walbufRegister(); rc != 0 {
		return fmt.Errorf("register the walbuf VFS: SQLite error %d", int(rc))
	}
	return nil
})

// walbufVFS registers the shim and returns its name for the writer's DSN.
func walbufVFS() (string, error) {
	if err := registerWALBuf(); err != nil {
		return "", err
	}
	return "walbuf", nil
}

// walCounters returns how many writes SQLite made to WAL files through
// the shim and how many reached the file system.
func walCounters() (writes, flushes int64) {
	var w, f C.longlong
	C.walbufCounters(&w, &f)
	return int64(w), int64(f)
}
