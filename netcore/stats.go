package netcore

import "sync/atomic"

// Stats is a snapshot of a Server's counters, for metrics.
type Stats struct {
	Conns     int64  // connections currently open
	Accepted  uint64 // connections accepted since Start
	FramesIn  uint64 // frames decoded
	FramesOut uint64 // frames sent (written to gnet)
	BytesIn   uint64 // bytes read from sockets
	BytesOut  uint64 // bytes written (header included)
	// Dropped counts frames Send refused because the connection was
	// closed, shutting down or past its high-water mark.
	Dropped uint64
	// Closes counts closed connections by reason; every CloseReason is
	// present.
	Closes map[CloseReason]uint64
}

// loopStats are written only by one event loop (no contention) and read by
// Server.Stats from any goroutine.
type loopStats struct {
	accepted  atomic.Uint64
	framesIn  atomic.Uint64
	framesOut atomic.Uint64
	bytesIn   atomic.Uint64
	bytesOut  atomic.Uint64
	dropped   atomic.Uint64 // written by Send, any goroutine
	closes    [numReasons]atomic.Uint64
	_         [64]byte // keep loops' counters on separate cache lines
}

func (s *Stats) add(ls *loopStats) {
	s.Accepted += ls.accepted.Load()
	s.FramesIn += ls.framesIn.Load()
	s.FramesOut += ls.framesOut.Load()
	s.BytesIn += ls.bytesIn.Load()
	s.BytesOut += ls.bytesOut.Load()
	s.Dropped += ls.dropped.Load()
	for i := range ls.closes {
		s.Closes[CloseReason(i)] += ls.closes[i].Load()
	}
}
