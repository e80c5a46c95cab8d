package chatservice

import (
	"sync"
	"testing"
	"time"

	"clusterchat/model"
)

func TestConvLocks(t *testing.T) {
	var l convLocks
	a, b := model.Direct(1, 2), model.Direct(3, 4)
	// lockOnce takes and releases c's lock on a goroutine; the channel
	// closes when it has.
	lockOnce := func(c model.Conv) <-chan struct{} {
		done := make(chan struct{})
		go func() {
			l.unlock(c, l.lock(c))
			close(done)
		}()
		return done
	}
	ka := l.lock(a)
	// Another conversation is not held up by a.
	select {
	case <-lockOnce(b):
	case <-time.After(5 * time.Second):
		t.Fatal("a lock of another conversation waited")
	}
	// The same conversation is.
	got := lockOnce(a)
	select {
	case <-got:
		t.Fatal("two holders of one conversation's lock")
	case <-time.After(50 * time.Millisecond):
	}
	l.unlock(a, ka)
	<-got
	// Many goroutines on a few conversations: exclusive per conversation,
	// and nothing left behind.
	var wg sync.WaitGroup
	counts := make([]int, 4)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				n := (g + i) % len(counts)
				c := model.GroupConv(int64(n + 1))
				k := l.lock(c)
				counts[n]++ // a race if the lock is not exclusive
				l.unlock(c, k)
			}
		}()
	}
	wg.Wait()
	if total := counts[0] + counts[1] + counts[2] + counts[3]; total != 8000 {
		t.Fatalf("%d increments, want 8000", total)
	}
	for i := range l.shards {
		if n := len(l.shards[i].m); n != 0 {
			t.Fatalf("shard %d keeps %d locks after every holder left", i, n)
		}
	}
}
