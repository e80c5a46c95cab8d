package sqlite_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"clusterchat/model"
	"clusterchat/model/sqlite"
	"clusterchat/model/storetest"
)

// The crash test runs this test binary again as a child (crashChildEnv set)
// that stores messages and prints every acknowledgement; the parent kills it
// with SIGKILL in the middle and checks that every acknowledged message is
// in the file.
const crashChildEnv = "SQLITE_STORE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(crashChildEnv); spec != "" {
		os.Exit(crashChild(spec))
	}
	os.Exit(m.Run())
}

// crashChild parses "path,userA,userB", then sends from 4 goroutines until
// it is killed, printing "ack <cid> <seq>" after each StoreMessage returns.
func crashChild(spec string) int {
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		fmt.Fprintln(os.Stderr, "bad spec", spec)
		return 2
	}
	a, _ := strconv.ParseInt(parts[1], 10, 64)
	b, _ := strconv.ParseInt(parts[2], 10, 64)
	ctx := context.Background()
	s, err := sqlite.Open(ctx, parts[0], sqlite.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				cid := fmt.Sprintf("%d-%d", g, k)
				m, _, err := s.StoreMessage(ctx, model.NewMessage{Conv: model.Direct(a, b), From: a, FromName: "a", Body: cid, CID: cid})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %s %d\n", cid, m.Seq)
				_ = out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return 0
}

func TestSIGKILLLosesNoAcknowledgedMessage(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "chat.db")
	s := open(t, path)
	us := storetest.MustUsers(t, s, "a", "b")
	a, b := us[0], us[1]
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%d", crashChildEnv, path, a.ID, b.ID))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	acked := map[string]int64{}
	sc := bufio.NewScanner(stdout)
	deadline := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() {
		var cid string
		var seq int64
		if _, err := fmt.Sscanf(sc.Text(), "ack %s %d", &cid, &seq); err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		acked[cid] = seq
		if len(acked) == 500 && !killed {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL, its own pid
				t.Fatal(err)
			}
			killed = true
		}
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("the child stopped after %d acknowledgements", len(acked))
	}

	s2 := open(t, path)
	ms, err := s2.Messages(ctx, model.Direct(a.ID, b.ID), 0, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int64{}
	for i, m := range ms {
		if m.Seq != int64(i+1) {
			t.Fatalf("stored seqs have a gap at %d: %d", i+1, m.Seq)
		}
		stored[m.CID] = m.Seq
	}
	for cid, seq := range acked {
		if stored[cid] != seq {
			t.Fatalf("acknowledged %s seq %d is stored as %d", cid, seq, stored[cid])
		}
	}
	t.Logf("%d acknowledged before SIGKILL, %d stored", len(acked), len(ms))
}
