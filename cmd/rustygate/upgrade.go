package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// listen opens a TCP listener. Multipath TCP stays off: it buys nothing
// on the proxy's sockets and costs throughput.
func listen(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp", addr)
}

// Zero-downtime upgrade: on SIGUSR2 the running process starts its own
// executable again with its listening sockets inherited (RUSTYGATE_FDS
// names them: "server=3,admin=4"), waits until the new process reports it
// is serving (a line on the pipe named by RUSTYGATE_READY_FD), then stops
// accepting and drains. No connection is refused in between: both
// processes hold the same sockets.
const (
	envFDs   = "RUSTYGATE_FDS"
	envReady = "RUSTYGATE_READY_FD"
)

// upgradeReadyTimeout bounds the wait for the new process.
const upgradeReadyTimeout = 15 * time.Second

// inherited holds listening sockets passed by a parent process.
type inherited struct {
	files     map[string]*os.File
	readyPipe *os.File
	// ticketKeys are the parent's TLS session ticket keys.
	ticketKeys []byte
}

func inheritedListeners() *inherited {
	in := &inherited{files: map[string]*os.File{}}
	for _, kv := range strings.Split(os.Getenv(envFDs), ",") {
		name, fd, ok := strings.Cut(kv, "=")
		if n, err := strconv.Atoi(fd); ok && err == nil && n > 2 {
			in.files[name] = os.NewFile(uintptr(n), name)
		}
	}
	if n, err := strconv.Atoi(os.Getenv(envReady)); err == nil && n > 2 {
		in.readyPipe = os.NewFile(uintptr(n), "ready")
	}
	os.Unsetenv(envFDs)
	os.Unsetenv(envReady)
	in.ticketKeys = readTicketKeys()
	return in
}

// listen returns the inherited socket named role when it listens on
// addr, else a new listener.
func (in *inherited) listen(role, addr string) (net.Listener, error) {
	if f := in.files[role]; f != nil {
		delete(in.files, role)
		ln, err := net.FileListener(f)
		f.Close()
		if err == nil && sameAddr(ln.Addr().String(), addr) {
			return ln, nil
		}
		if ln != nil {
			ln.Close()
		}
	}
	return listen(addr)
}

func sameAddr(bound, configured string) bool {
	bh, bp, err1 := net.SplitHostPort(bound)
	ch, cp, err2 := net.SplitHostPort(configured)
	if err1 != nil || err2 != nil {
		return false
	}
	if cp != "0" && bp != cp {
		return false
	}
	if ch == "" || ch == "0.0.0.0" || ch == "::" {
		return bh == "::" || bh == "0.0.0.0"
	}
	if ch == "localhost" {
		return bh == "127.0.0.1" || bh == "::1"
	}
	return net.ParseIP(bh).Equal(net.ParseIP(ch))
}

// upgrading reports whether this process was started by an upgrade.
func (in *inherited) upgrading() bool { return in.readyPipe != nil }

func (in *inherited) closeUnused() {
	for name, f := range in.files {
		f.Close()
		delete(in.files, name)
	}
}

// ready tells the parent, if any, that this process serves.
func (in *inherited) ready() {
	if in.readyPipe != nil {
		fmt.Fprintln(in.readyPipe, "ready")
		in.readyPipe.Close()
		in.readyPipe = nil
	}
}

// upgrade starts the new process and waits until it serves.
func (g *gateway) upgrade() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var files []*os.File
	var names []string
	add := func(role string, ln net.Listener) error {
		if ln == nil {
			return nil
		}
		if u, ok := ln.(interface{ Unwrap() net.Listener }); ok {
			ln = u.Unwrap()
		}
		tl, ok := ln.(*net.TCPListener)
		if !ok {
			return fmt.Errorf("%s listener cannot be handed over", role)
		}
		f, err := handOver(tl, role)
		if err != nil {
			return err
		}
		files = append(files, f)
		names = append(names, fmt.Sprintf("%s=%d", role, 2+len(files)))
		return nil
	}
	g.reloadMu.Lock()
	err = add("server", g.ln)
	if err == nil {
		err = add("tls", g.tlsLn)
	}
	if err == nil {
		err = add("admin", g.adminLn)
	}
	if err == nil && g.h3pc != nil {
		err = addPacketConn(&files, &names, "h3", g.h3pc)
	}
	for addr, ln := range g.l4.Sockets() {
		if err == nil {
			err = add("l4:"+addr, ln)
		}
	}
	g.reloadMu.Unlock()
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err != nil {
		return err
	}
	tickets, err := g.ticketPipe()
	if err != nil {
		return err
	}
	env := []string{envFDs + "=" + strings.Join(names, ",")}
	if tickets != nil {
		files = append(files, tickets)
		env = append(env, envTickets+"="+strconv.Itoa(2+len(files)))
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	files = append(files, pw)
	readyFD := 2 + len(files)
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = files
	cmd.Env = append(append(os.Environ(), env...), envReady+"="+strconv.Itoa(readyFD))
	if err := cmd.Start(); err != nil {
		pw.Close()
		return err
	}
	pw.Close()
	g.log.Info("binary upgrade: new process started", "pid", cmd.Process.Pid, "executable", exe)
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 16)
		pr.SetReadDeadline(time.Now().Add(upgradeReadyTimeout))
		n, err := pr.Read(buf)
		if err == nil && strings.HasPrefix(string(buf[:n]), "ready") {
			done <- nil
			return
		}
		if err == nil || errors.Is(err, io.EOF) {
			err = errors.New("new process exited before serving")
		}
		done <- err
	}()
	if err := <-done; err != nil {
		cmd.Process.Kill()
		go cmd.Wait()
		return fmt.Errorf("new process %d: %w", cmd.Process.Pid, err)
	}
	// The new process outlives this one; nothing waits for it here.
	go cmd.Wait()
	g.log.Info("binary upgrade: new process serving; draining this one", "new_pid", cmd.Process.Pid)
	return nil
}

// addPacketConn adds the UDP socket pc to the files an upgrade hands
// over, under role.
func addPacketConn(files *[]*os.File, names *[]string, role string, pc net.PacketConn) error {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return fmt.Errorf("%s socket cannot be handed over", role)
	}
	f, err := handOver(uc, role)
	if err != nil {
		return err
	}
	*files = append(*files, f)
	*names = append(*names, fmt.Sprintf("%s=%d", role, 2+len(*files)))
	return nil
}

// cmdUpgrade asks a running gateway to upgrade itself.
func cmdUpgrade(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("upgrade", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pid := fs.Int("p", 0, "process id of the running gateway (logged at startup as \"pid\")")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *pid <= 0 {
		fmt.Fprintln(stderr, "rustygate upgrade: -p PID is required")
		return 2
	}
	if err := signalUpgrade(*pid); err != nil {
		fmt.Fprintf(stderr, "rustygate upgrade: signal %d: %v\n", *pid, err)
		return 1
	}
	return 0
}
