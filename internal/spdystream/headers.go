package spdystream

// This file is kpf's, not upstream's: see doc.go.

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/http"

	"github.com/moby/spdystream/spdy"
)

// SPDY/3 header blocks are a zlib stream, one per direction of a
// connection, primed with a fixed dictionary. Upstream's Framer
// compresses them at zlib.BestCompression: every frame that opens a
// stream costs a deflate search and a sync flush that builds Huffman
// tables (18% of kpf's CPU time while connections open back to back,
// profiled with 32 at a time), and the compressor it creates on its
// first use allocates about 800 KB (window and hash chains) that it holds
// for as long as the connection lives. A port-forward header block is
// three short headers, so compressing them saves a few dozen bytes a
// stream.
//
// headerWriter writes the same zlib stream without compressing: the zlib
// header once, then each frame's block as deflate stored blocks ended by
// an empty one, the mark of zlib's sync flush, as upstream's frames end.
// The inflater at the other end (upstream's Framer, in the kubelet too)
// copies stored blocks instead of decoding them, and hands on all of a
// frame's block when it reaches the empty one.

// zlibHeader opens the header-block stream: deflate with a 32 KiB window
// (0x78), no compression level claimed, the dictionary flag, a check
// making the pair a multiple of 31, then the SPDY/3 dictionary's Adler-32.
var zlibHeader = [...]byte{0x78, 0x20 + (31-(0x78<<8+0x20)%31)%31, 0xe3, 0xc6, 0xa7, 0xc2}

// maxStoredBlock is the most data one deflate stored block holds.
const maxStoredBlock = 0xffff

// headerWriter writes the control frames that carry a header block.
type headerWriter struct {
	w io.Writer
	// started is set once the zlib header has been written.
	started bool
	block   []byte // the header block being encoded
	frame   []byte // the frame being written
}

// writeFrame writes frame in one Write if it carries a header block and
// reports whether it did; other frames are left to the caller.
func (h *headerWriter) writeFrame(frame spdy.Frame) (bool, error) {
	var (
		typ     spdy.ControlFrameType
		flags   spdy.ControlFlags
		headers http.Header
		id      spdy.StreamId
		fixed   [10]byte // the fields between the frame header and the block
		nFixed  = 4      // the stream id
	)
	switch f := frame.(type) {
	case *spdy.SynStreamFrame:
		typ, flags, headers, id = spdy.TypeSynStream, f.CFHeader.Flags, f.Headers, f.StreamId
		binary.BigEndian.PutUint32(fixed[4:], uint32(f.AssociatedToStreamId))
		fixed[8], fixed[9] = f.Priority<<5, f.Slot
		nFixed = 10
	case *spdy.SynReplyFrame:
		typ, flags, headers, id = spdy.TypeSynReply, f.CFHeader.Flags, f.Headers, f.StreamId
	case *spdy.HeadersFrame:
		typ, flags, headers, id = spdy.TypeHeaders, f.CFHeader.Flags, f.Headers, f.StreamId
	default:
		return false, nil
	}
	if id == 0 {
		return true, &spdy.Error{Err: spdy.ZeroStreamId}
	}
	binary.BigEndian.PutUint32(fixed[0:], uint32(id))

	h.block = appendHeaderBlock(h.block[:0], headers)
	z := h.frame[:0]
	z = append(z, make([]byte, 8)...) // the frame header, filled in below
	z = append(z, fixed[:nFixed]...)
	if !h.started {
		z = append(z, zlibHeader[:]...)
	}
	for rest := h.block; ; {
		n := min(len(rest), maxStoredBlock)
		z = append(z, 0, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8)) // not final, stored; LEN, NLEN
		z = append(z, rest[:n]...)
		rest = rest[n:]
		if len(rest) == 0 {
			break
		}
	}
	// An empty stored block, as zlib's sync flush writes: an inflater
	// hands on what it holds when it reaches one, so the reader gets the
	// whole block without reading past this frame.
	z = append(z, 0, 0, 0, 0xff, 0xff)
	length := len(z) - 8
	if length > spdy.MaxDataLength {
		return true, &spdy.Error{Err: spdy.InvalidControlFrame}
	}
	binary.BigEndian.PutUint16(z[0:], 0x8000|spdy.Version)
	binary.BigEndian.PutUint16(z[2:], uint16(typ))
	binary.BigEndian.PutUint32(z[4:], uint32(flags)<<24|uint32(length))
	h.frame = z
	if _, err := h.w.Write(z); err != nil {
		return true, fmt.Errorf("write %s frame: %w", frameName(typ), err)
	}
	h.started = true
	if cap(h.frame) > 4<<10 {
		h.frame, h.block = nil, nil // do not keep a rare big one
	}
	return true, nil
}

// appendHeaderBlock appends h as a SPDY/3 name/value block, as upstream's
// Framer does: the count, then each name in lower case and its values
// joined by NUL, each with a 32-bit length. Only ASCII letters are
// lowered, so a name keeps the length written before it (upstream's
// strings.ToLower can change it).
func appendHeaderBlock(b []byte, h http.Header) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(h)))
	for name, values := range h {
		b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
		for i := range len(name) {
			c := name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b = append(b, c)
		}
		n := max(len(values)-1, 0) // the NULs between values
		for _, v := range values {
			n += len(v)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(n))
		for i, v := range values {
			if i > 0 {
				b = append(b, 0)
			}
			b = append(b, v...)
		}
	}
	return b
}

func frameName(t spdy.ControlFrameType) string {
	switch t {
	case spdy.TypeSynStream:
		return "SYN_STREAM"
	case spdy.TypeSynReply:
		return "SYN_REPLY"
	default:
		return "HEADERS"
	}
}
