// Package bus defines how chat servers reach users whose sessions live on
// another server. A bus is only a doorbell: the store is the truth, and a
// message missed on the bus is found again by the offline push or HISTORY.
//
// Implementations: bus/memory (one process; the embedded default) and
// bus/redis (Redis pub/sub, one channel per user).
package bus

import (
	"context"
	"errors"
)

// ErrClosed is returned by a bus that was closed.
var ErrClosed = errors.New("bus: closed")

// ErrNotSubscribed is returned by Unsubscribe for a user that this node does
// not subscribe to (more Unsubscribe than Subscribe calls).
var ErrNotSubscribed = errors.New("bus: not subscribed")

// Handler receives a payload published to userID by another node. It is
// called from the bus's own goroutine(s), must not block for long, and must
// not keep payload after it returns.
type Handler func(userID int64, payload []byte)

// Bus carries opaque payloads addressed to user ids between nodes.
//
// A node subscribes to a user while it holds a session of that user, and
// receives what other nodes publish to that user; it never receives what it
// published itself (the envelope names the origin node). All methods are
// safe for concurrent use.
type Bus interface {
	// Subscribe starts delivery of userID's payloads to the handler. Calls
	// are counted: delivery stops after as many Unsubscribe calls. A call
	// that fails with an error other than ErrClosed still counts (the
	// subscription stays requested), so a caller unsubscribes once per
	// Subscribe whatever it returned.
	Subscribe(ctx context.Context, userID int64) error
	// Unsubscribe undoes one Subscribe.
	Unsubscribe(ctx context.Context, userID int64) error
	// Publish sends payload to each user in userIDs (pipelined where the
	// implementation can). It returns once the bus accepted the payloads.
	Publish(ctx context.Context, userIDs []int64, payload []byte) error
	// Online reports, for each user in userIDs, whether any node (this one
	// included) currently subscribes to it. The result has len(userIDs).
	Online(ctx context.Context, userIDs []int64) ([]bool, error)
	// Close stops delivery and releases resources.
	Close() error
}

// DropCounter is implemented by a Bus whose delivery queue drops payloads
// when the handler falls behind (the bus is a doorbell: a dropped push is
// found again by the offline push or HISTORY, PROTOCOL.md §6).
type DropCounter interface {
	// DroppedPayloads is the number of payloads dropped so far.
	DroppedPayloads() uint64
}

// Options are common to every implementation.
type Options struct {
	// Node is this server's unique name; payloads it published are not
	// delivered back to it.
	Node string
	// Handler receives payloads for subscribed users.
	Handler Handler
	// OnResync is called after the bus lost and regained its connection and
	// resubscribed, so that the service can re-run the offline push for its
	// local sessions (nothing published during an outage stays missing). May
	// be nil.
	OnResync func()
}
