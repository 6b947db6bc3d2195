package nfsserver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"github.com/sharewarden/sharewarden/nfsserver/oncrpc"
)

// ProbeNFS makes one ONC RPC NULL call to NFSv4 at addr over TCP and returns nil only if the
// server accepts it. It gives up at ctx's deadline or after timeout, whichever comes first.
func ProbeNFS(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := nullCall(ctx, addr)
	if err != nil && (ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded)) {
		// The I/O error is only the symptom (a closed connection or a deadline); say what happened.
		return fmt.Errorf("no RPC NULL reply from %s within %s: %w", addr, timeout, err)
	}
	return err
}

func nullCall(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", addr, err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("setting deadline: %w", err)
	}
	// The connection is closed when ctx ends early, which unblocks reads and writes.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	xid := rand.Uint32()
	if _, err := conn.Write(oncrpc.NullCall(xid, oncrpc.ProgramNFS, oncrpc.VersionNFS4)); err != nil {
		return fmt.Errorf("sending NULL call to %s: %w", addr, err)
	}
	rec, err := oncrpc.ReadRecord(conn, oncrpc.MaxReplySize)
	if err != nil {
		return fmt.Errorf("reading NULL reply from %s: %w", addr, err)
	}
	reply, err := oncrpc.DecodeReply(rec)
	if err != nil {
		return fmt.Errorf("decoding NULL reply from %s: %w", addr, err)
	}
	if err := reply.Err(xid); err != nil {
		return fmt.Errorf("NULL call to %s: %w", addr, err)
	}
	return nil
}
