// Package spdystream is github.com/moby/spdystream v0.5.1 (Apache-2.0,
// see LICENSE and NOTICE), carried in kpf with two fixes and four changes;
// its spdy framing package is still the upstream one.
//
// The first: the frame queue's Pop (priority.go) left each popped frame in
// its slice's backing array. Every session has five queues of up to 50
// frames, and a data frame from the kubelet is up to 32 KiB, so after a
// burst of connections whose readers lagged a session kept up to 8 MiB of
// frames it had already delivered, for as long as it lived (measured in
// kpf: 115 frames after one burst of 1,000 connections, 231 after two).
// TestConsumedFramesAreCollectable shows it; upstream's Pop should set
// old[n-1] = nil.
//
// The second: a stream's WaitTimeout (stream.go) waited for its reply or
// its timeout even after the connection had ended, when no reply can
// come; k8s.io/streaming waits 30 s, so every stream being opened when a
// session was lost kept a goroutine for 30 s. It now returns
// ErrConnectionClosed when the connection ends.
// TestWaitEndsWithTheConnection shows it.
//
// Of upstream's tests only priority_test.go is carried, with
// TestPriorityQueueBlocking moved into a synctest bubble (upstream's gave
// a blocked Push one millisecond of real time, and failed in kpf's CI on
// a loaded machine). spdy_test.go has tests that fail now and then under
// -race on two cores (TestIdleRace: "Error creating stream: EOF"), and
// kpf's own tunnel and end-to-end tests run this code through every path
// kpf uses.
//
// The first change: kpf writes the frames that carry a header
// block itself (headers.go), as deflate stored blocks instead of
// upstream's zlib.BestCompression, which took 18% of kpf's CPU time while
// connections opened 32 at a time and holds 800 KB per connection. The
// kubelet reads them as any zlib stream; TestHeaderFramesReadByUpstream
// reads them with upstream's Framer.
//
// The second change: Connection.CutStuckStreams (kpf's) resets
// a stream whose reader has taken nothing for a while as other streams'
// frames waited behind it, since SPDY as Kubernetes speaks it has no flow
// control per stream and one stopped reader otherwise holds up every
// stream of its connection; reads of a cut stream fail with
// ErrStreamCut. TestCutStuckStreamsFreesTheOthers shows it.
//
// The third change: a stream's SetReadDeadline is the stream's own
// (upstream's set the whole connection's, and ended every stream on it),
// and SetDeadline and SetWriteDeadline return errors.ErrUnsupported
// rather than do the same. TestReadDeadlineIsTheStreams shows it.
//
// The fourth change: debugMessage (utils.go) logs nothing, where upstream
// logged to standard error whenever the environment variable DEBUG was
// set.
//
// A replace directive in go.mod would have carried the fix with less
// code, but it breaks "go install github.com/kpf-dev/kpf/cmd/kpf@latest",
// which refuses modules with replace directives. Drop this copy once
// upstream has the fix.
package spdystream
