package cli

import (
	"bytes"
	"testing"

	"github.com/kpf-dev/kpf/internal/doctor"
)

func TestPrintDoctor(t *testing.T) {
	rep := doctor.Report{Checks: []doctor.Check{
		{Section: "kubeconfig", Name: "kubeconfig", Status: doctor.OK, Message: "read /k (1 context)"},
		{Section: "context dev", Name: "server", Status: doctor.Failed, Message: "refused\n  the connection"},
		{Section: "forward web", Name: "target", Status: doctor.Skipped, Message: "not checked: the API server cannot be reached"},
		{Section: "forward web", Name: "local-port", Status: doctor.OK, Message: "localhost:8080 is free"},
	}}
	var b bytes.Buffer
	printDoctor(&b, rep)
	want := `kubeconfig
  ✔ read /k (1 context)
context dev
  ✘ server: refused the connection
forward web
  - target: not checked: the API server cannot be reached
  ✔ local-port: localhost:8080 is free
✘ 1 of 4 checks failed, 1 not checked because of them
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	printDoctor(&b, doctor.Report{OK: true, Checks: []doctor.Check{
		{Section: "proxy", Name: "proxy", Status: doctor.OK, Message: "socks5 127.0.0.1:1080 is free"},
		{Section: "context dev", Name: "version", Status: doctor.Warning, Message: "unknown"},
	}})
	want = "proxy\n  ✔ socks5 127.0.0.1:1080 is free\ncontext dev\n  ! version: unknown\n✔ 2 checks passed, 1 with a warning\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
