package mysql_test

import (
	"fmt"
	"testing"

	"clusterchat/model/mysql"
	"clusterchat/model/storetest"
)

// BenchmarkStoreMessage: 1 vs 64 concurrent senders, each in its own
// conversation or all in one group, against the private MariaDB (InnoDB
// with its default innodb_flush_log_at_trx_commit=1: an fsync per commit);
// msgs/batch shows the batching.
func BenchmarkStoreMessage(b *testing.B) {
	for _, senders := range []int{1, 64} {
		for _, shared := range []bool{false, true} {
			conv := "own"
			if shared {
				conv = "group"
			}
			b.Run(fmt.Sprintf("senders=%d/conv=%s", senders, conv), func(b *testing.B) {
				s := open(b, newDB(b), mysql.Options{})
				storetest.BenchStoreMessage(b, s, senders, shared)
				st := s.Stats()
				b.ReportMetric(float64(st.Messages)/float64(max(st.Batches, 1)), "msgs/batch")
			})
		}
	}
}
