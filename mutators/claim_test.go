package mutators_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/mutators"
)

const managed = v1alpha1.DefaultManagedStorageClass

func class(name, provisioner string, annotations, params map[string]string) *storagev1.StorageClass {
	return &storagev1.StorageClass{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Annotations: annotations},
		Provisioner: provisioner,
		Parameters:  params,
	}
}

func optedIn(name string) *storagev1.StorageClass {
	return class(name, "csi.example.com", map[string]string{v1alpha1.AnnotationRWX: v1alpha1.RWXModeNFS}, nil)
}

// classes is the cluster most cases run against: "fast" and "slow" opted in, "plain" not,
// "static" opted in but statically provisioned, the managed class backed by "fast".
func classes() map[string]*storagev1.StorageClass {
	static := optedIn("static")
	static.Provisioner = mutators.NoProvisioner
	return map[string]*storagev1.StorageClass{
		"fast":   optedIn("fast"),
		"slow":   optedIn("slow"),
		"plain":  class("plain", "csi.example.com", nil, nil),
		"static": static,
		"weird":  class("weird", "csi.example.com", map[string]string{v1alpha1.AnnotationRWX: "yes"}, nil),
		managed:  class(managed, "sharewarden.io/nfs", nil, map[string]string{v1alpha1.ParameterBackingStorageClass: "fast"}),
	}
}

func facts() mutators.ClaimFacts {
	return mutators.ClaimFacts{ManagedClass: managed, Classes: classes()}
}

type claimOpt func(*corev1.PersistentVolumeClaim)

func claim(opts ...claimOpt) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "team-a"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: *resourceQ("1Gi")}},
		},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func on(name string) claimOpt {
	return func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = ptr.To(name) }
}

func modes(m ...corev1.PersistentVolumeAccessMode) claimOpt {
	return func(c *corev1.PersistentVolumeClaim) { c.Spec.AccessModes = m }
}

func annotated(k, v string) claimOpt {
	return func(c *corev1.PersistentVolumeClaim) {
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations[k] = v
	}
}

func block(c *corev1.PersistentVolumeClaim) {
	c.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock)
}

func fromClaim(name string) claimOpt {
	return func(c *corev1.PersistentVolumeClaim) {
		c.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: name}
	}
}

func fromRef(group, kind, name string, ns *string) claimOpt {
	return func(c *corev1.PersistentVolumeClaim) {
		c.Spec.DataSourceRef = &corev1.TypedObjectReference{APIGroup: ptr.To(group), Kind: kind, Name: name, Namespace: ns}
	}
}

func TestMutateClaim(t *testing.T) {
	withDefault := func(name string) func(*mutators.ClaimFacts) {
		return func(f *mutators.ClaimFacts) { f.DefaultClass = name }
	}
	withClaims := func(cs ...*corev1.PersistentVolumeClaim) func(*mutators.ClaimFacts) {
		return func(f *mutators.ClaimFacts) {
			f.Claims = map[string]*corev1.PersistentVolumeClaim{}
			for _, c := range cs {
				f.Claims[c.Name] = c
			}
		}
	}
	withManagedParams := func(p map[string]string) func(*mutators.ClaimFacts) {
		return func(f *mutators.ClaimFacts) { f.Classes[managed].Parameters = p }
	}
	withoutClass := func(name string) func(*mutators.ClaimFacts) {
		return func(f *mutators.ClaimFacts) { delete(f.Classes, name) }
	}
	privileged := func(f *mutators.ClaimFacts) { f.Privileged = true }
	updateOf := func(old *corev1.PersistentVolumeClaim) func(*mutators.ClaimFacts) {
		return func(f *mutators.ClaimFacts) { f.Old = old }
	}
	named := func(name string, opts ...claimOpt) *corev1.PersistentVolumeClaim {
		c := claim(opts...)
		c.Name = name
		return c
	}

	cases := []struct {
		name  string
		claim *corev1.PersistentVolumeClaim
		facts []func(*mutators.ClaimFacts)
		// want, when the claim is admitted
		outcome mutators.Outcome
		class   string // storageClassName afterwards ("" = unchanged)
		backing string // backing annotation afterwards
		// denial, when refused: every substring must appear
		deny []string
	}{
		// Rewrites.
		{name: "RWX on opted-in class is rewritten", claim: claim(on("fast")),
			outcome: mutators.Rewritten, class: managed, backing: "fast"},
		{name: "ROX on opted-in class is rewritten", claim: claim(on("slow"), modes(corev1.ReadOnlyMany)),
			outcome: mutators.Rewritten, class: managed, backing: "slow"},
		{name: "RWO+RWX is rewritten", claim: claim(on("fast"), modes(corev1.ReadWriteOnce, corev1.ReadWriteMany)),
			outcome: mutators.Rewritten, class: managed, backing: "fast"},
		{name: "unset class resolves to an opted-in default", claim: claim(), facts: []func(*mutators.ClaimFacts){withDefault("slow")},
			outcome: mutators.Rewritten, class: managed, backing: "slow"},
		{name: "user's backing annotation is overwritten by the real class", claim: claim(on("fast"), annotated(v1alpha1.AnnotationBackingStorageClass, "slow")),
			outcome: mutators.Rewritten, class: managed, backing: "fast"},
		{name: "explicit Filesystem mode is fine", claim: claim(on("fast"), func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeFilesystem) }),
			outcome: mutators.Rewritten, class: managed, backing: "fast"},
		{name: "other sharewarden.io annotations are the user's", claim: claim(on("fast"), annotated(v1alpha1.GroupName+"/note", "x")),
			outcome: mutators.Rewritten, class: managed, backing: "fast"},

		// Claims against the managed class.
		{name: "managed class: backing from the class parameter", claim: claim(on(managed)),
			outcome: mutators.BackingRecorded, class: managed, backing: "fast"},
		{name: "managed class: re-invocation passes untouched", claim: claim(on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "fast")),
			outcome: mutators.AlreadyRewritten, backing: "fast"},
		{name: "managed class: another opted-in backing is kept", claim: claim(on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "slow")),
			outcome: mutators.AlreadyRewritten, backing: "slow"},
		{name: "managed class as default class", claim: claim(), facts: []func(*mutators.ClaimFacts){withDefault(managed)},
			outcome: mutators.BackingRecorded, backing: "fast"},

		// Untouched.
		{name: "RWO passes", claim: claim(on("fast"), modes(corev1.ReadWriteOnce)), outcome: mutators.NotShared},
		{name: "RWOP passes", claim: claim(on("fast"), modes(corev1.ReadWriteOncePod)), outcome: mutators.NotShared},
		{name: "RWO on the managed class passes", claim: claim(on(managed), modes(corev1.ReadWriteOnce)), outcome: mutators.NotShared},
		{name: "class not opted in", claim: claim(on("plain")), outcome: mutators.NotOptedIn},
		{name: "opt-in value other than nfs", claim: claim(on("weird")), outcome: mutators.NotOptedIn},
		{name: "unknown class", claim: claim(on("nope")), outcome: mutators.NotOptedIn},
		{name: "explicit empty class", claim: claim(on("")), facts: []func(*mutators.ClaimFacts){withDefault("fast")}, outcome: mutators.NoClass},
		{name: "unset class, no default", claim: claim(), outcome: mutators.NoClass},
		{name: "unset class, default not opted in", claim: claim(), facts: []func(*mutators.ClaimFacts){withDefault("plain")}, outcome: mutators.NotOptedIn},
		{name: "block RWO is not ours", claim: claim(on("fast"), modes(corev1.ReadWriteOnce), block), outcome: mutators.NotShared},
		{name: "block RWX on a class not opted in is not ours", claim: claim(on("plain"), block), outcome: mutators.NotOptedIn},
		{name: "system annotations from ShareWarden itself", claim: claim(on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "fast"), annotated(v1alpha1.AnnotationBackingClaim, "sharewarden-system/x")),
			facts: []func(*mutators.ClaimFacts){privileged}, outcome: mutators.AlreadyRewritten, backing: "fast"},
		{name: "update leaving guarded annotations alone", claim: claim(on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "fast"), annotated(v1alpha1.AnnotationServer, "s"), annotated("team", "b")),
			facts: []func(*mutators.ClaimFacts){updateOf(claim(on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "fast"), annotated(v1alpha1.AnnotationServer, "s")))}, outcome: mutators.Updated, backing: "fast"},
		{name: "ShareWarden may set system annotations on update", claim: claim(on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "fast"), annotated(v1alpha1.AnnotationServer, "s")),
			facts: []func(*mutators.ClaimFacts){privileged, updateOf(claim(on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "fast")))}, outcome: mutators.Updated, backing: "fast"},

		// Clones of ShareWarden claims: the backing claim is cloned from the source's.
		{name: "clone of a ShareWarden claim backed by the same class", claim: claim(on("fast"), fromClaim("src")),
			facts:   []func(*mutators.ClaimFacts){withClaims(named("src", on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "fast")))},
			outcome: mutators.Rewritten, class: managed, backing: "fast"},
		{name: "clone of a ShareWarden claim by dataSourceRef", claim: claim(on("fast"), fromRef("", "PersistentVolumeClaim", "src", nil)),
			facts:   []func(*mutators.ClaimFacts){withClaims(named("src", on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "fast")))},
			outcome: mutators.Rewritten, class: managed, backing: "fast"},
		{name: "clone by a dataSourceRef naming this namespace", claim: claim(on("fast"), fromRef("", "PersistentVolumeClaim", "src", ptr.To("team-a"))),
			facts:   []func(*mutators.ClaimFacts){withClaims(named("src", on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "fast")))},
			outcome: mutators.Rewritten, class: managed, backing: "fast"},
		{name: "clone of a ShareWarden claim backed by the managed class's default", claim: claim(on("fast"), fromClaim("src")),
			facts:   []func(*mutators.ClaimFacts){withClaims(named("src", on(managed)))},
			outcome: mutators.Rewritten, class: managed, backing: "fast"},
		{name: "clone of a read-only ShareWarden claim", claim: claim(on("slow"), fromClaim("src")),
			facts:   []func(*mutators.ClaimFacts){withClaims(named("src", on(managed), modes(corev1.ReadOnlyMany), annotated(v1alpha1.AnnotationBackingStorageClass, "slow")))},
			outcome: mutators.Rewritten, class: managed, backing: "slow"},
		{name: "managed-class claim cloning a ShareWarden claim", claim: claim(on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "slow"), fromClaim("src")),
			facts:   []func(*mutators.ClaimFacts){withClaims(named("src", on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "slow")))},
			outcome: mutators.AlreadyRewritten, backing: "slow"},

		// Refused.
		{name: "RWX block", claim: claim(on("fast"), block),
			deny: []string{"spec.volumeMode", "NFS", "filesystems", "volumeMode: Filesystem"}},
		{name: "ROX block on the managed class", claim: claim(on(managed), modes(corev1.ReadOnlyMany), block),
			deny: []string{"spec.volumeMode", "volumeMode: Filesystem"}},
		{name: "managed class without backing parameter", claim: claim(on(managed)), facts: []func(*mutators.ClaimFacts){withManagedParams(nil)},
			deny: []string{"spec.storageClassName", "missing backing class", v1alpha1.ParameterBackingStorageClass, "opted-in class"}},
		{name: "managed class backed by itself", claim: claim(on(managed)), facts: []func(*mutators.ClaimFacts){withManagedParams(map[string]string{v1alpha1.ParameterBackingStorageClass: managed})},
			deny: []string{"managed class itself", "ReadWriteOnce storage class"}},
		{name: "backing annotation naming the managed class", claim: claim(on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, managed)),
			deny: []string{"metadata.annotations[sharewarden.io/backing-storage-class]", "managed class itself"}},
		{name: "backing class that does not exist", claim: claim(on(managed)), facts: []func(*mutators.ClaimFacts){withoutClass("fast")},
			deny: []string{"missing backing class", "create it"}},
		{name: "backing annotation naming a class not opted in", claim: claim(on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "plain")),
			deny: []string{"not opted in", "drop the annotation"}},
		{name: "managed class missing", claim: claim(on(managed)), facts: []func(*mutators.ClaimFacts){withoutClass(managed)},
			deny: []string{"does not exist", "install"}},
		{name: "user sets backing-claim", claim: claim(on("fast"), annotated(v1alpha1.AnnotationBackingClaim, "other-team/their-data")),
			deny: []string{"metadata.annotations[sharewarden.io/backing-claim]", "another tenant", "remove the annotation"}},
		{name: "user sets server identity, even on an RWO claim", claim: claim(on("plain"), modes(corev1.ReadWriteOnce), annotated(v1alpha1.AnnotationServer, "x")),
			deny: []string{"sharewarden.io/server", "only ShareWarden"}},
		{name: "every problem is reported", claim: claim(on("fast"), annotated(v1alpha1.AnnotationBackingClaim, "a"), annotated(v1alpha1.AnnotationServer, "b")),
			deny: []string{"backing-claim", "sharewarden.io/server"}},
		{name: "user changes server identity on update", claim: claim(on(managed), annotated(v1alpha1.AnnotationServer, "theirs")),
			facts: []func(*mutators.ClaimFacts){updateOf(claim(on(managed), annotated(v1alpha1.AnnotationServer, "mine")))},
			deny:  []string{"sharewarden.io/server", `leave it as it was ("mine")`}},
		{name: "user removes backing-claim on update", claim: claim(on(managed)),
			facts: []func(*mutators.ClaimFacts){updateOf(claim(on(managed), annotated(v1alpha1.AnnotationBackingClaim, "ns/c")))},
			deny:  []string{"backing-claim"}},
		{name: "user changes backing class on update", claim: claim(on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "slow")),
			facts: []func(*mutators.ClaimFacts){updateOf(claim(on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "fast")))},
			deny:  []string{"cannot change after creation"}},
		{name: "clone of a ShareWarden claim backed by another class", claim: claim(on("fast"), fromClaim("src")),
			facts: []func(*mutators.ClaimFacts){withClaims(named("src", on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "slow")))},
			deny:  []string{"spec.dataSource", `claim "src" is backed by class "slow"`, `clone a claim backed by "fast"`, `request the class "slow"`}},
		{name: "clone of a ShareWarden claim whose default backing differs", claim: claim(on("slow"), fromClaim("src")),
			facts: []func(*mutators.ClaimFacts){withClaims(named("src", on(managed)))},
			deny:  []string{`claim "src" is backed by class "fast"`, `clone a claim backed by "slow"`}},
		{name: "clone of a ShareWarden claim with no backing class at all", claim: claim(on("fast"), fromClaim("src")),
			facts: []func(*mutators.ClaimFacts){withClaims(named("src", on(managed))), withManagedParams(nil)},
			deny:  []string{"spec.dataSource", `claim "src" names no backing class`, "bound"}},
		{name: "clone of an RWO claim on the same class", claim: claim(on("fast"), fromClaim("src")),
			facts: []func(*mutators.ClaimFacts){withClaims(named("src", on("fast"), modes(corev1.ReadWriteOnce)))},
			deny:  []string{"spec.dataSource", `claim "src" is not a ShareWarden volume`, `its class is "fast"`, "cannot clone", "clone a ShareWarden ReadWriteMany claim", "copy the data in"}},
		{name: "clone of an RWO claim by dataSourceRef", claim: claim(on("fast"), fromRef("", "PersistentVolumeClaim", "src", nil)),
			facts: []func(*mutators.ClaimFacts){withClaims(named("src", on("plain"), modes(corev1.ReadWriteOnce)))},
			deny:  []string{"spec.dataSourceRef", `claim "src" is not a ShareWarden volume`}},
		{name: "clone of a claim that only carries a backing annotation", claim: claim(on("fast"), fromClaim("src")),
			facts: []func(*mutators.ClaimFacts){withClaims(named("src", on("fast"), modes(corev1.ReadWriteOnce), annotated(v1alpha1.AnnotationBackingStorageClass, "fast")))},
			deny:  []string{`claim "src" is not a ShareWarden volume`}},
		{name: "clone of a claim with no class", claim: claim(on("fast"), fromClaim("src")),
			facts: []func(*mutators.ClaimFacts){withClaims(named("src", on("")))},
			deny:  []string{`claim "src" is not a ShareWarden volume`, `its class is ""`}},
		{name: "clone of a missing claim", claim: claim(on("fast"), fromClaim("gone")),
			deny: []string{"spec.dataSource.name", "does not exist"}},
		{name: "clone onto a statically provisioned class", claim: claim(on("static"), fromClaim("src")),
			facts: []func(*mutators.ClaimFacts){withClaims(named("src", on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "static")))},
			deny:  []string{"no dynamic provisioner", "without a data source"}},
		// Restores of snapshots: a ShareWarden snapshot stands for a backing snapshot, which the
		// backing claim restores (the controller reports a snapshot of another driver).
		{name: "restore from a snapshot", claim: claim(on("fast"), fromRef("snapshot.storage.k8s.io", "VolumeSnapshot", "snap", nil)),
			outcome: mutators.Rewritten, class: managed, backing: "fast"},
		{name: "restore from a snapshot by dataSource", claim: claim(on("slow"), func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: "snap"}
		}), outcome: mutators.Rewritten, class: managed, backing: "slow"},
		{name: "restore on the managed class", claim: claim(on(managed), fromRef("snapshot.storage.k8s.io", "VolumeSnapshot", "snap", ptr.To("team-a"))),
			outcome: mutators.BackingRecorded, class: managed, backing: "fast"},
		{name: "cross-namespace snapshot", claim: claim(on("fast"), fromRef("snapshot.storage.k8s.io", "VolumeSnapshot", "s", ptr.To("team-b"))),
			deny: []string{"spec.dataSourceRef.namespace", "another namespace", "clone a ShareWarden ReadWriteMany claim of this namespace"}},
		{name: "cross-namespace clone", claim: claim(on("fast"), fromRef("", "PersistentVolumeClaim", "src", ptr.To("team-b"))),
			facts: []func(*mutators.ClaimFacts){withClaims(named("src", on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "fast")))},
			deny:  []string{"spec.dataSourceRef.namespace", "another namespace"}},
		{name: "volume populator", claim: claim(on("fast"), fromRef("populator.example.com", "Seed", "s", nil)),
			deny: []string{"spec.dataSourceRef", "Seed.populator.example.com", "volume populators", "fill the volume"}},
		{name: "core kind that is no claim", claim: claim(on("fast"), fromRef("", "ConfigMap", "s", nil)),
			deny: []string{"ConfigMap", "volume populators"}},
		{name: "block and bad backing together", claim: claim(on(managed), block), facts: []func(*mutators.ClaimFacts){withManagedParams(nil)},
			deny: []string{"missing backing class", "volumeMode"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := facts()
			for _, o := range tc.facts {
				o(&f)
			}
			in := tc.claim.DeepCopy()
			res, err := mutators.MutateClaim(tc.claim, f)
			if !equalJSON(t, in, tc.claim) {
				t.Fatal("MutateClaim modified its input")
			}
			if tc.deny != nil {
				d, ok := mutators.AsDenied(err)
				if !ok {
					t.Fatalf("want a denial, got result %+v err %v", res.Outcome, err)
				}
				for _, s := range tc.deny {
					if !strings.Contains(d.Error(), s) {
						t.Errorf("denial %q lacks %q", d.Error(), s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if res.Outcome != tc.outcome {
				t.Errorf("outcome %q, want %q", res.Outcome, tc.outcome)
			}
			changed := tc.outcome == mutators.Rewritten || tc.outcome == mutators.BackingRecorded
			if res.Changed != changed {
				t.Errorf("Changed=%v, want %v", res.Changed, changed)
			}
			if !changed && res.Claim != tc.claim {
				t.Error("an unchanged claim must be returned as is")
			}
			if tc.class != "" && ptr.Deref(res.Claim.Spec.StorageClassName, "") != tc.class {
				t.Errorf("storageClassName %q, want %q", ptr.Deref(res.Claim.Spec.StorageClassName, "<nil>"), tc.class)
			}
			if tc.class == "" && !equalJSON(t, res.Claim.Spec.StorageClassName, tc.claim.Spec.StorageClassName) {
				t.Errorf("storageClassName changed to %v", ptr.Deref(res.Claim.Spec.StorageClassName, "<nil>"))
			}
			if got := res.Claim.Annotations[v1alpha1.AnnotationBackingStorageClass]; got != tc.backing {
				t.Errorf("backing annotation %q, want %q", got, tc.backing)
			}
			// A claim the rules change is admitted marked with the managed class's provisioner,
			// as the PV controller would mark it; one passed untouched keeps its annotations.
			if changed {
				for _, k := range []string{v1alpha1.AnnotationStorageProvisioner, v1alpha1.AnnotationBetaStorageProvisioner} {
					if got := res.Claim.Annotations[k]; got != v1alpha1.Provisioner {
						t.Errorf("annotation %s %q, want %q", k, got, v1alpha1.Provisioner)
					}
				}
			} else if _, ok := res.Claim.Annotations[v1alpha1.AnnotationStorageProvisioner]; ok {
				t.Error("an untouched claim got the provisioner annotation")
			}
		})
	}
}

// The provisioner named on a rewritten claim is the managed class's, CSI or legacy; without the
// class at hand, or with a class of another provisioner, the claim is left for the PV controller
// to mark.
func TestMutateClaimMarksProvisioner(t *testing.T) {
	for _, tc := range []struct {
		name, provisioner, want string
		drop                    bool
	}{
		{name: "legacy class", provisioner: v1alpha1.Provisioner, want: v1alpha1.Provisioner},
		{name: "CSI class", provisioner: v1alpha1.CSIDriverName, want: v1alpha1.CSIDriverName},
		{name: "class of another provisioner", provisioner: "csi.example.com"},
		{name: "managed class not looked up", drop: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := facts()
			f.Classes[managed].Provisioner = tc.provisioner
			if tc.drop {
				delete(f.Classes, managed)
			}
			res, err := mutators.MutateClaim(claim(on("fast")), f)
			if err != nil || res.Outcome != mutators.Rewritten {
				t.Fatalf("outcome %q, err %v; want rewritten", res.Outcome, err)
			}
			for _, k := range []string{v1alpha1.AnnotationStorageProvisioner, v1alpha1.AnnotationBetaStorageProvisioner} {
				if got := res.Claim.Annotations[k]; got != tc.want {
					t.Errorf("annotation %s %q, want %q", k, got, tc.want)
				}
			}
		})
	}
}

func TestMutateClaimNil(t *testing.T) {
	if _, err := mutators.MutateClaim(nil, facts()); err == nil {
		t.Fatal("want an error for a nil claim")
	} else if _, ok := mutators.AsDenied(err); ok {
		t.Fatal("a nil claim is a programming error, not a denial")
	}
}

// A rewritten claim, fed back (re-invocation), passes untouched.
func TestMutateClaimIdempotent(t *testing.T) {
	for _, c := range []*corev1.PersistentVolumeClaim{claim(on("fast")), claim(on(managed)), claim(on("slow"), modes(corev1.ReadOnlyMany))} {
		first, err := mutators.MutateClaim(c, facts())
		if err != nil || !first.Changed {
			t.Fatalf("first pass: changed=%v err=%v", first.Changed, err)
		}
		second, err := mutators.MutateClaim(first.Claim, facts())
		if err != nil {
			t.Fatal(err)
		}
		if second.Changed || second.Outcome != mutators.AlreadyRewritten {
			t.Errorf("second pass changed=%v outcome=%s, want untouched", second.Changed, second.Outcome)
		}
	}
}

func TestDefaultClass(t *testing.T) {
	at := func(name string, sec int64, def string) storagev1.StorageClass {
		c := storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.Unix(sec, 0)}}
		if def != "" {
			c.Annotations = map[string]string{def: "true"}
		}
		return c
	}
	const ga, beta = "storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"
	cases := []struct {
		name    string
		classes []storagev1.StorageClass
		want    string
	}{
		{"none", nil, ""},
		{"no default", []storagev1.StorageClass{at("a", 1, ""), at("b", 2, "")}, ""},
		{"one default", []storagev1.StorageClass{at("a", 1, ""), at("b", 2, ga)}, "b"},
		{"beta annotation", []storagev1.StorageClass{at("a", 1, beta)}, "a"},
		{"newest of several", []storagev1.StorageClass{at("old", 1, ga), at("new", 5, ga), at("mid", 3, beta)}, "new"},
		{"tie goes to the first name", []storagev1.StorageClass{at("z", 5, ga), at("m", 5, ga)}, "m"},
	}
	for _, tc := range cases {
		if got := mutators.DefaultClass(tc.classes); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
