package tunnel

// bulkBytes is how much a connection moves, both ways together, before
// it counts as a bulk transfer; a connection that ends having moved less
// (and something) counts as short.
const bulkBytes = 1 << 20

// shortRunBeforeOneSession is how many connections in a row must end
// short, with no bulk transfer open, before a pod's new connections go to
// its main session only rather than being spread over extra sessions.
const shortRunBeforeOneSession = 32

// podTraffic is what a Pool has seen of the connections to one pod, to
// decide whether to spread new ones over several sessions.
//
// Spreading pays for bulk transfers: each session is read by one goroutine
// in every process on the path, so parallel transfers over one session
// queue behind each other. It costs short exchanges (a request and its
// answer): every extra session is one more connection for the API server
// and the kubelet to serve, so a burst of short connections over several
// sessions ends later, at the 99th percentile, than over one. And opening
// the extra sessions makes the first burst after a pause wait for their
// handshakes.
//
// Which kind a connection is only shows once it has moved data, and
// parallel transfers open their connections together, before any data. So
// the decision rests on the connections before: a pod whose last
// connections were short keeps new ones on its main session; one with a
// bulk transfer open, or that ended one within the last
// shortRunBeforeOneSession connections, spreads them. A new pod spreads, as
// nothing is known of it.
type podTraffic struct {
	bulkOpen   int // open connections that have moved bulkBytes
	shortSince int // connections that ended short since the last bulk one
}

// spread reports whether new connections should be spread over several
// sessions.
func (t *podTraffic) spread() bool {
	return t == nil || t.bulkOpen > 0 || t.shortSince < shortRunBeforeOneSession
}

// becameBulk records that an open connection has moved bulkBytes.
func (t *podTraffic) becameBulk() {
	t.bulkOpen++
	t.shortSince = 0
}

// ended records a connection that ended having moved moved bytes, and
// whether it had become bulk (becameBulk).
func (t *podTraffic) ended(moved int64, bulk bool) {
	switch {
	case bulk:
		t.bulkOpen = max(t.bulkOpen-1, 0)
		t.shortSince = 0
	case moved > 0:
		// Connections that never carried a byte (spares let go unused,
		// TCP health checks) say nothing about the pod's traffic.
		t.shortSince = min(t.shortSince+1, shortRunBeforeOneSession)
	}
}
