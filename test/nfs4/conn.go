package nfs4

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv4"

	"github.com/sharewarden/sharewarden/nfsserver/oncrpc"
)

// ErrConnection is wrapped by every error that leaves a call's outcome unknown: the connection
// failed or timed out before a reply came, or the reply did not parse. The call may or may not
// have run; within a session, resending it on the same slot is answered from the reply cache.
var ErrConnection = errors.New("nfs connection failed")

// rpcConn is one TCP connection: calls are matched to replies by xid, so several may be in
// flight. A reader goroutine ends with the connection; every pending call then fails.
type rpcConn struct {
	nc   net.Conn
	cred Cred

	wmu sync.Mutex // one record written at a time

	mu      sync.Mutex
	xid     uint32
	pending map[uint32]chan []byte
	err     error
	done    chan struct{}
}

func newRPCConn(nc net.Conn, cred Cred, firstXID uint32) *rpcConn {
	c := &rpcConn{nc: nc, cred: cred, xid: firstXID, pending: map[uint32]chan []byte{}, done: make(chan struct{})}
	go c.read()
	return c
}

func (c *rpcConn) read() {
	for {
		rec, err := oncrpc.ReadRecord(c.nc, maxRecord)
		if err != nil {
			c.fail(err)
			return
		}
		// Replies start with xid and msg_type 1; anything else (a callback call) is dropped.
		if len(rec) < 8 || binary.BigEndian.Uint32(rec[4:]) != 1 {
			continue
		}
		xid := binary.BigEndian.Uint32(rec)
		c.mu.Lock()
		ch, ok := c.pending[xid]
		delete(c.pending, xid)
		c.mu.Unlock()
		if ok {
			ch <- rec
		}
	}
}

// fail closes the connection; the first error is the one every pending and later call gets.
func (c *rpcConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	_ = c.nc.Close()
	close(c.done)
}

func (c *rpcConn) dead() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *rpcConn) close() { c.fail(errors.New("closed")) }

// call sends one COMPOUND (or a NULL call, args nil) and waits for its reply, at most timeout.
// A timeout fails the whole connection, as a Linux client drops a connection that stops
// answering and retransmits on a new one.
func (c *rpcConn) call(ctx context.Context, timeout time.Duration, args *nfsv4.Compound4args) (*nfsv4.Compound4res, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrConnection, err)
	}
	c.xid++
	xid := c.xid
	ch := make(chan []byte, 1)
	c.pending[xid] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, xid)
		c.mu.Unlock()
	}

	rec, err := encodeCall(xid, c.cred, args)
	if err != nil {
		forget()
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.wmu.Lock()
	_ = c.nc.SetWriteDeadline(deadline)
	_, err = c.nc.Write(rec)
	c.wmu.Unlock()
	if err != nil {
		forget()
		c.fail(err)
		return nil, fmt.Errorf("%w: sending: %w", ErrConnection, err)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case rec := <-ch:
		res, err := DecodeReply(rec, xid)
		if errors.Is(err, ErrBadReply) {
			c.fail(err)
			return nil, fmt.Errorf("%w: %w", ErrConnection, err)
		}
		return res, err
	case <-c.done:
		forget()
		return nil, fmt.Errorf("%w: %w", ErrConnection, c.err)
	case <-timer.C:
		forget()
		err := fmt.Errorf("no reply within %s", timeout)
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		c.fail(err)
		return nil, fmt.Errorf("%w: %w", ErrConnection, err)
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("%w: %w", ErrConnection, ctx.Err())
	}
}
