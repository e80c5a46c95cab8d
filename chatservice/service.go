// Package chatservice is the ClusterChat application on netcore: a dispatch
// table msgid → handler, sessions, routing of pushes to local connections
// and over the bus, and every rule of the wire protocol (docs/protocol.md).
//
// Threading: frames arrive on netcore's event loops, where only cheap
// checks run (frame shape, rate limit, bad-frame count). Each request then
// runs on the connection's ordered executor queue, so requests of one
// connection are answered one after another in arrival order while
// different connections run in parallel; handlers may block on the store,
// the bus or password hashing.
package chatservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"clusterchat/bus"
	"clusterchat/chatservice/protocol"
	"clusterchat/model"
	"clusterchat/netcore"
)

// Config holds the service's settings. Zero values take the documented
// defaults of PROTOCOL.md §6–§7.
type Config struct {
	Listen        string        // default 127.0.0.1:8000
	Node          string        // this server's name in a cluster; default "local"
	MaxFrame      int           // default 65536
	IdleTimeout   time.Duration // default 90s; negative turns it off
	HighWater     int           // default 4 MiB
	MsgRate       int           // requests/s per connection; default 100; negative = off
	MsgBurst      int           // default 200; negative = off
	BcryptCost    int           // default 10
	ProxyProtocol bool          // read a PROXY protocol header first (behind nginx)
	// SoleServer: no other server writes to this store (the embedded
	// SQLite default), so group member lists may be cached in memory.
	SoleServer   bool
	Loops        int           // event loops; default the number of cores
	Workers      int           // executor workers; default 256
	QueueLen     int           // per-connection queue; default 1024
	HashWorkers  int           // concurrent bcrypt computations; default cores
	HashQueue    int           // logins waiting for bcrypt before 503; default 256
	StoreTimeout time.Duration // per store call; default 5s
	Logger       *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8000"
	}
	if c.Node == "" {
		c.Node = "local"
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = protocol.DefaultMaxFrame
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 90 * time.Second
	}
	if c.IdleTimeout < 0 {
		c.IdleTimeout = 0
	}
	if c.HighWater <= 0 {
		c.HighWater = 4 << 20
	}
	if c.MsgRate == 0 {
		c.MsgRate = 100
	}
	if c.MsgBurst == 0 {
		c.MsgBurst = 200
	}
	if c.BcryptCost == 0 {
		c.BcryptCost = 10
	}
	if c.Workers <= 0 {
		c.Workers = 256
	}
	if c.QueueLen <= 0 {
		c.QueueLen = 1024
	}
	if c.HashWorkers <= 0 {
		c.HashWorkers = runtime.NumCPU()
	}
	if c.HashQueue <= 0 {
		c.HashQueue = 256
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Service is one chat server.
type Service struct {
	cfg       Config
	log       *slog.Logger
	store     model.Store
	bus       bus.Bus
	server    *netcore.Server
	exec      *netcore.Executor
	reg       *registry
	hasher    *hasher
	throttle  *loginThrottle
	metrics   *Metrics
	handlers  map[int]handler
	convLocks convLocks
	members   *memberCache
	frames    framePool       // response writers
	limit     rateLimit       // per connection
	epoch     time.Time       // of monoNow
	ctx       context.Context // cancelled by Shutdown
	cancel    context.CancelFunc
	draining  atomic.Bool  // set by Shutdown: new requests are answered 503
	inFlight  atomic.Int64 // requests received and not yet answered

	storeDeadline *sharedDeadline // storeCtx
	busDeadline   *sharedDeadline // bus publishes of push
}

// BusFactory builds the service's bus once the service can receive from it.
type BusFactory func(opts bus.Options) (bus.Bus, error)

// New builds a service on store, with the bus made by newBus. It does not
// listen until Start.
func New(cfg Config, store model.Store, newBus BusFactory) (*Service, error) {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg:      cfg,
		log:      cfg.Logger,
		store:    store,
		reg:      newRegistry(),
		hasher:   newHasher(cfg.BcryptCost, cfg.HashWorkers, cfg.HashQueue),
		throttle: newLoginThrottle(store, 10, time.Minute),
		metrics:  newMetrics(),
		members:  newMemberCache(cfg.SoleServer, 100_000),
		limit:    newRateLimit(cfg.MsgRate, cfg.MsgBurst),
		epoch:    time.Now(),
		ctx:      ctx,
		cancel:   cancel,
	}
	s.storeDeadline = newSharedDeadline(ctx, cfg.StoreTimeout)
	s.busDeadline = newSharedDeadline(ctx, busTimeout)
	s.handlers = s.dispatchTable()
	b, err := newBus(bus.Options{Node: cfg.Node, Handler: s.onBusMessage, OnResync: s.onBusResync})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("chatservice: open bus: %w", err)
	}
	s.bus = b
	s.exec = netcore.NewExecutor(netcore.ExecutorOptions{Workers: cfg.Workers, QueueLen: cfg.QueueLen})
	srv, err := netcore.NewServer(netcore.Options{
		Addr:          cfg.Listen,
		Loops:         cfg.Loops,
		MaxFrame:      cfg.MaxFrame,
		IdleTimeout:   cfg.IdleTimeout,
		HighWater:     cfg.HighWater,
		ProxyProtocol: cfg.ProxyProtocol,
		Logger:        cfg.Logger,
		OnConnect:     s.onConnect,
		OnDisconnect:  s.onDisconnect,
		OnMessage:     s.onMessage,
		OnFrameError:  s.onFrameError,
		OnHighWater:   s.onHighWater,
		OnShutdown:    s.onShutdown,
	})
	if err != nil {
		cancel()
		_ = b.Close()
		return nil, fmt.Errorf("chatservice: %w", err)
	}
	s.server = srv
	s.metrics.bind(s)
	return s, nil
}

// Start listens and serves.
func (s *Service) Start() error {
	if err := s.server.Start(); err != nil {
		return fmt.Errorf("chatservice: start: %w", err)
	}
	s.log.Info("chat server listening", "addr", s.server.Addr().String(), "node", s.cfg.Node)
	return nil
}

// Addr returns the listening address.
func (s *Service) Addr() string { return s.server.Addr().String() }

// Metrics returns the service's Prometheus metrics.
func (s *Service) Metrics() *Metrics { return s.metrics }

// Shutdown answers the requests already received (those that arrive
// meanwhile get 503 in their turn), then stops accepting, pushes GOAWAY to
// every connection, flushes pending output, closes every connection, waits
// for the workers (the sessions' cleanup included) and closes the bus,
// within ctx's deadline. The requests get at most half of it, so that
// GOAWAY and the flush still fit when one hangs; without a deadline they
// get as long as they take. The store is closed by its owner.
func (s *Service) Shutdown(ctx context.Context) error {
	drain := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		drain, cancel = context.WithTimeout(ctx, time.Until(dl)/2)
		defer cancel()
	}
	// onMessage raises inFlight before it reads draining, and every
	// request stays counted until it is answered (503 once draining is
	// set): once the count is 0, every request received so far has its
	// response queued. (A WaitGroup cannot do this: its Add from 0 may not
	// race with Wait.) A steady stream of new requests keeps the count up,
	// at most until the drain's deadline.
	s.draining.Store(true)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for s.inFlight.Load() > 0 && drain.Err() == nil {
		select {
		case <-tick.C:
		case <-drain.Done():
		}
	}
	err := s.server.Shutdown(ctx) // refuses new connections, calls onShutdown for each
	s.cancel()
	if e := s.exec.Close(ctx); e != nil && err == nil {
		err = e
	}
	if e := s.bus.Close(); e != nil && err == nil {
		err = e
	}
	return err
}

// Ready reports whether the store answers.
func (s *Service) Ready(ctx context.Context) error { return s.store.Ping(ctx) }

// apiError is a request's failure: its errno and a reason in words.
type apiError struct {
	errno      int
	msg        string
	retryAfter int64 // ms, for 429
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.errno, e.msg) }

func errf(errno int, format string, args ...any) *apiError {
	return &apiError{errno: errno, msg: fmt.Sprintf(format, args...)}
}

var (
	errNotLoggedIn = &apiError{errno: protocol.ErrUnauthorized, msg: "not logged in"}
	errBadCreds    = &apiError{errno: protocol.ErrUnauthorized, msg: "wrong credentials"}
)

// storeErr maps a store error to an apiError: the model's sentinels to
// their errno (with what), anything else to 503.
func (s *Service) storeErr(err error, what string) *apiError {
	switch {
	case errors.Is(err, model.ErrNotFound):
		return errf(protocol.ErrNotFound, "%s not found", what)
	case errors.Is(err, model.ErrNameTaken):
		return errf(protocol.ErrConflict, "name is taken")
	case errors.Is(err, model.ErrConflict):
		return errf(protocol.ErrConflict, "%s: conflict", what)
	case errors.Is(err, model.ErrForbidden):
		return errf(protocol.ErrForbidden, "%s: not allowed", what)
	case errors.Is(err, model.ErrCIDConflict):
		return errf(protocol.ErrConflict, "cid already used for another message")
	case errors.Is(err, model.ErrSeqBeyond):
		return errf(protocol.ErrBadRequest, "seq is beyond the conversation's last message")
	}
	s.log.Warn("store unavailable", "op", what, "err", err)
	s.metrics.storeErrors.Inc()
	return errf(protocol.ErrUnavailable, "storage temporarily unavailable, retry")
}

// monoNow is the monotonic time in ns since the service started, the clock
// of the connections' token buckets.
func (s *Service) monoNow() int64 { return int64(time.Since(s.epoch)) }

// storeCtx bounds one store call: at least StoreTimeout from now (up to
// 1/32 more, see sharedDeadline). The cancel function is a no-op, kept so
// that callers read like context.WithTimeout.
func (s *Service) storeCtx() (context.Context, context.CancelFunc) {
	return s.storeDeadline.get(), noCancel
}

func noCancel() {}

// sharedDeadline hands out contexts whose deadline is at least timeout and
// at most timeout + timeout/32 from now: calls in the same 1/32 of the
// timeout share one context (and one runtime timer) instead of making a
// context, a timer and a cancellation each. A shared context is never
// cancelled early; it ends at its deadline or with parent.
type sharedDeadline struct {
	parent  context.Context
	timeout time.Duration
	slack   time.Duration
	cur     atomic.Pointer[deadlineCtx]
}

type deadlineCtx struct {
	ctx      context.Context
	deadline time.Time
	cancel   context.CancelFunc // kept for vet; the deadline releases it
}

func newSharedDeadline(parent context.Context, timeout time.Duration) *sharedDeadline {
	return &sharedDeadline{parent: parent, timeout: timeout, slack: timeout / 32}
}

// get returns a context ending no earlier than timeout from now. Any
// goroutine, without a lock: when the current context ends too early,
// callers racing to replace it each make one, one of them is installed and
// the others are cancelled at once (a mutex here was the service's most
// waited-for lock under load, since a holder descheduled while making the
// context held up every request).
func (d *sharedDeadline) get() context.Context {
	want := time.Now().Add(d.timeout)
	c := d.cur.Load()
	if c != nil && !c.deadline.Before(want) {
		return c.ctx
	}
	dl := want.Add(d.slack)
	ctx, cancel := context.WithDeadline(d.parent, dl)
	n := &deadlineCtx{ctx: ctx, deadline: dl, cancel: cancel}
	for !d.cur.CompareAndSwap(c, n) {
		if c = d.cur.Load(); c != nil && !c.deadline.Before(want) {
			cancel()
			return c.ctx
		}
	}
	return ctx
}

// convLocks holds one mutex per conversation in use, made on first use and
// dropped when its last holder or waiter leaves, so that unrelated
// conversations never wait on each other (a fixed array of stripes made
// conversations that shared a stripe wait for each other's store round
// trip, since the lock is held from storing to publishing).
type convLocks struct {
	shards [64]convShard
}

type convShard struct {
	mu   sync.Mutex
	m    map[model.Conv]*convLock
	free []*convLock // unused locks, reused
	_    [24]byte    // keep shards on separate cache lines
}

// convLock is the lock of one conversation.
type convLock struct {
	mu   sync.Mutex
	refs int // holders and waiters; guarded by the shard's mu
}

const maxFreeConvLocks = 64

func (l *convLocks) shard(c model.Conv) *convShard {
	h := uint64(c.Group)*0x9E3779B97F4A7C15 ^ uint64(c.A)*0xC2B2AE3D27D4EB4F ^ uint64(c.B)*0x165667B19E3779F9
	return &l.shards[(h>>32)%uint64(len(l.shards))]
}

// lock locks conversation c; the caller passes the result to unlock.
func (l *convLocks) lock(c model.Conv) *convLock {
	sh := l.shard(c)
	sh.mu.Lock()
	k := sh.m[c]
	if k == nil {
		if n := len(sh.free); n > 0 {
			k, sh.free = sh.free[n-1], sh.free[:n-1]
		} else {
			k = &convLock{}
		}
		if sh.m == nil {
			sh.m = make(map[model.Conv]*convLock)
		}
		sh.m[c] = k
	}
	k.refs++
	sh.mu.Unlock()
	k.mu.Lock()
	return k
}

// unlock unlocks conversation c, locked by lock as k.
func (l *convLocks) unlock(c model.Conv, k *convLock) {
	sh := l.shard(c)
	k.mu.Unlock()
	sh.mu.Lock()
	if k.refs--; k.refs == 0 {
		delete(sh.m, c)
		if len(sh.free) < maxFreeConvLocks {
			sh.free = append(sh.free, k)
		}
	}
	sh.mu.Unlock()
}
