package main

import "testing"

func TestParseProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	for _, c := range []struct {
		in   string
		want int
		err  bool
	}{
		{"", 6, false}, {"auto", 6, false}, {" auto ", 6, false}, {"3", 3, false},
		{"0", 0, true}, {"-1", 0, true}, {"x", 0, true},
	} {
		got, err := parseProcs(c.in, 4, 2)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("parseProcs(%q, 4 cores, 2 loops) = %d, %v; want %d, error %v", c.in, got, err, c.want, c.err)
		}
	}
	t.Setenv("GOMAXPROCS", "2")
	if got, err := parseProcs("", 2, 2); got != 0 || err != nil {
		t.Errorf("with GOMAXPROCS set, empty setting: %d, %v; want 0 (GOMAXPROCS left alone)", got, err)
	}
	if got, _ := parseProcs("auto", 2, 2); got != 4 {
		t.Errorf("with GOMAXPROCS=2 set, auto: %d; want the setting to win (4)", got)
	}
}
