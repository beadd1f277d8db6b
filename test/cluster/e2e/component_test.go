package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kpf-dev/kpf/test/cluster/localcluster"
)

// ownCluster starts a cluster of the test's own (its components get
// killed), stopped when the test ends.
func ownCluster(t *testing.T, name string) (localcluster.Options, *localcluster.Cluster, kubernetes.Interface) {
	t.Helper()
	needCluster(t) // only with KPF_E2E=1
	o := clusterOptions(name)
	t.Cleanup(func() { localcluster.Down(context.Background(), o) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := localcluster.Up(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o, c, client
}

func listening(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Each component can be stopped (killed or terminated) and started again
// on the same port, through the API and through kpfcluster; state.json
// follows the new pids and the cluster works afterwards.
func TestE2EComponentStopStart(t *testing.T) {
	o, c, client := ownCluster(t, "e2e-restart")
	kpfcluster := filepath.Join(t.TempDir(), "kpfcluster")
	if out, err := exec.Command("go", "build", "-o", kpfcluster, "../cmd/kpfcluster").CombinedOutput(); err != nil {
		t.Fatalf("build kpfcluster: %v\n%s", err, out)
	}
	cli := func(args ...string) (string, error) {
		out, err := exec.Command(kpfcluster, append(args, "-name", o.Name, "-dir", o.StateDir)...).CombinedOutput()
		return string(out), err
	}
	for _, tc := range []struct {
		component string
		signal    string
		viaCLI    bool
	}{
		{localcluster.APIServer, "KILL", true},
		{localcluster.Etcd, "KILL", false},
		{localcluster.NodeAgent, "KILL", true},
		{localcluster.ControllerManager, "TERM", false},
		{localcluster.NodeAgent, "TERM", false},
	} {
		t.Run(tc.component+"-"+tc.signal, func(t *testing.T) {
			before, err := localcluster.Load(o.StateDir, o.Name)
			if err != nil {
				t.Fatal(err)
			}
			comp := *before.Component(tc.component)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if tc.viaCLI {
				if out, err := cli("stop", "-component", tc.component, "-signal", tc.signal); err != nil {
					t.Fatalf("kpfcluster stop: %v\n%s", err, out)
				}
			} else if err := before.StopComponent(ctx, tc.component, localcluster.Signals[tc.signal]); err != nil {
				t.Fatal(err)
			}
			if before.Running(tc.component) {
				t.Fatalf("%s still running after stop", tc.component)
			}
			if listening(comp.Port) {
				t.Fatalf("%s: port %d still listening after stop", tc.component, comp.Port)
			}
			if err := before.StopComponent(ctx, tc.component, syscall.SIGTERM); err == nil || !strings.Contains(err.Error(), "not running") {
				t.Errorf("stopping a stopped component: %v, want not running", err)
			}
			if tc.viaCLI {
				if out, err := cli("start", "-component", tc.component); err != nil || !strings.Contains(out, "is ready") {
					t.Fatalf("kpfcluster start: %v\n%s", err, out)
				}
			} else if err := before.StartComponent(ctx, tc.component); err != nil {
				t.Fatal(err)
			}
			after, err := localcluster.Load(o.StateDir, o.Name)
			if err != nil {
				t.Fatal(err)
			}
			got := after.Component(tc.component)
			if got.PID == comp.PID || got.Port != comp.Port || !after.Running(tc.component) {
				t.Fatalf("after start: %+v, want a new pid on port %d", got, comp.Port)
			}
			if err := after.StartComponent(ctx, tc.component); err == nil || !strings.Contains(err.Error(), "already running") {
				t.Errorf("starting a running component: %v, want already running", err)
			}
			// The cluster works: it stores and serves an object.
			name := fmt.Sprintf("after-%d", time.Now().UnixNano())
			waitUntil(t, 60*time.Second, "the cluster to store a ConfigMap", func(ctx context.Context) (bool, error) {
				_, err := client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
				return err == nil || apierrors.IsAlreadyExists(err), nil
			})
			if err := after.Healthy(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
	if out, err := cli("start", "-component", "nope"); err == nil || !strings.Contains(out, `no component "nope"`) {
		t.Errorf("kpfcluster start -component nope: %v\n%s", err, out)
	}
	if out, err := cli("stop", "-component", localcluster.Etcd, "-signal", "HUP"); err == nil || !strings.Contains(out, "unknown signal") {
		t.Errorf("kpfcluster stop -signal HUP: %v\n%s", err, out)
	}

	// A bootstrap token authenticates while its Secret exists: deleting
	// the Secret revokes it (401), creating it again restores it.
	t.Run("bootstrap-token", func(t *testing.T) {
		const id, secret = "kpfe2e", "0123456789abcdef"
		token := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + id, Namespace: "kube-system"},
			Type:       "bootstrap.kubernetes.io/token",
			StringData: map[string]string{
				"token-id": id, "token-secret": secret,
				"usage-bootstrap-authentication": "true",
				"auth-extra-groups":              "system:bootstrappers:kpf-e2e",
			},
		}
		ctx := context.Background()
		secrets := client.CoreV1().Secrets("kube-system")
		if _, err := secrets.Create(ctx, token, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		user, err := kubernetes.NewForConfig(&rest.Config{
			Host:            c.Server,
			TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(c.Dir, "pki", "ca.crt")},
			BearerToken:     id + "." + secret,
		})
		if err != nil {
			t.Fatal(err)
		}
		authenticated := func(want bool) func(context.Context) (bool, error) {
			return func(ctx context.Context) (bool, error) {
				_, err := user.Discovery().ServerVersion()
				if err != nil && !apierrors.IsUnauthorized(err) {
					return false, err
				}
				return (err == nil) == want, nil
			}
		}
		waitUntil(t, 30*time.Second, "the token to authenticate", authenticated(true))
		if err := secrets.Delete(ctx, token.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// kube-apiserver caches successful authentications for 10 s.
		waitUntil(t, 60*time.Second, "the revoked token to get 401", authenticated(false))
		if _, err := secrets.Create(ctx, token, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 60*time.Second, "the restored token to authenticate", authenticated(true))
	})
}
