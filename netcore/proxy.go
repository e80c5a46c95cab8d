package netcore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net"

	"github.com/pires/go-proxyproto"
)

var (
	proxyV1Prefix = []byte("PROXY ")
	proxyV2Sig    = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

const proxyV1Max = 107 // longest v1 header, CRLF included

// proxyHeaderLen returns the length of the complete PROXY header at the
// start of b, 0 if more bytes are needed, or an error.
func proxyHeaderLen(b []byte) (int, error) {
	n := min(len(b), len(proxyV2Sig))
	if bytes.Equal(b[:n], proxyV2Sig[:n]) {
		if len(b) < 16 {
			return 0, nil
		}
		return 16 + int(binary.BigEndian.Uint16(b[14:16])), nil
	}
	n = min(len(b), len(proxyV1Prefix))
	if !bytes.Equal(b[:n], proxyV1Prefix[:n]) {
		return 0, fmt.Errorf("no PROXY signature: %w", ErrBadProxyHeader)
	}
	if i := bytes.Index(b[:min(len(b), proxyV1Max)], crlf); i >= 0 {
		return i + 2, nil
	}
	if len(b) >= proxyV1Max {
		return 0, fmt.Errorf("v1 header without CRLF in %d bytes: %w", proxyV1Max, ErrBadProxyHeader)
	}
	return 0, nil
}

// parseProxyHeader parses a complete header and returns the client address
// (nil for LOCAL / UNKNOWN headers).
func parseProxyHeader(b []byte) (net.Addr, error) {
	h, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(b), max(len(b), 16)))
	if err != nil {
		return nil, fmt.Errorf("parse: %w: %w", ErrBadProxyHeader, err)
	}
	if h.Command.IsLocal() || h.SourceAddr == nil {
		return nil, nil
	}
	return h.SourceAddr, nil
}

// readProxy consumes the PROXY header when complete, then fires OnConnect.
// Loop only.
func (c *Conn) readProxy() {
	buf, err := c.gc.Peek(-1)
	if err != nil {
		return
	}
	n, err := proxyHeaderLen(buf)
	if err == nil && n > 0 && n > len(buf) {
		n = 0 // v2 body not complete
	}
	if err == nil && n > 0 {
		var addr net.Addr
		if addr, err = parseProxyHeader(buf[:n]); err == nil {
			c.mu.Lock()
			if addr != nil {
				c.remote = addr
			}
			var t *Timer
			if c.extra != nil {
				t = c.extra.proxyTimer
				c.extra.proxyTimer = nil
			}
			c.mu.Unlock()
			_, _ = c.gc.Discard(n)
			c.proxyPending = false
			t.Stop()
			c.connect()
			return
		}
	}
	if err != nil {
		c.srv().log.Debug("netcore: bad PROXY header", "conn", c.id, "remote", c.RemoteAddr(), "err", err)
		_, _ = c.gc.Discard(-1)
		c.closeOnLoop(ReasonProtocol)
	}
}
