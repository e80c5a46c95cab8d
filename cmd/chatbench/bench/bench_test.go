package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// runBench runs cfg and decodes its JSON line.
func runBench(t *testing.T, cfg Config) (Report, error) {
	t.Helper()
	cfg.JSON, cfg.Quiet = true, true
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := Run(ctx, cfg, &out, &errOut)
	var rep Report
	if out.Len() > 0 {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); jerr != nil {
			t.Fatalf("final line is not JSON: %v\n%s", jerr, out.String())
		}
	}
	t.Logf("summary:\n%s", errOut.String())
	return rep, err
}

func fakeConfig(addr, scenario string) Config {
	c := DefaultConfig()
	c.Scenario = scenario
	c.Addrs = []string{addr}
	c.Duration = 400 * time.Millisecond
	c.Rate = 200
	c.Pairs = 4
	c.GroupSize = 5
	c.Groups = 2
	c.Grace = 500 * time.Millisecond
	c.Timeout = 5 * time.Second
	c.Settle = 10 * time.Millisecond
	return c
}

func TestPairsClean(t *testing.T) {
	s := startFake(t, nil, false)
	cfg := fakeConfig(s.addr(), ScenarioPairs)
	cfg.PIDs = []int{os.Getpid()}
	rep, err := runBench(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// 4 senders × 200/s × 0.4 s = 320 messages (±1 per sender for the random phase).
	if rep.Sent < 310 || rep.Sent > 330 || rep.Acked != rep.Sent {
		t.Errorf("sent %d acked %d, want about 320 all acked", rep.Sent, rep.Acked)
	}
	if rep.Expected != rep.Acked || rep.Delivered != rep.Acked || rep.DeliveredUnique != rep.Acked {
		t.Errorf("expected %d delivered %d unique %d, want all %d", rep.Expected, rep.Delivered, rep.DeliveredUnique, rep.Acked)
	}
	if rep.Lost != 0 || rep.Duplicated != 0 || rep.OutOfOrder != 0 || rep.BadPushes != 0 {
		t.Errorf("lost %d dup %d ooo %d bad %d, want 0", rep.Lost, rep.Duplicated, rep.OutOfOrder, rep.BadPushes)
	}
	if rep.AckLatency.Count != rep.Acked || rep.DeliveryLatency.Count != rep.Acked {
		t.Errorf("latency counts %d/%d, want %d", rep.AckLatency.Count, rep.DeliveryLatency.Count, rep.Acked)
	}
	if rep.AckLatency.P50US <= 0 || rep.AckLatency.MaxUS < rep.AckLatency.P99US {
		t.Errorf("implausible ack latency %+v", rep.AckLatency)
	}
	if rep.AcksPerS < 600 || rep.AcksPerS > 1000 {
		t.Errorf("acks/s %.0f, want about 800", rep.AcksPerS)
	}
	if len(rep.Servers) != 1 || rep.Servers[0].RSSKiB <= 0 {
		t.Errorf("servers %+v, want the RSS of pid %d", rep.Servers, os.Getpid())
	}
	if rep.OtherPushes < int64(cfg.Pairs) { // FRIEND_REQUEST
		t.Errorf("other pushes %d, want ≥ %d", rep.OtherPushes, cfg.Pairs)
	}
}

func TestProxyProtocol(t *testing.T) {
	s := startFake(t, nil, true)
	cfg := fakeConfig(s.addr(), ScenarioPairs)
	cfg.ProxyProtocol = true
	cfg.Pairs, cfg.Duration = 2, 100*time.Millisecond
	rep, err := runBench(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.proxied.Load() != 4 || rep.Acked == 0 || rep.DeliveredUnique != rep.Acked {
		t.Errorf("proxied %d acked %d unique %d", s.proxied.Load(), rep.Acked, rep.DeliveredUnique)
	}
}

func TestServerProfile(t *testing.T) {
	var gotSeconds atomic.Value
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/debug/pprof/profile" {
			http.NotFound(w, req)
			return
		}
		gotSeconds.Store(req.URL.Query().Get("seconds"))
		io.WriteString(w, "PROFILE")
	}))
	defer admin.Close()
	s := startFake(t, nil, false)
	cfg := fakeConfig(s.addr(), ScenarioPairs)
	cfg.PprofAddrs = []string{strings.TrimPrefix(admin.URL, "http://")}
	cfg.PprofSeconds, cfg.PprofDelay, cfg.PprofDir = 10, 0, t.TempDir()
	rep, err := runBench(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Profiles) != 1 {
		t.Fatalf("profiles %q", rep.Profiles)
	}
	if b, err := os.ReadFile(rep.Profiles[0]); err != nil || string(b) != "PROFILE" {
		t.Errorf("profile file: %q %v", b, err)
	}
	if gotSeconds.Load() != "1" { // capped to the 0.4 s phase, at least 1
		t.Errorf("seconds=%v, want 1", gotSeconds.Load())
	}
}

func TestPairsUnpaced(t *testing.T) {
	s := startFake(t, nil, false)
	cfg := fakeConfig(s.addr(), ScenarioPairs)
	cfg.Rate, cfg.InFlight, cfg.Duration = 0, 4, 200*time.Millisecond
	rep, err := runBench(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Acked < 100 || rep.Lost != 0 || rep.DeliveredUnique != rep.Acked {
		t.Errorf("acked %d lost %d unique %d", rep.Acked, rep.Lost, rep.DeliveredUnique)
	}
}

// TestUnpacedLatencyFromSend: unpaced, a message's send→ack latency
// counts from its send, not from the wait for a free slot before it (with
// one in flight, the previous message's round trip): with every ack held
// 20 ms, the median is about 20 ms, not 40.
func TestUnpacedLatencyFromSend(t *testing.T) {
	const hold = 20 * time.Millisecond
	s := startFake(t, nil, false)
	s.chatDelay.Store(int64(hold))
	cfg := fakeConfig(s.addr(), ScenarioPairs)
	cfg.Rate, cfg.InFlight, cfg.Pairs, cfg.Duration = 0, 1, 2, 600*time.Millisecond
	rep, err := runBench(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Acked < 20 || rep.AckLatency == nil {
		t.Fatalf("acked %d, latency %+v", rep.Acked, rep.AckLatency)
	}
	if p50 := time.Duration(rep.AckLatency.P50US) * time.Microsecond; p50 < hold || p50 > hold*3/2 {
		t.Errorf("send→ack p50 %v with acks held %v: want %v to %v", p50, hold, hold, hold*3/2)
	}
}

// TestGoroutineReaders: without epoll every traffic connection has a
// reader goroutine; the checks work the same.
func TestGoroutineReaders(t *testing.T) {
	for _, fault := range []bool{false, true} {
		s := startFake(t, func(seq int64) faultKind {
			if fault && seq%10 == 0 {
				return drop
			}
			return deliver
		}, false)
		cfg := fakeConfig(s.addr(), ScenarioPairs)
		cfg.goroutineReaders = true
		cfg.Grace = 200 * time.Millisecond
		rep, err := runBench(t, cfg)
		switch {
		case !fault && err != nil:
			t.Fatal(err)
		case !fault && (rep.Acked < 300 || rep.DeliveredUnique != rep.Acked || rep.Lost != 0):
			t.Errorf("clean: acked %d unique %d lost %d", rep.Acked, rep.DeliveredUnique, rep.Lost)
		case fault && !errors.Is(err, ErrCheckFailed):
			t.Errorf("drop every 10th: err = %v, want ErrCheckFailed", err)
		case fault && (rep.Lost == 0 || rep.LostInHistory != rep.Lost):
			t.Errorf("drop every 10th: lost %d, in history %d", rep.Lost, rep.LostInHistory)
		}
	}
}

func TestPairsFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault func(int64) faultKind
		check func(t *testing.T, r Report)
	}{
		{"drop every 10th", func(seq int64) faultKind {
			if seq%10 == 0 {
				return drop
			}
			return deliver
		}, func(t *testing.T, r Report) {
			lo, hi := (r.Acked-9*int64(r.Pairs))/10, r.Acked/10
			if r.Lost < lo || r.Lost > hi || r.Lost != r.Expected-r.DeliveredUnique {
				t.Errorf("lost %d, want %d..%d and owed−unique %d", r.Lost, lo, hi, r.Expected-r.DeliveredUnique)
			}
			if r.LostInHistory != r.Lost { // the fake stores every message
				t.Errorf("lost in history %d, want all %d", r.LostInHistory, r.Lost)
			}
			if r.Duplicated != 0 || r.OutOfOrder != 0 {
				t.Errorf("dup %d ooo %d", r.Duplicated, r.OutOfOrder)
			}
		}},
		{"duplicate every 7th", func(seq int64) faultKind {
			if seq%7 == 0 {
				return duplicate
			}
			return deliver
		}, func(t *testing.T, r Report) {
			lo, hi := (r.Acked-6*int64(r.Pairs))/7, r.Acked/7
			if r.Duplicated < lo || r.Duplicated > hi || r.Delivered != r.DeliveredUnique+r.Duplicated {
				t.Errorf("duplicated %d, want %d..%d", r.Duplicated, lo, hi)
			}
			if r.Lost != 0 || r.OutOfOrder != 0 || r.DeliveryLatency.Count != r.DeliveredUnique {
				t.Errorf("lost %d ooo %d latency count %d", r.Lost, r.OutOfOrder, r.DeliveryLatency.Count)
			}
		}},
		{"swap every 5th with the next", func(seq int64) faultKind {
			if seq%5 == 0 {
				return swapNext
			}
			return deliver
		}, func(t *testing.T, r Report) {
			// A held last message is never sent: at most one loss per pair.
			if r.OutOfOrder < r.Acked/5-2*int64(r.Pairs) || r.Lost > int64(r.Pairs) || r.Duplicated != 0 {
				t.Errorf("ooo %d lost %d dup %d (acked %d)", r.OutOfOrder, r.Lost, r.Duplicated, r.Acked)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startFake(t, tc.fault, false)
			cfg := fakeConfig(s.addr(), ScenarioPairs)
			cfg.Grace = 200 * time.Millisecond
			rep, err := runBench(t, cfg)
			if !errors.Is(err, ErrCheckFailed) {
				t.Fatalf("err = %v, want ErrCheckFailed", err)
			}
			if rep.Acked == 0 {
				t.Fatal("no report")
			}
			tc.check(t, rep)
		})
	}
}

// TestHistoryCheck: lost pushes are looked up with HISTORY over several
// pages; messages the server acknowledged but does not have stay lost.
func TestHistoryCheck(t *testing.T) {
	s := startFake(t, func(seq int64) faultKind {
		switch {
		case seq%10 == 0:
			return drop
		case seq%97 == 0:
			return vanish
		}
		return deliver
	}, false)
	cfg := fakeConfig(s.addr(), ScenarioPairs)
	cfg.Pairs, cfg.Rate, cfg.Duration, cfg.Grace = 2, 1500, 500*time.Millisecond, 200*time.Millisecond
	rep, err := runBench(t, cfg)
	if !errors.Is(err, ErrCheckFailed) {
		t.Fatalf("err = %v, want ErrCheckFailed", err)
	}
	if rep.Acked < 1400 {
		t.Fatalf("acked %d, want ~1500 (several HISTORY pages per pair)", rep.Acked)
	}
	perPair := rep.Acked / 2
	wantLost := 2 * (perPair/10 + perPair/97 - perPair/970) // ±2 per pair for the uneven split
	wantVanished := 2 * (perPair / 97)
	if d := rep.Lost - wantLost; d < -6 || d > 6 {
		t.Errorf("lost %d, want about %d", rep.Lost, wantLost)
	}
	if d := rep.Lost - rep.LostInHistory - wantVanished; d < -4 || d > 4 {
		t.Errorf("lost %d, in history %d: %d missing from HISTORY, want about %d", rep.Lost, rep.LostInHistory, rep.Lost-rep.LostInHistory, wantVanished)
	}
}

func TestGroup(t *testing.T) {
	s := startFake(t, nil, false)
	cfg := fakeConfig(s.addr(), ScenarioGroup)
	rep, err := runBench(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Senders != 2 || rep.Users != 10 {
		t.Errorf("senders %d users %d, want 2 and 10", rep.Senders, rep.Users)
	}
	if rep.Acked == 0 || rep.Expected != 4*rep.Acked || rep.DeliveredUnique != rep.Expected || rep.Lost != 0 {
		t.Errorf("acked %d expected %d unique %d lost %d", rep.Acked, rep.Expected, rep.DeliveredUnique, rep.Lost)
	}
}

func TestConns(t *testing.T) {
	s := startFake(t, nil, false)
	cfg := fakeConfig(s.addr(), ScenarioConns)
	cfg.Conns = 40
	cfg.PingEvery = 100 * time.Millisecond
	cfg.PIDs = []int{os.Getpid()}
	rep, err := runBench(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Conns
	if c == nil || c.Open != 40 || c.Dropped != 0 || c.Login.Count != 40 {
		t.Fatalf("conns report %+v", c)
	}
	// 40 conns, one PING each per 100 ms, for 400 ms: about 160.
	if c.Pings < 140 || c.Pings > 170 || c.PingErrors != 0 {
		t.Errorf("pings %d errors %d, want about 160", c.Pings, c.PingErrors)
	}
	if c.RSSEndKiB <= 0 || c.RSSPerConnB <= 0 {
		t.Errorf("rss %+v", c)
	}
}

func TestStorm(t *testing.T) {
	s := startFake(t, nil, false)
	cfg := fakeConfig(s.addr(), ScenarioStorm)
	cfg.Storm = 60
	cfg.Duration = 10 * time.Second
	rep, err := runBench(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := rep.Storm
	if st == nil || st.OK != 60 || st.Failed != 0 || st.Login.Count != 60 || st.TotalMS <= 0 {
		t.Fatalf("storm report %+v", st)
	}
	if float64(st.Login.MaxUS)/1000 > st.TotalMS+1 {
		t.Errorf("max login %d µs beyond total %.1f ms", st.Login.MaxUS, st.TotalMS)
	}
}

func TestSetupFailureIsReported(t *testing.T) {
	s := startFake(t, nil, false)
	cfg := fakeConfig(s.addr(), ScenarioPairs)
	cfg.Prefix = "dup"
	if _, err := runBench(t, cfg); err != nil {
		t.Fatal(err)
	}
	_, err := runBench(t, cfg) // the same names again: REG → 409
	if err == nil || !strings.Contains(err.Error(), "409") || errors.Is(err, ErrCheckFailed) {
		t.Fatalf("err = %v, want a setup error naming 409", err)
	}
}

func TestParseFlags(t *testing.T) {
	good, err := ParseFlags([]string{"--scenario", "group", "--addr", "127.0.0.1:1, 127.0.0.1:2", "--group-size", "10",
		"--groups", "3", "--rate", "5", "--duration", "2s", "--server-pid", "1,2", "--json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if good.Scenario != "group" || len(good.Addrs) != 2 || good.Addrs[1] != "127.0.0.1:2" || good.GroupSize != 10 ||
		good.Groups != 3 || good.Rate != 5 || good.Duration != 2*time.Second || len(good.PIDs) != 2 || !good.JSON {
		t.Errorf("parsed %+v", good)
	}
	bad := [][]string{
		{"--scenario", "nope"},
		{"--addr", "localhost"},
		{"--addr", ""},
		{"--server-pid", "x"},
		{"--server-pid", "-3"},
		{"--pairs", "0"},
		{"--scenario", "group", "--group-size", "1"},
		{"--rate", "-1"},
		{"--duration", "0s"},
		{"--msg-size", "5000"},
		{"--inflight", "0"},
		{"--bogus"},
		{"extra"},
	}
	for _, args := range bad {
		if _, err := ParseFlags(args, io.Discard); !errors.Is(err, ErrUsage) {
			t.Errorf("ParseFlags(%q) = %v, want ErrUsage", args, err)
		}
	}
}

func TestRunRejectsMissingPID(t *testing.T) {
	cfg := fakeConfig("127.0.0.1:1", ScenarioPairs)
	cfg.PIDs = []int{1 << 30}
	if err := Run(context.Background(), cfg, io.Discard, io.Discard); !errors.Is(err, ErrUsage) {
		t.Fatalf("err = %v, want ErrUsage", err)
	}
}

func TestParseChatPush(t *testing.T) {
	cid := string(appendCID(nil, 3, 17, 123456789))
	tests := []struct {
		name  string
		raw   string
		seq   int64
		stamp time.Duration
		ok    bool
	}{
		{"compact", `{"msgid":201,"from":1,"fromname":"a","toid":2,"msg":"xx","seq":42,"time":5,"cid":"` + cid + `"}`, 42, 123456789, true},
		{"spaces (gjson fallback)", `{"msgid": 202, "groupid": 9, "seq": 7, "cid": "` + cid + `"}`, 7, 123456789, true},
		{"no seq", `{"msgid":201,"cid":"` + cid + `"}`, 0, 0, false},
		{"zero seq", `{"msgid":201,"seq":0,"cid":"` + cid + `"}`, 0, 0, false},
		{"foreign cid", `{"msgid":201,"seq":3,"cid":"abc"}`, 3, 0, false},
		{"garbage", `not json`, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seq, st, ok := parseChatPush([]byte(tc.raw))
			if ok != tc.ok || (ok && (seq != tc.seq || st != tc.stamp)) {
				t.Errorf("got %d %v %v, want %d %v %v", seq, st, ok, tc.seq, tc.stamp, tc.ok)
			}
		})
	}
}

func TestBitset(t *testing.T) {
	var a, b bitset
	for _, n := range []int64{1, 2, 64, 65, 1000} {
		if a.set(n) {
			t.Errorf("set(%d) reported present", n)
		}
	}
	if !a.set(64) || !a.has(1000) || a.has(999) || a.has(1<<20) {
		t.Error("membership wrong")
	}
	b.set(2)
	b.set(1000)
	b.set(5000)
	if a.count() != 5 || a.andNotCount(b) != 3 || b.andNotCount(a) != 1 {
		t.Errorf("count %d a\\b %d b\\a %d", a.count(), a.andNotCount(b), b.andNotCount(a))
	}
}

func TestParseProc(t *testing.T) {
	status := "Name:\tchatserver\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\nThreads:\t5\n"
	rss, hwm, err := parseStatus(strings.NewReader(status))
	if err != nil || rss != 10240 || hwm != 20480 {
		t.Errorf("parseStatus = %d %d %v", rss, hwm, err)
	}
	if _, _, err := parseStatus(strings.NewReader("Name:\tkthreadd\n")); err == nil {
		t.Error("no VmRSS: want an error")
	}
	if _, _, err := parseStatus(strings.NewReader("VmRSS:\tlots kB\n")); err == nil {
		t.Error("bad VmRSS: want an error")
	}
	stat := []byte("1234 (chat server) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0")
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3*time.Second {
		t.Errorf("parseStatCPU = %v %v, want 3s", cpu, err)
	}
	if _, err := parseStatCPU([]byte("1234 (x) S 1")); err == nil {
		t.Error("short stat: want an error")
	}
	if _, err := readProc(os.Getpid()); err != nil {
		t.Errorf("readProc(self): %v", err)
	}
}

func TestUsersFile(t *testing.T) {
	s := startFake(t, nil, false)
	path := t.TempDir() + "/users.jsonl"
	cfg := fakeConfig(s.addr(), ScenarioConns)
	cfg.Conns, cfg.UsersFile, cfg.SetupOnly = 30, path, true
	rep, err := runBench(t, cfg)
	if err != nil || rep.Users != 30 || rep.Conns != nil {
		t.Fatalf("setup only: %v, %+v", err, rep)
	}
	s.mu.Lock()
	registered := len(s.byName)
	s.mu.Unlock()

	cfg.SetupOnly, cfg.Conns, cfg.PingEvery = false, 20, 100*time.Millisecond
	rep, err = runBench(t, cfg)
	if err != nil || rep.Conns == nil || rep.Conns.Open != 20 {
		t.Fatalf("conns from the file: %v, %+v", err, rep.Conns)
	}
	cfg.Scenario, cfg.Storm = ScenarioStorm, 30
	if rep, err = runBench(t, cfg); err != nil || rep.Storm == nil || rep.Storm.OK != 30 {
		t.Fatalf("storm from the file: %v, %+v", err, rep.Storm)
	}
	s.mu.Lock()
	if len(s.byName) != registered {
		t.Errorf("%d users registered after setup, %d at the end: the file was not used", registered, len(s.byName))
	}
	s.mu.Unlock()

	cfg.Storm = 31
	if _, err := runBench(t, cfg); !errors.Is(err, ErrUsage) {
		t.Errorf("a file of 30 users for 31: err = %v, want ErrUsage", err)
	}
	if err := os.WriteFile(path, []byte("{\"name\":\"x\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runBench(t, cfg); err == nil || !strings.Contains(err.Error(), "not a user line") {
		t.Errorf("a bad file: err = %v", err)
	}
	cfg.Scenario = ScenarioPairs
	if err := cfg.Validate(); !errors.Is(err, ErrUsage) {
		t.Errorf("--users with pairs: %v, want ErrUsage", err)
	}
}
