package sqlite_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
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

// BenchmarkWALRestart: 16 concurrent senders in their own conversations
// (about 10,000 messages/s on the 2-core box, the server's 10,000/s case;
// unpaced with 256 senders every checkpointer pass finds more than either
// threshold, so both behave the same), the WAL starting over at 8,192
// frames (the default until round 14) and at the default (16,384), in one
// invocation. restart-ns/op is the writer's time in its completing
// checkpoints per message: no message is stored meanwhile. Run it with
// enough messages for several start-overs (a message writes about two
// frames), e.g. -benchtime 60000x -count 2: 741-743 against 385-430
// restart-ns/op, 19 against 9 start-overs (round 14).
func BenchmarkWALRestart(b *testing.B) {
	for _, frames := range []int{8192, 0} {
		name := "frames=default"
		if frames > 0 {
			name = fmt.Sprintf("frames=%d", frames)
		}
		b.Run(name, func(b *testing.B) {
			s := openOpts(b, filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{WALRestartFrames: frames})
			storetest.BenchStoreMessage(b, s, 16, false)
			ck := s.CheckpointStats()
			b.ReportMetric(ck.RestartSeconds*1e9/float64(b.N), "restart-ns/op")
			b.ReportMetric(float64(ck.Restarts), "restarts")
		})
	}
}

// BenchmarkInsertRows: BenchmarkStoreMessage's NORMAL case with 256
// senders, the messages of a batch inserted with single-row INSERTs (the
// default with cgo) or multi-row ones of up to 256 rows, alternately in one
// invocation. The driver is the build's: with CGO_ENABLED=0 it is
// modernc.org/sqlite.
func BenchmarkInsertRows(b *testing.B) {
	for _, shared := range []bool{false, true} {
		conv := "own"
		if shared {
			conv = "group"
		}
		for _, rows := range []int{1, 256} {
			b.Run(fmt.Sprintf("driver=%s/conv=%s/rows=%d", sqlite.DriverName(), conv, rows), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "bench.db")
				s, err := sqlite.OpenInsertRows(context.Background(), path, sqlite.Options{}, rows)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				storetest.BenchStoreMessage(b, s, 256, shared)
				b.StopTimer()
				if fi, err := os.Stat(path + "-wal"); err == nil {
					b.ReportMetric(float64(fi.Size())/(1<<20), "wal-MiB")
				}
			})
		}
	}
}

// BenchmarkLoginReads: the reads of a LOGIN (friends, friend requests,
// groups) for 5,000 users by 64 concurrent callers through the reader pool,
// as in the storm scenario. The driver is the build's: with CGO_ENABLED=0
// it is modernc.org/sqlite.
func BenchmarkLoginReads(b *testing.B) {
	ctx := context.Background()
	s := openOpts(b, filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{})
	const users = 5000
	ids := make([]int64, users)
	for i := range ids {
		u, err := s.CreateUser(ctx, fmt.Sprint("reader", i), []byte("x"))
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = u.ID
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	b.ResetTimer()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				id := ids[n%users]
				if _, err := s.Friends(ctx, id); err != nil {
					errs <- err
					return
				}
				if _, err := s.FriendRequests(ctx, id); err != nil {
					errs <- err
					return
				}
				if _, err := s.UserGroups(ctx, id); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}
