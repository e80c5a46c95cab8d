package mysql_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"clusterchat/model"
	"clusterchat/model/mysql"
)

// TestAreFriendsConcurrent: concurrent AreFriends calls, answered together
// by the coalescing readers, each get their own pair's answer (friends,
// only requested, none, the same pair many times, either order), a change
// committed before a call is seen by it, and after Close calls fail with
// ErrClosed.
func TestAreFriendsConcurrent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := open(t, newDB(t), mysql.Options{})
	const n = 24
	users := make([]model.User, n)
	for i := range users {
		u, err := s.CreateUser(ctx, fmt.Sprint("f", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		users[i] = u
	}
	// 0 is a friend of every odd user and has asked every user divisible by 4.
	want := func(i, j int) bool {
		if i > j {
			i, j = j, i
		}
		return i == 0 && j%2 == 1
	}
	for j := 1; j < n; j++ {
		switch {
		case j%2 == 1:
			if _, err := s.RequestFriend(ctx, users[0].ID, users[j].ID); err != nil {
				t.Fatal(err)
			}
			if _, err := s.RequestFriend(ctx, users[j].ID, users[0].ID); err != nil {
				t.Fatal(err)
			}
		case j%4 == 0:
			if _, err := s.RequestFriend(ctx, users[0].ID, users[j].ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 50 {
				i, j := (g*7+k)%n, (g+k*5)%n
				if g%2 == 1 {
					i = 0
				}
				got, err := s.AreFriends(ctx, users[i].ID, users[j].ID)
				if err != nil {
					errs <- err
					return
				}
				if got != want(i, j) {
					errs <- fmt.Errorf("AreFriends(%d, %d) = %v, want %v", i, j, got, want(i, j))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// A change is seen by the next call.
	if _, err := s.DeleteFriend(ctx, users[1].ID, users[0].ID); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.AreFriends(ctx, users[0].ID, users[1].ID); err != nil || ok {
		t.Fatalf("AreFriends after DeleteFriend = %v, %v; want false", ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AreFriends(ctx, users[0].ID, users[3].ID); !errors.Is(err, model.ErrClosed) {
		t.Fatalf("AreFriends after Close: %v, want ErrClosed", err)
	}
}
