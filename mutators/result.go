package mutators

import (
	"errors"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Outcome says, in a word, what a mutator did; the webhook logs it and tests assert on it.
type Outcome string

const (
	// Rewritten: a shared claim on an opted-in class now asks for the managed class.
	Rewritten Outcome = "rewritten"
	// BackingRecorded: a claim written against the managed class got its backing class recorded.
	BackingRecorded Outcome = "backing-recorded"
	// AlreadyRewritten: the claim already asks for the managed class and names a valid backing
	// class (typically the webhook's own earlier rewrite, re-invoked).
	AlreadyRewritten Outcome = "already-rewritten"
	// NotShared: the claim asks for neither ReadWriteMany nor ReadOnlyMany.
	NotShared Outcome = "not-shared"
	// NoClass: the claim asks for no storage class and the cluster has no default.
	NoClass Outcome = "no-class"
	// NotOptedIn: the claim's class is not opted in to ShareWarden.
	NotOptedIn Outcome = "not-opted-in"
	// Updated: an update that touches nothing ShareWarden guards.
	Updated Outcome = "update"

	// MarkedConsumer: the pod mounts a ShareWarden volume and now carries ResourceConsumer.
	MarkedConsumer Outcome = "marked-consumer"
	// MarkedServer: the pod is a ShareWarden NFS server and now carries ResourceServer.
	MarkedServer Outcome = "marked-server"
	// AlreadyMarked: the pod carries its marker already (a re-invocation).
	AlreadyMarked Outcome = "already-marked"
	// NotConsumer: the pod mounts no ShareWarden volume.
	NotConsumer Outcome = "not-consumer"
)

// DeniedError is a policy refusal: one field error per problem, each saying why and what to do
// instead. The webhook turns it into a denied admission response.
type DeniedError struct {
	Errs field.ErrorList
}

func (e *DeniedError) Error() string {
	msgs := make([]string, 0, len(e.Errs))
	for _, fe := range e.Errs {
		msgs = append(msgs, fe.Error())
	}
	return strings.Join(msgs, "; ")
}

// AsDenied returns the denial inside err, if err is one.
func AsDenied(err error) (*DeniedError, bool) {
	var d *DeniedError
	ok := errors.As(err, &d)
	return d, ok
}

func denied(errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return &DeniedError{Errs: errs}
}

// sortErrors orders errs by field path and type, so that denials read the same every time.
func sortErrors(errs field.ErrorList) field.ErrorList {
	slices.SortStableFunc(errs, func(a, b *field.Error) int {
		if c := strings.Compare(a.Field, b.Field); c != 0 {
			return c
		}
		return strings.Compare(string(a.Type), string(b.Type))
	})
	return errs
}
