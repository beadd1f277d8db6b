package tunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kpf-dev/kpf/internal/testnet"
	streamhttp "k8s.io/streaming/pkg/httpstream"
	streamspdy "k8s.io/streaming/pkg/httpstream/spdy"
)

// podScript plays the kubelet's part for one forwarded connection, given
// its error and data streams; lose drops the connection under them, as a
// lost API server does, without a word on any stream.
type podScript func(errSt, data streamhttp.Stream, lose func())

// dialScripted dials a connection over a real SPDY session to a server
// that plays script once the connection's stream pair is open.
func dialScripted(t *testing.T, script podScript) *Conn {
	t.Helper()
	client, server := net.Pipe()
	pairs := make(chan [2]streamhttp.Stream, 1)
	var errSt streamhttp.Stream
	srv, err := streamspdy.NewServerConnection(server, func(st streamhttp.Stream, replySent <-chan struct{}) error {
		// The error stream comes first, then the data stream.
		if st.Headers().Get("streamType") == "error" {
			errSt = st
			return nil
		}
		go func() {
			<-replySent
			pairs <- [2]streamhttp.Stream{errSt, st}
		}()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := newSPDYConnection(newFrameConn(client))
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(Pod{"ns", "pod"}, c, "spdy", nil)
	t.Cleanup(func() { s.Close() })
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		select {
		case p := <-pairs:
			script(p[0], p[1], func() { server.Close() })
		case <-stop:
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := s.Dial(ctx, 80)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// CopyToClient delivers what the pod sends to a local socket whole and in
// order, and ends as Read would: nil when the pod finished, the kubelet's
// error when it reported one, and ErrSessionClosed when the session ended
// under the connection, so that Serve resets the client rather than
// close it as if the answer were complete.
func TestCopyToClientEndsAsReadWould(t *testing.T) {
	payload := make([]byte, 3<<20)
	for i := range payload {
		payload[i] = byte(i / 7919)
	}
	send := func(data streamhttp.Stream, b []byte) {
		for len(b) > 0 {
			n := min(len(b), 32<<10)
			if _, err := data.Write(b[:n]); err != nil {
				return
			}
			b = b[n:]
		}
	}
	for _, tc := range []struct {
		name    string
		script  podScript
		sent    int // bytes the pod sent, all of which must arrive
		wantErr func(error) bool
	}{
		{
			name: "pod finished",
			script: func(_, data streamhttp.Stream, _ func()) {
				send(data, payload)
				data.Close()
			},
			sent:    len(payload),
			wantErr: func(err error) bool { return err == nil },
		},
		{
			name: "kubelet reported an error",
			script: func(errSt, data streamhttp.Stream, _ func()) {
				send(data, payload[:1<<20])
				errSt.Write([]byte("an error from the kubelet"))
				errSt.Close()
				data.Reset()
			},
			wantErr: func(err error) bool { return err != nil && strings.Contains(err.Error(), "an error from the kubelet") },
		},
		{
			name: "session lost",
			script: func(_, data streamhttp.Stream, lose func()) {
				send(data, payload[:1<<20])
				lose()
			},
			wantErr: func(err error) bool { return errors.Is(err, ErrSessionClosed) },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := dialScripted(t, tc.script)
			local, peer := testnet.TCPPair(t)
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(peer)
				got <- b
			}()
			n, err := conn.CopyToClient(local, make([]byte, 64<<10))
			local.Close()
			b := <-got
			if !tc.wantErr(err) {
				t.Fatalf("CopyToClient ended with %v", err)
			}
			if n != int64(len(b)) {
				t.Errorf("CopyToClient reports %d bytes; the client got %d", n, len(b))
			}
			if !bytes.Equal(b, payload[:len(b)]) {
				t.Fatalf("the client got %d bytes that are not what the pod sent", len(b))
			}
			if len(b) < tc.sent {
				t.Fatalf("the client got %d bytes, want %d", len(b), tc.sent)
			}
		})
	}
}

// socketSink's TryWrite never waits: on a socket whose peer reads nothing
// it takes less and less, then nothing, and returns each time. What it
// took arrives exactly once, in order, before what a Write adds.
func TestSocketSinkTryWriteNeverWaits(t *testing.T) {
	local, peer := testnet.TCPPair(t)
	sink := newSocketSink(local, func() {})
	if sink == nil {
		t.Skip("no socket sink on this system")
	}
	var sent bytes.Buffer
	chunk := 0
	for {
		p := []byte(strings.Repeat(fmt.Sprintf("[%06d]", chunk), 8<<10))
		n := sink.TryWrite(p)
		sent.Write(p[:n])
		chunk++
		if n == 0 {
			break
		}
		if chunk > 100000 {
			t.Fatal("the socket never filled")
		}
	}
	if sent.Len() == 0 {
		t.Fatal("TryWrite took nothing from an empty socket")
	}
	tail := []byte("and the rest, written by Write")
	done := make(chan error, 1)
	go func() {
		_, err := sink.Write(tail)
		local.Close()
		done <- err
	}()
	got, err := io.ReadAll(peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Write: %v", err)
	}
	sent.Write(tail)
	if !bytes.Equal(got, sent.Bytes()) {
		t.Fatalf("the peer got %d bytes that differ from the %d written", len(got), sent.Len())
	}
	if n := sink.TryWrite([]byte("after close")); n != 0 {
		t.Errorf("TryWrite on a closed socket took %d bytes", n)
	}
}
