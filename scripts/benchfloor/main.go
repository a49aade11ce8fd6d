//go:build linux

// Command benchfloor is the floor that make bench measures redraft against: the least a
// proxy in front of Redis can do. One OS thread runs an epoll loop over the client sockets
// and one shared, pipelined backend connection; it frames whole RESP commands, forwards them
// unparsed and copies each reply back to its client, in order. No routing, no command table,
// no sessions, no goroutine per client. Whatever CPU per request it spends is what the
// kernel's sockets cost on this machine; a proxy cannot go below it, so redraft's figures read
// best as a ratio to this floor as well as to Redis direct.
//
// Usage: benchfloor -listen 127.0.0.1:7001 -backend 127.0.0.1:6379
package main

import (
	"bytes"
	"errors"
	"flag"
	"log"
	"net"
	"runtime"
	"strconv"
	"syscall"
)

type client struct {
	fd  int
	in  []byte // bytes read but not yet forwarded (an incomplete command)
	out []byte // reply bytes a full socket did not take yet
}

type loop struct {
	ep      int
	backend int
	clients map[int]*client
	fifo    []*client // one entry per forwarded command, in write order
	dirty   []*client // clients with replies to write at the end of this loop turn
	wbuf    []byte    // commands to write to the backend
	rbuf    []byte    // backend bytes not yet matched to a request
	buf     []byte
}

func main() {
	listen := flag.String("listen", "127.0.0.1:7001", "RESP listen address")
	backend := flag.String("backend", "127.0.0.1:6379", "the Redis server")
	flag.Parse()
	runtime.LockOSThread()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		log.Fatal(err)
	}
	bc, err := net.Dial("tcp", *backend)
	if err != nil {
		log.Fatal(err)
	}
	bf, err := bc.(*net.TCPConn).File()
	if err != nil {
		log.Fatal(err)
	}
	l := &loop{backend: int(bf.Fd()), clients: map[int]*client{}, buf: make([]byte, 64<<10)}
	lfd := int(lf.Fd())
	for _, fd := range []int{lfd, l.backend} {
		if err := syscall.SetNonblock(fd, true); err != nil {
			log.Fatal(err)
		}
	}
	if l.ep, err = syscall.EpollCreate1(0); err != nil {
		log.Fatal(err)
	}
	l.watch(lfd, syscall.EPOLLIN)
	l.watch(l.backend, syscall.EPOLLIN)
	l.run(lfd)
	runtime.KeepAlive(lf) // the Files own the descriptors: closing them would close the fds
	runtime.KeepAlive(bf)
}

func (l *loop) watch(fd int, events uint32) {
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		log.Fatal(err)
	}
}

func (l *loop) run(lfd int) {
	evs := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(l.ep, evs, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			log.Fatal(err)
		}
		for i := 0; i < n; i++ {
			switch fd := int(evs[i].Fd); fd {
			case lfd:
				l.accept(lfd)
			case l.backend:
				l.readBackend()
			default:
				if c := l.clients[fd]; c != nil {
					l.readClient(c)
				}
			}
		}
		for len(l.wbuf) > 0 { // one write per loop turn carries every client's commands
			n, err := syscall.Write(l.backend, l.wbuf)
			if err != nil && !errors.Is(err, syscall.EAGAIN) {
				log.Fatal("backend write: ", err)
			}
			if n > 0 {
				l.wbuf = l.wbuf[:copy(l.wbuf, l.wbuf[n:])]
			}
		}
	}
}

func (l *loop) accept(lfd int) {
	fd, _, err := syscall.Accept(lfd)
	if err != nil {
		return
	}
	_ = syscall.SetNonblock(fd, true)
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	l.clients[fd] = &client{fd: fd}
	l.watch(fd, syscall.EPOLLIN)
}

func (l *loop) readClient(c *client) {
	n, err := syscall.Read(c.fd, l.buf)
	if errors.Is(err, syscall.EAGAIN) {
		return
	}
	if n <= 0 {
		// Replies still owed to the client are dropped when they arrive.
		delete(l.clients, c.fd)
		_ = syscall.Close(c.fd)
		c.fd = -1
		return
	}
	c.in = append(c.in, l.buf[:n]...)
	off := 0
	for {
		end := frameEnd(c.in[off:])
		if end <= 0 {
			break
		}
		off += end
		l.fifo = append(l.fifo, c)
	}
	if end := frameEnd(c.in[off:]); end < 0 {
		log.Fatal("malformed request")
	}
	l.wbuf = append(l.wbuf, c.in[:off]...)
	c.in = c.in[:copy(c.in, c.in[off:])]
}

func (l *loop) readBackend() {
	n, err := syscall.Read(l.backend, l.buf)
	if errors.Is(err, syscall.EAGAIN) {
		return
	}
	if n <= 0 {
		log.Fatal("backend closed: ", err)
	}
	l.rbuf = append(l.rbuf, l.buf[:n]...)
	off := 0
	for len(l.fifo) > 0 {
		end := frameEnd(l.rbuf[off:])
		if end <= 0 {
			break
		}
		c := l.fifo[0]
		l.fifo = l.fifo[1:]
		if c.fd >= 0 {
			if len(c.out) == 0 {
				l.dirty = append(l.dirty, c)
			}
			c.out = append(c.out, l.rbuf[off:off+end]...)
		}
		off += end
	}
	l.rbuf = l.rbuf[:copy(l.rbuf, l.rbuf[off:])]
	// One write per client per read: a pipeline's replies go out together.
	for _, c := range l.dirty {
		c.write()
	}
	l.dirty = l.dirty[:0]
}

// write sends the client's replies; a full socket (rare at these sizes) is waited out, which
// stalls the loop: acceptable for a benchmark floor, wrong for a product.
func (c *client) write() {
	b := c.out
	for len(b) > 0 && c.fd >= 0 {
		n, err := syscall.Write(c.fd, b)
		if err != nil && !errors.Is(err, syscall.EAGAIN) {
			break
		}
		if n > 0 {
			b = b[n:]
		}
	}
	c.out = c.out[:0]
}

// frameEnd returns the length of the first complete RESP value in b, 0 when b holds only
// part of one, and -1 when b is not RESP.
func frameEnd(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 {
		return 0
	}
	switch b[0] {
	case '+', '-', ':':
		return i + 2
	case '$':
		n, err := strconv.Atoi(string(b[1:i]))
		if err != nil {
			return -1
		}
		if n < 0 {
			return i + 2
		}
		if len(b) < i+2+n+2 {
			return 0
		}
		return i + 2 + n + 2
	case '*':
		n, err := strconv.Atoi(string(b[1:i]))
		if err != nil {
			return -1
		}
		off := i + 2
		for k := 0; k < n; k++ {
			e := frameEnd(b[off:])
			if e <= 0 {
				return e
			}
			off += e
		}
		return off
	}
	return -1
}
