//go:build !linux

package bench

import (
	"net"
	"time"
)

// pollSet is epoll's (Linux only); elsewhere every traffic connection has
// its own reader goroutine.
type pollSet struct{}

type poller struct{}

func newPollSet(*run) *pollSet { return nil }

func (ps *pollSet) close() {}

func (ps *pollSet) add(*leanConn, net.Conn, int) bool { return false }

func (lc *leanConn) rawWrite([]byte, time.Time, time.Duration) error { return net.ErrClosed }

func (lc *leanConn) shutdown() {}
