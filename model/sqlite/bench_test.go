package sqlite_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"clusterchat/model/sqlite"
	"clusterchat/model/storetest"
)

// BenchmarkStoreMessage: 1, 64 or 256 concurrent senders, each in its own
// conversation or all in one group; msgs/batch shows the batching.
func BenchmarkStoreMessage(b *testing.B) {
	for _, sync := range []string{"NORMAL", "FULL"} {
		for _, senders := range []int{1, 64, 256} { // 256: the server's executor workers
			for _, shared := range []bool{false, true} {
				conv := "own"
				if shared {
					conv = "group"
				}
				b.Run(fmt.Sprintf("sync=%s/senders=%d/conv=%s", sync, senders, conv), func(b *testing.B) {
					s := openOpts(b, filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{Synchronous: sync})
					storetest.BenchStoreMessage(b, s, senders, shared)
					st := s.Stats()
					b.ReportMetric(float64(st.Messages)/float64(max(st.Batches, 1)), "msgs/batch")
				})
			}
		}
	}
}
