package mysql_test

import (
	"context"
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

// BenchmarkGroupReads: a group message's recipients read from a group of
// 500 members, with GroupRecipients (ids and joined seqs) and with
// GroupMembers (which also joins the users and the group, for names and
// the owner, in join order); db-cpu-ns/op is mariadbd's CPU per read.
func BenchmarkGroupReads(b *testing.B) {
	ctx := context.Background()
	s := open(b, newDB(b), mysql.Options{})
	names := make([]string, 500)
	for i := range names {
		names[i] = fmt.Sprint("m", i)
	}
	us := storetest.MustUsers(b, s, names...)
	g, err := s.CreateGroup(ctx, us[0].ID, "g", "")
	if err != nil {
		b.Fatal(err)
	}
	for _, u := range us[1:] {
		if _, err := s.JoinGroup(ctx, g.ID, u.ID); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		read func() (int, error)
	}{
		{"recipients", func() (int, error) { rs, err := s.GroupRecipients(ctx, g.ID); return len(rs), err }},
		{"members", func() (int, error) { ms, err := s.GroupMembers(ctx, g.ID); return len(ms), err }},
	} {
		b.Run(c.name, func(b *testing.B) {
			db0, dbOK := procCPU(server.Pid())
			for b.Loop() {
				if n, err := c.read(); err != nil || n != len(us) {
					b.Fatalf("%d members, %v; want %d", n, err, len(us))
				}
			}
			if db1, ok := procCPU(server.Pid()); ok && dbOK {
				b.ReportMetric(float64(db1-db0)/float64(b.N), "db-cpu-ns/op")
			}
		})
	}
}
