package mysql_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"clusterchat/model/mysql"
	"clusterchat/model/storetest"
)

// BenchmarkStoreMessage: 1, 64 and 256 concurrent senders, each in its own
// conversation or all in one group, against the private MariaDB (testenv's options: InnoDB
// with innodb_flush_log_at_trx_commit=2, the redo log written at each
// commit and fsynced once a second); msgs/batch
// shows the batching, db-cpu-ns/op the CPU time of mariadbd per message
// (on the cluster it is the largest cost of a message).
func BenchmarkStoreMessage(b *testing.B) {
	for _, senders := range []int{1, 64, 256} {
		for _, shared := range []bool{false, true} {
			conv := "own"
			if shared {
				conv = "group"
			}
			b.Run(fmt.Sprintf("senders=%d/conv=%s", senders, conv), func(b *testing.B) {
				s := open(b, newDB(b), mysql.Options{})
				db0, dbOK := procCPU(server.Pid())
				storetest.BenchStoreMessage(b, s, senders, shared)
				if db1, ok := procCPU(server.Pid()); ok && dbOK {
					b.ReportMetric(float64(db1-db0)/float64(b.N), "db-cpu-ns/op")
				}
				st := s.Stats()
				b.ReportMetric(float64(st.Messages)/float64(max(st.Batches, 1)), "msgs/batch")
			})
		}
	}
}

// procCPU returns the user + system CPU time of process pid from
// /proc/PID/stat (clock ticks of 10 ms).
func procCPU(pid int) (time.Duration, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The fields after the command name, which is in parentheses.
	i := strings.LastIndexByte(string(raw), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, true
}

// BenchmarkWriters: 256 concurrent senders, each in its own conversation,
// with 1, 2 and 4 batching writers (Options.Writers): msgs/batch and
// db-cpu-ns/op show what fewer, larger batches save MariaDB.
func BenchmarkWriters(b *testing.B) {
	for _, writers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s := open(b, newDB(b), mysql.Options{Writers: writers})
			db0, dbOK := procCPU(server.Pid())
			storetest.BenchStoreMessage(b, s, 256, false)
			if db1, ok := procCPU(server.Pid()); ok && dbOK {
				b.ReportMetric(float64(db1-db0)/float64(b.N), "db-cpu-ns/op")
			}
			st := s.Stats()
			b.ReportMetric(float64(st.Messages)/float64(max(st.Batches, 1)), "msgs/batch")
		})
	}
}
