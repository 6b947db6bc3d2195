package nfs4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv4"
)

// Attr is the subset of a file's NFSv4 attributes this client asks for (AttrRequest).
type Attr struct {
	Type      nfsv4.NfsFtype4
	Change    uint64
	Size      uint64
	FSID      FSID
	LeaseTime uint32
	FileID    uint64
	Mode      uint32
	Mtime     time.Time
}

// FSID is the fsid attribute.
type FSID struct{ Major, Minor uint64 }

// attrIDs are the attributes decodeAttrs understands, in wire (bit) order.
var attrIDs = []int{
	nfsv4.FATTR4_TYPE, nfsv4.FATTR4_CHANGE, nfsv4.FATTR4_SIZE, nfsv4.FATTR4_FSID,
	nfsv4.FATTR4_LEASE_TIME, nfsv4.FATTR4_FILEID, nfsv4.FATTR4_MODE, nfsv4.FATTR4_TIME_MODIFY,
}

// AttrRequest is the bitmap of every attribute in Attr.
func AttrRequest() []uint32 { return bitmap(attrIDs...) }

func bitmap(ids ...int) []uint32 {
	var b []uint32
	for _, id := range ids {
		for len(b) <= id/32 {
			b = append(b, 0)
		}
		b[id/32] |= 1 << (id % 32)
	}
	return b
}

var errShortAttrs = errors.New("attribute values cut short")

// DecodeAttrs decodes a fattr4 whose mask holds only attributes of Attr. Malformed input is an
// error, never a panic.
func DecodeAttrs(f nfsv4.Fattr4) (Attr, error) {
	var a Attr
	v := f.AttrVals
	take := func(n int) ([]byte, error) {
		if len(v) < n {
			return nil, errShortAttrs
		}
		b := v[:n]
		v = v[n:]
		return b, nil
	}
	u32 := func() (uint32, error) {
		b, err := take(4)
		if err != nil {
			return 0, err
		}
		return binary.BigEndian.Uint32(b), nil
	}
	u64 := func() (uint64, error) {
		b, err := take(8)
		if err != nil {
			return 0, err
		}
		return binary.BigEndian.Uint64(b), nil
	}
	for word, bits := range f.Attrmask {
		for bit := range 32 {
			if bits&(1<<bit) == 0 {
				continue
			}
			var err error
			switch id := word*32 + bit; id {
			case nfsv4.FATTR4_TYPE:
				var t uint32
				t, err = u32()
				a.Type = nfsv4.NfsFtype4(t)
			case nfsv4.FATTR4_CHANGE:
				a.Change, err = u64()
			case nfsv4.FATTR4_SIZE:
				a.Size, err = u64()
			case nfsv4.FATTR4_FSID:
				if a.FSID.Major, err = u64(); err == nil {
					a.FSID.Minor, err = u64()
				}
			case nfsv4.FATTR4_LEASE_TIME:
				a.LeaseTime, err = u32()
			case nfsv4.FATTR4_FILEID:
				a.FileID, err = u64()
			case nfsv4.FATTR4_MODE:
				a.Mode, err = u32()
			case nfsv4.FATTR4_TIME_MODIFY:
				var sec uint64
				var nsec uint32
				if sec, err = u64(); err == nil {
					if nsec, err = u32(); err == nil {
						a.Mtime = time.Unix(int64(sec), int64(nsec))
					}
				}
			default:
				return Attr{}, fmt.Errorf("attribute %d is not one this client decodes", id)
			}
			if err != nil {
				return Attr{}, fmt.Errorf("attribute %d: %w", word*32+bit, err)
			}
		}
	}
	if len(v) != 0 {
		return Attr{}, fmt.Errorf("%d bytes after the last attribute", len(v))
	}
	return a, nil
}

// encodeMode is a fattr4 setting mode, for OPEN with create.
func encodeMode(mode uint32) nfsv4.Fattr4 {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, mode)
	return nfsv4.Fattr4{Attrmask: bitmap(nfsv4.FATTR4_MODE), AttrVals: b}
}
