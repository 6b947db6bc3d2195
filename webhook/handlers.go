package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1alpha1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/mutators"
)

var (
	claimKind = schema.GroupKind{Kind: "PersistentVolumeClaim"}
	podKind   = schema.GroupKind{Kind: "Pod"}
)

// decoder decodes the objects inside admission requests (JSON, the only encoding the apiserver
// sends to webhooks).
var decoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(scheme))
	return serializer.NewCodecFactory(scheme).UniversalDeserializer()
}()

// DecodeObject decodes raw (an AdmissionRequest's object) into into, which must be of kind gk.
// It never panics; every failure is an error saying what was wrong.
func DecodeObject(raw []byte, gk schema.GroupKind, into runtime.Object) error {
	if len(raw) == 0 {
		return fmt.Errorf("the request carries no %s", gk.Kind)
	}
	_, gvk, err := decoder.Decode(raw, nil, into)
	if err != nil {
		return fmt.Errorf("decoding the %s: %w", gk.Kind, err)
	}
	if gvk != nil && gvk.Kind != "" && gvk.GroupKind() != gk {
		return fmt.Errorf("the request carries a %s, want a %s", gvk.GroupKind(), gk)
	}
	return nil
}

// checkRequest answers requests the handler must not decide: a review without a request, a
// request for another kind, or an operation the rules ignore.
func checkRequest(req admission.Request, gk schema.GroupKind, ops ...admissionv1.Operation) (admission.Response, bool) {
	if req.UID == "" {
		return admission.Errored(http.StatusBadRequest, errors.New("the AdmissionReview carries no request (or a request without uid)")), false
	}
	if got := (schema.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}); got != gk {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("this endpoint admits %s objects, not %q; check the webhook configuration's rules", gk.Kind, got.String())), false
	}
	if req.SubResource != "" || !slices.Contains(ops, req.Operation) {
		return admission.Allowed(""), false
	}
	return admission.Response{}, true
}

func (s *Server) errored(ctx context.Context, resource string, code int32, err error) admission.Response {
	s.metrics.errors.WithLabelValues(resource, strconv.Itoa(int(code))).Inc()
	if code >= http.StatusInternalServerError {
		logf.FromContext(ctx).Error(err, "admission request not decided")
	} else {
		logf.FromContext(ctx).V(1).Info("bad admission request", "error", err.Error())
	}
	return admission.Errored(code, err)
}

// decide turns a mutator's answer into a response: a denial, a patch, or a plain allow.
func (s *Server) decide(ctx context.Context, resource string, gk schema.GroupKind, name string,
	raw []byte, original, mutated any, changed bool, outcome mutators.Outcome, err error, warnings ...string,
) admission.Response {
	log := logf.FromContext(ctx)
	if err != nil {
		d, ok := mutators.AsDenied(err)
		if !ok {
			return s.errored(ctx, resource, http.StatusInternalServerError, err)
		}
		s.metrics.denials.WithLabelValues(resource).Inc()
		st := apierrors.NewInvalid(gk, name, d.Errs).Status()
		log.Info("denied", "reason", d.Error())
		return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &st}}
	}
	if !changed {
		log.V(1).Info("admitted unchanged", "outcome", outcome)
		return admission.Allowed("")
	}
	patch, err := mutators.PatchFor(raw, original, mutated)
	if err != nil {
		return s.errored(ctx, resource, http.StatusInternalServerError, err)
	}
	s.metrics.mutations.WithLabelValues(resource, string(outcome)).Inc()
	log.V(1).Info("admitted with a patch", "outcome", outcome, "patch", string(patch))
	pt := admissionv1.PatchTypeJSONPatch
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
		Allowed: true, Patch: patch, PatchType: &pt, Warnings: warnings,
	}}
}

func objectName(name, generateName string) string {
	if name == "" && generateName != "" {
		return generateName + "*"
	}
	return name
}

type claimHandler struct{ s *Server }

// Handle admits claims: created ones are rewritten or refused, updates are checked for system
// annotations.
func (h claimHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	s := h.s
	if resp, ok := checkRequest(req, claimKind, admissionv1.Create, admissionv1.Update); !ok {
		return resp
	}
	pvc := &corev1.PersistentVolumeClaim{}
	if err := DecodeObject(req.Object.Raw, claimKind, pvc); err != nil {
		return s.errored(ctx, ResourceClaims, http.StatusBadRequest, err)
	}
	if pvc.Namespace == "" {
		pvc.Namespace = req.Namespace
	}
	var old *corev1.PersistentVolumeClaim
	if req.Operation == admissionv1.Update {
		old = &corev1.PersistentVolumeClaim{}
		if err := DecodeObject(req.OldObject.Raw, claimKind, old); err != nil {
			return s.errored(ctx, ResourceClaims, http.StatusBadRequest, fmt.Errorf("old object: %w", err))
		}
	}
	f, err := s.facts.forClaim(ctx, pvc, old, slices.Contains(s.cfg.SystemUsers, req.UserInfo.Username))
	if err != nil {
		return s.errored(ctx, ResourceClaims, http.StatusInternalServerError, err)
	}
	res, err := mutators.MutateClaim(pvc, f)
	var warnings []string
	if err == nil && res.Outcome == mutators.Rewritten {
		warnings = []string{fmt.Sprintf("ShareWarden: storageClassName %q rewritten to %q; the volume is served over NFS from a %q volume",
			derefOr(pvc.Spec.StorageClassName, f.DefaultClass), s.cfg.ManagedClass, res.Claim.Annotations[v1alpha1.AnnotationBackingStorageClass])}
	}
	return s.decide(ctx, ResourceClaims, claimKind, objectName(pvc.Name, pvc.GenerateName), req.Object.Raw, pvc, res.Claim, res.Changed, res.Outcome, err, warnings...)
}

type podHandler struct{ s *Server }

// Handle marks created pods that mount ShareWarden volumes or serve them.
func (h podHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	s := h.s
	if resp, ok := checkRequest(req, podKind, admissionv1.Create); !ok {
		return resp
	}
	pod := &corev1.Pod{}
	if err := DecodeObject(req.Object.Raw, podKind, pod); err != nil {
		return s.errored(ctx, ResourcePods, http.StatusBadRequest, err)
	}
	// Pods made by controllers may arrive without a namespace; the request has it. Set on the
	// original too, so the patch does not carry it.
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	f, err := s.facts.forPod(ctx, pod)
	if err != nil {
		return s.errored(ctx, ResourcePods, http.StatusInternalServerError, err)
	}
	res, err := mutators.MutatePod(pod, f)
	return s.decide(ctx, ResourcePods, podKind, objectName(pod.Name, pod.GenerateName), req.Object.Raw, pod, res.Pod, res.Changed, res.Outcome, err)
}

func derefOr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}
