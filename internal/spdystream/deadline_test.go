package spdystream

import (
	"errors"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

// A read deadline is the stream's own: it fails that stream's blocked
// read with a timeout, consumes nothing, and leaves the other streams of
// the connection, and the stream itself once cleared, working. Upstream
// set the deadline of the whole connection, which ended every stream.
func TestReadDeadlineIsTheStreams(t *testing.T) {
	synctest.Test(t, testReadDeadlineIsTheStreams)
}

func testReadDeadlineIsTheStreams(t *testing.T) {
	_, client, server := pairOfStreams(t, 2)
	failed := make(chan error, 1)
	go func() {
		_, err := client[0].Read(make([]byte, 10))
		failed <- err
	}()
	synctest.Wait() // the read blocks
	if err := client[0].SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	err := <-failed
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("blocked read: %v, want os.ErrDeadlineExceeded, a net.Error with Timeout()", err)
	}
	// With the deadline passed, data that arrives stays for later reads.
	if _, err := server[0].Write([]byte("kept")); err != nil {
		t.Fatal(err)
	}
	if _, err := client[0].ReadData(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadData past the deadline: %v", err)
	}
	// The other stream is untouched.
	if _, err := server[1].Write([]byte("other")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if n, err := client[1].Read(buf); err != nil || string(buf[:n]) != "other" {
		t.Fatalf("the other stream: %q, %v", buf[:n], err)
	}
	// Cleared, the stream reads what waited.
	client[0].SetReadDeadline(time.Time{})
	if n, err := client[0].Read(buf); err != nil || string(buf[:n]) != "kept" {
		t.Fatalf("after clearing the deadline: %q, %v", buf[:n], err)
	}
	if err := client[0].SetWriteDeadline(time.Now()); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("SetWriteDeadline: %v, want errors.ErrUnsupported", err)
	}
}
