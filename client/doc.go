// Package client is the Go client library of the ClusterChat wire protocol
// (docs/protocol.md): it dials a chatserver (or the balancer in front of a
// cluster), frames requests, matches responses to requests by reqid and hands
// server pushes to the application.
//
// Two layers:
//
//   - Conn is one TCP connection: Dial, Do (any request), typed helpers for
//     every request (Register, LoginPassword, SendChat, History, ...), a push
//     channel (Pushes) or a push callback (WithPushHandler). Conn is cheap and
//     allocation-light; it is what tests and chatbench use.
//   - Session keeps a user logged in across lost connections: it reconnects
//     with backoff, logs in again with the token, retries unacknowledged sends
//     with the same cid, orders every conversation by seq, fills gaps with
//     HISTORY, drops duplicates and ACKs what the application was shown. It is
//     what chatclient uses.
//
// Errors with a non-zero errno are *Error values (errors.As, IsErrno).
package client
