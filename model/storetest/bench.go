package storetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"clusterchat/model"
)

// BenchStoreMessage measures StoreMessage throughput with senders
// concurrent callers: each in its own direct conversation, or all in one
// group when shared is set. The store must be empty; b.N messages are stored
// in all. Besides ns/op (wall time, which other processes on a shared
// machine inflate) it reports cpu-ns/op: the CPU time (user + system) of
// the whole process per message.
func BenchStoreMessage(b *testing.B, s model.Store, senders int, shared bool) {
	ctx := context.Background()
	users := make([]model.User, senders+1)
	for i := range users {
		u, err := s.CreateUser(ctx, fmt.Sprint("bench", i), nil)
		if err != nil {
			b.Fatal(err)
		}
		users[i] = u
	}
	convs := make([]model.Conv, senders)
	if shared {
		g, err := s.CreateGroup(ctx, users[0].ID, "bench", "")
		if err != nil {
			b.Fatal(err)
		}
		for i := range convs {
			if _, err := s.JoinGroup(ctx, g.ID, users[i+1].ID); err != nil {
				b.Fatal(err)
			}
			convs[i] = model.GroupConv(g.ID)
		}
	} else {
		for i := range convs {
			convs[i] = model.Direct(users[0].ID, users[i+1].ID)
		}
	}
	body := "a message of a typical length, some sixty bytes or so......"
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	b.SetBytes(int64(len(body)))
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < senders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := users[i+1]
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				_, _, err := s.StoreMessage(ctx, model.NewMessage{Conv: convs[i], From: u.ID, FromName: u.Name,
					Body: body, CID: fmt.Sprint("c", n)})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// cpuTime returns the user and system CPU time of the process so far (0
// where getrusage fails).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
