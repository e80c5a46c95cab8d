package main

import "testing"

func TestAutoPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 100}, {1 << 20, 100}, {8 << 20, 100}, {10 << 20, 80}, {12 << 20, 66},
		{16 << 20, 50}, {1 << 30, 50},
	} {
		if got := autoPercent(c.live); got != c.want {
			t.Errorf("autoPercent(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

func TestParseGCSettings(t *testing.T) {
	t.Setenv("GOGC", "")
	for _, c := range []struct {
		in   string
		want gcPolicy
		err  bool
	}{
		{"", gcPolicy{auto: true}, false}, {"auto", gcPolicy{auto: true}, false},
		{"off", gcPolicy{percent: -1}, false}, {"75", gcPolicy{percent: 75}, false},
		{"0", gcPolicy{}, true}, {"x", gcPolicy{}, true},
	} {
		got, set, err := parseGCPolicy(c.in)
		if (err != nil) != c.err || (err == nil && (got != c.want || !set)) {
			t.Errorf("parseGCPolicy(%q) = %+v, %v, %v", c.in, got, set, err)
		}
	}
	t.Setenv("GOGC", "200")
	if _, set, err := parseGCPolicy(""); set || err != nil {
		t.Errorf("with GOGC set, empty setting: set %v, err %v; want GOGC left alone", set, err)
	}
	if p, set, _ := parseGCPolicy("auto"); !set || !p.auto {
		t.Errorf("with GOGC set, auto: %+v %v; want the setting to win", p, set)
	}
	for in, want := range map[string]int64{"": 0, "0": 0, "1000": 1000, "512MiB": 512 << 20, "2GiB": 2 << 30, "64 KiB": 64 << 10, "100B": 100} {
		if got, err := parseMemoryLimit(in); err != nil || got != want {
			t.Errorf("parseMemoryLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "1XB", "lots", "9999999999TiB"} {
		if _, err := parseMemoryLimit(in); err == nil {
			t.Errorf("parseMemoryLimit(%q): no error", in)
		}
	}
}
