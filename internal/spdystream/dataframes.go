package spdystream

// This file is kpf's, not upstream's: see doc.go.

import (
	"encoding/binary"
	"io"

	"github.com/moby/spdystream/spdy"
)

// reusedDataSize is the size of the payload buffer frameReader reuses:
// the kubelet sends a bulk transfer in data frames of up to 32 KiB.
const reusedDataSize = 32 << 10

// minReusedData is the smallest data frame read into the reused buffer;
// smaller ones get a buffer of their own size, which costs less than
// holding 32 KiB while the frame waits in a queue.
const minReusedData = 4 << 10

// frameReader reads a connection's frames. Upstream's Framer reads a data
// frame in three reads (stream id, flags and length, payload) into a
// buffer it allocates for each frame, so a bulk download allocates as
// much as it moves, and the collector runs about every 5 MB. frameReader
// reads a data frame's header in one read and its payload into a buffer
// of its own, which it reads the next frame into when the connection's
// reader wrote the frame out itself (Stream.takeDirect, then reuse): in a
// bulk download, one buffer serves every frame, and stays in the reading
// core's cache. A frame that goes to a queue keeps its buffer, and the
// next frame gets a new one. Every frame other than a data frame it
// leaves to the Framer, handing it the header already read (prefix).
type frameReader struct {
	r      io.Reader
	prefix *prefixReader // the Framer's reader
	hdr    [8]byte
	// spare is a payload buffer no frame holds any more, or nil.
	spare []byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: r, prefix: &prefixReader{r: r}}
}

// read reads the next frame. Only one goroutine reads (Connection.Serve).
func (fr *frameReader) read(f *spdy.Framer) (spdy.Frame, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return nil, err
	}
	if fr.hdr[0]&0x80 != 0 { // a control frame
		fr.prefix.pending = fr.hdr[:]
		return f.ReadFrame()
	}
	id := spdy.StreamId(binary.BigEndian.Uint32(fr.hdr[0:4]) & 0x7fffffff)
	flags := spdy.DataFlags(fr.hdr[4])
	n := int(fr.hdr[5])<<16 | int(fr.hdr[6])<<8 | int(fr.hdr[7])
	data := fr.buffer(n)
	if _, err := io.ReadFull(fr.r, data); err != nil {
		return nil, err
	}
	if id == 0 {
		return nil, &spdy.Error{Err: spdy.ZeroStreamId}
	}
	return &spdy.DataFrame{StreamId: id, Flags: flags, Data: data}, nil
}

// buffer returns a buffer of n bytes for a data frame's payload.
func (fr *frameReader) buffer(n int) []byte {
	if n < minReusedData || n > reusedDataSize {
		return make([]byte, n)
	}
	if b := fr.spare; b != nil {
		fr.spare = nil
		return b[:n]
	}
	return make([]byte, n, reusedDataSize)
}

// reuse takes back data, a data frame's whole payload that nothing refers
// to any more, for the next frame.
func (fr *frameReader) reuse(data []byte) {
	if cap(data) == reusedDataSize {
		fr.spare = data[:0]
	}
}

// prefixReader reads pending, then r.
type prefixReader struct {
	r       io.Reader
	pending []byte
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.pending) > 0 {
		n := copy(b, p.pending)
		p.pending = p.pending[n:]
		return n, nil
	}
	return p.r.Read(b)
}
