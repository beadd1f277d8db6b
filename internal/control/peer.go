package control

import "fmt"

// peer is who is on the other end of a control connection, as peerOf
// (one per system, in peer_*.go) tells.
type peer struct {
	who     string // e.g. "uid 1001"; "" if it could not be told
	allowed bool
}

// refusal is the message a refused peer gets.
func (p peer) refusal() string {
	who := p.who
	if who == "" {
		who = "a peer whose user could not be told"
	}
	return fmt.Sprintf("kpf up refuses %s: %s", who, servedUsers())
}
