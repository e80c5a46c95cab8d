package chatservice

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"clusterchat/bus"
	"clusterchat/chatservice/protocol"
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
	if d, ok := s.bus.(bus.DropCounter); ok {
		m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "chat_bus_dropped_total",
			Help: "Pushes from the bus dropped because its delivery queue was full (clients fill the gap with HISTORY)."},
			func() float64 { return float64(d.DroppedPayloads()) }))
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
