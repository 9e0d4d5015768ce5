package podmeta

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParsePodLogDir(t *testing.T) {
	cases := []struct {
		in            string
		ns, name, uid string
		wantErr       bool
	}{
		{in: "default_web-7d9f8c6b5-x2x9z_3f1c2a7e-5b1d-4c3e-9f1a-2b3c4d5e6f70", ns: "default", name: "web-7d9f8c6b5-x2x9z", uid: "3f1c2a7e-5b1d-4c3e-9f1a-2b3c4d5e6f70"},
		{in: "kube-system_etcd-vm_0123456789abcdef0123456789abcdef", ns: "kube-system", name: "etcd-vm", uid: "0123456789abcdef0123456789abcdef"},
		{in: "ns_pod.with.dots_u1", ns: "ns", name: "pod.with.dots", uid: "u1"},
		{in: "ns_name", wantErr: true},
		{in: "ns_na_me_uid", wantErr: true},
		{in: "_name_uid", wantErr: true},
		{in: "ns__uid", wantErr: true},
		{in: "ns_name_", wantErr: true},
		{in: "NS_name_uid", wantErr: true},
		{in: "ns_name_../../etc", wantErr: true},
		{in: "ns_name_uid\x00", wantErr: true},
		{in: "ns_name_" + strings.Repeat("a", 65), wantErr: true},
		{in: strings.Repeat("a", 64) + "_name_uid", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tc := range cases {
		ns, name, uid, err := ParsePodLogDir(tc.in)
		if tc.wantErr {
			if err == nil || !errors.Is(err, ErrLogName) {
				t.Errorf("ParsePodLogDir(%q) err = %v, want ErrLogName", tc.in, err)
			}
			continue
		}
		if err != nil || ns != tc.ns || name != tc.name || uid != tc.uid {
			t.Errorf("ParsePodLogDir(%q) = %q %q %q %v, want %q %q %q", tc.in, ns, name, uid, err, tc.ns, tc.name, tc.uid)
		}
	}
}

func TestParseContainerLogLink(t *testing.T) {
	id := hexID(7)
	pod, ns, c, gotID, err := ParseContainerLogLink("web-0_shop_side-car-" + id + ".log")
	if err != nil || pod != "web-0" || ns != "shop" || c != "side-car" || gotID != id {
		t.Errorf("got %q %q %q %q %v", pod, ns, c, gotID, err)
	}
	for _, bad := range []string{
		"web-0_shop_app-" + id, // no .log
		"web-0_shop_app-" + id[:63] + ".log",
		"web-0_shop_app-" + strings.ToUpper(id) + ".log",
		"web-0_shop_app" + id + ".log",
		"web-0_shop_-" + id + ".log",
		"web_0_shop_app-" + id + ".log",
	} {
		if _, _, _, _, err := ParseContainerLogLink(bad); !errors.Is(err, ErrLogName) {
			t.Errorf("ParseContainerLogLink(%q) err = %v, want ErrLogName", bad, err)
		}
	}
}

// TestKubeletLogsTree reads a real directory tree: stray files and foreign names are skipped, links
// give container ids by their target's pod directory (two pods with the same name), and a read is
// reused for the cache's lifetime.
func TestKubeletLogsTree(t *testing.T) {
	logs := newLogTree(t)
	logs.addPod(t, "shop", "web-0", "11111111-aaaa-4000-8000-000000000001", "app", hexID(1))
	// The same pod name recreated (StatefulSet): the old directory still exists.
	logs.addPod(t, "shop", "web-0", "22222222-aaaa-4000-8000-000000000002", "app", hexID(2))
	for _, stray := range []string{"README", "not_a_pod_dir_x", "lost+found"} {
		if err := os.Mkdir(filepath.Join(logs.root(), stray), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(logs.root(), "ns_file_u9"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A link whose target is in a pod directory we do not have, and a dangling foreign link.
	if err := os.Symlink("/var/log/pods/x_y_z9/app/0.log", filepath.Join(logs.dir, "containers", "y_x_app-"+hexID(3)+".log")); err != nil {
		t.Fatal(err)
	}

	k := newKubeletLogs(logs.root(), time.Hour)
	if err := k.Err(); err != nil {
		t.Fatal(err)
	}
	if n := len(k.Pods()); n != 2 {
		t.Fatalf("Pods() = %d pods, want 2: %+v", n, k.Pods())
	}
	for uid, id := range map[string]string{
		"11111111-aaaa-4000-8000-000000000001": hexID(1), "22222222-aaaa-4000-8000-000000000002": hexID(2),
	} {
		p, ok := k.Pod(uid)
		if !ok || p.Namespace != "shop" || p.Name != "web-0" || len(p.Containers) != 1 || p.Containers[id] != "app" {
			t.Errorf("Pod(%s) = %+v %v", uid, p, ok)
		}
	}
	// Cached: a new directory is not seen until the TTL passes.
	logs.addPod(t, "shop", "web-1", "33333333-aaaa-4000-8000-000000000003", "app", hexID(4))
	if _, ok := k.Pod("33333333-aaaa-4000-8000-000000000003"); ok {
		t.Errorf("new pod seen within the cache TTL")
	}
	k2 := newKubeletLogs(logs.root(), 0)
	if _, ok := k2.Pod("33333333-aaaa-4000-8000-000000000003"); !ok {
		t.Errorf("new pod not seen without cache")
	}

	missing := NewKubeletLogs(filepath.Join(t.TempDir(), "nope", "pods"))
	if err := missing.Err(); !errors.Is(err, os.ErrNotExist) || missing.HasPods() {
		t.Errorf("missing root: err %v, HasPods %v", err, missing.HasPods())
	}
}

func FuzzParsePodLogDir(f *testing.F) {
	for _, s := range []string{
		"default_web-7d9f8c6b5-x2x9z_3f1c2a7e-5b1d-4c3e-9f1a-2b3c4d5e6f70",
		"kube-system_etcd-vm_0123456789abcdef0123456789abcdef",
		"a_b_c", "___", "a_b", "a_b_c_d", "ns_name_uid\x00", strings.Repeat("x", 1<<20) + "_a_b",
		"ns_" + strings.Repeat("a.", 200) + "_u", "-1_-1_-1", "ns_name_18446744073709551616",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ns, name, uid, err := ParsePodLogDir(s)
		if err != nil {
			if !errors.Is(err, ErrLogName) {
				t.Fatalf("error %v does not wrap ErrLogName", err)
			}
			return
		}
		if ns+"_"+name+"_"+uid != s {
			t.Fatalf("%q parsed to %q %q %q, which do not rebuild it", s, ns, name, uid)
		}
		if strings.ContainsAny(ns+name+uid, "/_\x00") || ns == "" || name == "" || uid == "" {
			t.Fatalf("%q parsed to unsafe or empty parts %q %q %q", s, ns, name, uid)
		}
	})
}

func FuzzParseContainerLogLink(f *testing.F) {
	for _, s := range []string{
		"web-0_shop_app-" + hexID(1) + ".log", "a_b_c-.log", "a_b_-" + hexID(1) + ".log", ".log", "a_b_c-d.log\x00",
		strings.Repeat("a", 1<<20) + "_b_c-" + hexID(1) + ".log",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pod, ns, c, id, err := ParseContainerLogLink(s)
		if err != nil {
			if !errors.Is(err, ErrLogName) {
				t.Fatalf("error %v does not wrap ErrLogName", err)
			}
			return
		}
		if pod+"_"+ns+"_"+c+"-"+id+".log" != s || len(id) != 64 {
			t.Fatalf("%q parsed to %q %q %q %q", s, pod, ns, c, id)
		}
	})
}
