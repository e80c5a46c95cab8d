package netcore

import "strconv"

// CloseReason names why a connection was closed. Every connection is closed
// for exactly one reason, reported to Options.OnDisconnect and counted in
// Stats.Closes.
type CloseReason int

// Close reasons.
const (
	// ReasonPeer: the peer closed the connection or an I/O error occurred
	// (the error is passed to OnDisconnect).
	ReasonPeer CloseReason = iota
	// ReasonIdle: no inbound bytes for Options.IdleTimeout.
	ReasonIdle
	// ReasonHighWater: unsent output passed Options.HighWater.
	ReasonHighWater
	// ReasonProtocol: the codec (or PROXY header parser) rejected the input.
	ReasonProtocol
	// ReasonShutdown: Conn.Shutdown or Server.Shutdown.
	ReasonShutdown
	// ReasonForced: Conn.ForceClose without a more specific reason.
	ReasonForced
	// ReasonOverload: the application could not keep up with the
	// connection (for example its executor Queue was full).
	ReasonOverload
	// ReasonRejected: the server was shutting down when the connection
	// arrived (OnConnect was not called).
	ReasonRejected

	numReasons
)

var reasonNames = [numReasons]string{
	ReasonPeer:      "peer",
	ReasonIdle:      "idle",
	ReasonHighWater: "high_water",
	ReasonProtocol:  "protocol",
	ReasonShutdown:  "shutdown",
	ReasonForced:    "forced",
	ReasonOverload:  "overload",
	ReasonRejected:  "rejected",
}

// String returns the reason's metric-friendly name ("peer", "idle", ...).
// Any goroutine.
func (r CloseReason) String() string {
	if r >= 0 && r < numReasons {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Reasons returns every defined CloseReason in order. Any goroutine.
func Reasons() []CloseReason {
	rs := make([]CloseReason, numReasons)
	for i := range rs {
		rs[i] = CloseReason(i)
	}
	return rs
}
