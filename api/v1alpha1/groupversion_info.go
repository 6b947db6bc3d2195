// +kubebuilder:object:generate=true
// +groupName=sharewarden.io

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// SchemeGroupVersion is the group and version of ShareWarden's custom resources.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// AddToScheme registers ShareWarden's types with a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &SharedVolume{}, &SharedVolumeList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
