package nfs4

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv4"
	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
)

// The ONC RPC layer (RFC 5531) of the client: calls are encoded as one record-marked fragment
// over TCP, replies decoded by DecodeReply, which is pure so it can be fuzzed.

const (
	nfsVersion4  = 4
	procNull     = 0
	procCompound = 1
	lastFragment = 1 << 31
	// maxRecord bounds a reply record: the largest READ this client asks for plus headroom.
	maxRecord = MaxIO + 64<<10
)

// MaxIO is the largest READ or WRITE payload the client sends or asks for.
const MaxIO = 1 << 20

// Cred is the AUTH_SYS identity calls carry.
type Cred struct {
	Machine  string
	UID, GID uint32
	GIDs     []uint32
}

// encodeCall returns a complete, record-marked COMPOUND (or NULL, when args is nil) call.
func encodeCall(xid uint32, cred Cred, args *nfsv4.Compound4args) ([]byte, error) {
	var credBody bytes.Buffer
	parms := rpcv2.AuthsysParms{Machinename: cred.Machine, Uid: cred.UID, Gid: cred.GID, Gids: cred.GIDs}
	if _, err := parms.WriteTo(&credBody); err != nil {
		return nil, fmt.Errorf("encoding AUTH_SYS credentials: %w", err)
	}
	proc := uint32(procCompound)
	if args == nil {
		proc = procNull
	}
	msg := rpcv2.RpcMsg{Xid: xid, Body: &rpcv2.RpcMsgBody_CALL{Cbody: rpcv2.CallBody{
		Rpcvers: 2,
		Prog:    nfsv4.NFS4_PROGRAM_PROGRAM_NUMBER,
		Vers:    nfsVersion4,
		Proc:    proc,
		Cred:    rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_SYS, Body: credBody.Bytes()},
		Verf:    rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_NONE},
	}}}
	var b bytes.Buffer
	b.Write(make([]byte, 4)) // record marker, filled in below
	if _, err := msg.WriteTo(&b); err != nil {
		return nil, fmt.Errorf("encoding RPC header: %w", err)
	}
	if args != nil {
		if _, err := args.WriteTo(&b); err != nil {
			return nil, fmt.Errorf("encoding COMPOUND: %w", err)
		}
	}
	out := b.Bytes()
	binary.BigEndian.PutUint32(out, lastFragment|uint32(len(out)-4))
	return out, nil
}

// RPCError is a reply that carries no results: denied, or accepted with an error.
type RPCError struct {
	Denied bool
	Accept rpcv2.AcceptStat
	Reject rpcv2.RejectStat
	Auth   rpcv2.AuthStat
}

func (e *RPCError) Error() string {
	if e.Denied {
		if e.Reject == rpcv2.AUTH_ERROR {
			return fmt.Sprintf("rpc call denied: auth error %d", e.Auth)
		}
		return fmt.Sprintf("rpc call denied: reject_stat %d", e.Reject)
	}
	return fmt.Sprintf("rpc call not executed: accept_stat %d", e.Accept)
}

// ErrBadReply is wrapped by DecodeReply errors for replies that do not parse.
var ErrBadReply = errors.New("malformed rpc reply")

// DecodeReply decodes a reply record (without record marker) to the call with the given xid.
// A nil result with a nil error is a successful NULL reply (body empty). Any malformed input is
// an error wrapping ErrBadReply, never a panic.
func DecodeReply(rec []byte, xid uint32) (*nfsv4.Compound4res, error) {
	r := bytes.NewReader(rec)
	var msg rpcv2.RpcMsg
	if _, err := msg.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrBadReply, err)
	}
	if msg.Xid != xid {
		return nil, fmt.Errorf("%w: xid %d, want %d", ErrBadReply, msg.Xid, xid)
	}
	body, ok := msg.Body.(*rpcv2.RpcMsgBody_REPLY)
	if !ok {
		return nil, fmt.Errorf("%w: a call, not a reply", ErrBadReply)
	}
	switch rb := body.Rbody.(type) {
	case *rpcv2.ReplyBody_MSG_ACCEPTED:
		if _, ok := rb.Areply.ReplyData.(*rpcv2.AcceptedReplyData_SUCCESS); !ok {
			if rb.Areply.ReplyData == nil {
				return nil, fmt.Errorf("%w: accepted reply without data", ErrBadReply)
			}
			return nil, &RPCError{Accept: rb.Areply.ReplyData.GetStat()}
		}
	case *rpcv2.ReplyBody_MSG_DENIED:
		e := &RPCError{Denied: true}
		switch rr := rb.Rreply.(type) {
		case *rpcv2.RejectedReply_AUTH_ERROR:
			e.Reject, e.Auth = rpcv2.AUTH_ERROR, rr.Stat
		case *rpcv2.RejectedReply_RPC_MISMATCH:
			e.Reject = rpcv2.RPC_MISMATCH
		}
		return nil, e
	default:
		return nil, fmt.Errorf("%w: unknown reply body", ErrBadReply)
	}
	if r.Len() == 0 {
		return nil, nil // NULL
	}
	var res nfsv4.Compound4res
	if _, err := res.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("%w: COMPOUND results: %w", ErrBadReply, err)
	}
	return &res, nil
}
