package l4

import (
	"io"
	"net"
	"slices"
	"strconv"
	"testing"

	"github.com/rustygate/rustygate/config"
)

// readAll dials addr and returns what the backend sent before closing.
func readAll(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	return string(b)
}

func portNum(a net.Addr) int { return a.(*net.TCPAddr).Port }

// TestPlanPreparedNotInForce: a prepared plan binds its new listener's
// port and reports it, while the running listener keeps its backend;
// Abort closes the new port and changes nothing; Commit puts the plan in
// force, once.
func TestPlanPreparedNotInForce(t *testing.T) {
	a := tcpBackend(t, func(c net.Conn) { io.WriteString(c, "a") })
	b := tcpBackend(t, func(c net.Conn) { io.WriteString(c, "b") })
	m, _ := startManager(t, l4cfg("x", a))
	xAddr := m.Addr("x").String()
	next := &config.Config{L4: []config.L4Listener{l4cfg("x", b), l4cfg("y", b)}}
	next.L4[0].Listen = xAddr
	next.ApplyDefaults()

	p, err := m.Prepare(next.L4)
	if err != nil {
		t.Fatal(err)
	}
	ports := p.Ports()
	if len(ports) != 2 || ports[0] != portNum(m.Addr("x")) || ports[1] == 0 {
		t.Fatalf("Ports() = %v, want x's port %d and y's new one", ports, portNum(m.Addr("x")))
	}
	if got := readAll(t, xAddr); got != "a" || m.Addr("y") != nil {
		t.Fatalf("prepared, not committed: x answers %q, y at %v; want the running backend a and no y", got, m.Addr("y"))
	}
	p.Abort()
	yAddr := "127.0.0.1:" + strconv.Itoa(ports[1])
	if c, err := net.Dial("tcp", yAddr); err == nil {
		c.Close()
		t.Fatalf("after Abort, the port prepared for y (%s) still accepts", yAddr)
	}
	if got := readAll(t, xAddr); got != "a" {
		t.Fatalf("after Abort x answers %q, want a", got)
	}

	p, err = m.Prepare(next.L4)
	if err != nil {
		t.Fatal(err)
	}
	ports = p.Ports()
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(); err == nil {
		t.Error("a second Commit of the same plan succeeded")
	}
	p.Abort() // after Commit: nothing
	if got := readAll(t, xAddr); got != "b" {
		t.Fatalf("committed: x answers %q, want b", got)
	}
	if y := m.Addr("y"); y == nil || !slices.Contains(ports, portNum(y)) {
		t.Fatalf("committed: y at %v, want one of the prepared ports %v", y, ports)
	}
	if got := readAll(t, m.Addr("y").String()); got != "b" {
		t.Fatalf("committed: y answers %q, want b", got)
	}
}

// TestPrepareFailsOnTakenPort: a listener whose port is taken fails the
// prepare, and the sockets it opened for the others are closed.
func TestPrepareFailsOnTakenPort(t *testing.T) {
	a := tcpBackend(t, func(c net.Conn) { io.WriteString(c, "a") })
	m, _ := startManager(t, l4cfg("x", a))
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()
	next := &config.Config{L4: []config.L4Listener{l4cfg("x", a), l4cfg("new", a), l4cfg("clash", a)}}
	next.L4[0].Listen = m.Addr("x").String()
	next.L4[1].Listen = freeAddr
	next.L4[2].Listen = taken.Addr().String()
	next.ApplyDefaults()
	if _, err := m.Prepare(next.L4); err == nil {
		t.Fatal("Prepare onto a taken port succeeded")
	}
	if c, err := net.Dial("tcp", freeAddr); err == nil {
		c.Close()
		t.Fatalf("the socket prepared for the other new listener (%s) was left open", freeAddr)
	}
	if m.Addr("new") != nil || readAll(t, m.Addr("x").String()) != "a" {
		t.Fatal("a failed Prepare changed the running listeners")
	}
}
