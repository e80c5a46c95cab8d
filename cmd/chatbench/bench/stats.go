package bench

import (
	"math/bits"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms record microseconds from 1 µs to 10 minutes with three
// significant digits (hdrhistogram-go; about 150 KiB each).
const (
	histMin    = 1
	histMax    = int64(10 * time.Minute / time.Microsecond)
	histDigits = 3
	histShards = 16 // power of two
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// shardedHist is a latency histogram safe for concurrent use: writers pick
// a shard by a key of their own (a connection's index), so hot readers on
// different connections rarely share a lock.
type shardedHist struct {
	shards [histShards]histShard
}

type histShard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
	_  [48]byte // keep shards on separate cache lines
}

func newShardedHist() *shardedHist {
	s := &shardedHist{}
	for i := range s.shards {
		s.shards[i].h = newHist()
	}
	return s
}

// record adds one duration (clamped to the histogram's range).
func (s *shardedHist) record(key int, d time.Duration) {
	v := int64(d / time.Microsecond)
	if v < histMin {
		v = histMin
	}
	if v > histMax {
		v = histMax
	}
	sh := &s.shards[key&(histShards-1)]
	sh.mu.Lock()
	_ = sh.h.RecordValue(v) // cannot fail: v is within range
	sh.mu.Unlock()
}

// merged returns the union of all shards.
func (s *shardedHist) merged() *hdrhistogram.Histogram {
	out := newHist()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		out.Merge(sh.h)
		sh.mu.Unlock()
	}
	return out
}

// Latency summarises a histogram in microseconds.
type Latency struct {
	Count  int64   `json:"count"`
	MeanUS float64 `json:"mean_us"`
	P50US  int64   `json:"p50_us"`
	P99US  int64   `json:"p99_us"`
	P999US int64   `json:"p999_us"`
	MaxUS  int64   `json:"max_us"`
}

func summarize(h *hdrhistogram.Histogram) *Latency {
	if h.TotalCount() == 0 {
		return &Latency{}
	}
	return &Latency{
		Count:  h.TotalCount(),
		MeanUS: float64(int64(h.Mean()*10)) / 10,
		P50US:  h.ValueAtQuantile(50),
		P99US:  h.ValueAtQuantile(99),
		P999US: h.ValueAtQuantile(99.9),
		MaxUS:  h.Max(),
	}
}

// bitset is a growable set of positive integers (message seqs).
type bitset []uint64

// set adds n and reports whether it was already present.
func (b *bitset) set(n int64) (had bool) {
	w := int(n >> 6)
	if w >= len(*b) {
		grow := w + 1
		if grow < 2*len(*b) {
			grow = 2 * len(*b)
		}
		nb := make(bitset, grow)
		copy(nb, *b)
		*b = nb
	}
	m := uint64(1) << (uint(n) & 63)
	had = (*b)[w]&m != 0
	(*b)[w] |= m
	return had
}

// has reports whether n is in the set.
func (b bitset) has(n int64) bool {
	w := int(n >> 6)
	return w < len(b) && b[w]&(uint64(1)<<(uint(n)&63)) != 0
}

// count returns the number of members.
func (b bitset) count() int64 {
	var n int
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return int64(n)
}

// andNotCount returns |b \ o|.
func (b bitset) andNotCount(o bitset) int64 {
	var n int
	for i, w := range b {
		if i < len(o) {
			w &^= o[i]
		}
		n += bits.OnesCount64(w)
	}
	return int64(n)
}

// andNot returns the members of b not in o, ascending.
func (b bitset) andNot(o bitset) []int64 {
	var out []int64
	for i, w := range b {
		if i < len(o) {
			w &^= o[i]
		}
		for w != 0 {
			t := bits.TrailingZeros64(w)
			out = append(out, int64(i*64+t))
			w &= w - 1
		}
	}
	return out
}
