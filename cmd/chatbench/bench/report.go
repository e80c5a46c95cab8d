package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Report is the result of one run; it is printed as one JSON line with
// --json. Latencies are in microseconds; send→ack and send→delivery are
// measured from the time a message was due (paced runs), so time spent
// waiting for a free slot of the in-flight window counts; only the pacer's
// timer lateness after a sleep is left out.
type Report struct {
	Scenario string   `json:"scenario"`
	Addrs    []string `json:"addrs"`
	Started  string   `json:"started"` // RFC 3339, UTC
	Prefix   string   `json:"prefix"`  // user names are PREFIX_i
	Users    int      `json:"users"`
	SetupS   float64  `json:"setup_s"`
	ElapsedS float64  `json:"elapsed_s"`

	// pairs and group
	Pairs         int     `json:"pairs,omitempty"`
	GroupSize     int     `json:"group_size,omitempty"`
	Groups        int     `json:"groups,omitempty"`
	Senders       int     `json:"senders,omitempty"`
	RatePerSender float64 `json:"rate_per_sender,omitempty"`
	OfferedPerS   float64 `json:"offered_per_s,omitempty"`
	DurationS     float64 `json:"duration_s,omitempty"`
	InFlight      int     `json:"inflight,omitempty"`
	MsgSize       int     `json:"msg_size,omitempty"`

	Sent             int64            `json:"sent"`
	Acked            int64            `json:"acked"`
	Errors           map[string]int64 `json:"errors"`    // by errno, or timeout/closed/other
	Expected         int64            `json:"expected"`  // deliveries owed: acked × recipients
	Delivered        int64            `json:"delivered"` // chat pushes received, duplicates included
	DeliveredUnique  int64            `json:"delivered_unique"`
	Lost             int64            `json:"lost"`            // acked, never pushed to a recipient (per recipient)
	LostInHistory    int64            `json:"lost_in_history"` // of those, found by the recipient with HISTORY (push lost, message stored)
	Duplicated       int64            `json:"duplicated"`
	OutOfOrder       int64            `json:"out_of_order"`
	DeliveredUnacked int64            `json:"delivered_unacked"` // delivered, but the send failed or timed out
	DuplicateAcks    int64            `json:"duplicate_acks"`    // one seq acknowledged twice
	OtherPushes      int64            `json:"other_pushes"`      // FRIEND_ADDED, GROUP_EVENT, ...
	BadPushes        int64            `json:"bad_pushes"`        // chat pushes chatbench could not parse
	AcksPerS         float64          `json:"acks_per_s"`
	DeliveriesPerS   float64          `json:"deliveries_per_s"`
	AckLatency       *Latency         `json:"send_ack,omitempty"`
	DeliveryLatency  *Latency         `json:"send_delivery,omitempty"`
	PacerLag         *Latency         `json:"pacer_lag,omitempty"` // send − due time (paced runs): timer lateness and full-window waits

	Conns *ConnsReport `json:"conns,omitempty"`
	Storm *StormReport `json:"storm,omitempty"`

	Servers   []ServerStat `json:"servers"`            // --server-pid, over the measured window
	Profiles  []string     `json:"profiles,omitempty"` // server CPU profiles written (--pprof)
	BenchCPUS float64      `json:"bench_cpu_s"`        // chatbench's own CPU time, whole run
	// BenchPeakRSSKiB is chatbench's own peak RSS (VmHWM).
	BenchPeakRSSKiB int64 `json:"bench_peak_rss_kib"`
}

// ServerStat is one --server-pid at the end of the measured window.
type ServerStat struct {
	PID    int     `json:"pid"`
	RSSKiB int64   `json:"rss_kib"`
	HWMKiB int64   `json:"hwm_kib"` // peak RSS since the server started
	CPUS   float64 `json:"cpu_s"`   // CPU time used in the window
	CPUPct float64 `json:"cpu_pct"` // of one core
}

// ConnsReport is the conns scenario's result.
type ConnsReport struct {
	Conns            int      `json:"conns"`
	Open             int64    `json:"open"`
	Dropped          int64    `json:"dropped"`
	ConnectS         float64  `json:"connect_s"`
	Login            *Latency `json:"login"` // connect + token LOGIN
	Ping             *Latency `json:"ping"`
	Pings            int64    `json:"pings"`
	PingErrors       int64    `json:"ping_errors"`
	RSSBeforeKiB     int64    `json:"rss_before_kib"` // all servers, before the connections
	RSSConnectedKiB  int64    `json:"rss_connected_kib"`
	RSSEndKiB        int64    `json:"rss_end_kib"`
	RSSPerConnB      float64  `json:"rss_per_conn_b"`       // RSS at the end / conns
	RSSDeltaPerConnB float64  `json:"rss_delta_per_conn_b"` // (end − before) / conns
}

// StormReport is the storm scenario's result.
type StormReport struct {
	Clients  int      `json:"clients"`
	OK       int64    `json:"ok"`
	Failed   int64    `json:"failed"`
	Retries  int64    `json:"retries"`
	TotalMS  float64  `json:"total_ms"` // release → the last client logged in
	Login    *Latency `json:"login"`    // release → logged in, per client
	Attempt  *Latency `json:"attempt"`  // the successful attempt's connect + LOGIN
	Deadline string   `json:"deadline"`
}

func (r *Report) writeJSON(w io.Writer) error {
	if r.Errors == nil {
		r.Errors = map[string]int64{}
	}
	if r.Servers == nil {
		r.Servers = []ServerStat{}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func latText(l *Latency) string {
	if l == nil || l.Count == 0 {
		return "-"
	}
	ms := func(us int64) string { return fmt.Sprintf("%.2f", float64(us)/1000) }
	return fmt.Sprintf("p50 %s  p99 %s  p99.9 %s  max %s ms  (n=%d)", ms(l.P50US), ms(l.P99US), ms(l.P999US), ms(l.MaxUS), l.Count)
}

func (r *Report) writeHuman(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s  addrs %s  users %d  setup %.1fs  started %s\n",
		r.Scenario, strings.Join(r.Addrs, ","), r.Users, r.SetupS, r.Started)
	switch {
	case r.Conns == nil && r.Storm == nil && (r.Scenario == ScenarioConns || r.Scenario == ScenarioStorm):
		fmt.Fprintf(&b, "setup     %d users registered and logged in (--setup-only)\n", r.Users)
	case r.Conns != nil:
		c := r.Conns
		fmt.Fprintf(&b, "conns     %d held (%d dropped), connected in %.2fs, %d pings (%d errors)\n",
			c.Conns, c.Dropped, c.ConnectS, c.Pings, c.PingErrors)
		fmt.Fprintf(&b, "login     %s\n", latText(c.Login))
		fmt.Fprintf(&b, "ping      %s\n", latText(c.Ping))
		if len(r.Servers) > 0 {
			fmt.Fprintf(&b, "rss       before %.1f MiB, connected %.1f MiB, end %.1f MiB: %.0f B/conn (%.0f B/conn over the baseline)\n",
				float64(c.RSSBeforeKiB)/1024, float64(c.RSSConnectedKiB)/1024, float64(c.RSSEndKiB)/1024, c.RSSPerConnB, c.RSSDeltaPerConnB)
		}
	case r.Storm != nil:
		s := r.Storm
		fmt.Fprintf(&b, "storm     %d clients: %d logged in, %d failed, %d retries; all done in %.0f ms\n",
			s.Clients, s.OK, s.Failed, s.Retries, s.TotalMS)
		fmt.Fprintf(&b, "login     %s  (from the release)\n", latText(s.Login))
		fmt.Fprintf(&b, "attempt   %s  (connect + LOGIN)\n", latText(s.Attempt))
	default:
		shape := fmt.Sprintf("%d pairs", r.Pairs)
		if r.GroupSize > 0 {
			shape = fmt.Sprintf("%d groups of %d", r.Groups, r.GroupSize)
		}
		rate := "unpaced"
		if r.RatePerSender > 0 {
			rate = fmt.Sprintf("%g/s per sender (offered %g/s)", r.RatePerSender, r.OfferedPerS)
		}
		fmt.Fprintf(&b, "load      %s, %d senders, %s, %gs, inflight %d, %d-byte messages\n",
			shape, r.Senders, rate, r.DurationS, r.InFlight, r.MsgSize)
		fmt.Fprintf(&b, "messages  sent %d  acked %d  errors %d  → %.0f acks/s\n", r.Sent, r.Acked, r.Sent-r.Acked, r.AcksPerS)
		fmt.Fprintf(&b, "delivery  owed %d  delivered %d (unique %d)  → %.0f deliveries/s\n",
			r.Expected, r.Delivered, r.DeliveredUnique, r.DeliveriesPerS)
		fmt.Fprintf(&b, "checks    lost %d (%d of them found with HISTORY)  duplicated %d  out-of-order %d  delivered-unacked %d  duplicate-acks %d\n",
			r.Lost, r.LostInHistory, r.Duplicated, r.OutOfOrder, r.DeliveredUnacked, r.DuplicateAcks)
		fmt.Fprintf(&b, "send→ack  %s\n", latText(r.AckLatency))
		fmt.Fprintf(&b, "send→dlv  %s\n", latText(r.DeliveryLatency))
		fmt.Fprintf(&b, "pacer lag %s\n", latText(r.PacerLag))
	}
	if len(r.Errors) > 0 {
		parts := make([]string, 0, len(r.Errors))
		for _, k := range sortedKeys(r.Errors) {
			parts = append(parts, fmt.Sprintf("%s×%d", k, r.Errors[k]))
		}
		fmt.Fprintf(&b, "errors    %s\n", strings.Join(parts, " "))
	}
	for _, s := range r.Servers {
		fmt.Fprintf(&b, "server    pid %d: rss %.1f MiB (peak %.1f MiB), cpu %.2fs (%.0f%% of a core)\n",
			s.PID, float64(s.RSSKiB)/1024, float64(s.HWMKiB)/1024, s.CPUS, s.CPUPct)
	}
	for _, p := range r.Profiles {
		fmt.Fprintf(&b, "profile   %s (go tool pprof -top %s)\n", p, p)
	}
	fmt.Fprintf(&b, "bench     cpu %.2fs over %.1fs, peak rss %.1f MiB\n", r.BenchCPUS, r.ElapsedS, float64(r.BenchPeakRSSKiB)/1024)
	_, _ = io.WriteString(w, b.String())
}
