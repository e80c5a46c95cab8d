// Package memory is the in-process bus: the embedded default of a single
// chatserver (New), and a Hub on which several nodes of one process meet, so
// that tests can run a "cluster" without Redis.
//
// Delivery is a doorbell, never a blocking call: each node has a bounded
// queue (DefaultQueueSize unless WithQueueSize says otherwise) drained by one
// goroutine that calls the node's handler in order. When the queue is full,
// Publish drops the payload for that node and counts it (Stats.Dropped); the
// receiver finds the message again through the offline push or HISTORY,
// because the store, not the bus, is the truth.
package memory

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"clusterchat/bus"
	"clusterchat/bus/internal/dispatch"
)

// DefaultQueueSize is the per-node delivery queue length.
const DefaultQueueSize = dispatch.DefaultSize

// Hub connects the in-process nodes created by its Bus method. It is safe
// for concurrent use.
type Hub struct {
	queueSize int

	mu    sync.RWMutex
	nodes []*Bus // open nodes; each keeps its own subscriptions
}

// HubOption configures a Hub.
type HubOption func(*Hub)

// WithQueueSize sets each node's delivery queue length (default
// DefaultQueueSize; values <= 0 keep the default).
func WithQueueSize(n int) HubOption {
	return func(h *Hub) {
		if n > 0 {
			h.queueSize = n
		}
	}
}

// NewHub returns an empty hub.
func NewHub(opts ...HubOption) *Hub {
	h := &Hub{queueSize: DefaultQueueSize}
	for _, o := range opts {
		o(h)
	}
	return h
}

// New returns a single node on a hub of its own: the one-server default, on
// which Publish reaches nobody (every session is local) and Online answers
// from this node's subscriptions.
func New(opts bus.Options) *Bus {
	return NewHub().Bus(opts)
}

// Bus returns a new node on the hub. opts.OnResync is never called: an
// in-process bus cannot lose its connection.
func (h *Hub) Bus(opts bus.Options) *Bus {
	b := &Bus{hub: h, node: opts.Node, queue: dispatch.New(h.queueSize, opts.Handler), subs: make(map[int64]int32)}
	h.mu.Lock()
	h.nodes = append(h.nodes, b)
	h.mu.Unlock()
	return b
}

// Bus is one node on a Hub; it implements bus.Bus and is safe for
// concurrent use.
type Bus struct {
	hub   *Hub
	node  string
	queue *dispatch.Queue

	// Guarded by hub.mu. subs is user → Subscribe count: one small map
	// entry per subscribed user, the whole cost of an idle session's
	// subscription.
	subs   map[int64]int32
	closed bool
}

var (
	_ bus.Bus         = (*Bus)(nil)
	_ bus.DropCounter = (*Bus)(nil)
)

// Stats are a node's delivery counters.
type Stats struct {
	// Delivered counts payloads handed to the handler.
	Delivered uint64
	// Dropped counts payloads lost because the node's queue was full.
	Dropped uint64
}

// Stats returns the node's counters; safe from any goroutine.
func (b *Bus) Stats() Stats {
	return Stats{Delivered: b.queue.Delivered(), Dropped: b.queue.Dropped()}
}

// DroppedPayloads implements bus.DropCounter: Stats().Dropped.
func (b *Bus) DroppedPayloads() uint64 { return b.queue.Dropped() }

// Subscribe counts one more local session of userID; it never waits, so it
// fails only on a closed bus.
func (b *Bus) Subscribe(_ context.Context, userID int64) error {
	h := b.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if b.closed {
		return fmt.Errorf("bus/memory: subscribe user %d: %w", userID, bus.ErrClosed)
	}
	b.subs[userID]++
	return nil
}

// Unsubscribe undoes one Subscribe of userID; it returns bus.ErrNotSubscribed
// (wrapped) when there is none to undo.
func (b *Bus) Unsubscribe(_ context.Context, userID int64) error {
	h := b.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if b.closed {
		return fmt.Errorf("bus/memory: unsubscribe user %d: %w", userID, bus.ErrClosed)
	}
	n := b.subs[userID]
	if n == 0 {
		return fmt.Errorf("bus/memory: unsubscribe user %d: %w", userID, bus.ErrNotSubscribed)
	}
	if n == 1 {
		delete(b.subs, userID)
	} else {
		b.subs[userID] = n - 1
	}
	return nil
}

// Publish queues a copy of payload on every other node that subscribes to
// each of userIDs. It never blocks on a receiver: a full queue drops and
// counts.
func (b *Bus) Publish(ctx context.Context, userIDs []int64, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bus/memory: publish to %d users: %w", len(userIDs), err)
	}
	h := b.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	if b.closed {
		return fmt.Errorf("bus/memory: publish to %d users: %w", len(userIDs), bus.ErrClosed)
	}
	if len(h.nodes) <= 1 {
		return nil // a node alone on its hub (the one-node server) reaches nobody
	}
	for _, node := range h.nodes {
		if node == b {
			continue
		}
		for _, id := range userIDs {
			if node.subs[id] == 0 {
				continue
			}
			// A copy per delivery: the handler may not keep it, but nothing
			// forbids it from scribbling on it, and the publisher may reuse
			// its buffer as soon as Publish returns.
			node.queue.Push(id, append([]byte(nil), payload...))
		}
	}
	return nil
}

// Online reports whether some node of the hub (this one included)
// subscribes to each of userIDs.
func (b *Bus) Online(ctx context.Context, userIDs []int64) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bus/memory: online of %d users: %w", len(userIDs), err)
	}
	h := b.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	if b.closed {
		return nil, fmt.Errorf("bus/memory: online of %d users: %w", len(userIDs), bus.ErrClosed)
	}
	out := make([]bool, len(userIDs))
	for i, id := range userIDs {
		for _, node := range h.nodes {
			if node.subs[id] > 0 {
				out[i] = true
				break
			}
		}
	}
	return out, nil
}

// Close removes the node's subscriptions from the hub and stops delivery
// (what is still queued is dropped); it waits for a handler call in
// progress, so it must not be called from the handler. Later calls return
// nil; other methods return bus.ErrClosed.
func (b *Bus) Close() error {
	h := b.hub
	h.mu.Lock()
	if !b.closed {
		b.closed = true
		b.subs = nil
		for i, node := range h.nodes {
			if node == b {
				h.nodes = slices.Delete(h.nodes, i, i+1) // clears the freed slot too
				break
			}
		}
	}
	h.mu.Unlock()
	b.queue.Close()
	return nil
}
