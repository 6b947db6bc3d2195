package nfs4

import (
	"errors"
	"fmt"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv4"
)

// Status is an NFSv4 status code (nfsstat4) that is not NFS4_OK, as an error: errors.Is(err,
// nfs4.ErrStale) tells one from another through any wrapping.
type Status nfsv4.Nfsstat4

func (s Status) Error() string {
	if name, ok := nfsv4.Nfsstat4_name[nfsv4.Nfsstat4(s)]; ok {
		return name
	}
	return fmt.Sprintf("NFS4ERR_%d", int32(s))
}

// The statuses tests and recovery tell apart.
const (
	ErrPerm              = Status(nfsv4.NFS4ERR_PERM)
	ErrNoEnt             = Status(nfsv4.NFS4ERR_NOENT)
	ErrIO                = Status(nfsv4.NFS4ERR_IO)
	ErrExist             = Status(nfsv4.NFS4ERR_EXIST)
	ErrNotDir            = Status(nfsv4.NFS4ERR_NOTDIR)
	ErrInval             = Status(nfsv4.NFS4ERR_INVAL)
	ErrNotSupp           = Status(nfsv4.NFS4ERR_NOTSUPP)
	ErrServerFault       = Status(nfsv4.NFS4ERR_SERVERFAULT)
	ErrDelay             = Status(nfsv4.NFS4ERR_DELAY)
	ErrStale             = Status(nfsv4.NFS4ERR_STALE)
	ErrBadHandle         = Status(nfsv4.NFS4ERR_BADHANDLE)
	ErrBadStateID        = Status(nfsv4.NFS4ERR_BAD_STATEID)
	ErrGrace             = Status(nfsv4.NFS4ERR_GRACE)
	ErrNoGrace           = Status(nfsv4.NFS4ERR_NO_GRACE)
	ErrReclaimBad        = Status(nfsv4.NFS4ERR_RECLAIM_BAD)
	ErrStaleClientID     = Status(nfsv4.NFS4ERR_STALE_CLIENTID)
	ErrStaleStateID      = Status(nfsv4.NFS4ERR_STALE_STATEID)
	ErrOldStateID        = Status(nfsv4.NFS4ERR_OLD_STATEID)
	ErrExpired           = Status(nfsv4.NFS4ERR_EXPIRED)
	ErrBadSession        = Status(nfsv4.NFS4ERR_BADSESSION)
	ErrDeadSession       = Status(nfsv4.NFS4ERR_DEADSESSION)
	ErrConnNotBound      = Status(nfsv4.NFS4ERR_CONN_NOT_BOUND_TO_SESSION)
	ErrSeqMisordered     = Status(nfsv4.NFS4ERR_SEQ_MISORDERED)
	ErrCompleteAlready   = Status(nfsv4.NFS4ERR_COMPLETE_ALREADY)
	ErrMinorVersMismatch = Status(nfsv4.NFS4ERR_MINOR_VERS_MISMATCH)
	ErrOpIllegal         = Status(nfsv4.NFS4ERR_OP_ILLEGAL)
	ErrBadXDR            = Status(nfsv4.NFS4ERR_BADXDR)
	ErrDirDelegUnavail   = Status(nfsv4.NFS4ERR_DIRDELEG_UNAVAIL)
)

// OpError is a COMPOUND that stopped at an operation with a status other than NFS4_OK.
type OpError struct {
	Op     nfsv4.NfsOpnum4
	Index  int // position in the COMPOUND, SEQUENCE included
	Status Status
}

func (e *OpError) Error() string {
	name, ok := nfsv4.NfsOpnum4_name[e.Op]
	if !ok {
		name = fmt.Sprintf("op %d", e.Op)
	}
	return fmt.Sprintf("%s (op %d of the compound): %s", name, e.Index, e.Status)
}

func (e *OpError) Unwrap() error { return e.Status }

// StatusOf returns the NFSv4 status err carries, or NFS4_OK (0) when it carries none.
func StatusOf(err error) Status {
	var s Status
	errors.As(err, &s)
	return s
}

// Refused tells whether err is a server's answer turning this client away, as an export's
// client list does: the export hidden from it (NFS4ERR_NOENT looking it up) or its file handles
// refused (NFS4ERR_ACCESS, NFS4ERR_PERM). A connection or timeout failure is not a refusal.
func Refused(err error) bool {
	var op *OpError
	if !errors.As(err, &op) {
		return false
	}
	switch op.Status {
	case ErrNoEnt, ErrPerm, Status(nfsv4.NFS4ERR_ACCESS):
		return true
	}
	return false
}
