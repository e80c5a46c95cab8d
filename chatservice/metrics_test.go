package chatservice

import "testing"

// TestMetricsBusDropped: the bus's dropped pushes are exported.
func TestMetricsBusDropped(t *testing.T) {
	svc := startTestService(t, newTestService(t))
	mfs, err := svc.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "chat_bus_dropped_total" {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 0 {
				t.Fatalf("chat_bus_dropped_total = %v on a fresh server, want 0", v)
			}
			return
		}
	}
	t.Fatal("no chat_bus_dropped_total among the metrics")
}
