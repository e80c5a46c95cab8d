package redis_test

import (
	"context"
	"testing"
	"time"

	"clusterchat/bus"
	busredis "clusterchat/bus/redis"
	"clusterchat/internal/testenv"
)

const fanOut = 500

// benchPublish measures publishing one payload to 500 users subscribed on
// another node, either with one Publish per user or with one pipelined
// Publish for all; it reports deliveries per second.
func benchPublish(b *testing.B, pipelined bool) {
	r := testenv.RedisForTest(b)
	ctx := context.Background()
	sub := newNode(b, r.URL(), busredis.Options{Options: bus.Options{Node: "sub", Handler: func(int64, []byte) {}}, QueueSize: 1 << 16})
	pub := newNode(b, r.URL(), busredis.Options{Options: bus.Options{Node: "pub"}})
	users := make([]int64, fanOut)
	for i := range users {
		users[i] = int64(i + 1)
		if err := sub.Subscribe(ctx, users[i]); err != nil {
			b.Fatal(err)
		}
	}
	payload := make([]byte, 200)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if pipelined {
			if err := pub.Publish(ctx, users, payload); err != nil {
				b.Fatal(err)
			}
			continue
		}
		for _, u := range users[:] {
			if err := pub.Publish(ctx, []int64{u}, payload); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*fanOut)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkPublishSingle500(b *testing.B)    { benchPublish(b, false) }
func BenchmarkPublishPipelined500(b *testing.B) { benchPublish(b, true) }
