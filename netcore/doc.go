// Package netcore is a muduo-style reactor networking library for TCP
// services, built on gnet v2 event loops. It supplies what gnet lacks:
// framing with size limits, a thread-safe Send, graceful drain-then-close,
// backpressure (a high-water mark), idle timeouts, per-connection timers
// that run on the loop, an ordered executor for blocking work, PROXY
// protocol support and counters. No gnet type appears in its API.
//
// # Model
//
// A Server runs Options.Loops event loops. Each connection belongs to one
// loop, and every callback for it (OnConnect, OnMessage, OnFrameError,
// OnWriteComplete, OnHighWater, OnDisconnect) and every timer function of
// it runs on that loop, one at a time. Callbacks must not block: hand
// blocking work (database, Redis, password hashing) to an Executor, whose
// Queue keeps one connection's tasks in order, and reply with Conn.Send,
// which is safe from any goroutine.
//
// Inbound bytes are split into frames by the connection's Codec: the
// length-field codec (4-byte big-endian body length, then the body; the
// default) or the line codec (CRLF lines, for SMTP/POP3-style protocols),
// or your own. Every complete frame of a read is delivered; a frame is
// copied before OnMessage sees it, so the callee owns it. A length of 0 or
// above the maximum is rejected from the header alone: OnFrameError runs,
// and the connection is flushed briefly and closed for ReasonProtocol.
//
// Output goes through a per-connection queue that the loop hands to the
// socket (in one write per loop iteration, batching frames). If the unsent
// output of a connection exceeds Options.HighWater, OnHighWater runs and the
// connection is closed: a slow reader cannot grow memory without limit.
//
// Conn.Shutdown flushes pending output, shuts the write side (the peer reads
// EOF) and closes when the peer closes, or after its timeout. Server.Shutdown
// does this for every connection, refuses new ones, and stops the loops
// within its context's deadline.
//
// # Goroutine safety
//
// Each exported method's documentation says "Any goroutine" or "Loop only".
// Loop-only methods (Conn.SetCodec) may be called only from a callback or
// timer function of the same connection.
package netcore
