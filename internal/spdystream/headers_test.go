package spdystream

// This file is kpf's, not upstream's: see doc.go.

import (
	"bytes"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/spdystream/spdy"
)

// TestHeaderFramesReadByUpstream writes header-carrying frames with
// headerWriter, one after another on one stream as a connection does, and
// reads them back with upstream's Framer, which inflates them with the
// SPDY/3 dictionary and checks that each frame's block ends where the
// frame does.
func TestHeaderFramesReadByUpstream(t *testing.T) {
	big := strings.Repeat("x", 70000) // more than one stored block
	frames := []spdy.Frame{
		&spdy.SynStreamFrame{StreamId: 1, Priority: 0, CFHeader: spdy.ControlFrameHeader{Flags: spdy.ControlFlagFin},
			Headers: http.Header{"Streamtype": {"error"}, "Port": {"80"}, "Requestid": {"0"}}},
		&spdy.SynStreamFrame{StreamId: 3, AssociatedToStreamId: 1, Priority: 7, Slot: 2,
			Headers: http.Header{"Streamtype": {"data"}, "Port": {"80"}, "Requestid": {"0"}}},
		&spdy.SynReplyFrame{StreamId: 3, Headers: http.Header{}},
		&spdy.HeadersFrame{StreamId: 3, CFHeader: spdy.ControlFrameHeader{Flags: spdy.ControlFlagFin},
			Headers: http.Header{"X-Several": {"a", "", "b"}, "X-Empty": {""}}},
		&spdy.SynStreamFrame{StreamId: 5, Headers: http.Header{"X-Big": {big}}},
		&spdy.SynStreamFrame{StreamId: 7, Headers: http.Header{"Port": {"8080"}}},
	}
	var wire bytes.Buffer
	counter := &countingWriter{w: &wire}
	hw := headerWriter{w: counter}
	for _, f := range frames {
		done, err := hw.writeFrame(f)
		if !done || err != nil {
			t.Fatalf("writeFrame(%T) = %v, %v", f, done, err)
		}
	}
	if counter.writes != len(frames) {
		t.Errorf("%d writes for %d frames, want one each", counter.writes, len(frames))
	}
	r, err := spdy.NewFramer(io.Discard, &wire)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range frames {
		got, err := r.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		// Upstream's reader refuses a name not in lower case, and
		// gives the names back canonical, as in the frames written.
		if !reflect.DeepEqual(headersOf(got), headersOf(want)) {
			t.Errorf("frame %d: headers %.80q, want %.80q", i, headersOf(got), headersOf(want))
		}
		if gs, ok := got.(*spdy.SynStreamFrame); ok {
			ws := want.(*spdy.SynStreamFrame)
			if gs.StreamId != ws.StreamId || gs.AssociatedToStreamId != ws.AssociatedToStreamId ||
				gs.Priority != ws.Priority || gs.Slot != ws.Slot || gs.CFHeader.Flags != ws.CFHeader.Flags {
				t.Errorf("frame %d: %+v, want %+v", i, gs, ws)
			}
		}
		if reflect.TypeOf(got) != reflect.TypeOf(want) {
			t.Errorf("frame %d: read a %T, wrote a %T", i, got, want)
		}
	}
	if wire.Len() != 0 {
		t.Errorf("%d bytes left after the last frame", wire.Len())
	}
}

// TestHeaderFrameBytes pins the encoding of a connection's first frame:
// the zlib header with the dictionary's id comes once, and the block is
// one stored block, then the empty one of a sync flush.
func TestHeaderFrameBytes(t *testing.T) {
	var wire bytes.Buffer
	hw := headerWriter{w: &wire}
	frame := &spdy.SynStreamFrame{StreamId: 1, CFHeader: spdy.ControlFrameHeader{Flags: spdy.ControlFlagFin},
		Headers: http.Header{"Port": {"80"}}}
	for range 2 {
		if _, err := hw.writeFrame(frame); err != nil {
			t.Fatal(err)
		}
	}
	block := []byte{0, 0, 0, 1, 0, 0, 0, 4, 'p', 'o', 'r', 't', 0, 0, 0, 2, '8', '0'}
	first := []byte{
		0x80, 3, 0, 1, // control frame, version 3, SYN_STREAM
		1, 0, 0, byte(10 + 6 + 5 + len(block) + 5), // FIN, length
		0, 0, 0, 1, 0, 0, 0, 0, 0, 0, // stream 1, no associated stream, priority 0, slot 0
		0x78, 0x20, 0xe3, 0xc6, 0xa7, 0xc2, // zlib header: deflate, dictionary id
		0, byte(len(block)), 0, ^byte(len(block)), 0xff, // stored block of len(block) bytes
	}
	first = append(first, block...)
	first = append(first, 0, 0, 0, 0xff, 0xff) // the sync flush's empty block
	second := append([]byte{}, first[:8+10]...)
	second[7] = byte(10 + 5 + len(block) + 5)
	second = append(second, first[8+10+6:]...)
	if got, want := wire.Bytes(), append(first, second...); !bytes.Equal(got, want) {
		t.Errorf("wrote\n% x\nwant\n% x", got, want)
	}
	if (0x78<<8+0x20)%31 != 0 {
		t.Error("the zlib header's check bits are wrong")
	}
}

// TestOtherFramesLeftToUpstream checks that headerWriter claims only the
// frames with a header block.
func TestOtherFramesLeftToUpstream(t *testing.T) {
	hw := headerWriter{w: io.Discard}
	for _, f := range []spdy.Frame{
		&spdy.DataFrame{StreamId: 1, Data: []byte("x")},
		&spdy.RstStreamFrame{StreamId: 1, Status: spdy.Cancel},
		&spdy.PingFrame{Id: 1},
		&spdy.GoAwayFrame{},
		&spdy.SettingsFrame{},
		&spdy.WindowUpdateFrame{StreamId: 1, DeltaWindowSize: 1},
	} {
		if done, err := hw.writeFrame(f); done || err != nil {
			t.Errorf("writeFrame(%T) = %v, %v; want it left to upstream", f, done, err)
		}
	}
	if hw.started {
		t.Error("the zlib stream was started by a frame without headers")
	}
}

// BenchmarkHeaderFrame compares writing a port-forward stream's
// SYN_STREAM with upstream's Framer (zlib.BestCompression) and with
// headerWriter, on a connection that has written frames before.
func BenchmarkHeaderFrame(b *testing.B) {
	frame := &spdy.SynStreamFrame{StreamId: 1, CFHeader: spdy.ControlFrameHeader{Flags: spdy.ControlFlagFin},
		Headers: http.Header{"Streamtype": {"data"}, "Port": {"80"}, "Requestid": {"12345"}}}
	b.Run("upstream", func(b *testing.B) {
		var wire bytes.Buffer
		f, err := spdy.NewFramer(&wire, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			frame.StreamId = spdy.StreamId(2*i + 1)
			if err := f.WriteFrame(frame); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(wire.Len()), "bytes/frame")
			wire.Reset()
		}
	})
	b.Run("stored", func(b *testing.B) {
		var wire bytes.Buffer
		hw := headerWriter{w: &wire}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			frame.StreamId = spdy.StreamId(2*i + 1)
			if _, err := hw.writeFrame(frame); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(wire.Len()), "bytes/frame")
			wire.Reset()
		}
	})
}

type countingWriter struct {
	w      io.Writer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.w.Write(p)
}

func headersOf(f spdy.Frame) http.Header {
	switch f := f.(type) {
	case *spdy.SynStreamFrame:
		return f.Headers
	case *spdy.SynReplyFrame:
		return f.Headers
	case *spdy.HeadersFrame:
		return f.Headers
	}
	return nil
}
