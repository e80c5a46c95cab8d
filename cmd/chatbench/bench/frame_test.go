package bench

import (
	"encoding/binary"
	"strings"
	"testing"
)

// TestScanFrame: the byte scan reads what gjson reads, and what it cannot
// read it leaves to gjson.
func TestScanFrame(t *testing.T) {
	cid := string(appendCID(nil, 3, 17, 123456789))
	tests := []struct {
		name string
		body string
		fast bool // read by fastScanFrame
		want frameInfo
		ok   bool
	}{
		{"ack", `{"msgid":105,"reqid":4503599627370497,"errno":0,"seq":42,"time":1}`, true,
			frameInfo{msgid: 105, reqid: 4503599627370497, hasReqID: true, seq: 42}, true},
		{"error ack", `{"msgid":105,"reqid":7,"errno":429,"errmsg":"slow \"down\"","retry_after":10}`, true,
			frameInfo{msgid: 105, reqid: 7, hasReqID: true, errno: 429}, true},
		{"push", `{"msgid":201,"from":1,"fromname":"a\\","toid":2,"msg":"x\"seq\":9","seq":42,"time":5,"cid":"` + cid + `"}`, true,
			frameInfo{msgid: 201, seq: 42, cid: []byte(cid)}, true},
		{"sorted keys", `{"cid":"` + cid + `","errno":0,"msgid":202,"seq":7}`, true,
			frameInfo{msgid: 202, seq: 7, cid: []byte(cid)}, true},
		{"spaces", ` { "msgid" : 202 , "ok" : true , "seq" : 7 } `, true, frameInfo{msgid: 202, seq: 7}, true},
		{"first key counts", `{"msgid":201,"seq":3,"seq":4}`, true, frameInfo{msgid: 201, seq: 3}, true},
		{"nested", `{"msgid":101,"reqid":2,"errno":0,"user":{"id":5,"seq":9}}`, false,
			frameInfo{msgid: 101, reqid: 2, hasReqID: true}, true},
		{"escaped cid", `{"msgid":201,"seq":3,"cid":"\u0031.2.3"}`, false, frameInfo{msgid: 201, seq: 3, cid: []byte("1.2.3")}, true},
		{"string msgid", `{"msgid":"201","seq":3}`, false, frameInfo{}, false},
		{"no msgid", `{"seq":3}`, false, frameInfo{}, false},
		{"truncated", `{"msgid":201,"seq":3`, false, frameInfo{}, false},
		{"trailing garbage", `{"msgid":201}x`, false, frameInfo{}, false},
		{"unterminated string", `{"msgid":201,"msg":"abc}`, false, frameInfo{}, false},
		{"not an object", `[1,2]`, false, frameInfo{}, false},
		{"empty", ``, false, frameInfo{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var fast frameInfo
			if got := fastScanFrame([]byte(tc.body), &fast); got != tc.fast {
				t.Errorf("fast scan read it: %v, want %v", got, tc.fast)
			}
			var fi frameInfo
			ok := scanFrame([]byte(tc.body), &fi)
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v", ok, tc.ok)
			}
			if ok && (fi.msgid != tc.want.msgid || fi.reqid != tc.want.reqid || fi.hasReqID != tc.want.hasReqID ||
				fi.errno != tc.want.errno || fi.seq != tc.want.seq || string(fi.cid) != string(tc.want.cid)) {
				t.Errorf("got %+v (cid %q), want %+v (cid %q)", fi, fi.cid, tc.want, tc.want.cid)
			}
			if tc.fast && tc.ok {
				var slow frameInfo
				if !slowScanFrame([]byte(tc.body), &slow) || slow.msgid != fi.msgid || slow.reqid != fi.reqid ||
					slow.errno != fi.errno || slow.seq != fi.seq || string(slow.cid) != string(fi.cid) {
					t.Errorf("gjson reads %+v, the scan %+v", slow, fi)
				}
			}
		})
	}
}

// benchFrames are a CHAT push and a ONE_CHAT response as the server writes
// them (64-byte message, chatbench's cid).
func benchFrames() (push, ack []byte) {
	cid := string(appendCID(nil, 123, 4567, 9876543210))
	push = []byte(`{"msgid":201,"from":1001,"fromname":"b1a2b3c4_1001","toid":1002,"msg":"` + strings.Repeat("x", 64) +
		`","seq":4567,"time":1764590000123,"cid":"` + cid + `"}`)
	ack = []byte(`{"msgid":105,"reqid":4503599627374567,"errno":0,"seq":4567,"time":1764590000123}`)
	return push, ack
}

// BenchmarkScanFrame is the reader's per-frame cost: the field scan of a
// push and of an ack, and for comparison the validating gjson reading
// (slowScanFrame: what the client library's reader does with every frame).
func BenchmarkScanFrame(b *testing.B) {
	push, ack := benchFrames()
	for _, f := range []struct {
		name string
		body []byte
		scan func([]byte, *frameInfo) bool
	}{
		{"push", push, scanFrame}, {"push-gjson", push, slowScanFrame},
		{"ack", ack, scanFrame}, {"ack-gjson", ack, slowScanFrame},
	} {
		b.Run(f.name, func(b *testing.B) {
			b.SetBytes(int64(len(f.body)))
			b.ReportAllocs()
			var fi frameInfo
			for b.Loop() {
				if !f.scan(f.body, &fi) {
					b.Fatal("not read")
				}
			}
		})
	}
}

// BenchmarkReadFrames is the reader's whole path over a buffer of frames
// (split, scan, check a push and record its latency).
func BenchmarkReadFrames(b *testing.B) {
	push, _ := benchFrames()
	r := &run{delHist: newShardedHist(), ackHist: newShardedHist()}
	rx := &receiver{r: r}
	lc := &leanConn{r: r, rx: rx}
	raw := binary.BigEndian.AppendUint32(nil, uint32(len(push)))
	raw = append(raw, push...)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	var d delivery
	for b.Loop() {
		lc.frame(raw, 0, &d)
		d.flush(r)
		clear(rx.got) // every push a first delivery
		rx.maxSeq = 0
	}
	if r.st.badPushes.Load() != 0 || r.st.unique.Load() == 0 {
		b.Fatalf("bad %d unique %d", r.st.badPushes.Load(), r.st.unique.Load())
	}
}
