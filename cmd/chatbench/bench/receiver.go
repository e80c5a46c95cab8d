package bench

import (
	"bytes"
	"strconv"
	"sync"
	"time"

	"clusterchat/chatservice/protocol"
	"clusterchat/client"
)

// A chatbench cid is "S.I.T": sender index, message number, and the
// scheduled send time in nanoseconds since the run's epoch. The recipient
// computes the send→delivery latency from T alone, without shared state.

func appendCID(b []byte, sender int, i int64, sched time.Duration) []byte {
	b = strconv.AppendInt(b, int64(sender), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, i, 10)
	b = append(b, '.')
	return strconv.AppendInt(b, int64(sched), 10)
}

// parseCIDStamp returns T of a chatbench cid.
func parseCIDStamp(cid []byte) (time.Duration, bool) {
	j := bytes.LastIndexByte(cid, '.')
	if j < 0 || bytes.IndexByte(cid, '.') == j {
		return 0, false
	}
	t, ok := parseUint(cid[j+1:])
	return time.Duration(t), ok
}

func parseUint(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseChatPush extracts seq and the cid's send stamp from a CHAT or
// GROUP_CHAT push body.
func parseChatPush(raw []byte) (seq int64, stamp time.Duration, ok bool) {
	var fi frameInfo
	if !scanFrame(raw, &fi) {
		return 0, 0, false
	}
	return chatFields(&fi)
}

// chatFields returns a scanned chat push's seq and send stamp; ok is false
// when either is missing or not chatbench's.
func chatFields(fi *frameInfo) (seq int64, stamp time.Duration, ok bool) {
	if fi.seq <= 0 {
		return 0, 0, false
	}
	t, okT := parseCIDStamp(fi.cid)
	return fi.seq, t, okT
}

// receiver is the delivery state of one recipient connection, which is in
// exactly one benchmarked conversation. Its push handler runs on the
// connection's reader goroutine; mu guards against the final check.
type receiver struct {
	r   *run
	idx int // the connection's index (histogram shard key)

	mu     sync.Mutex
	got    bitset
	maxSeq int64
}

// onPush is the connection's client.PushHandler: the pushes chatbench's
// own reader (leanConn) passed on, which are not chat pushes unless the
// connection has no receiver.
func (rx *receiver) onPush(p client.Push) {
	st := &rx.r.st
	if p.MsgID != protocol.PushChat && p.MsgID != protocol.PushGroupChat {
		st.otherPushes.Add(1)
		return
	}
	var d delivery
	seq, stamp, ok := parseChatPush(p.Raw)
	rx.onChat(seq, stamp, ok, rx.r.now(), rx.idx, &d)
	d.flush(rx.r)
}

// onChat checks one chat push received at now (seq and stamp from
// chatFields), adds it to d and records its latency in histogram shard
// shard.
func (rx *receiver) onChat(seq int64, stamp time.Duration, ok bool, now time.Duration, shard int, d *delivery) {
	if !ok {
		d.bad++
		return
	}
	rx.mu.Lock()
	dup := rx.got.set(seq)
	ooo := !dup && seq < rx.maxSeq
	if seq > rx.maxSeq {
		rx.maxSeq = seq
	}
	rx.mu.Unlock()
	d.delivered++
	d.last = max(d.last, now)
	switch {
	case dup:
		d.duplicated++
		return // latency of the first delivery only
	case ooo:
		d.outOfOrder++
	}
	d.unique++
	rx.r.delHist.record(shard, now-stamp)
}
