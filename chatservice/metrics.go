package chatservice

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"clusterchat/bus"
	"clusterchat/chatservice/protocol"
	"clusterchat/model"
)

// Metrics are the service's Prometheus metrics, on a registry of its own
// (no global state): serve them with promhttp.HandlerFor(m.Registry, ...).
type Metrics struct {
	Registry     *prometheus.Registry
	messages     prometheus.Counter
	pushes       prometheus.Counter
	storeErrors  prometheus.Counter
	busErrors    prometheus.Counter
	errors       *prometheus.CounterVec
	closes       *prometheus.CounterVec
	requests     *prometheus.HistogramVec
	storeLatency prometheus.Histogram

	// reqObs caches requests' observer of each request msgid (1-99),
	// filled on first use so that only requests seen are exported.
	reqObs [100]atomic.Pointer[prometheus.Observer]
}

func newMetrics() *Metrics {
	m := &Metrics{
		Registry:     prometheus.NewRegistry(),
		messages:     prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_messages_stored_total", Help: "Chat messages stored (retries not counted)."}),
		pushes:       prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_pushes_total", Help: "Pushes written to local sessions."}),
		storeErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_store_errors_total", Help: "Store calls that failed (answered 503)."}),
		busErrors:    prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_bus_errors_total", Help: "Bus calls that failed."}),
		errors:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_errors_total", Help: "Error responses and ERROR pushes by errno."}, []string{"errno"}),
		closes:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_connection_closes_total", Help: "Closed connections by reason."}, []string{"reason"}),
		requests:     prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "chat_request_seconds", Help: "Request handling time by request.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"request"}),
		storeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_store_message_seconds", Help: "Time to store one message durably.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
	}
	m.Registry.MustRegister(m.messages, m.pushes, m.storeErrors, m.busErrors, m.errors, m.closes, m.requests, m.storeLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// bind adds the gauges that read the service's live state.
func (m *Metrics) bind(s *Service) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chat_connections", Help: "Open connections."},
			func() float64 { return float64(s.server.Stats().Conns) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chat_sessions", Help: "Logged-in connections."},
			func() float64 { _, n := s.reg.count(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chat_users_online_here", Help: "Users with a session on this server."},
			func() float64 { n, _ := s.reg.count(); return float64(n) }),
		// Read from netcore's per-loop counters: no shared counter to bump per frame.
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "chat_frames_in_total", Help: "Frames received."},
			func() float64 { return float64(s.server.Stats().FramesIn) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "chat_bytes_in_total", Help: "Bytes received."},
			func() float64 { return float64(s.server.Stats().BytesIn) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "chat_bytes_out_total", Help: "Bytes sent."},
			func() float64 { return float64(s.server.Stats().BytesOut) }),
	)
	if c := newStoreCollector(s.store); c != nil {
		m.Registry.MustRegister(c)
	}
	if d, ok := s.bus.(bus.DropCounter); ok {
		m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "chat_bus_dropped_total",
			Help: "Pushes from the bus dropped because its delivery queue was full (clients fill the gap with HISTORY)."},
			func() float64 { return float64(d.DroppedPayloads()) }))
	}
}

// storeCollector exports the store's own counters, read once per scrape:
// its batching writer's (model/sqlite, model/mysql) and SQLite's WAL
// checkpoints. chat_store_batch_calls_total over chat_store_batches_total
// is the writer's mean batch size; the writer's checkpoint seconds are
// time in which it stored nothing.
type storeCollector struct {
	writer      interface{ Stats() model.WriterStats }
	checkpoints interface{ CheckpointStats() model.CheckpointStats }
	batches     *prometheus.Desc
	calls       *prometheus.Desc
	ckpts       *prometheus.Desc
	ckptSeconds *prometheus.Desc
	ckptBusy    *prometheus.Desc
	ckptErrors  *prometheus.Desc
	walFrames   *prometheus.Desc
}

// newStoreCollector returns the collector of st's counters, or nil when st
// keeps none.
func newStoreCollector(st model.Store) *storeCollector {
	c := &storeCollector{
		batches: prometheus.NewDesc("chat_store_batches_total", "Batch transactions run by the store's writer.", nil, nil),
		calls: prometheus.NewDesc("chat_store_batch_calls_total",
			"Calls answered by the store's writer, by result: stored, dup (a retry answered with the original), ack, failed (with its whole transaction); a call refused on its own (not a member, no such group) is not counted.", []string{"result"}, nil),
		ckpts: prometheus.NewDesc("chat_sqlite_checkpoints_total",
			"SQLite WAL checkpoints, by who ran them: background (the checkpointer) or writer (between batches, so that the WAL starts over).", []string{"by"}, nil),
		ckptSeconds: prometheus.NewDesc("chat_sqlite_checkpoint_seconds_total", "Time spent in SQLite WAL checkpoints, by who ran them.", []string{"by"}, nil),
		ckptBusy:    prometheus.NewDesc("chat_sqlite_checkpoint_busy_total", "SQLite WAL checkpoints that found another one running.", nil, nil),
		ckptErrors:  prometheus.NewDesc("chat_sqlite_checkpoint_errors_total", "SQLite WAL checkpoints that failed.", nil, nil),
		walFrames:   prometheus.NewDesc("chat_sqlite_wal_frames", "Size of the SQLite WAL, in pages, at the last checkpoint.", nil, nil),
	}
	c.writer, _ = st.(interface{ Stats() model.WriterStats })
	c.checkpoints, _ = st.(interface{ CheckpointStats() model.CheckpointStats })
	if c.writer == nil && c.checkpoints == nil {
		return nil
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	if c.writer != nil {
		ch <- c.batches
		ch <- c.calls
	}
	if c.checkpoints != nil {
		for _, d := range []*prometheus.Desc{c.ckpts, c.ckptSeconds, c.ckptBusy, c.ckptErrors, c.walFrames} {
			ch <- d
		}
	}
}

// Collect implements prometheus.Collector.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if c.writer != nil {
		w := c.writer.Stats()
		counter(c.batches, float64(w.Batches))
		counter(c.calls, float64(w.Messages), "stored")
		counter(c.calls, float64(w.Dups), "dup")
		counter(c.calls, float64(w.Acks), "ack")
		counter(c.calls, float64(w.Failed), "failed")
	}
	if c.checkpoints != nil {
		k := c.checkpoints.CheckpointStats()
		counter(c.ckpts, float64(k.Background), "background")
		counter(c.ckpts, float64(k.Restarts), "writer")
		counter(c.ckptSeconds, k.BackgroundSeconds, "background")
		counter(c.ckptSeconds, k.RestartSeconds, "writer")
		counter(c.ckptBusy, float64(k.Busy))
		counter(c.ckptErrors, float64(k.Errors))
		ch <- prometheus.MustNewConstMetric(c.walFrames, prometheus.GaugeValue, float64(k.WALFrames))
	}
}

func (m *Metrics) observeRequest(msgid int, d time.Duration) {
	if msgid < 0 || msgid >= len(m.reqObs) {
		m.requestObserver(msgid).Observe(d.Seconds())
		return
	}
	o := m.reqObs[msgid].Load()
	if o == nil {
		obs := m.requestObserver(msgid)
		o = &obs
		m.reqObs[msgid].Store(o)
	}
	(*o).Observe(d.Seconds())
}

func (m *Metrics) requestObserver(msgid int) prometheus.Observer {
	name := protocol.Name(msgid)
	if name == "" {
		name = "unknown"
	}
	return m.requests.WithLabelValues(name)
}
