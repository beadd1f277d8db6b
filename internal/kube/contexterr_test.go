package kube

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

const twoContexts = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: u
  user: {token: secret-token}
contexts:
- name: dev-eu
  context: {cluster: c, user: u}
- name: prod-eu
  context: {cluster: c, user: u}
`

func TestContextErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "config")
	if err := os.WriteFile(good, []byte(twoContexts), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nope")
	// client-go fixes ~/.kube/config's path when it loads.
	home := clientcmd.RecommendedHomeFile

	tests := []struct {
		name       string
		kubeconfig string // $KUBECONFIG
		context    string
		want       string
	}{
		{"mistyped context", good, "dev-ue",
			`context "dev-ue" is not in the kubeconfig (` + good + `), which defines dev-eu, prod-eu; did you mean "dev-eu"?`},
		{"unknown context", good, "staging",
			`context "staging" is not in the kubeconfig (` + good + `), which defines dev-eu, prod-eu`},
		{"no current-context", good, "",
			`no context given and the kubeconfig (` + good + `) has no current-context, which defines dev-eu, prod-eu; set defaults.context in forwards.yaml, pass --context, or run kubectl config use-context NAME`},
		{"KUBECONFIG names no file", missing + string(os.PathListSeparator) + filepath.Join(dir, "other"), "dev",
			`context "dev": no kubeconfig found (looked for the files of $KUBECONFIG: ` + missing + `, ` + filepath.Join(dir, "other") + `); point KUBECONFIG or --kubeconfig at one, or create ~/.kube/config (your cluster's login tool writes it)`},
		{"no KUBECONFIG, no ~/.kube/config", "", "dev",
			`context "dev": no kubeconfig found (looked for ` + home + `); point KUBECONFIG or --kubeconfig at one, or create ~/.kube/config (your cluster's login tool writes it)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := os.Stat(home); err == nil && tt.kubeconfig == "" {
				t.Skipf("%s exists on this machine", home)
			}
			t.Setenv("KUBECONFIG", tt.kubeconfig)
			k, err := LoadKubeconfig("")
			if err != nil {
				t.Fatal(err)
			}
			var got error
			if tt.context == "" {
				_, got = k.ResolveContext("")
			} else {
				_, got = k.RESTConfig(tt.context)
			}
			if !errors.Is(got, ErrNoContext) {
				t.Errorf("error %v does not wrap ErrNoContext", got)
			}
			if got == nil || got.Error() != tt.want {
				t.Errorf("got  %v\nwant %s", got, tt.want)
			}
		})
	}
}
