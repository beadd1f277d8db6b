package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/gorilla/websocket"
	"github.com/kpf-dev/kpf/internal/readbatch"
	"github.com/moby/spdystream/spdy"
	pfconst "k8s.io/apimachinery/pkg/util/portforward"
	"k8s.io/client-go/rest"
	wstransport "k8s.io/client-go/transport/websocket"
)

// minimalForwarder is the cheapest forwarder a port-forward path allows,
// WebSocket or SPDY, as a floor to measure kpf against: it is not a
// product. Each client gets a port-forward connection of its own with one
// stream pair, and one goroutine reads the tunnel: it parses the
// WebSocket (if any) and SPDY frames in place and writes each data
// frame's payload to the client, with no multiplexing, no goroutine
// hand-off and no allocation per frame. Its socket batches reads as kpf's
// do (internal/readbatch). What it leaves out (several clients per connection,
// health checks, pings, spares, reconnection) costs kpf little per byte,
// so a single-stream transfer through it shows what any forwarder could
// reach on this path.
type minimalForwarder struct {
	// spdy selects the SPDY transport: the upgraded connection carries
	// the SPDY frames with no WebSocket framing around them.
	spdy bool
	// ctx ends with close, and with it any port-forward being dialed.
	ctx    context.Context
	cancel context.CancelFunc
	cfg    *rest.Config
	url    string
	port   int
	ln     net.Listener
	log    *slog.Logger
	wg     sync.WaitGroup
}

// SPDY stream ids of the one stream pair, as a client opens them.
const (
	minimalErrorStream = 1
	minimalDataStream  = 3
)

// startMinimal listens on a loopback port and forwards each connection to
// port of the pod, over WebSocket or, with useSPDY, SPDY.
func startMinimal(cfg *rest.Config, ns, pod string, port int, useSPDY bool, log *slog.Logger) (*minimalForwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("minimal forwarder: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &minimalForwarder{
		spdy: useSPDY, ctx: ctx, cancel: cancel, cfg: cfg, port: port, ln: ln, log: log,
		url: fmt.Sprintf("%s/api/v1/namespaces/%s/pods/%s/portforward", cfg.Host, ns, pod),
	}
	m.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			m.wg.Go(func() {
				defer c.Close()
				if err := m.forward(c); err != nil {
					m.log.Warn("minimal forwarder", "err", err)
				}
			})
		}
	})
	return m, nil
}

func (m *minimalForwarder) addr() string { return m.ln.Addr().String() }

// close stops listening and waits for the connections to end (the
// benchmark's clients close theirs).
func (m *minimalForwarder) close() {
	m.cancel()
	m.ln.Close()
	m.wg.Wait()
}

// minimalTunnel is one port-forward connection of the minimal forwarder:
// write sends frames, body reads the SPDY frames the server sends.
type minimalTunnel struct {
	write func(frames []byte) error
	body  io.Reader
	close func() error
}

// forward carries one client connection over a port-forward connection of
// its own.
func (m *minimalForwarder) forward(c net.Conn) error {
	dial := m.dialWebSocket
	if m.spdy {
		dial = m.dialSPDY
	}
	t, err := dial()
	if err != nil {
		return fmt.Errorf("port-forward: %w", err)
	}
	defer t.close()
	opening, err := m.openingFrames()
	if err != nil {
		return err
	}
	if err := t.write(opening); err != nil {
		return err
	}
	var up sync.WaitGroup
	up.Go(func() { m.upload(c, t.write) })
	err = m.download(t.body, c)
	t.close()
	c.Close()
	up.Wait()
	return err
}

// dialWebSocket opens a port-forward connection on the WebSocket
// transport, each write a WebSocket message.
func (m *minimalForwarder) dialWebSocket() (minimalTunnel, error) {
	rt, holder, err := wstransport.RoundTripperFor(m.cfg)
	if err != nil {
		return minimalTunnel{}, err
	}
	req, err := http.NewRequestWithContext(m.ctx, http.MethodGet, m.url, nil)
	if err != nil {
		return minimalTunnel{}, err
	}
	ws, err := wstransport.Negotiate(rt, holder, req, pfconst.WebsocketsSPDYTunnelingPortForwardV1)
	if err != nil {
		return minimalTunnel{}, err
	}
	// The server sends nothing before the streams are open, so gorilla's
	// reader holds no bytes: the tunnel can be read below it.
	raw := ws.UnderlyingConn()
	tunnel := readbatch.Wrap(raw, readbatch.New(raw))
	return minimalTunnel{
		write: func(frames []byte) error { return ws.WriteMessage(websocket.BinaryMessage, frames) },
		body:  &wsPayload{r: bufio.NewReaderSize(tunnel, 64<<10)},
		close: ws.Close,
	}, nil
}

// dialSPDY opens a port-forward connection on the SPDY transport.
func (m *minimalForwarder) dialSPDY() (minimalTunnel, error) {
	conn, r, err := m.upgradeSPDY()
	if err != nil {
		return minimalTunnel{}, err
	}
	return minimalTunnel{
		write: func(frames []byte) error {
			_, err := conn.Write(frames)
			return err
		},
		body:  r,
		close: conn.Close,
	}, nil
}

// errCaptured stops a request at the innermost round tripper.
var errCaptured = errors.New("request captured")

// captureRoundTripper keeps the request it is given, as the config's
// wrappers (authentication, user agent) made it, instead of sending it.
type captureRoundTripper struct{ req *http.Request }

func (c *captureRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	c.req = r
	return nil, errCaptured
}

// upgradeSPDY opens a TLS connection to the API server and upgrades it to
// a SPDY port-forward connection, by hand so that the frames can be read
// and written on the TLS connection itself. It returns the connection and a reader
// of it that holds any bytes read past the response.
func (m *minimalForwarder) upgradeSPDY() (net.Conn, *bufio.Reader, error) {
	capture := &captureRoundTripper{}
	rt, err := rest.HTTPWrappersForConfig(m.cfg, capture)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(m.ctx, http.MethodPost, m.url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	req.Header.Set("X-Stream-Protocol-Version", "portforward.k8s.io")
	if _, err := rt.RoundTrip(req); !errors.Is(err, errCaptured) {
		return nil, nil, fmt.Errorf("prepare the request: %v", err)
	}
	tlsCfg, err := rest.TLSConfigFor(m.cfg)
	if err != nil {
		return nil, nil, err
	}
	if tlsCfg == nil {
		return nil, nil, errors.New("the minimal SPDY forwarder needs an https API server")
	}
	tlsCfg = tlsCfg.Clone()
	tlsCfg.NextProtos = []string{"http/1.1"}
	conn, err := (&tls.Dialer{Config: tlsCfg}).DialContext(m.ctx, "tcp", req.URL.Host)
	if err != nil {
		return nil, nil, err
	}
	if err := capture.req.Write(conn); err != nil {
		conn.Close()
		return nil, nil, err
	}
	raw := readbatch.Wrap(conn, readbatch.New(conn))
	r := bufio.NewReaderSize(raw, 64<<10)
	resp, err := http.ReadResponse(r, capture.req)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return nil, nil, fmt.Errorf("upgrade: %s", resp.Status)
	}
	return conn, r, nil
}

// openingFrames returns the frames that open the error and data streams
// of request 0.
func (m *minimalForwarder) openingFrames() ([]byte, error) {
	var out bytes.Buffer
	framer, err := spdy.NewFramer(&out, nil)
	if err != nil {
		return nil, err
	}
	for _, s := range []struct {
		id  spdy.StreamId
		typ string
	}{{minimalErrorStream, "error"}, {minimalDataStream, "data"}} {
		h := http.Header{}
		h.Set("streamType", s.typ)
		h.Set("port", strconv.Itoa(m.port))
		h.Set("requestID", "0")
		if err := framer.WriteFrame(&spdy.SynStreamFrame{StreamId: s.id, Headers: h}); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

// upload sends what the client writes as data frames, one write (one
// WebSocket message) each, and the data stream's FIN when the client is
// done.
func (m *minimalForwarder) upload(c net.Conn, write func(frame []byte) error) {
	buf := make([]byte, 8+32<<10)
	for {
		n, err := c.Read(buf[8:])
		fin := err != nil
		binary.BigEndian.PutUint32(buf[0:], minimalDataStream)
		binary.BigEndian.PutUint32(buf[4:], uint32(n))
		if fin {
			buf[4] = 1 // FLAG_FIN
		}
		if write(buf[:8+n]) != nil || fin {
			return
		}
	}
}

// download reads the tunnel's SPDY frames from body and writes the data
// stream's payload to the client until the stream ends.
func (m *minimalForwarder) download(body io.Reader, c net.Conn) error {
	var hdr [8]byte
	payload := make([]byte, 64<<10)
	for {
		if _, err := io.ReadFull(body, hdr[:]); err != nil {
			return fmt.Errorf("read a frame: %w", err)
		}
		length := int(binary.BigEndian.Uint32(hdr[4:]) & 0xffffff)
		if length > len(payload) {
			payload = make([]byte, length)
		}
		if _, err := io.ReadFull(body, payload[:length]); err != nil {
			return fmt.Errorf("read a frame: %w", err)
		}
		fin := hdr[4]&1 != 0
		if hdr[0]&0x80 != 0 { // a control frame
			if binary.BigEndian.Uint16(hdr[2:4]) == 3 { // RST_STREAM
				return errors.New("the server reset a stream")
			}
			continue
		}
		switch binary.BigEndian.Uint32(hdr[:4]) {
		case minimalErrorStream:
			if length > 0 {
				return fmt.Errorf("port-forward: %s", payload[:length])
			}
		case minimalDataStream:
			if length > 0 {
				if _, err := c.Write(payload[:length]); err != nil {
					return nil // the client is gone
				}
			}
			if fin {
				return nil
			}
		}
	}
}

// wsPayload reads the payload of a server's WebSocket data frames (the
// tunnel's byte stream), skipping control frames.
type wsPayload struct {
	r      *bufio.Reader
	remain int64
}

func (w *wsPayload) Read(p []byte) (int, error) {
	for w.remain == 0 {
		var h [2]byte
		if _, err := io.ReadFull(w.r, h[:]); err != nil {
			return 0, err
		}
		if h[1]&0x80 != 0 {
			return 0, errors.New("websocket: a masked frame from the server")
		}
		n := int64(h[1] & 0x7f)
		switch n {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(w.r, e[:]); err != nil {
				return 0, err
			}
			n = int64(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(w.r, e[:]); err != nil {
				return 0, err
			}
			n = int64(binary.BigEndian.Uint64(e[:]))
		}
		switch op := h[0] & 0xf; {
		case op == websocket.CloseMessage:
			return 0, io.EOF
		case op >= 8: // ping, pong
			if _, err := w.r.Discard(int(n)); err != nil {
				return 0, err
			}
		default:
			w.remain = n
		}
	}
	if int64(len(p)) > w.remain {
		p = p[:w.remain]
	}
	n, err := w.r.Read(p)
	w.remain -= int64(n)
	return n, err
}
