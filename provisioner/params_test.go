package provisioner

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sharewarden/sharewarden/nfsserver"
)

func managedClass(params map[string]string) *storagev1.StorageClass {
	return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "sharewarden-nfs"}, Provisioner: "sharewarden.io/nfs", Parameters: params}
}

func TestParseClassParams(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sc      *storagev1.StorageClass
		check   func(t *testing.T, p ClassParams)
		wantErr []string
	}{
		{name: "defaults", sc: managedClass(nil), check: func(t *testing.T, p ClassParams) {
			if !reflect.DeepEqual(p.MountOptions, DefaultMountOptions()) || p.ReclaimPolicy != corev1.PersistentVolumeReclaimDelete ||
				p.Squash != nfsserver.SquashNone || p.AnonymousUID != nil || !p.ClientAllowlist {
				t.Errorf("defaults: %+v", p)
			}
			if q := p.Resources.Requests[corev1.ResourceMemory]; q.Cmp(resource.MustParse("64Mi")) != 0 {
				t.Errorf("memory request %s", q.String())
			}
		}},
		{name: "everything set", sc: func() *storagev1.StorageClass {
			sc := managedClass(map[string]string{
				"backingStorageClass": "ssd", ParamServerCPU: "200m", ParamServerMemory: "100Mi", ParamServerMemoryLimit: "1Gi",
				ParamNodeSelector: "disk=ssd, zone=a", ParamTolerations: `[{"key":"storage","operator":"Exists","effect":"NoSchedule"}]`,
				ParamPriorityClassName: "storage-critical", ParamSquash: "all", ParamAnonymousUID: "1000", ParamAnonymousGID: "0",
				ParamClientAllowlist: ClientAllowlistOff,
			})
			sc.MountOptions = []string{"nfsvers=4.2", "hard"}
			sc.ReclaimPolicy = ptr.To(corev1.PersistentVolumeReclaimRetain)
			return sc
		}(), check: func(t *testing.T, p ClassParams) {
			if p.BackingStorageClass != "ssd" || p.Squash != nfsserver.SquashAll || ptr.Deref(p.AnonymousUID, -1) != 1000 ||
				ptr.Deref(p.AnonymousGID, -1) != 0 || p.ClientAllowlist || p.PriorityClassName != "storage-critical" ||
				p.ReclaimPolicy != corev1.PersistentVolumeReclaimRetain || !reflect.DeepEqual(p.MountOptions, []string{"nfsvers=4.2", "hard"}) ||
				!reflect.DeepEqual(p.NodeSelector, map[string]string{"disk": "ssd", "zone": "a"}) || len(p.Tolerations) != 1 || p.Tolerations[0].Key != "storage" {
				t.Errorf("parsed %+v", p)
			}
		}},
		{name: "unknown key", sc: managedClass(map[string]string{"serverCpu": "1"}), wantErr: []string{`parameters[serverCpu]`, "Unsupported value"}},
		{name: "bad quantity", sc: managedClass(map[string]string{ParamServerCPU: "lots"}), wantErr: []string{ParamServerCPU, "not a quantity"}},
		{name: "limit below request", sc: managedClass(map[string]string{ParamServerMemory: "1Gi", ParamServerMemoryLimit: "100Mi"}), wantErr: []string{"below"}},
		{name: "bad node selector", sc: managedClass(map[string]string{ParamNodeSelector: "ssd"}), wantErr: []string{"key=value"}},
		{name: "bad tolerations", sc: managedClass(map[string]string{ParamTolerations: "{"}), wantErr: []string{"JSON list"}},
		{name: "bad squash", sc: managedClass(map[string]string{ParamSquash: "everyone"}), wantErr: []string{ParamSquash, `"root"`}},
		{name: "root squash", sc: managedClass(map[string]string{ParamSquash: "root", ParamClientAllowlist: ClientAllowlistConsumerNodes}), check: func(t *testing.T, p ClassParams) {
			if p.Squash != nfsserver.SquashRoot || !p.ClientAllowlist {
				t.Errorf("parsed %+v", p)
			}
		}},
		{name: "anonymous uid not a number", sc: managedClass(map[string]string{ParamAnonymousUID: "nobody"}), wantErr: []string{ParamAnonymousUID, "numeric id"}},
		{name: "anonymous gid negative", sc: managedClass(map[string]string{ParamAnonymousGID: "-2"}), wantErr: []string{ParamAnonymousGID}},
		{name: "anonymous uid (uid_t)-1", sc: managedClass(map[string]string{ParamAnonymousUID: "4294967295"}), wantErr: []string{ParamAnonymousUID}},
		{name: "bad allowlist mode", sc: managedClass(map[string]string{ParamClientAllowlist: "false"}), wantErr: []string{ParamClientAllowlist, ClientAllowlistOff}},
		{name: "backs itself", sc: managedClass(map[string]string{"backingStorageClass": "sharewarden-nfs"}), wantErr: []string{"cannot back itself"}},
		{name: "all problems at once", sc: managedClass(map[string]string{ParamSquash: "everyone", ParamServerCPU: "x"}), wantErr: []string{ParamSquash, ParamServerCPU}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseClassParams(tc.sc)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, p)
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
