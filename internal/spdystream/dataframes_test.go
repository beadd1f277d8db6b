package spdystream

// This file is kpf's, not upstream's: see doc.go.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/moby/spdystream/spdy"
)

// TestFrameReaderReadsWhatUpstreamReads writes frames of every kind the
// kubelet sends, data frames of sizes around the reused buffer's bounds among
// them, and reads them with frameReader and with upstream's Framer: the
// frames must be the same.
func TestFrameReaderReadsWhatUpstreamReads(t *testing.T) {
	data := func(id spdy.StreamId, n int, flags spdy.DataFlags) *spdy.DataFrame {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + int(id))
		}
		return &spdy.DataFrame{StreamId: id, Flags: flags, Data: b}
	}
	frames := []spdy.Frame{
		&spdy.SynReplyFrame{StreamId: 1, Headers: http.Header{"Port": {"80"}}},
		data(1, 0, spdy.DataFlagFin),
		data(3, 1, 0),
		data(3, minReusedData-1, 0),
		data(3, minReusedData, 0),
		&spdy.PingFrame{Id: 2},
		data(3, reusedDataSize, 0),
		data(3, reusedDataSize+1, 0),
		&spdy.RstStreamFrame{StreamId: 5, Status: spdy.Cancel},
		&spdy.HeadersFrame{StreamId: 3, Headers: http.Header{"X-A": {"b"}}},
		data(3, 100, spdy.DataFlagFin),
		&spdy.GoAwayFrame{LastGoodStreamId: 3},
	}
	var wire bytes.Buffer
	w, err := spdy.NewFramer(&wire, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	want, err := spdy.NewFramer(io.Discard, bytes.NewReader(wire.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	fr := newFrameReader(bytes.NewReader(wire.Bytes()))
	got, err := spdy.NewFramer(io.Discard, fr.prefix)
	if err != nil {
		t.Fatal(err)
	}
	for i := range frames {
		wf, err := want.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d, upstream: %v", i, err)
		}
		gf, err := fr.read(got)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !reflect.DeepEqual(gf, wf) {
			t.Errorf("frame %d: read %.100v, upstream read %.100v", i, gf, wf)
		}
	}
	if _, err := fr.read(got); err != io.EOF {
		t.Errorf("after the last frame: %v, want EOF", err)
	}
}

// A data frame on stream 0 is refused, as upstream refuses it.
func TestFrameReaderRefusesStreamZero(t *testing.T) {
	fr := newFrameReader(bytes.NewReader([]byte{0, 0, 0, 0, 0, 0, 0, 2, 'h', 'i'}))
	f, err := spdy.NewFramer(io.Discard, fr.prefix)
	if err != nil {
		t.Fatal(err)
	}
	var se *spdy.Error
	if _, err := fr.read(f); !errors.As(err, &se) || se.Err != spdy.ZeroStreamId {
		t.Errorf("read: %v, want %v", err, spdy.ZeroStreamId)
	}
}

// TestStreamReadsReusedFramesWhole sends a stream many full-size data
// frames, each with a pattern of its own, while the reader takes them in
// small reads. Frames read this way go through the queue and keep their
// buffers: one the connection's reader took back for the next frame would
// be refilled and show up as corrupt data.
func TestStreamReadsReusedFramesWhole(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	cc, err := NewConnection(client, false)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	go cc.Serve(NoOpStreamHandler)

	const frames = 64
	pattern := func(i int) []byte {
		return bytes.Repeat([]byte(fmt.Sprintf("frame %03d|", i)), reusedDataSize/10+1)[:reusedDataSize]
	}
	peerErr := make(chan error, 1)
	go func() {
		peerErr <- func() error {
			pf, err := spdy.NewFramer(server, server)
			if err != nil {
				return err
			}
			f, err := pf.ReadFrame()
			if err != nil {
				return err
			}
			syn, ok := f.(*spdy.SynStreamFrame)
			if !ok {
				return fmt.Errorf("first frame %T, want SYN_STREAM", f)
			}
			go io.Copy(io.Discard, server) // whatever the client sends next
			if err := pf.WriteFrame(&spdy.SynReplyFrame{StreamId: syn.StreamId, Headers: http.Header{}}); err != nil {
				return err
			}
			for i := range frames {
				var flags spdy.DataFlags
				if i == frames-1 {
					flags = spdy.DataFlagFin
				}
				if err := pf.WriteFrame(&spdy.DataFrame{StreamId: syn.StreamId, Flags: flags, Data: pattern(i)}); err != nil {
					return err
				}
			}
			return nil
		}()
	}()
	st, err := cc.CreateStream(http.Header{}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitTimeout(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	buf := make([]byte, 1000)
	for {
		n, err := st.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
		if got.Len() == frames*reusedDataSize {
			break
		}
	}
	if err := <-peerErr; err != nil {
		t.Fatal(err)
	}
	for i := range frames {
		at := i * reusedDataSize
		if at+reusedDataSize > got.Len() {
			t.Fatalf("read %d bytes, want %d", got.Len(), frames*reusedDataSize)
		}
		if !bytes.Equal(got.Bytes()[at:at+reusedDataSize], pattern(i)) {
			t.Fatalf("frame %d arrived corrupt", i)
		}
	}
}

// BenchmarkReadDataFrame reads full-size data frames with upstream's
// Framer and with frameReader, each frame's buffer taken back as after a
// frame written straight to its sink.
func BenchmarkReadDataFrame(b *testing.B) {
	var wire bytes.Buffer
	w, err := spdy.NewFramer(&wire, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.WriteFrame(&spdy.DataFrame{StreamId: 3, Data: make([]byte, reusedDataSize)}); err != nil {
		b.Fatal(err)
	}
	frame := wire.Bytes()
	src := &repeatReader{frame: frame}
	b.Run("upstream", func(b *testing.B) {
		f, err := spdy.NewFramer(io.Discard, src)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.ReadFrame(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("frameReader", func(b *testing.B) {
		fr := newFrameReader(src)
		f, err := spdy.NewFramer(io.Discard, fr.prefix)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			df, err := fr.read(f)
			if err != nil {
				b.Fatal(err)
			}
			fr.reuse(df.(*spdy.DataFrame).Data)
		}
	})
}

// repeatReader reads frame over and over.
type repeatReader struct {
	frame []byte
	at    int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.frame[r.at:])
	r.at = (r.at + n) % len(r.frame)
	return n, nil
}
