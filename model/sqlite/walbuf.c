//go:build cgo

// walbuf: an SQLite VFS shim that writes a transaction's WAL frames with
// one pwrite(2) instead of two per frame. See walbuf_cgo.go for why and
// for the rules it keeps; this file is only the mechanics.
//
// The sqlite3 API is declared here rather than included: SQLite's own C
// (and its header) is compiled inside github.com/mattn/go-sqlite3, and
// these structures are part of SQLite's stable ABI (sqlite3_vfs version 3,
// sqlite3_io_methods version 3, unchanged since 3.7.6 and 3.7.17).

#include <stdlib.h>
#include <string.h>

typedef long long sqlite3_int64;
typedef struct sqlite3_file sqlite3_file;
typedef struct sqlite3_io_methods sqlite3_io_methods;
typedef struct sqlite3_vfs sqlite3_vfs;
typedef void (*sqlite3_syscall_ptr)(void);

struct sqlite3_file {
	const sqlite3_io_methods *pMethods;
};

struct sqlite3_io_methods {
	int iVersion;
	int (*xClose)(sqlite3_file *);
	int (*xRead)(sqlite3_file *, void *, int iAmt, sqlite3_int64 iOfst);
	int (*xWrite)(sqlite3_file *, const void *, int iAmt, sqlite3_int64 iOfst);
	int (*xTruncate)(sqlite3_file *, sqlite3_int64 size);
	int (*xSync)(sqlite3_file *, int flags);
	int (*xFileSize)(sqlite3_file *, sqlite3_int64 *pSize);
	int (*xLock)(sqlite3_file *, int);
	int (*xUnlock)(sqlite3_file *, int);
	int (*xCheckReservedLock)(sqlite3_file *, int *pResOut);
	int (*xFileControl)(sqlite3_file *, int op, void *pArg);
	int (*xSectorSize)(sqlite3_file *);
	int (*xDeviceCharacteristics)(sqlite3_file *);
	int (*xShmMap)(sqlite3_file *, int iPg, int pgsz, int, void volatile **);
	int (*xShmLock)(sqlite3_file *, int offset, int n, int flags);
	void (*xShmBarrier)(sqlite3_file *);
	int (*xShmUnmap)(sqlite3_file *, int deleteFlag);
	int (*xFetch)(sqlite3_file *, sqlite3_int64 iOfst, int iAmt, void **pp);
	int (*xUnfetch)(sqlite3_file *, sqlite3_int64 iOfst, void *p);
};

struct sqlite3_vfs {
	int iVersion;
	int szOsFile;
	int mxPathname;
	sqlite3_vfs *pNext;
	const char *zName;
	void *pAppData;
	int (*xOpen)(sqlite3_vfs *, const char *zName, sqlite3_file *, int flags, int *pOutFlags);
	int (*xDelete)(sqlite3_vfs *, const char *zName, int syncDir);
	int (*xAccess)(sqlite3_vfs *, const char *zName, int flags, int *pResOut);
	int (*xFullPathname)(sqlite3_vfs *, const char *zName, int nOut, char *zOut);
	void *(*xDlOpen)(sqlite3_vfs *, const char *zFilename);
	void (*xDlError)(sqlite3_vfs *, int nByte, char *zErrMsg);
	void (*(*xDlSym)(sqlite3_vfs *, void *, const char *zSymbol))(void);
	void (*xDlClose)(sqlite3_vfs *, void *);
	int (*xRandomness)(sqlite3_vfs *, int nByte, char *zOut);
	int (*xSleep)(sqlite3_vfs *, int microseconds);
	int (*xCurrentTime)(sqlite3_vfs *, double *);
	int (*xGetLastError)(sqlite3_vfs *, int, char *);
	int (*xCurrentTimeInt64)(sqlite3_vfs *, sqlite3_int64 *);
	int (*xSetSystemCall)(sqlite3_vfs *, const char *zName, sqlite3_syscall_ptr);
	sqlite3_syscall_ptr (*xGetSystemCall)(sqlite3_vfs *, const char *zName);
	const char *(*xNextSystemCall)(sqlite3_vfs *, const char *zName);
};

// Defined in go-sqlite3's copy of SQLite.
sqlite3_vfs *sqlite3_vfs_find(const char *zVfsName);
int sqlite3_vfs_register(sqlite3_vfs *, int makeDflt);
sqlite3_file *sqlite3_database_file_object(const char *);

#define SQLITE_OK 0
#define SQLITE_NOMEM 7
#define SQLITE_ERROR 1
#define SQLITE_OPEN_MAIN_DB 0x00000100
#define SQLITE_OPEN_WAL 0x00080000

// WAL file format: a frame is a 24-byte header and a page; bytes 4-7 of
// the header are the database size after the commit for a commit frame,
// zero for the others (https://sqlite.org/fileformat2.html#walformat).
#define WAL_FRAME_HDR 24
// A buffer that would grow beyond this is written out first.
#define WALBUF_MAX (4 << 20)
// The largest write passed on to the unix VFS (see wbFlush).
#define WALBUF_CHUNK (124 << 10)

typedef struct wbFile wbFile;
struct wbFile {
	sqlite3_file base;
	sqlite3_file *real; // the underlying VFS's file, right after this struct
	int isWal;
	wbFile *wal; // a main database file: its connection's open WAL, if any
	wbFile *db;  // a WAL file: its connection's main database file
	// a WAL file: writes not yet passed on, contiguous from bufOff
	unsigned char *buf;
	sqlite3_int64 bufOff;
	int bufLen, bufCap;
	int commitPage; // the next write is the page of a commit frame
	int afterRead;  // the last call was a read
};

static sqlite3_vfs wbVfs;
static sqlite3_vfs *wbReal;

// Counters for tests (walbuf_cgo.go): writes SQLite made to
// WAL files through this VFS, and writes passed on to the file system.
static long long wbWrites, wbFlushes;

void walbufCounters(long long *writes, long long *flushes) {
	*writes = __atomic_load_n(&wbWrites, __ATOMIC_RELAXED);
	*flushes = __atomic_load_n(&wbFlushes, __ATOMIC_RELAXED);
}

// wbWriteThrough passes n bytes at off to the unix VFS in chunks below
// what one of its writes takes (it masks the length of a pwrite(2) with
// 0x1ffff, seekAndWriteFd, and reports a write of 0 bytes as SQLITE_FULL);
// *done is how many were written.
static int wbWriteThrough(wbFile *p, const unsigned char *z, int n, sqlite3_int64 off, int *done) {
	*done = 0;
	while (*done < n) {
		int len = n - *done < WALBUF_CHUNK ? n - *done : WALBUF_CHUNK;
		__atomic_add_fetch(&wbFlushes, 1, __ATOMIC_RELAXED);
		int rc = p->real->pMethods->xWrite(p->real, z + *done, len, off + *done);
		if (rc != SQLITE_OK) {
			return rc;
		}
		*done += len;
	}
	return SQLITE_OK;
}

// wbFlush writes out p's buffer. On failure the bytes not written stay
// buffered (SQLite was told they were written), and the next flush tries
// them again.
static int wbFlush(wbFile *p) {
	if (p->bufLen == 0) {
		return SQLITE_OK;
	}
	int done;
	int rc = wbWriteThrough(p, p->buf, p->bufLen, p->bufOff, &done);
	if (rc != SQLITE_OK) {
		memmove(p->buf, p->buf + done, p->bufLen - done);
		p->bufOff += done;
		p->bufLen -= done;
		return rc;
	}
	p->bufLen = 0;
	return SQLITE_OK;
}

// wbFlushOwn writes out p's buffer when p is a WAL file.
static int wbFlushOwn(wbFile *p) {
	return p->isWal ? wbFlush(p) : SQLITE_OK;
}

// wbFlushWal writes out the WAL of a main database file p, for the
// operations after which another connection may read the frames.
static int wbFlushWal(wbFile *p) {
	return p->wal ? wbFlush(p->wal) : SQLITE_OK;
}

// wbFlushAny writes out p's buffer (a WAL) or its WAL's (a database file).
static int wbFlushAny(wbFile *p) {
	return p->isWal ? wbFlush(p) : wbFlushWal(p);
}

static int wbClose(sqlite3_file *f) {
	wbFile *p = (wbFile *)f;
	int rc = SQLITE_OK;
	if (p->isWal) {
		rc = wbFlush(p);
		if (p->db) {
			p->db->wal = 0;
		}
	} else if (p->wal) {
		p->wal->db = 0;
	}
	free(p->buf);
	p->buf = 0;
	int rc2 = p->real->pMethods->xClose(p->real);
	return rc != SQLITE_OK ? rc : rc2;
}

static int wbRead(sqlite3_file *f, void *z, int n, sqlite3_int64 off) {
	wbFile *p = (wbFile *)f;
	int rc = wbFlushOwn(p);
	if (rc != SQLITE_OK) {
		return rc;
	}
	p->afterRead = p->isWal;
	return p->real->pMethods->xRead(p->real, z, n, off);
}

// wbAppend adds a write to p's buffer; it returns 0 when the buffer cannot
// take it (it would pass WALBUF_MAX, or memory ran out).
static int wbAppend(wbFile *p, const void *z, int n, sqlite3_int64 off) {
	if (p->bufLen + n > WALBUF_MAX) {
		return 0;
	}
	if (p->bufLen + n > p->bufCap) {
		int cap = p->bufCap ? p->bufCap : 64 << 10;
		while (cap < p->bufLen + n) {
			cap *= 2;
		}
		unsigned char *b = realloc(p->buf, cap);
		if (!b) {
			return 0;
		}
		p->buf = b;
		p->bufCap = cap;
	}
	if (p->bufLen == 0) {
		p->bufOff = off;
	}
	memcpy(p->buf + p->bufLen, z, n);
	p->bufLen += n;
	return 1;
}

// wbWrite buffers the appends of new frames to a WAL. SQLite writes a frame
// as its 24-byte header, then its page (walWriteOneFrame); the commit
// frame's header has the database size in bytes 4-7, the others zero. The
// buffer goes out after the commit frame's page, so that a failure is that
// write's error and the frames are in the file before SQLite publishes
// them in the wal-index. Anything else is written through after the
// buffer: a write that does not continue it, and a write right after a
// read (walRewriteChecksums reads each frame, then rewrites its header in
// place, with no page write after the last).
static int wbWrite(sqlite3_file *f, const void *z, int n, sqlite3_int64 off) {
	wbFile *p = (wbFile *)f;
	if (!p->isWal) {
		return p->real->pMethods->xWrite(p->real, z, n, off);
	}
	__atomic_add_fetch(&wbWrites, 1, __ATOMIC_RELAXED);
	const unsigned char *h = z;
	int afterRead = p->afterRead;
	int commitPage = p->commitPage && n != WAL_FRAME_HDR;
	p->afterRead = 0;
	// A commit frame's header, also one written through after a read (a
	// one-frame commit right after the writer read a page from the WAL):
	// its page must flush. (After walRewriteChecksums' last header this
	// costs at most one needless flush.)
	p->commitPage = n == WAL_FRAME_HDR && (h[4] | h[5] | h[6] | h[7]) != 0;
	int rc;
	if (p->bufLen > 0 && (afterRead || off != p->bufOff + p->bufLen)) {
		if ((rc = wbFlush(p)) != SQLITE_OK) {
			return rc;
		}
	}
	if (afterRead || !wbAppend(p, z, n, off)) {
		if ((rc = wbFlush(p)) != SQLITE_OK) {
			return rc;
		}
		int done;
		return wbWriteThrough(p, z, n, off, &done);
	}
	return commitPage ? wbFlush(p) : SQLITE_OK;
}

static int wbTruncate(sqlite3_file *f, sqlite3_int64 size) {
	wbFile *p = (wbFile *)f;
	int rc = wbFlushOwn(p);
	if (rc != SQLITE_OK) {
		return rc;
	}
	return p->real->pMethods->xTruncate(p->real, size);
}

static int wbSync(sqlite3_file *f, int flags) {
	wbFile *p = (wbFile *)f;
	int rc = wbFlushAny(p);
	if (rc != SQLITE_OK) {
		return rc;
	}
	return p->real->pMethods->xSync(p->real, flags);
}

static int wbFileSize(sqlite3_file *f, sqlite3_int64 *size) {
	wbFile *p = (wbFile *)f;
	int rc = wbFlushOwn(p);
	if (rc != SQLITE_OK) {
		return rc;
	}
	return p->real->pMethods->xFileSize(p->real, size);
}

static int wbLock(sqlite3_file *f, int lock) {
	wbFile *p = (wbFile *)f;
	return p->real->pMethods->xLock(p->real, lock);
}

// wbUnlock, wbShmLock and wbShmUnmap write the WAL out before the lock
// goes (so that no other connection can take the write lock, or recover
// the WAL, while its bytes are here), then always make the real call: a
// lock SQLite believes released must be released. A lock being taken
// needs no flush.
static int wbUnlock(sqlite3_file *f, int lock) {
	wbFile *p = (wbFile *)f;
	int rc = wbFlushAny(p);
	int rc2 = p->real->pMethods->xUnlock(p->real, lock);
	return rc != SQLITE_OK ? rc : rc2;
}

static int wbCheckReservedLock(sqlite3_file *f, int *out) {
	wbFile *p = (wbFile *)f;
	return p->real->pMethods->xCheckReservedLock(p->real, out);
}

static int wbFileControl(sqlite3_file *f, int op, void *arg) {
	wbFile *p = (wbFile *)f;
	int rc = wbFlushOwn(p);
	if (rc != SQLITE_OK) {
		return rc;
	}
	return p->real->pMethods->xFileControl(p->real, op, arg);
}

static int wbSectorSize(sqlite3_file *f) {
	wbFile *p = (wbFile *)f;
	return p->real->pMethods->xSectorSize(p->real);
}

static int wbDeviceCharacteristics(sqlite3_file *f) {
	wbFile *p = (wbFile *)f;
	return p->real->pMethods->xDeviceCharacteristics(p->real);
}

static int wbShmMap(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp) {
	wbFile *p = (wbFile *)f;
	return p->real->pMethods->xShmMap(p->real, pg, pgsz, extend, pp);
}

#define SQLITE_SHM_UNLOCK 1

static int wbShmLock(sqlite3_file *f, int offset, int n, int flags) {
	wbFile *p = (wbFile *)f;
	int rc = (flags & SQLITE_SHM_UNLOCK) ? wbFlushWal(p) : SQLITE_OK;
	int rc2 = p->real->pMethods->xShmLock(p->real, offset, n, flags);
	return rc != SQLITE_OK ? rc : rc2;
}

static void wbShmBarrier(sqlite3_file *f) {
	wbFile *p = (wbFile *)f;
	// SQLite publishes new frames in the wal-index header after this
	// barrier, so they must be in the file by then. The commit frame's
	// page write has already flushed them and returned any error; this
	// is the backstop, whose error cannot be returned. (With
	// powersafe_overwrite off, which this store does not set, a commit
	// under synchronous=FULL is split at a sector boundary and synced;
	// the sync flushes.)
	(void)wbFlushWal(p);
	p->real->pMethods->xShmBarrier(p->real);
}

static int wbShmUnmap(sqlite3_file *f, int deleteFlag) {
	wbFile *p = (wbFile *)f;
	int rc = wbFlushWal(p);
	int rc2 = p->real->pMethods->xShmUnmap(p->real, deleteFlag);
	return rc != SQLITE_OK ? rc : rc2;
}

static int wbFetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp) {
	wbFile *p = (wbFile *)f;
	int rc = wbFlushOwn(p);
	if (rc != SQLITE_OK) {
		return rc;
	}
	return p->real->pMethods->xFetch(p->real, off, n, pp);
}

static int wbUnfetch(sqlite3_file *f, sqlite3_int64 off, void *ptr) {
	wbFile *p = (wbFile *)f;
	return p->real->pMethods->xUnfetch(p->real, off, ptr);
}

static const sqlite3_io_methods wbMethods = {
	3,
	wbClose,
	wbRead,
	wbWrite,
	wbTruncate,
	wbSync,
	wbFileSize,
	wbLock,
	wbUnlock,
	wbCheckReservedLock,
	wbFileControl,
	wbSectorSize,
	wbDeviceCharacteristics,
	wbShmMap,
	wbShmLock,
	wbShmBarrier,
	wbShmUnmap,
	wbFetch,
	wbUnfetch,
};

static int wbOpen(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *outFlags) {
	wbFile *p = (wbFile *)f;
	memset(p, 0, sizeof(*p));
	p->real = (sqlite3_file *)&p[1];
	int rc = wbReal->xOpen(wbReal, name, p->real, flags, outFlags);
	if (rc != SQLITE_OK || !p->real->pMethods) {
		// SQLite calls xClose only when pMethods is set: leave ours unset
		// when the real file did not open.
		p->base.pMethods = 0;
		return rc;
	}
	if (p->real->pMethods->iVersion < 3) {
		// The unix VFS gives version 3; anything older is not wrapped.
		p->real->pMethods->xClose(p->real);
		p->base.pMethods = 0;
		return SQLITE_ERROR;
	}
	p->base.pMethods = &wbMethods;
	if ((flags & SQLITE_OPEN_WAL) && name) {
		wbFile *db = (wbFile *)sqlite3_database_file_object(name);
		if (db && db->base.pMethods == &wbMethods && !db->isWal) {
			p->isWal = 1;
			p->db = db;
			db->wal = p;
		}
		// A WAL whose database is not ours is passed through unbuffered:
		// nothing would flush it before the wal-index names its frames.
	}
	return SQLITE_OK;
}

// walbufRegister registers the VFS "walbuf" over the default VFS once;
// it returns SQLITE_OK or an SQLite error code.
int walbufRegister(void) {
	if (wbReal) {
		return SQLITE_OK;
	}
	sqlite3_vfs *real = sqlite3_vfs_find(0);
	if (!real) {
		return SQLITE_ERROR;
	}
	wbReal = real;
	wbVfs = *real; // every other method is the default VFS's
	wbVfs.pNext = 0;
	wbVfs.zName = "walbuf";
	wbVfs.pAppData = 0;
	wbVfs.szOsFile = (int)sizeof(wbFile) + real->szOsFile;
	wbVfs.xOpen = wbOpen;
	return sqlite3_vfs_register(&wbVfs, 0);
}
