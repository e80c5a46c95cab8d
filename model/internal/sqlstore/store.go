// Package sqlstore implements model.Store on database/sql once, for the SQL
// dialects of model/sqlite and model/mysql. A Dialect supplies what differs
// between them: the schema migrations, row locking, upserts and the
// classification of driver errors.
//
// Every statement is prepared (once per connection, cached by its text) and
// takes its values as parameters; no SQL is built from values.
//
// Writes run in transactions on the writer pool (for SQLite one connection,
// for MySQL the shared pool); reads run on the reader pool. StoreMessage goes
// through a batching writer (writer.go) that groups concurrent calls into one
// transaction and answers each after commit.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"clusterchat/model"
)

// Dialect is what differs between the SQL servers.
type Dialect struct {
	// Name prefixes errors ("sqlite", "mysql").
	Name string
	// VersionTable is the statement that creates the schema_version table
	// (version, applied) when it does not exist.
	VersionTable string
	// Migrations are the schema steps in order: Migrations[i] brings the
	// schema from version i to version i+1. Each step is a list of
	// statements run one by one.
	Migrations [][]string
	// LockMigrations, when set, takes a lock that serialises migrations
	// between processes on conn and returns its release.
	LockMigrations func(ctx context.Context, conn *sql.Conn) (unlock func(), err error)
	// ForUpdate is appended to a SELECT to lock the rows it reads until the
	// end of the transaction (" FOR UPDATE"), or "" where the transaction
	// is already exclusive (SQLite's BEGIN IMMEDIATE).
	ForUpdate string
	// ConvsByKey is appended to "FROM convs" in the batch's multi-key
	// SELECTs of conversations, to make the database use the unique index
	// on (group_id, a, b) as one range per key (MySQL: " FORCE INDEX
	// (convs_key)"; without it, MariaDB reads every direct conversation
	// for a batch of more than about 100 keys in a small table, and a
	// FOR UPDATE then waits for rows it does not want). May be empty.
	ConvsByKey string
	// RowValuesIn is set when the database takes "(x, y) IN ((?, ?), ...)"
	// and reads an index range per row value for it (MySQL, MariaDB):
	// the batch's multi-key SELECTs then use it rather than an OR of
	// conjunctions, which MariaDB evaluates per row against every term
	// (quadratic in the keys) after a costly range analysis.
	RowValuesIn bool
	// InsertConvIgnore inserts a conversation (group_id, a, b) with
	// last_seq 0 unless it exists.
	InsertConvIgnore string
	// UpsertCursorTail ends an INSERT INTO cursors (user_id, conv_id, seq)
	// VALUES ... so that an existing cursor becomes the larger of its value
	// and the new seq ("ON CONFLICT ... DO UPDATE ...").
	UpsertCursorTail string
	// Greatest is the function giving the larger of two values (MAX in
	// SQLite, GREATEST in MySQL).
	Greatest string
	// Exclusive is set when the store's writer connection is the only one
	// writing the database (SQLite, where this process holds the file):
	// the batch writer then keeps a cache of conversations' (id, last_seq)
	// across transactions, checked with DataVersion, and runs its
	// statements without a cancellation watcher each (the transaction
	// keeps its timeout; SQLite's only waits are for locks, bounded by
	// its busy timeout).
	Exclusive bool
	// DataVersion is a query of one integer that changes when another
	// connection commits to the database (SQLite's PRAGMA data_version);
	// required when Exclusive is set.
	DataVersion string
	// MaxInsertRows bounds the rows of one of the batch writer's INSERTs of
	// messages (a power of 2 up to 256; 0 means 256). SQLite: 1, because a
	// statement that writes several rows and may fail on a key keeps a
	// statement journal, a copy of every page it changes, which costs more
	// than the statements saved (see batch.go).
	MaxInsertRows int
	// IsUnique reports a unique or primary key violation.
	IsUnique func(error) bool
	// IsForeignKey reports a foreign key violation.
	IsForeignKey func(error) bool
	// IsRetryable reports an error after which the whole transaction may be
	// run again (deadlock, lock wait timeout, busy).
	IsRetryable func(error) bool
	// TxOptions are the options of every write transaction.
	TxOptions *sql.TxOptions
}

// Options tune the shared store. Zero fields take the documented defaults.
type Options struct {
	// MaxBatch is the most StoreMessage calls stored in one transaction.
	// Default 256.
	MaxBatch int
	// BatchWindow is the longest the writer waits for more calls after the
	// first of a batch; it stops early after a tenth of the window without
	// a new call. It waits only while it sees concurrent senders (the
	// previous batch held more than one call), so that a lone sender pays
	// no delay. Default 2ms; negative disables the wait (a batch is then
	// whatever queued while the previous transaction ran).
	BatchWindow time.Duration
	// TxTimeout bounds one batch transaction, including its retries.
	// Default 10s.
	TxTimeout time.Duration
	// Writers is the number of batching writers, each running its own
	// batch transactions. Default 1 (the only sensible value for SQLite,
	// which has one writer connection); on a server, several writers let
	// batches for different conversations commit in parallel, while those
	// for one conversation serialise on its row lock.
	Writers int
	// QueueSize is the capacity of the writer's queue. Default 4096.
	QueueSize int
	// BetweenBatches, when set, is called by each writer goroutine after
	// each batch (its callers answered) with the writer's pool, for upkeep
	// that must not run beside a batch; model/sqlite completes WAL
	// checkpoints there. It must return quickly when it has nothing to do.
	BetweenBatches func(w *sql.DB)
	// Now returns the current time; default time.Now. Tests may fix it.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.BatchWindow == 0 {
		o.BatchWindow = 2 * time.Millisecond
	}
	if o.TxTimeout <= 0 {
		o.TxTimeout = 10 * time.Second
	}
	if o.Writers <= 0 {
		o.Writers = 1
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Store implements model.Store. Its methods are safe for concurrent use.
type Store struct {
	d    *Dialect
	opts Options
	w, r *sql.DB
	ws   *stmtCache // statements prepared on w
	rs   *stmtCache // statements prepared on r

	bsql  batchSQL   // the batch writer's multi-row statements
	cache *convCache // conversations' (id, last_seq) when the dialect is Exclusive

	stats struct {
		batches, messages, dups, acks, failed atomic.Int64
	}

	mu     sync.RWMutex // guards closed and sends on queues
	closed bool
	queues []chan *msgReq // one per writer; a conversation's requests go to one (route)
	// friendReqs queues AreFriends calls for the coalescing readers
	// (friendreads.go); nil when the dialect is Exclusive (SQLite: the
	// only server caches friendships, and reads are local).
	friendReqs chan *friendReq
	wg         sync.WaitGroup // the writer goroutines
}

var _ model.Store = (*Store)(nil)

// New runs the dialect's migrations on w and starts the batching writer. The
// store owns w and r (they may be the same pool) and closes them in Close;
// New closes them itself when it fails.
func New(ctx context.Context, d *Dialect, w, r *sql.DB, opts Options) (*Store, error) {
	opts.setDefaults()
	s := &Store{
		d:    d,
		opts: opts,
		w:    w,
		r:    r,
		ws:   newStmtCache(w),
		rs:   newStmtCache(r),
		bsql: newBatchSQL(d),
	}
	for range opts.Writers {
		s.queues = append(s.queues, make(chan *msgReq, opts.QueueSize))
	}
	if d.Exclusive {
		s.cache = newConvCache()
	}
	if r == w {
		s.rs = s.ws
	}
	if err := s.migrate(ctx); err != nil {
		s.closeDBs()
		return nil, err
	}
	if err := s.prepareAll(ctx); err != nil {
		s.closeDBs()
		return nil, err
	}
	for _, q := range s.queues {
		s.wg.Add(1)
		go s.writer(q)
	}
	if !d.Exclusive {
		s.friendReqs = make(chan *friendReq, opts.QueueSize)
		for range friendReaders {
			s.wg.Add(1)
			go s.friendReader()
		}
	}
	return s, nil
}

// Stats returns the writer's counters. Safe for concurrent use.
func (s *Store) Stats() model.WriterStats {
	return model.WriterStats{
		Batches:  s.stats.batches.Load(),
		Messages: s.stats.messages.Load(),
		Dups:     s.stats.dups.Load(),
		Acks:     s.stats.acks.Load(),
		Failed:   s.stats.failed.Load(),
	}
}

// Ping checks that both pools answer.
func (s *Store) Ping(ctx context.Context) error {
	if s.isClosed() {
		return s.errorf("ping: %w", model.ErrClosed)
	}
	if err := s.w.PingContext(ctx); err != nil {
		return s.errorf("ping: %w", err)
	}
	if s.r != s.w {
		if err := s.r.PingContext(ctx); err != nil {
			return s.errorf("ping readers: %w", err)
		}
	}
	return nil
}

// Close stores the queued messages, waits for their transaction and closes
// the pools. Later calls return ErrClosed; Close is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, q := range s.queues {
		close(q)
	}
	if s.friendReqs != nil {
		close(s.friendReqs)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return s.closeDBs()
}

func (s *Store) closeDBs() error {
	s.ws.close()
	err := s.w.Close()
	if s.r != s.w {
		s.rs.close()
		if rerr := s.r.Close(); err == nil {
			err = rerr
		}
	}
	if err != nil {
		return s.errorf("close: %w", err)
	}
	return nil
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// errorf formats an error prefixed with the dialect's name.
func (s *Store) errorf(format string, args ...any) error {
	return fmt.Errorf(s.d.Name+": "+format, args...)
}

// errRetry asks writeTx to run the transaction again (a race lost to
// another transaction, seen as a unique violation).
var errRetry = errors.New("transaction lost a race, retry")

// maxAttempts bounds the runs of one write transaction.
const maxAttempts = 6

// writeTx runs fn in a write transaction, committing when fn returns nil,
// and runs it again (with a short backoff) after a deadlock, busy or lost
// race. what names the operation in the returned error.
func (s *Store) writeTx(ctx context.Context, what string, fn func(r runner) error) error {
	if s.isClosed() {
		return s.errorf("%s: %w", what, model.ErrClosed)
	}
	err := s.retryTx(ctx, fn)
	if err != nil {
		return s.errorf("%s: %w", what, err)
	}
	return nil
}

func (s *Store) retryTx(ctx context.Context, fn func(r runner) error) error {
	backoff := time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.tryTx(ctx, fn)
		if err == nil {
			return nil
		}
		if attempt >= maxAttempts || !(errors.Is(err, errRetry) || s.d.IsRetryable(err)) {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (after %v)", ctx.Err(), err)
		case <-t.C:
		}
		backoff *= 3
	}
}

func (s *Store) tryTx(ctx context.Context, fn func(r runner) error) (err error) {
	tx, err := s.w.BeginTx(ctx, s.d.TxOptions)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err = fn(runner{c: s.ws, tx: tx, txs: make(map[string]*sql.Stmt)}); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// read returns a runner on the reader pool, or an error when closed.
func (s *Store) read(what string) (runner, error) {
	if s.isClosed() {
		return runner{}, s.errorf("%s: %w", what, model.ErrClosed)
	}
	return runner{c: s.rs}, nil
}

// queries lists every statement the store runs.
func (s *Store) queries() []string {
	return []string{
		qInsertUser, qUserByID, qUserByName, qUserExists, qRenameUser, qFindUsers,
		qInsertToken, qPurgeTokens, qTokenUser, qDeleteToken,
		qPurgeLoginFailures, qInsertLoginFailure, qLoginFailuresSince,
		qInsertFriend, qSetFriends, qDeleteFriend, qFriendState, qFriendState + s.d.ForUpdate,
		qFriendsOfUser, qRequestsToUser,
		qInsertGroup, qInsertGroupCnv, qInsertMember, qGroupByID, qGroupConv, qGroupConv + s.d.ForUpdate,
		qIsMember, qDeleteMember, qMemberIDs, qSetOwner,
		qDelGroupMsgs, qDelGroupCurs, qDelGroupConv, qDelGroupMems, qDelGroup,
		qMembership, qGroupMembers, qGroupRecipients, qUserGroups, qFindGroups,
		qConvByKey, qConvByKey + s.d.ForUpdate, qMessagesRange, qMemberCursor, qDirectCursor,
		qMessageByCID, qInsertMessage, qInsertGroupMessage,
		s.d.InsertConvIgnore,
	}
}

// writerQueries lists the statements that only the batch writer runs.
func (s *Store) writerQueries() []string {
	q := s.bsql.all()
	if s.d.DataVersion != "" {
		q = append(q, s.d.DataVersion)
	}
	return q
}

// prepareAll prepares every statement on both pools, so that a transaction
// never has to prepare one (see runner.stmt).
func (s *Store) prepareAll(ctx context.Context) error {
	for _, c := range []*stmtCache{s.ws, s.rs} {
		qs := s.queries()
		if c == s.ws {
			qs = append(qs, s.writerQueries()...)
		}
		for _, q := range qs {
			if _, err := c.get(ctx, q); err != nil {
				return s.errorf("prepare %q: %w", q, err)
			}
		}
		if s.rs == s.ws {
			break
		}
	}
	return nil
}

// stmtCache prepares each statement text once per pool.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: make(map[string]*sql.Stmt)}
}

func (c *stmtCache) cached(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[query]
}

func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	if st := c.cached(query); st != nil {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[query]; old != nil {
		_ = st.Close()
		return old, nil
	}
	c.m[query] = st
	return st, nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		_ = st.Close()
		delete(c.m, q)
	}
}

// runner runs prepared statements, inside tx when it is set.
type runner struct {
	c   *stmtCache
	tx  *sql.Tx
	txs map[string]*sql.Stmt // the statements bound to tx so far
}

func (r runner) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if r.tx != nil {
		if st := r.txs[query]; st != nil {
			return st, nil
		}
		// Preparing on the pool would wait for a free connection, and the
		// transaction may hold the only one: a statement that New did not
		// prepare is prepared on the transaction's connection instead.
		var st *sql.Stmt
		if pst := r.c.cached(query); pst != nil {
			st = r.tx.StmtContext(ctx, pst)
		} else {
			var err error
			if st, err = r.tx.PrepareContext(ctx, query); err != nil {
				return nil, fmt.Errorf("prepare: %w", err)
			}
		}
		r.txs[query] = st
		return st, nil
	}
	return r.c.get(ctx, query)
}

func (r runner) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := r.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// rowsErr is the outcome of a query, for collect.
type rowsErr struct {
	rows *sql.Rows
	err  error
}

func (r runner) query(ctx context.Context, query string, args ...any) rowsErr {
	st, err := r.stmt(ctx, query)
	if err != nil {
		return rowsErr{err: err}
	}
	rows, err := st.QueryContext(ctx, args...)
	return rowsErr{rows, err}
}

// row is a *sql.Row that may carry an earlier error.
type row struct {
	r   *sql.Row
	err error
}

// Scan scans the row; sql.ErrNoRows when there is none.
func (x row) Scan(dest ...any) error {
	if x.err != nil {
		return x.err
	}
	return x.r.Scan(dest...)
}

func (r runner) row(ctx context.Context, query string, args ...any) row {
	st, err := r.stmt(ctx, query)
	if err != nil {
		return row{err: err}
	}
	return row{r: st.QueryRowContext(ctx, args...)}
}

// collect scans every row of rows with scan and closes rows. The result is
// never nil.
func collect[T any](q rowsErr, scan func(*sql.Rows) (T, error)) ([]T, error) {
	if q.err != nil {
		return nil, q.err
	}
	rows := q.rows
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// msTime converts stored Unix milliseconds to a time.
func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// likePrefix returns a LIKE pattern (escape character '!') matching strings
// that start with p.
func likePrefix(p string) string {
	b := make([]byte, 0, len(p)+1)
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '!', '%', '_':
			b = append(b, '!', c)
		default:
			b = append(b, c)
		}
	}
	return string(append(b, '%'))
}
