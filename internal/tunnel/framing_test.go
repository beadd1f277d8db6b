package tunnel

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"reflect"
	"testing"

	mobyspdy "github.com/moby/spdystream/spdy"
)

// recordingConn is a net.Conn that keeps each Write it is given.
type recordingConn struct {
	net.Conn
	writes [][]byte
	fail   error
}

func (c *recordingConn) Write(p []byte) (int, error) {
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

// framePieces is what spdystream's framer writes for frame, piece by piece.
func framePieces(t *testing.T, frame mobyspdy.Frame) [][]byte {
	t.Helper()
	rec := &recordingConn{}
	f, err := mobyspdy.NewFramer(rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.WriteFrame(frame); err != nil {
		t.Fatal(err)
	}
	return rec.writes
}

func TestFrameConnWritesEachFrameWhole(t *testing.T) {
	data := &mobyspdy.DataFrame{StreamId: 3, Data: bytes.Repeat([]byte("x"), 40000)}
	fin := &mobyspdy.DataFrame{StreamId: 3, Flags: mobyspdy.DataFlagFin}
	syn := &mobyspdy.SynStreamFrame{StreamId: 5, Headers: http.Header{"Port": {"8080"}, "Streamtype": {"data"}, "Requestid": {"0"}}}
	reset := &mobyspdy.RstStreamFrame{StreamId: 5, Status: mobyspdy.Cancel}

	tests := []struct {
		name   string
		frames []mobyspdy.Frame
		// split regroups the framer's pieces before they reach frameConn:
		// nil passes them as spdystream does.
		split func(pieces [][]byte) [][]byte
		// together: the frames reach the connection in one write, as the
		// write that completes them gave them.
		together bool
	}{
		{name: "data frame", frames: []mobyspdy.Frame{data}},
		{name: "empty data frame with FIN", frames: []mobyspdy.Frame{fin}},
		{name: "SYN_STREAM with headers", frames: []mobyspdy.Frame{syn}},
		{name: "several frames", frames: []mobyspdy.Frame{syn, data, fin, reset}},
		{name: "two frames in one write", frames: []mobyspdy.Frame{reset, fin}, together: true, split: func(p [][]byte) [][]byte {
			return [][]byte{bytes.Join(p, nil)}
		}},
		{name: "a frame and a half, then the rest", frames: []mobyspdy.Frame{reset, data}, split: func(p [][]byte) [][]byte {
			all := bytes.Join(p, nil)
			return [][]byte{all[:16+100], all[16+100:]}
		}},
		{name: "one byte at a time", frames: []mobyspdy.Frame{reset}, split: func(p [][]byte) [][]byte {
			var out [][]byte
			for _, b := range bytes.Join(p, nil) {
				out = append(out, []byte{b})
			}
			return out
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pieces [][]byte
			var want [][]byte
			for _, f := range tt.frames {
				p := framePieces(t, f)
				pieces = append(pieces, p...)
				want = append(want, bytes.Join(p, nil))
			}
			if tt.split != nil {
				pieces = tt.split(pieces)
			}
			if tt.together {
				want = [][]byte{bytes.Join(want, nil)}
			}
			rec := &recordingConn{}
			fc := newFrameConn(rec)
			for _, p := range pieces {
				n, err := fc.Write(p)
				if err != nil || n != len(p) {
					t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
				}
			}
			if got := len(rec.writes); got != len(want) {
				t.Fatalf("%d writes reached the connection, want %d (one per frame)", got, len(want))
			}
			if !reflect.DeepEqual(rec.writes, want) {
				t.Fatal("the bytes written differ from the frames")
			}
			// What reached the connection parses back into the same frames.
			r, err := mobyspdy.NewFramer(nil, bytes.NewReader(bytes.Join(rec.writes, nil)))
			if err != nil {
				t.Fatal(err)
			}
			for i, f := range tt.frames {
				got, err := r.ReadFrame()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if reflect.TypeOf(got) != reflect.TypeOf(f) {
					t.Fatalf("frame %d is a %T, want %T", i, got, f)
				}
			}
		})
	}
}

func TestFrameConnKeepsAWriteError(t *testing.T) {
	boom := errors.New("boom")
	rec := &recordingConn{fail: boom}
	fc := newFrameConn(rec)
	pieces := framePieces(t, &mobyspdy.RstStreamFrame{StreamId: 1, Status: mobyspdy.Cancel})
	if _, err := fc.Write(pieces[0][:4]); err != nil {
		t.Fatalf("a partial frame must not reach the connection yet: %v", err)
	}
	if _, err := fc.Write(bytes.Join(pieces, nil)[4:]); !errors.Is(err, boom) {
		t.Fatalf("completing the frame: err = %v, want %v", err, boom)
	}
	rec.fail = nil
	if _, err := fc.Write(pieces[0]); !errors.Is(err, boom) {
		t.Fatalf("a write after a failed one: err = %v, want the first error", err)
	}
	if len(rec.writes) != 0 {
		t.Fatalf("%d writes reached the connection after it failed", len(rec.writes))
	}
}

// TestFrameConnHoldsFramesUntilReleased runs sequences of writes and holds
// and checks what reaches the connection, write by write.
func TestFrameConnHoldsFramesUntilReleased(t *testing.T) {
	frame := func(id byte, payload string) []byte {
		return append([]byte{0, 0, 0, id, 0, 0, 0, byte(len(payload))}, payload...)
	}
	a, b, c, ping := frame(1, "aa"), frame(3, "bbb"), frame(5, "c"), frame(7, "")
	type step struct {
		op   string // write, writeFrames, writeWhole, hold, release
		p    []byte
		hold int // which hold to release, in the order taken
	}
	tests := []struct {
		name  string
		steps []step
		want  [][]byte
	}{
		{
			name:  "frames, a frame ahead and a ping held go out in one write",
			steps: []step{{op: "hold"}, {op: "write", p: a}, {op: "write", p: b}, {op: "writeFrames", p: c}, {op: "writeWhole", p: ping}, {op: "release"}},
			want:  [][]byte{bytes.Join([][]byte{a, b, c, ping}, nil)},
		},
		{
			name: "a frame written in pieces is held whole",
			steps: []step{{op: "hold"}, {op: "write", p: a[:3]}, {op: "write", p: a[3:]}, {op: "write", p: b[:5]},
				{op: "release"}, {op: "write", p: b[5:]}},
			want: [][]byte{a, b},
		},
		{
			name:  "nothing held: each frame at once",
			steps: []step{{op: "write", p: a}, {op: "writeFrames", p: b}},
			want:  [][]byte{a, b},
		},
		{
			name:  "after the release, frames go at once again",
			steps: []step{{op: "hold"}, {op: "write", p: a}, {op: "release"}, {op: "write", p: b}},
			want:  [][]byte{a, b},
		},
		{
			name: "a release writes what others hold too",
			steps: []step{{op: "hold"}, {op: "write", p: a}, {op: "hold"}, {op: "write", p: b}, {op: "release", hold: 0},
				{op: "write", p: c}, {op: "release", hold: 1}},
			want: [][]byte{bytes.Join([][]byte{a, b}, nil), c},
		},
		{
			name:  "a release with nothing held writes nothing",
			steps: []step{{op: "hold"}, {op: "release"}, {op: "write", p: a}},
			want:  [][]byte{a},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recordingConn{}
			fc := newFrameConn(rec)
			var releases []func() error
			for i, s := range tt.steps {
				var err error
				switch s.op {
				case "write":
					_, err = fc.Write(s.p)
				case "writeFrames":
					err = fc.writeFrames(s.p)
				case "writeWhole":
					var ok bool
					if ok, err = fc.writeWhole(s.p); !ok && err == nil {
						t.Fatalf("step %d: writeWhole wrote nothing", i)
					}
				case "hold":
					releases = append(releases, fc.hold())
				case "release":
					err = releases[s.hold]()
				}
				if err != nil {
					t.Fatalf("step %d (%s): %v", i, s.op, err)
				}
			}
			if !reflect.DeepEqual(rec.writes, tt.want) {
				t.Errorf("writes\n%q\nwant\n%q", rec.writes, tt.want)
			}
		})
	}
}

// TestFrameConnReleaseReportsTheWriteError: the frames held fail together
// in the release, and the connection stays failed.
func TestFrameConnReleaseReportsTheWriteError(t *testing.T) {
	boom := errors.New("boom")
	rec := &recordingConn{fail: boom}
	fc := newFrameConn(rec)
	release := fc.hold()
	if _, err := fc.Write([]byte{0, 0, 0, 1, 0, 0, 0, 0}); err != nil {
		t.Fatalf("a held frame must not reach the connection yet: %v", err)
	}
	if err := release(); !errors.Is(err, boom) {
		t.Fatalf("release: %v, want %v", err, boom)
	}
	rec.fail = nil
	if err := fc.writeFrames([]byte{0, 0, 0, 3, 0, 0, 0, 0}); !errors.Is(err, boom) {
		t.Fatalf("a write after the failed release: %v, want the first error", err)
	}
	if len(rec.writes) != 0 {
		t.Fatalf("%d writes reached the connection after it failed", len(rec.writes))
	}
}
