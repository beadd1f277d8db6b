//go:build linux

package e2e

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// pgSelect1 speaks PostgreSQL's wire protocol (version 3) over c, as psql
// does for a trust login: a startup message for user postgres, then the
// simple query SELECT 1; it returns the value of the one row. It lets a
// test run a real query through connections that psql cannot make (the Go
// Dialer, a SOCKS5 proxy).
func pgSelect1(c net.Conn) (string, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	params := "user\x00postgres\x00database\x00postgres\x00\x00"
	msg := binary.BigEndian.AppendUint32(nil, uint32(8+len(params)))
	msg = binary.BigEndian.AppendUint32(msg, 3<<16)
	if _, err := c.Write(append(msg, params...)); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	query := false
	value := ""
	for {
		typ, body, err := pgMessage(r)
		if err != nil {
			return "", err
		}
		switch typ {
		case 'R': // authentication
			if binary.BigEndian.Uint32(body) != 0 {
				return "", fmt.Errorf("server asks for authentication %d", binary.BigEndian.Uint32(body))
			}
		case 'E':
			return "", fmt.Errorf("server error: %q", body)
		case 'D': // data row: one column
			if len(body) >= 6 {
				n := int(binary.BigEndian.Uint32(body[2:]))
				if 6+n <= len(body) {
					value = string(body[6 : 6+n])
				}
			}
		case 'Z': // ready for query
			if query {
				c.Write([]byte{'X', 0, 0, 0, 4}) // terminate
				return value, nil
			}
			query = true
			q := "SELECT 1\x00"
			m := append([]byte{'Q'}, binary.BigEndian.AppendUint32(nil, uint32(4+len(q)))...)
			if _, err := c.Write(append(m, q...)); err != nil {
				return "", err
			}
		}
	}
}

// pgMessage reads one backend message: its type and body.
func pgMessage(r *bufio.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n < 4 || n > 1<<20 {
		return 0, nil, errors.New("malformed message length")
	}
	body := make([]byte, n-4)
	_, err := io.ReadFull(r, body)
	return h[0], body, err
}
