package chatservice

import (
	"context"
	"fmt"
	"testing"

	"clusterchat/model"
	"clusterchat/model/storetest"
)

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

// TestMetricsStore: the store's writer and checkpoint counters are
// exported, and move when a message is stored.
func TestMetricsStore(t *testing.T) {
	svc := startTestService(t, newTestService(t))
	us := storetest.MustUsers(t, svc.store, "ann", "bob")
	for i := range 3 {
		m := model.NewMessage{Conv: model.Direct(us[0].ID, us[1].ID), From: us[0].ID, FromName: "ann", Body: "hi", CID: fmt.Sprint(i)}
		if _, _, err := svc.store.StoreMessage(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	values := func() map[string]float64 {
		mfs, err := svc.Metrics().Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		v := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				name := mf.GetName()
				for _, l := range m.GetLabel() {
					name += "{" + l.GetValue() + "}"
				}
				v[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		return v
	}
	v := values()
	if v["chat_store_batches_total"] < 1 || v["chat_store_batch_calls_total{stored}"] != 3 {
		t.Fatalf("after 3 messages: batches %v, stored %v; want >= 1 and 3",
			v["chat_store_batches_total"], v["chat_store_batch_calls_total{stored}"])
	}
	for _, name := range []string{"chat_sqlite_checkpoints_total{background}", "chat_sqlite_checkpoints_total{writer}",
		"chat_sqlite_checkpoint_errors_total", "chat_sqlite_wal_frames"} {
		if _, ok := v[name]; !ok {
			t.Errorf("no %s among the metrics", name)
		}
	}
	// The checkpointer runs every 100 ms by default.
	waitFor(t, "a background checkpoint in chat_sqlite_checkpoints_total", func() bool {
		return values()["chat_sqlite_checkpoints_total{background}"] > 0
	})
}
