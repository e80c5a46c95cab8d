// Package redis is the cross-server bus on Redis pub/sub (go-redis v9).
//
// Each user has a channel "<Prefix><id>" (Prefix defaults to "user:"). A node
// keeps one subscription connection, subscribed to the users that have a
// session on it: SUBSCRIBE on the first Subscribe of a user, UNSUBSCRIBE on
// its last Unsubscribe. Payloads travel in an envelope naming the origin
// node, and a node drops what it published itself. Publish pipelines one
// PUBLISH per user (one round trip for a group fan-out), and concurrent
// Publish calls share a pipeline; Online is one
// PUBSUB NUMSUB, so presence is the set of live subscription connections and
// cannot go stale when a server dies.
//
// Redis is only a doorbell. When the subscription connection breaks (Redis
// restarted, network), the bus reconnects with backoff, subscribes again to
// every user it holds, waits until Redis confirmed that, then calls
// Options.OnResync so that the service re-runs the offline push: nothing
// published during the outage stays missing. A health loop pings an idle
// connection and replaces one that stopped answering.
//
// Delivery is never a blocking call: payloads go through a bounded queue
// (Options.QueueSize) drained by one goroutine that calls the handler in
// order; when the queue is full the payload is dropped and counted
// (Stats.Dropped), as the bus is a doorbell and the store is the truth.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"clusterchat/bus"
	"clusterchat/bus/internal/dispatch"
)

// Defaults of Options.
const (
	DefaultPrefix         = "user:"
	DefaultDialTimeout    = 2 * time.Second
	DefaultReadTimeout    = 3 * time.Second
	DefaultWriteTimeout   = 3 * time.Second
	DefaultHealthInterval = time.Second
	DefaultMaxBackoff     = time.Second
	minBackoff            = 50 * time.Millisecond
	maxNodeLen            = 255
)

// Options configure New. Zero values take the documented defaults; pool and
// timeout settings given in the URL's query (go-redis ParseURL names, e.g.
// ?pool_size=50&dial_timeout=1s) apply unless the field here is set.
type Options struct {
	bus.Options

	// Prefix of the per-user channel names (default "user:").
	Prefix string
	// PoolSize is the number of connections for Online and Publish
	// (go-redis default: 10 per CPU); Publish's pipelines go out one at a
	// time, so it uses one of them at once.
	PoolSize int
	// MinIdleConns kept open in that pool (default 0).
	MinIdleConns int
	// DialTimeout bounds connecting (default 2s).
	DialTimeout time.Duration
	// ReadTimeout bounds waiting for a reply (default 3s).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a command (default 3s).
	WriteTimeout time.Duration
	// PoolTimeout bounds waiting for a free pool connection (default
	// ReadTimeout + 1s).
	PoolTimeout time.Duration
	// MaxRetries of a failed Publish/Online command (go-redis default 3;
	// -1 disables retries).
	MaxRetries int
	// QueueSize is the delivery queue length (default 32,768).
	QueueSize int
	// HealthInterval: an idle subscription connection is pinged this often,
	// and replaced after three intervals without any reply (default 1s).
	HealthInterval time.Duration
	// MaxBackoff caps the delay between reconnection attempts (default 1s).
	MaxBackoff time.Duration
	// Logger receives connection events (default slog.Default()).
	Logger *slog.Logger
}

// Stats are the bus's counters.
type Stats struct {
	// Delivered counts payloads handed to the handler.
	Delivered uint64
	// Dropped counts payloads lost because the delivery queue was full.
	Dropped uint64
	// Own counts payloads ignored because this node published them.
	Own uint64
	// Malformed counts messages with a bad channel name or envelope.
	Malformed uint64
	// Reconnects counts subscription connections established after a loss.
	Reconnects uint64
	// Resyncs counts OnResync notifications (subscriptions restored).
	Resyncs uint64
	// Users is the number of users this node subscribes to.
	Users int
}

// Bus is a node on a Redis bus; it implements bus.Bus and all its methods
// are safe for concurrent use.
type Bus struct {
	opts   Options
	node   string
	prefix string
	log    *slog.Logger
	pub    *goredis.Client // Publish and Online
	sub    *goredis.Client // the subscription connection only
	queue  *dispatch.Queue

	ctx    context.Context // lives until Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	counts    map[int64]int      // user → Subscribe count
	ps        *goredis.PubSub    // current connection, nil while down
	up        bool               // ps confirmed every subscription in counts
	everUp    bool               // a connection was confirmed once
	resyncTok string             // the PING payload that confirms ps
	waiters   map[string]*waiter // barrier PING payload → waiter
	pending   map[int64]*waiter  // user → its SUBSCRIBE's waiter
	nextTok   uint64
	firstUp   chan struct{} // closed when the first connection is confirmed

	pubMu    sync.Mutex
	pubQueue []*pubReq // Publish calls waiting for the next pipeline
	pubSpare []*pubReq // the last batch's slice, reused
	pubBusy  bool      // a pipeline is being sent (flushPublishes runs, counted in wg)
	pubDone  bool      // Close has begun: no new Publish is queued

	lastRecv atomic.Int64 // unix ns of the last reply on ps
	resyncCh chan struct{}

	own, malformed, reconnects, resyncs atomic.Uint64
}

var (
	_ bus.Bus         = (*Bus)(nil)
	_ bus.DropCounter = (*Bus)(nil)
)

// New connects to the Redis at url ("redis://HOST:PORT/DB", also rediss://
// and unix://) and returns a node once its subscription connection is up.
// opts.Node must be 1 to 255 bytes and unique among the servers. It fails,
// promptly, when Redis cannot be reached before ctx ends.
func New(ctx context.Context, url string, opts Options) (*Bus, error) {
	if opts.Node == "" || len(opts.Node) > maxNodeLen {
		return nil, fmt.Errorf("bus/redis: node name %q: must be 1 to %d bytes", opts.Node, maxNodeLen)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = DefaultHealthInterval
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	pubOpts, err := clientOptions(url, opts)
	if err != nil {
		return nil, err
	}
	subOpts, err := clientOptions(url, opts)
	if err != nil {
		return nil, err
	}
	// The subscription connection reconnects by itself (below); go-redis
	// retrying dials inside it would only delay noticing the outage.
	subOpts.DialerRetries = 1
	subOpts.MaxRetries = -1
	subOpts.PoolSize = 1

	b := &Bus{
		opts:     opts,
		node:     opts.Node,
		prefix:   opts.Prefix,
		log:      opts.Logger.With("component", "bus/redis", "node", opts.Node),
		pub:      goredis.NewClient(pubOpts),
		sub:      goredis.NewClient(subOpts),
		queue:    dispatch.New(opts.QueueSize, opts.Handler),
		counts:   make(map[int64]int),
		waiters:  make(map[string]*waiter),
		pending:  make(map[int64]*waiter),
		firstUp:  make(chan struct{}),
		resyncCh: make(chan struct{}, 1),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())

	if err := b.pub.Ping(ctx).Err(); err != nil {
		b.cancel()
		_ = b.closeClients()
		return nil, fmt.Errorf("bus/redis: connect to %s: %w", pubOpts.Addr, err)
	}
	b.wg.Add(3)
	go b.manage()
	go b.health()
	go b.resyncLoop()
	select {
	case <-b.firstUp:
		return b, nil
	case <-ctx.Done():
		_ = b.Close()
		return nil, fmt.Errorf("bus/redis: subscribe connection to %s: %w", pubOpts.Addr, ctx.Err())
	}
}

func clientOptions(url string, opts Options) (*goredis.Options, error) {
	ro, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("bus/redis: parse url %q: %w", url, err)
	}
	set := func(dst *time.Duration, v, def time.Duration) {
		switch {
		case v != 0:
			*dst = v
		case *dst == 0:
			*dst = def
		}
	}
	set(&ro.DialTimeout, opts.DialTimeout, DefaultDialTimeout)
	set(&ro.ReadTimeout, opts.ReadTimeout, DefaultReadTimeout)
	set(&ro.WriteTimeout, opts.WriteTimeout, DefaultWriteTimeout)
	set(&ro.PoolTimeout, opts.PoolTimeout, ro.ReadTimeout+time.Second)
	if opts.PoolSize > 0 {
		ro.PoolSize = opts.PoolSize
	}
	if opts.MinIdleConns > 0 {
		ro.MinIdleConns = opts.MinIdleConns
	}
	if opts.MaxRetries != 0 {
		ro.MaxRetries = opts.MaxRetries
	}
	if ro.DialerRetries == 0 {
		// go-redis's 5 attempts per dial, times its retries, make a down
		// Redis take seconds to report.
		ro.DialerRetries = 2
	}
	// RESP2: pub/sub messages are plain replies read by Receive, with no
	// RESP3 push-notification processing in the way.
	ro.Protocol = 2
	ro.DisableIdentity = true
	ro.ClientName = "clusterchat-bus"
	return ro, nil
}

// DroppedPayloads implements bus.DropCounter: Stats().Dropped.
func (b *Bus) DroppedPayloads() uint64 { return b.queue.Dropped() }

// Stats returns the bus's counters; safe from any goroutine.
func (b *Bus) Stats() Stats {
	b.mu.Lock()
	users := len(b.counts)
	b.mu.Unlock()
	return Stats{
		Delivered:  b.queue.Delivered(),
		Dropped:    b.queue.Dropped(),
		Own:        b.own.Load(),
		Malformed:  b.malformed.Load(),
		Reconnects: b.reconnects.Load(),
		Resyncs:    b.resyncs.Load(),
		Users:      users,
	}
}

// Close unsubscribes (by closing the subscription connection, so the other
// nodes see this node's users offline at once), stops delivery and closes
// the connections. It waits for a running OnResync and handler call, so it
// must not be called from them. Later calls return nil.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	ps := b.ps
	b.ps = nil
	b.mu.Unlock()
	b.pubMu.Lock()
	b.pubDone = true // no flusher starts after wg.Wait below
	b.pubMu.Unlock()

	b.cancel()
	if ps != nil {
		_ = ps.Close()
	}
	b.wg.Wait()
	b.queue.Close()
	return b.closeClients()
}

func (b *Bus) closeClients() error {
	return errors.Join(b.pub.Close(), b.sub.Close())
}

func (b *Bus) channel(userID int64) string {
	return b.prefix + strconv.FormatInt(userID, 10)
}

func (b *Bus) userOf(channel string) (int64, bool) {
	if len(channel) <= len(b.prefix) || channel[:len(b.prefix)] != b.prefix {
		return 0, false
	}
	id, err := strconv.ParseInt(channel[len(b.prefix):], 10, 64)
	if err != nil {
		return 0, false
	}
	return id, true
}

func (b *Bus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}
